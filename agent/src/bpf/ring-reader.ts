// One ring buffer drained by the bridge's reader thread, with a stop that returns only once every batch the
// thread handed over has been applied (the last ones reach JavaScript through the event loop).
import type { BpfObject, ReaderOptions, RingSpec } from './bridge.ts';

/**
 * Batches are applied in slices of at most this long (ms), timers running between them: an agent behind on its
 * records applied all the waiting batches in one go (Node hands a thread-safe function up to 1,000 calls at once),
 * and the overhead governor's timer, which ends the probes' on-windows, waited behind them (a 59 ms on-window
 * lasted 950 ms in test/agent/overhead.test.ts, "an agent behind on its records").
 */
const SLICE_MS = 20;
/** Batches waiting in JavaScript beyond which each new one is applied at once: the reader thread stops draining
 * (and the ring drops, counted) only for batches not yet handed over, so this bounds what waits here. */
const MAX_QUEUED = 64;

export class RingReader {
  private running = false;
  /** Batches applied since this reader last started: the native count restarts with each start. */
  private applied = 0;
  /** Every record stamped before this (CLOCK_MONOTONIC ns) has been applied; Infinity before the first start. */
  private through = Infinity;
  /** The thread's last word not yet known to be applied: its time counts once its batches are. */
  private pending: { throughNs: number; batches: number } | undefined;
  /** Batches handed over, not yet applied, oldest first; and whether a slice is scheduled. */
  private readonly queue: Buffer[] = [];
  private slicing = false;
  /** The reader thread's longest wait while its ring is quiet, kept across restarts (a drain restarts it). */
  private idleMs: number | undefined;

  constructor(
    private readonly bpf: BpfObject,
    private readonly ring: RingSpec,
    private readonly onBatch: (batch: Buffer) => void,
    private readonly opts: ReaderOptions = {},
  ) {}

  get reading(): boolean {
    return this.running;
  }

  start(): void {
    if (this.running) return;
    this.applied = 0;
    this.pending = undefined;
    if (this.through === Infinity) this.through = 0; // records stamped before now are still in the ring
    this.bpf.startReader([this.ring], (_ring, batch) => {
      this.queue.push(batch);
      if (this.queue.length > MAX_QUEUED) this.applyOne();
      if (!this.slicing) {
        this.slicing = true;
        setImmediate(this.slice);
      }
    }, this.idleMs === undefined ? this.opts : { ...this.opts, idleMs: this.idleMs });
    this.running = true;
  }

  private applyOne(): void {
    const batch = this.queue.shift()!;
    this.applied++;
    this.onBatch(batch);
  }

  /** Applies waiting batches for up to SLICE_MS, then lets the event loop run (timers first) before the rest. */
  private readonly slice = (): void => {
    const end = performance.now() + SLICE_MS;
    while (this.queue.length && performance.now() < end) this.applyOne();
    if (this.queue.length) setImmediate(this.slice);
    else this.slicing = false;
  };

  /** The thread drains now, not at the end of its wait: appliedThroughNs moves on soon after. */
  requestDrain(): void {
    if (this.running) this.bpf.requestDrain();
  }

  /** The thread's longest wait while the ring is quiet, from now on (ReaderOptions.idleMs). */
  setIdleMs(ms: number): void {
    if (ms === this.idleMs) return;
    this.idleMs = ms;
    if (this.running) this.bpf.setReaderIdleMs(ms);
  }

  /** Stops the thread after a last drain and waits (up to 5 s) until what it handed over is applied. */
  async stop(): Promise<void> {
    if (!this.running) return;
    const { batches, throughNs } = this.bpf.stopReader();
    this.running = false;
    const deadline = Date.now() + 5000;
    while (this.applied < batches && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
    if (this.applied >= batches) this.through = Math.max(this.through, throughNs);
  }

  /**
   * Every record stamped before the time returned (CLOCK_MONOTONIC ns, as the records' own stamps) has been
   * applied: what is read from the process's memory at a time before it can be applied without an older record
   * coming after it. Stopped, it holds where the last drain left it (the ring fills meanwhile).
   */
  appliedThroughNs(): number {
    if (!this.running) return this.through;
    // The thread's time counts once the batches it had handed over by then are applied (JavaScript may be behind:
    // the older word is kept until it counts, so a steady flow still moves the time on).
    if (this.pending && this.applied >= this.pending.batches) {
      this.through = Math.max(this.through, this.pending.throughNs);
      this.pending = undefined;
    }
    if (!this.pending) {
      const s = this.bpf.readerStats();
      if (s.throughNs > this.through) {
        if (this.applied >= s.batches) this.through = s.throughNs;
        else this.pending = { throughNs: s.throughNs, batches: s.batches };
      }
    }
    return this.through;
  }
}
