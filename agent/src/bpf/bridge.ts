// Typed access to the native bridge (agent/native/bridge.c), a Node-API addon over libbpf.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { installRoot } from '../install-root.ts';

export const bpfObjectDir = join(installRoot, 'bpf', '.output');
const addonPath = join(installRoot, 'agent', 'native', 'build', 'Release', 'goroscope_bridge.node');

export interface RingSpec {
  map: string;
  recordSize: number;
  /** Perf event arrays only: pages per CPU (a power of two) and bytes that wake the reader (0: its timer only). */
  perfPagesPerCpu?: number;
  wakeupBytes?: number;
}
/** pollMs: drain at least this often while records come quickly; idleMs: while they trickle or none come (1 s by
 * default: agent/native/reader.c says why). */
export interface ReaderOptions { pollMs?: number; idleMs?: number; batchBytes?: number; maxOutstanding?: number }
export interface ReaderStats {
  records: number;
  batches: number;
  malformed: number;
  stalls: number;
  outstanding: number;
  /** Perf path: records the kernel dropped on a full per-CPU buffer (the BPF side counts them too, per probe). */
  perfLost: number;
  /** Perf path: times the staging area filled and records went out before they could be put in time order. */
  reorderOverflows: number;
  /** Every record stamped before this (CLOCK_MONOTONIC ns) is in a batch counted in `batches` (0: no round yet). */
  throughNs: number;
}
export interface MapInfo { type: number; keySize: number; valueSize: number; maxEntries: number; possibleCpus: number; percpu: boolean }

export interface BpfObject {
  attachUprobe(program: string, binaryPath: string, fileOffset: number, pid: number, cookie: bigint): number;
  /** One multi-link for many offsets (objects opened with uprobeMulti only). */
  attachUprobes(program: string, binaryPath: string, fileOffsets: number[], cookies: bigint[], pid: number): number;
  attachTracepoint(program: string, category: string, name: string): number;
  /** A classic tracepoint by its id (tracefs.ts): needs no tracefs mounted at this moment. */
  attachTracepointId(program: string, id: number): number;
  attach(program: string): number;
  detach(link: number): void;
  /** The links leave at once; the kernel lets go of them together off this thread (a uprobe's costs ~0.1 s). */
  detachAsync(links: number[]): Promise<void>;
  updateElem(map: string, key: Buffer, value: Buffer): void;
  lookupElem(map: string, key: Buffer): Buffer | null;
  /** True if the key was there. */
  deleteElem(map: string, key: Buffer): boolean;
  /** Every key of a hash map, now. */
  keys(map: string): Buffer[];
  mapInfo(map: string): MapInfo;
  startReader(rings: RingSpec[], onBatch: (ring: number, batch: Buffer) => void, opts?: ReaderOptions): void;
  /** Stops the thread after a last drain; the final counts tell how many batches are still to arrive. */
  stopReader(): ReaderStats;
  readerStats(): ReaderStats;
  /** The reader thread drains now instead of at the end of its wait: for whoever needs the records up to now. */
  requestDrain(): void;
  /** The reader's longest wait while its rings are quiet, from now on (a no-op when none runs). */
  setReaderIdleMs(ms: number): void;
  /** What the bridge's exit watch did: processes watched now, gone ones, links it removed. */
  exitStats(): { watched: number; exitedProcesses: number; detachedLinks: number };
  close(): void;
}

export interface OpenOptions {
  /** max_entries set before load: a ring buffer's bytes, or any map's entries. */
  ringSizes?: Record<string, number>;
  /** Events maps to retype as perf event arrays (kernels without BPF ring buffers; events-source.ts). */
  perfEventArrays?: string[];
  /** Programs not to load (twins for the other event transport). */
  skipPrograms?: string[];
  globals?: Record<string, Buffer>;
  /** Load uprobe programs for multi-links (hasUprobeMulti()): every uprobe then attaches as one. */
  uprobeMulti?: boolean;
  /**
   * Hash maps keyed by pid (4-byte keys) or pid_tgid (8-byte keys, the pid in the upper half): when a process
   * with uprobes exits, the bridge removes its links and its entries here at once, on a thread of its own.
   */
  perProcessMaps?: string[];
}

interface Addon {
  Bpf: new (objectPath: string, opts?: OpenOptions) => BpfObject;
  libbpfVersion(): string;
  hasRingbuf(): boolean;
  /** Uprobe multi-links with a per-process pid filter (Linux 6.9+). */
  hasUprobeMulti(): boolean;
  /** Gives the C heap's free pages back to the kernel (malloc_trim); true when it gave some. */
  trimNativeHeap(): boolean;
  /** Batched process_vm_readv (procmem.c): bytes read per range, ranges laid end to end in out. */
  readMemory(pid: number, addrs: Float64Array, lens: Uint32Array, out: Buffer): Int32Array;
  /** Classic tracepoint ids from a tracefs mounted in a child's private mount namespace (needs CAP_SYS_ADMIN). */
  privateTracefsIds(names: string[]): number[];
}

let addon: Addon | undefined;

/** Loads the addon once; a clear error says how to build it when it is missing. */
export function loadAddon(): Addon {
  if (addon) return addon;
  if (!existsSync(addonPath)) {
    throw new Error(`the native bridge is not built (${addonPath} is missing): run scripts/setup.sh or npm run build`);
  }
  addon = createRequire(import.meta.url)(addonPath) as Addon;
  return addon;
}

export function openBpfObject(name: string, opts?: OpenOptions): BpfObject {
  const path = join(bpfObjectDir, `${name}.bpf.o`);
  if (!existsSync(path)) throw new Error(`BPF object ${path} is missing: run scripts/setup.sh or npm run build`);
  return new (loadAddon().Bpf)(path, opts);
}

/** Sums a per-CPU u64 value (one 8-byte slot per possible CPU). */
export function sumPercpuU64(buf: Buffer | null): number {
  if (!buf) return 0;
  let n = 0n;
  for (let o = 0; o + 8 <= buf.length; o += 8) n += buf.readBigUInt64LE(o);
  return Number(n);
}

/**
 * Per-CPU u64 counters of an array map, summed over CPUs, by name: keys[name] + base is the map key. (Hit and
 * drop counts by probe, TCP statistics; base selects a layout's block of hit counts.)
 */
export function percpuCounters(bpf: BpfObject, map: string, keys: Record<string, number>, base = 0): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, idx] of Object.entries(keys)) out[name] = sumPercpuU64(bpf.lookupElem(map, u32Key(base + idx)));
  return out;
}

export function u32Key(n: number): Buffer {
  const k = Buffer.alloc(4);
  k.writeUInt32LE(n);
  return k;
}
