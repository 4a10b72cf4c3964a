// Duration statistics over a sliding window: all-time count, total and max, and percentiles over the last
// `maxSamples` samples that are also younger than `windowNs`. Memory is bounded by maxSamples.

export interface DurationSummary {
  /** Samples since the start (not only the window). */
  count: number;
  totalNs: number;
  maxNs: number;
  /** Over the window: samples in it, and nearest-rank percentiles (null when it is empty). */
  window: { samples: number; spanNs: number; p50Ns: number | null; p90Ns: number | null; p99Ns: number | null; maxNs: number | null };
}

export class SlidingDurations {
  private readonly at: Float64Array;
  private readonly dur: Float64Array;
  private next = 0;
  private filled = 0;
  count = 0;
  totalNs = 0;
  maxNs = 0;

  constructor(readonly maxSamples = 1024, readonly windowNs = 5 * 60e9) {
    this.at = new Float64Array(maxSamples);
    this.dur = new Float64Array(maxSamples);
  }

  add(atNs: number, durationNs: number): void {
    this.at[this.next] = atNs;
    this.dur[this.next] = durationNs;
    this.next = (this.next + 1) % this.maxSamples;
    if (this.filled < this.maxSamples) this.filled++;
    this.count++;
    this.totalNs += durationNs;
    if (durationNs > this.maxNs) this.maxNs = durationNs;
  }

  /** The window's samples, oldest first, that are no older than windowNs before nowNs. */
  windowSamples(nowNs: number): number[] {
    const out: number[] = [];
    const start = (this.next - this.filled + this.maxSamples) % this.maxSamples;
    for (let i = 0; i < this.filled; i++) {
      const j = (start + i) % this.maxSamples;
      if (nowNs - this.at[j] <= this.windowNs) out.push(this.dur[j]);
    }
    return out;
  }

  summary(nowNs: number): DurationSummary {
    const w = this.windowSamples(nowNs).sort((a, b) => a - b);
    const rank = (p: number): number | null => (w.length ? w[Math.min(w.length - 1, Math.ceil((p / 100) * w.length) - 1)] : null);
    return {
      count: this.count,
      totalNs: this.totalNs,
      maxNs: this.maxNs,
      window: {
        samples: w.length,
        spanNs: this.windowNs,
        p50Ns: rank(50),
        p90Ns: rank(90),
        p99Ns: rank(99),
        maxNs: w.length ? w[w.length - 1] : null,
      },
    };
  }
}
