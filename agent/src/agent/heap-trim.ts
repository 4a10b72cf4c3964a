// Gives what a burst of work left behind back to the kernel: V8's heap is collected when the agent runs with
// --expose-gc (the image does: V8 leaves it to its memory reducer, which on an agent never quite idle comes 10 to
// 30+ s later), and glibc's heap, which keeps what is freed inside it (file reads and decompressed DWARF, links,
// record batches, the backing stores of collected Buffers and typed arrays), is trimmed.
import { loadAddon } from '../bpf/bridge.ts';

/**
 * How long after a collection glibc's heap is trimmed. V8 frees the backing stores of the ArrayBuffers a
 * collection found dead (most of what an exited process held: its table's columns, record batches) only after
 * the collection returns, from a task of its own: a trim right after gc() found them still allocated and an
 * agent that traced 60 processes kept ~20 MiB of them in the heap, free but never returned (a free in the
 * middle of the heap is not given back by itself). 1 s leaves room for a loaded node.
 */
export const TRIM_AFTER_COLLECT_MS = 1000;

/** A collection now, and a trim of the C heap once what it freed is back in it. */
export function collectAndTrim(): void {
  (globalThis as { gc?: () => void }).gc?.();
  setTimeout(() => loadAddon().trimNativeHeap(), TRIM_AFTER_COLLECT_MS).unref();
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
