// PC -> function, file, line, with a bounded LRU cache (bounded memory is a product rule).
import { Pclntab } from './pclntab.ts';

export interface SourceLocation {
  function: string;
  file: string;
  line: number;
}

const DEFAULT_CACHE_SIZE = 4096;

export class Symbolizer {
  // A Map iterates in insertion order: re-inserting on a hit makes the first key the least recently used.
  private readonly cache = new Map<number, SourceLocation | undefined>();

  constructor(private readonly pclntab: Pclntab, readonly maxEntries: number = DEFAULT_CACHE_SIZE) {
    if (maxEntries < 1) throw new Error('Symbolizer cache size must be at least 1');
  }

  /** Location of the instruction at pc; undefined outside Go code. */
  at(pc: number): SourceLocation | undefined {
    if (this.cache.has(pc)) {
      const hit = this.cache.get(pc);
      this.cache.delete(pc);
      this.cache.set(pc, hit);
      return hit;
    }
    const loc = this.lookup(pc);
    this.cache.set(pc, loc);
    if (this.cache.size > this.maxEntries) this.cache.delete(this.cache.keys().next().value!);
    return loc;
  }

  /**
   * Location of the call that a return address pc came back to, e.g. a goroutine's creation site g.gopc.
   * Like Go's traceback (printcreatedby): symbolize pc-1, inside the CALL, unless pc is a function's entry.
   */
  callSite(pc: number): SourceLocation | undefined {
    const f = this.pclntab.funcForPC(pc);
    return this.at(f && pc > f.entry ? pc - 1 : pc);
  }

  get cacheSize(): number {
    return this.cache.size;
  }

  private lookup(pc: number): SourceLocation | undefined {
    const f = this.pclntab.funcForPC(pc);
    if (!f) return undefined;
    const fl = this.pclntab.fileLine(pc);
    return { function: f.name, file: fl?.file ?? '?', line: fl?.line ?? 0 };
  }
}
