// A histogram of durations (ns) with buckets of ~6% width (collector/src/protocol/histogram.ts: the scheme the
// collector reads shipped buckets with). Dense from bucket 0 up to the highest one that holds a sample (a few KiB:
// 16 buckets per power of two), so a sample is an index and an addition: the scheduler records one per run.
import { bucketBounds, bucketOf, bucketQuantile } from '../../../collector/src/protocol/histogram.ts';

export interface LatencySummary {
  count: number;
  sumNs: number;
  maxNs: number;
  p50Ns: number;
  p90Ns: number;
  p99Ns: number;
}

/** Samples per bucket number, dense from 0 (what a histogram held at some time: LatencyHistogram.snapshot). */
export type BucketCounts = Float64Array;

export class LatencyHistogram {
  private dense: BucketCounts = new Float64Array(0);
  count = 0;
  sumNs = 0;
  maxNs = 0;

  record(ns: number): void {
    const b = bucketOf(ns);
    if (b >= this.dense.length) this.grow(b);
    this.dense[b]++;
    this.count++;
    this.sumNs += ns;
    if (ns > this.maxNs) this.maxNs = ns;
  }

  private grow(b: number): void {
    const d = new Float64Array(b + 16);
    d.set(this.dense);
    this.dense = d;
  }

  /** The buckets that hold samples, lowest first: [bucket, samples]. */
  *buckets(): IterableIterator<[number, number]> {
    const d = this.dense;
    for (let b = 0; b < d.length; b++) if (d[b] > 0) yield [b, d[b]];
  }

  /** A copy of the counts by bucket, to take differences against later. */
  snapshot(): BucketCounts {
    return this.dense.slice();
  }

  /** The q-quantile (0..1): the middle of the bucket it falls in, never above the largest sample. */
  quantile(q: number): number {
    return bucketQuantile(this.buckets(), this.count, this.maxNs, q);
  }

  summary(): LatencySummary {
    return { count: this.count, sumNs: this.sumNs, maxNs: this.maxNs, p50Ns: this.quantile(0.5), p90Ns: this.quantile(0.9), p99Ns: this.quantile(0.99) };
  }

  /** Counts at or below each bound (ns), cumulative, as Prometheus and OTLP explicit buckets take them. */
  cumulative(boundsNs: number[]): number[] {
    const out = boundsNs.map(() => 0);
    for (const [b, n] of this.buckets()) {
      const [lo, hi] = bucketBounds(b);
      const mid = (lo + hi) / 2;
      for (let i = 0; i < boundsNs.length; i++) if (mid <= boundsNs[i]) out[i] += n;
    }
    return out;
  }
}
