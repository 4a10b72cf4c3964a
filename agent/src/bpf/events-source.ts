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
