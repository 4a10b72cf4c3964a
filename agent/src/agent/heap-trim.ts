// Gives what a burst of work left behind back to the kernel: V8's heap is collected when the agent runs with
// --expose-gc (the image does: V8 leaves it to its memory reducer, which on an agent never quite idle comes 10 to
// 30+ s later), and glibc's heap, which keeps what is freed inside it (file reads and decompressed DWARF, links,
// record batches), is trimmed.
import { loadAddon } from '../bpf/bridge.ts';

/** A collection and a trim, now. */
export function collectAndTrim(): void {
  (globalThis as { gc?: () => void }).gc?.();
  loadAddon().trimNativeHeap();
}

/**
 * collectAndTrim once things have been quiet for ms: each call puts it off again, so a run of attaches or exits
 * ends with one collection.
 */
export class TrimAfterQuiet {
  private timer?: NodeJS.Timeout;

  constructor(private readonly ms: number) {}

  poke(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      collectAndTrim();
    }, this.ms);
    this.timer.unref();
  }
}
