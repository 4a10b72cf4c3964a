// The agent's periodic work keeps one grid, the multiples of its period on CLOCK_MONOTONIC (the clock of its ring
// readers' waits, agent/native/reader.c), so its timers and quiet reader rounds wake the node together, once a
// second, instead of each on its own beat.
import t from 'tap';
import { everyOnGrid, monoNowNs, msToGrid } from '../../agent/src/tracer/clock.ts';

const S = 1e9;

t.test('msToGrid: the next grid instant at least half a step on, +1 ms past it', async (t) => {
  t.equal(msToGrid(1000, 1000, 100 * S + 1e6), 1000, 'just after a whole second: the next one (999 ms, +1)');
  t.equal(msToGrid(1000, 1000, 100 * S + 600e6), 1401, 'past half a second: the one after next, never a short beat');
  t.equal(msToGrid(1000, 1000, 100 * S - 2e6), 1003, 'a timer that fired 2 ms early keeps its beat');
  t.equal(msToGrid(3000, 1000, 100 * S + 5e6), 2996, 'a longer interval lands on a whole second too');
  t.equal(msToGrid(200, 200, 7 * S + 30e6), 171, 'a short period keeps its own grid');
});

t.test('everyOnGrid fires at the multiples of its period', async (t) => {
  const phasesMs: number[] = [];
  await new Promise<void>((resolve) => {
    const timer = everyOnGrid(100, () => {
      phasesMs.push((monoNowNs() % 100e6) / 1e6);
      if (phasesMs.length === 6) {
        timer.stop();
        resolve();
      }
    });
  });
  // Node's timers fire at the earliest when due (msToGrid's +1 ms), late by whatever else the loop was doing.
  t.ok(phasesMs.every((ms) => ms < 40), `each step 0-40 ms past a multiple of 100 ms: ${phasesMs.map((ms) => ms.toFixed(1)).join(', ')}`);
});
