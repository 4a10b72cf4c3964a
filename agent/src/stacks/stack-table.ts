// The agent's stack table: each distinct stack is sent to the collector once, as a StackRecord, and records
// refer to it by id after that. Bounded: past maxEntries the least recently used stacks are forgotten (a
// forgotten stack that comes back is sent again under a new id), so memory stays flat however many stacks a
// node's processes show.
import { LRUCache } from 'lru-cache';
import { MAX_STACK_FRAMES, type AgentRecord, type CodeLocation } from '../../../collector/src/protocol/records.ts';

export class StackTable {
  private readonly ids: LRUCache<string, number>;
  private next = 1;
  /** Stacks forgotten to stay within maxEntries. */
  evicted = 0;

  constructor(readonly maxEntries = 10_000) {
    this.ids = new LRUCache({ max: maxEntries, dispose: (_v, _k, reason) => void (reason === 'evict' && this.evicted++) });
  }

  get size(): number {
    return this.ids.size;
  }

  /** The id of a stack; when the collector has not been sent it yet, its StackRecord is appended to `out`. */
  intern(frames: CodeLocation[], out: AgentRecord[]): number {
    const kept = frames.length > MAX_STACK_FRAMES ? frames.slice(0, MAX_STACK_FRAMES) : frames;
    const key = kept.map((f) => `${f.function}\u0000${f.file}\u0000${f.line}`).join('\u0001');
    const have = this.ids.get(key);
    if (have !== undefined) return have; // get() made it the most recently used
    const id = this.next++;
    this.ids.set(key, id);
    out.push({ kind: 'stack', id, frames: kept });
    return id;
  }
}
