// One ring buffer drained by the bridge's reader thread, with a stop that returns only once every batch the
// thread handed over has been applied (the last ones reach JavaScript through the event loop).
import type { BpfObject, ReaderOptions, RingSpec } from './bridge.ts';

export class RingReader {
  private running = false;
  /** Batches applied since this reader last started: the native count restarts with each start. */
  private applied = 0;
  /** Every record stamped before this (CLOCK_MONOTONIC ns) has been applied; Infinity before the first start. */
  private through = Infinity;
  /** The thread's last word not yet known to be applied: its time counts once its batches are. */
  private pending: { throughNs: number; batches: number } | undefined;

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
      this.applied++;
      this.onBatch(batch);
    }, this.opts);
    this.running = true;
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
