// A Map keyed by goid with a direct-mapped cache of recent lookups in front of it. Each record of a goroutine is
// looked up in the goroutine table, the scheduler table and the request waits: a V8 Map lookup is a builtin
// call that hashes the key and walks a bucket chain (~20-30 ns), and the records of one goroutine come close
// together (a run, its system calls, its park), so most lookups hit one typed-array slot instead (~2 ns). The
// Map stays the truth: iteration (insertion order), size, and every set and delete go through it.

/** Cache places: a power of two. 512 x 16 bytes per map, three maps per traced process. */
const PLACES = 512;
const MASK = PLACES - 1;

export class GoidMap<V> {
  private readonly map = new Map<number, V>();
  /** The goid cached at each place (NaN: none; never equal to anything). */
  private readonly cachedGoids = new Float64Array(PLACES).fill(NaN);
  private readonly cachedValues: Array<V | undefined> = new Array<V | undefined>(PLACES).fill(undefined);

  get size(): number {
    return this.map.size;
  }

  get(goid: number): V | undefined {
    // `goid & MASK` takes the low bits of goids past 2^31 too (ToInt32 is modular).
    const i = goid & MASK;
    if (this.cachedGoids[i] === goid) return this.cachedValues[i];
    // Absent ones are cached too (a waker never parked, a goroutine of no request): set and delete keep the place true.
    const v = this.map.get(goid);
    this.cachedGoids[i] = goid;
    this.cachedValues[i] = v;
    return v;
  }

  has(goid: number): boolean {
    return this.get(goid) !== undefined;
  }

  /** Values are never undefined (get's "absent"). */
  set(goid: number, v: V): this {
    this.map.set(goid, v);
    const i = goid & MASK;
    this.cachedGoids[i] = goid;
    this.cachedValues[i] = v;
    return this;
  }

  delete(goid: number): boolean {
    const i = goid & MASK;
    if (this.cachedGoids[i] === goid) this.cachedValues[i] = undefined; // now known absent
    return this.map.delete(goid);
  }

  clear(): void {
    this.map.clear();
    this.cachedGoids.fill(NaN);
    this.cachedValues.fill(undefined);
  }

  /** In insertion order; deleting during the walk is safe (as with a Map), setting is not. */
  forEach(visit: (v: V, goid: number) => void): void {
    this.map.forEach(visit);
  }

  values(): IterableIterator<V> {
    return this.map.values();
  }

  keys(): IterableIterator<number> {
    return this.map.keys();
  }

  entries(): IterableIterator<[number, V]> {
    return this.map.entries();
  }

  [Symbol.iterator](): IterableIterator<[number, V]> {
    return this.map.entries();
  }
}
