// A request's goroutine timeline without a kernel: parks, run-queue waits, system calls and preemptions fed as the
// tracers feed them, and what falls inside a request's window.
import t from 'tap';
import { RequestWaits } from '../../agent/src/http/request-waits.ts';

const MS = 1e6;

t.test('a request splits into parked, runnable and running', async (t) => {
  const w = new RequestWaits();
  w.onRun(99, 1 * MS, 0.1 * MS); // another goroutine: the scheduler records are being read from here on
  // goroutine 7 serves [10, 100] ms: parks 20 ms on a channel (readied at 30, runs at 34: 4 ms runnable), is
  // preempted at 50 and runs again at 56 (6 ms runnable), a 3 ms system call ending at 70, then an IO wait from 80
  // that the netpoller ends (no ready seen) at 88, running again at 90.
  w.onPark(7, 1, 10 * MS);
  w.onReady(7, 8, 30 * MS);
  w.onRun(7, 34 * MS, 4 * MS);
  w.onPreempt(7, 50 * MS);
  w.onRun(7, 56 * MS, 6 * MS);
  w.onSyscall(7, 70 * MS, 3 * MS);
  w.onPark(7, 2, 80 * MS);
  w.onRun(7, 90 * MS, 2 * MS);
  // Before and after the request: not its time.
  w.onRun(7, 105 * MS, 1 * MS);

  const parks = w.inside(7, 5 * MS, 100 * MS);
  t.same(parks.parks.map((p) => [p.reason, p.from / MS, p.to / MS, p.resumedUnseen]), [[1, 10, 30, false], [2, 80, 88, false]],
    'the IO wait ends where it became runnable (the run record\'s run-queue time), not where it was next seen');
  t.equal(parks.parkedNs, 28 * MS);
  const s = w.schedInside(7, 5 * MS, 100 * MS)!;
  t.same(s, { runnableNs: 12 * MS, syscallNs: 3 * MS, runs: 3, preemptions: 1, truncated: false });
  t.equal(w.schedInside(8, 5 * MS, 100 * MS)?.runs, 0, 'a goroutine with no record inside: nothing, not unknown');
  t.equal(w.schedInside(7, 0, 0.5 * MS), null, 'a request before the first scheduler record: unknown');
});

t.test('a run whose start was not seen closes a park where it ran, and says so', async (t) => {
  const w = new RequestWaits();
  w.onRun(99, 1 * MS, 0);
  w.onPark(3, 1, 10 * MS);
  w.onRun(3, 25 * MS, null);
  t.same(w.inside(3, 5 * MS, 30 * MS).parks.map((p) => [p.to / MS, p.resumedUnseen]), [[25, true]]);
  t.same(w.schedInside(3, 5 * MS, 30 * MS), { runnableNs: 0, syscallNs: 0, runs: 1, preemptions: 0, truncated: false });
});

t.test('records past the bound are dropped oldest first, and a request that needed them is marked short', async (t) => {
  const w = new RequestWaits({ maxSchedPerGoroutine: 4 });
  for (let i = 1; i <= 10; i++) w.onRun(5, i * MS, 0.5 * MS);
  // Trimmed to the newest 4 when 8 were held: 5..10 ms are left.
  t.same(w.schedInside(5, 1 * MS, 11 * MS), { runnableNs: 3 * MS, syscallNs: 0, runs: 6, preemptions: 0, truncated: true });
  t.equal(w.schedInside(5, 7 * MS, 11 * MS)?.truncated, false, 'one inside what is kept is whole');
});

t.test('a forgotten goroutine\'s entry, reused for a new one, carries nothing of the old', async (t) => {
  const w = new RequestWaits({ keepNs: 10 * MS });
  w.onRun(99, 1 * MS, 0);
  w.onPark(3, 1, 2 * MS);
  w.onReady(3, 8, 4 * MS);
  w.onRun(3, 5 * MS, 1 * MS);
  w.onSyscall(3, 6 * MS, 0.5 * MS);
  t.equal(w.inside(3, 0, 7 * MS).parks.length, 1);
  // 30 ms later a park sweeps goroutine 3 out (nothing of it newer than keepNs); goroutine 4 takes its entry.
  w.onPark(4, 2, 30 * MS);
  t.equal(w.goroutines, 1, 'goroutine 3 forgotten');
  t.equal(w.inside(3, 0, 7 * MS).parks.length, 0);
  w.onRun(4, 32 * MS, 1 * MS);
  t.same(w.inside(4, 20 * MS, 40 * MS).parks.map((p) => [p.reason, p.from / MS, p.to / MS]), [[2, 30, 31]]);
  t.same(w.schedInside(4, 20 * MS, 40 * MS), { runnableNs: 1 * MS, syscallNs: 0, runs: 1, preemptions: 0, truncated: false });
});

t.test('an exited goroutine\'s parks stay keepNs after its exit, then its entry goes', async (t) => {
  const w = new RequestWaits({ keepNs: 10 * MS });
  w.onRun(99, 1 * MS, 0);
  w.onPark(5, 1, 2 * MS);
  w.onReady(5, 99, 3 * MS);
  w.onExit(5, 4 * MS);
  w.onExit(6, 13 * MS); // another exit, 9 ms later: goroutine 5's entry is still needed
  t.equal(w.goroutines, 2);
  t.same(w.inside(5, 1 * MS, 4 * MS).parks.map((p) => [p.from / MS, p.to / MS]), [[2, 3]], 'a request that ended at its exit still has its park');
  w.onExit(7, 15 * MS); // 11 ms after goroutine 5's exit
  t.equal(w.goroutines, 1, 'goroutine 5 let go; 99 lives on');
  t.same(w.inside(5, 1 * MS, 4 * MS).parks, []);
});
