// A histogram of durations (ns) with buckets of ~6% width: each power of two cut into 16, as the Go runtime's
// own timeHistogram (the one behind /sched/latencies:seconds) cuts it, so its percentiles are within one
// bucket of an exact one. Sparse: a bucket exists once a sample fell in it.

const SUB_BITS = 4;
const SUBS = 1 << SUB_BITS;

/** The bucket of v: below 16 ns one per ns, then 16 per power of two. */
export function bucketOf(v: number): number {
  if (v < SUBS) return Math.max(0, Math.floor(v));
  const exp = Math.floor(Math.log2(v));
  const sub = Math.floor(v / 2 ** (exp - SUB_BITS)) - SUBS;
  return (exp - SUB_BITS + 1) * SUBS + Math.min(SUBS - 1, sub);
}

/** [lo, hi) ns of a bucket. */
export function bucketBounds(b: number): [number, number] {
  if (b < SUBS) return [b, b + 1];
  const exp = Math.floor(b / SUBS) + SUB_BITS - 1;
  const sub = b % SUBS;
  const width = 2 ** (exp - SUB_BITS);
  const lo = 2 ** exp + sub * width;
  return [lo, lo + width];
}

export interface LatencySummary {
  count: number;
  sumNs: number;
  maxNs: number;
  p50Ns: number;
  p90Ns: number;
  p99Ns: number;
}

export class LatencyHistogram {
  readonly counts = new Map<number, number>();
  count = 0;
  sumNs = 0;
  maxNs = 0;

  record(ns: number): void {
    const b = bucketOf(ns);
    this.counts.set(b, (this.counts.get(b) ?? 0) + 1);
    this.count++;
    this.sumNs += ns;
    if (ns > this.maxNs) this.maxNs = ns;
  }

  /** The q-quantile (0..1): the middle of the bucket it falls in, never above the largest sample. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (const b of [...this.counts.keys()].sort((a, c) => a - c)) {
      seen += this.counts.get(b)!;
      if (seen >= rank) {
        const [lo, hi] = bucketBounds(b);
        return Math.min(this.maxNs, (lo + hi) / 2);
      }
    }
    return this.maxNs;
  }

  summary(): LatencySummary {
    return { count: this.count, sumNs: this.sumNs, maxNs: this.maxNs, p50Ns: this.quantile(0.5), p90Ns: this.quantile(0.9), p99Ns: this.quantile(0.99) };
  }

  /** Counts at or below each bound (ns), cumulative, as Prometheus and OTLP explicit buckets take them. */
  cumulative(boundsNs: number[]): number[] {
    const out = boundsNs.map(() => 0);
    for (const [b, n] of this.counts) {
      const [lo, hi] = bucketBounds(b);
      const mid = (lo + hi) / 2;
      for (let i = 0; i < boundsNs.length; i++) if (mid <= boundsNs[i]) out[i] += n;
    }
    return out;
  }
}
