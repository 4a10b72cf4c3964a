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

/** The step of the agent's grid (msToGrid): its readers' longest quiet wait, whose ends keep the same grid. */
export const GRID_MS = 1000;

/**
 * ms until the first multiple of gridMs on CLOCK_MONOTONIC that is at least `ms` from now (less half a grid step,
 * so that a timer that fired a little late keeps its beat). The agent's periodic work (scans, shipping, the
 * exited-process sweep) and its ring readers' quiet rounds (agent/native/reader.c) keep one grid, so they come
 * together as one burst a second instead of each waking the node on its own (docs/architecture.md, "Few
 * wake-ups"). Node's timers count from the event loop's time, which may trail by the work in hand, and fire at
 * the earliest after what they are given: +1 ms keeps them past the grid's instant, where the readers are.
 */
export function msToGrid(ms: number, gridMs: number, nowNs = monoNowNs()): number {
  const grid = gridMs * 1e6;
  const due = Math.max(1, Math.ceil((nowNs + ms * 1e6 - grid / 2) / grid)) * grid;
  return Math.max(1, Math.ceil((due - nowNs) / 1e6) + 1);
}

/** Runs `step` every `ms`, at the multiples of `ms` on CLOCK_MONOTONIC (msToGrid), until stopped; like setInterval. */
export function everyOnGrid(ms: number, step: () => void): { stop(): void } {
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  const arm = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      try {
        step();
      } finally {
        arm();
      }
    }, msToGrid(ms, ms));
  };
  arm();
  return { stop: () => { stopped = true; if (timer) clearTimeout(timer); } };
}
