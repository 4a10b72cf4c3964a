// A histogram of durations (ns) with buckets of ~6% width (collector/src/protocol/histogram.ts: the scheme the
// collector reads shipped buckets with). Sparse: a bucket exists once a sample fell in it.
import { bucketBounds, bucketOf, bucketQuantile } from '../../../collector/src/protocol/histogram.ts';

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
    return bucketQuantile(this.counts, this.count, this.maxNs, q);
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
