// Duration statistics over a sliding window: all-time count, total and max, and percentiles over the last
// `maxSamples` samples that are also younger than `windowNs`. Memory is bounded by maxSamples, and grows to it
// only as samples come: a process that garbage-collects a few times and exits (a job, a crash loop) holds a few
// bytes, not 16 KiB per statistic, and the runtime tracer keeps the stats of up to 1,024 exited processes.

export interface DurationSummary {
  /** Samples since the start (not only the window). */
  count: number;
  totalNs: number;
  maxNs: number;
  /** Over the window: samples in it, and nearest-rank percentiles (null when it is empty). */
  window: { samples: number; spanNs: number; p50Ns: number | null; p90Ns: number | null; p99Ns: number | null; maxNs: number | null };
}

/** Samples a statistic holds room for at first; the room doubles as samples come, up to maxSamples. */
const FIRST_ROOM = 8;

export class SlidingDurations {
  private at: Float64Array;
  private dur: Float64Array;
  private next = 0;
  private filled = 0;
  count = 0;
  totalNs = 0;
  maxNs = 0;

  constructor(readonly maxSamples = 1024, readonly windowNs = 5 * 60e9) {
    const room = Math.min(maxSamples, FIRST_ROOM);
    this.at = new Float64Array(room);
    this.dur = new Float64Array(room);
  }

  add(atNs: number, durationNs: number): void {
    // Full but below maxSamples: nothing was overwritten yet, so the samples are in order from 0 and next is 0.
    if (this.filled === this.at.length && this.filled < this.maxSamples) this.grow(Math.min(this.maxSamples, this.filled * 2));
    this.at[this.next] = atNs;
    this.dur[this.next] = durationNs;
    this.next = (this.next + 1) % this.at.length;
    if (this.filled < this.maxSamples) this.filled++;
    this.count++;
    this.totalNs += durationNs;
    if (durationNs > this.maxNs) this.maxNs = durationNs;
  }

  private grow(room: number): void {
    const at = new Float64Array(room);
    const dur = new Float64Array(room);
    at.set(this.at);
    dur.set(this.dur);
    this.at = at;
    this.dur = dur;
    this.next = this.filled;
  }

  /** The window's samples, oldest first, that are no older than windowNs before nowNs. */
  windowSamples(nowNs: number): number[] {
    const out: number[] = [];
    const room = this.at.length;
    const start = (this.next - this.filled + room) % room;
    for (let i = 0; i < this.filled; i++) {
      const j = (start + i) % room;
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
