// BPF stamps events with bpf_ktime_get_ns (CLOCK_MONOTONIC), the clock of process.hrtime and of Go's nanotime.
// Wall-clock times are derived from one pairing of the two clocks, taken once.

export function monoNowNs(): number {
  return Number(process.hrtime.bigint());
}

const pairMono = monoNowNs();
const pairWallMs = Date.now();

/** Unix epoch milliseconds for a CLOCK_MONOTONIC nanosecond time. */
export function monoToWallMs(monoNs: number): number {
  return pairWallMs + (monoNs - pairMono) / 1e6;
}
