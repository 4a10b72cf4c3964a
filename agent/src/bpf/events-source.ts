// How a BPF object's records reach the agent: a BPF ring buffer (kernel 5.8+), or perf event arrays on older
// kernels. The programs carry both paths (bpf/common.bpf.h); use_perf_events, set before load, picks one.
// GOROSCOPE_EVENT_TRANSPORT=perf forces the perf path, so it is tested on kernels that have ring buffers too.
import { cpus } from 'node:os';
import { loadAddon, openBpfObject, type BpfObject, type OpenOptions, type RingSpec } from './bridge.ts';

export type EventTransport = 'ringbuf' | 'perf';

/** The transport to use: the one asked for (option, then environment), else the best the kernel has. */
export function resolveTransport(asked?: EventTransport | 'auto'): EventTransport {
  const want = asked ?? (process.env.GOROSCOPE_EVENT_TRANSPORT as EventTransport | 'auto' | undefined) ?? 'auto';
  if (want !== 'auto' && want !== 'ringbuf' && want !== 'perf') {
    throw new Error(`unknown event transport "${want}" (GOROSCOPE_EVENT_TRANSPORT): use auto, ringbuf or perf`);
  }
  const hasRingbuf = loadAddon().hasRingbuf();
  if (want === 'ringbuf' && !hasRingbuf) throw new Error('this kernel has no BPF ring buffer (5.8+): use the perf transport');
  if (want === 'auto') return hasRingbuf ? 'ringbuf' : 'perf';
  return want;
}

/**
 * Uprobe multi-links where the kernel has them (GOROSCOPE_UPROBE_LINKS=classic forces one perf link per uprobe):
 * the kernel detaches a classic uprobe under a node-wide mutex with a grace period each (~0.1 s), so a process
 * with a dozen probes took over a second to let go of; a multi-link per program costs one grace period, shared.
 */
export function resolveUprobeMulti(): boolean {
  const want = process.env.GOROSCOPE_UPROBE_LINKS ?? 'auto';
  if (want !== 'auto' && want !== 'multi' && want !== 'classic') {
    throw new Error(`unknown uprobe link kind "${want}" (GOROSCOPE_UPROBE_LINKS): use auto, multi or classic`);
  }
  const has = loadAddon().hasUprobeMulti();
  if (want === 'multi' && !has) throw new Error('this kernel has no uprobe multi-links (Linux 6.9+): use GOROSCOPE_UPROBE_LINKS=classic');
  return want === 'classic' ? false : has;
}

export interface EventsSourceOptions {
  /** The BPF object under bpf/.output, without .bpf.o. */
  object: string;
  /** Its events map and record size. */
  map: string;
  recordSize: number;
  /** Ring bytes; on the perf path, the total over all CPUs' buffers. */
  ringBytes: number;
  /** Perf path: buffered bytes per CPU that wake the reader (0: the reader's timer only). */
  perfWakeupBytes: number;
  /** Ring path, for objects with a `wakeup_bytes` global: waiting bytes past which a submit wakes the reader. */
  ringWakeupBytes?: number;
  transport?: EventTransport | 'auto';
  /** Other maps' max_entries and read-only globals, as openBpfObject takes them. */
  sizes?: Record<string, number>;
  globals?: Record<string, Buffer>;
  /** Maps whose entries of a process go when it exits (OpenOptions.perProcessMaps). */
  perProcessMaps?: string[];
  /** Programs that only work on one transport, by the transport they need. */
  programsFor?: Record<EventTransport, string[]>;
  /** Programs not to load whatever the transport (e.g. the twins of another attach path). */
  skipPrograms?: string[];
}

export interface EventsSource {
  bpf: BpfObject;
  ring: RingSpec;
  transport: EventTransport;
}

/** Largest power of two <= n (at least 1). */
function floorPow2(n: number): number {
  return 2 ** Math.max(0, Math.floor(Math.log2(Math.max(1, n))));
}

export function openEventsSource(o: EventsSourceOptions): EventsSource {
  const transport = resolveTransport(o.transport);
  const perf = transport === 'perf';
  const globals: Record<string, Buffer> = { ...o.globals, use_perf_events: Buffer.from([perf ? 1 : 0]) };
  if (o.ringWakeupBytes !== undefined) {
    const wake = Buffer.alloc(8);
    wake.writeBigUInt64LE(BigInt(o.ringWakeupBytes));
    globals.wakeup_bytes = wake;
  }
  const opts: OpenOptions = {
    ringSizes: { ...o.sizes, ...(perf ? {} : { [o.map]: o.ringBytes }) },
    globals,
    ...(perf ? { perfEventArrays: [o.map] } : {}),
    skipPrograms: [...(o.programsFor?.[perf ? 'ringbuf' : 'perf'] ?? []), ...(o.skipPrograms ?? [])],
    uprobeMulti: resolveUprobeMulti(),
    perProcessMaps: o.perProcessMaps,
  };
  const bpf = openBpfObject(o.object, opts);
  const ring: RingSpec = { map: o.map, recordSize: o.recordSize };
  if (perf) {
    // The same memory as the ring, split over the CPUs: at least 8 pages each (a power of two, as perf wants).
    ring.perfPagesPerCpu = Math.max(8, floorPow2(o.ringBytes / Math.max(1, cpus().length) / 4096));
    ring.wakeupBytes = o.perfWakeupBytes;
  }
  return { bpf, ring, transport };
}
