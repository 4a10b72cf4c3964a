// The latency histogram both sides use (the agent's run-queue and system call histograms, SchedRecord's buckets,
// the collector's quantiles over them): each power of two of nanoseconds cut into 16 buckets of ~6%, as the Go
// runtime's own timeHistogram (behind /sched/latencies:seconds) cuts it, so a percentile is within one bucket of an
// exact one. One definition here, so the collector's quantiles over shipped buckets are the agent's own.
//
// This module is published to the agent, like records.ts: it imports nothing.

const SUB_BITS = 4;
const SUBS = 1 << SUB_BITS;

/** The bucket of v: below 16 ns one per ns, then 16 per power of two. */
export function bucketOf(v: number): number {
  if (v < SUBS) return Math.max(0, Math.floor(v));
  if (v < 0x8000_0000) {
    // Below 2^31 (2.1 s): the same bucket by integer arithmetic (the agent files every run-queue wait here).
    const i = v | 0;
    const e = 31 - Math.clz32(i);
    return (e - SUB_BITS + 1) * SUBS + (i >> (e - SUB_BITS)) - SUBS;
  }
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

/** The largest bucket number (a sample of 2^63 ns): bounds the buckets a record may carry. */
export const MAX_BUCKET = bucketOf(2 ** 63);

/**
 * The q-quantile (0..1) of samples counted by bucket (count: their total): the middle of the bucket it falls in,
 * never above the largest sample (maxNs).
 */
export function bucketQuantile(counts: Iterable<[number, number]>, count: number, maxNs: number, q: number): number {
  if (count === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * count));
  let seen = 0;
  for (const [b, n] of [...counts].sort((x, y) => x[0] - y[0])) {
    seen += n;
    if (seen >= rank) {
      const [lo, hi] = bucketBounds(b);
      return Math.min(maxNs, (lo + hi) / 2);
    }
  }
  return maxNs;
}
