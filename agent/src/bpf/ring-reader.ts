// One ring buffer drained by the bridge's reader thread, with a stop that returns only once every batch the
// thread handed over has been applied (the last ones reach JavaScript through the event loop).
import type { BpfObject, ReaderOptions, RingSpec } from './bridge.ts';

export class RingReader {
  private running = false;
  /** Batches applied since this reader last started: the native count restarts with each start. */
  private applied = 0;

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
    this.bpf.startReader([this.ring], (_ring, batch) => {
      this.applied++;
      this.onBatch(batch);
    }, this.opts);
    this.running = true;
  }

  /** Stops the thread after a last drain and waits (up to 5 s) until what it handed over is applied. */
  async stop(): Promise<void> {
    if (!this.running) return;
    const { batches } = this.bpf.stopReader();
    this.running = false;
    const deadline = Date.now() + 5000;
    while (this.applied < batches && Date.now() < deadline) await new Promise((r) => setTimeout(r, 1));
  }
}
