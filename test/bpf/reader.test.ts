// The bridge's reader can be stopped and started again and again while batches are still on their way to
// JavaScript: each stopped reader lives until its last queued batch is delivered (a use-after-free here
// once crashed the agent now and then).
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { monoNowNs } from '../../agent/src/tracer/clock.ts';
import { GoroutineTracer } from '../../agent/src/tracer/goroutine-tracer.ts';
import { goroutineRecord } from '../../agent/src/snapshot/snapshot.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { buildPopulation, PopulationProcess } from '../lib/population.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';
import { goroutineEventLayout } from '../../agent/src/events/goroutines.bpf.ts';

const noBpf = await bpfUnavailable();

t.test('stop and restart the reader under load, many times', { skip: noBpf ?? false }, async (t) => {
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const tracer = new GoroutineTracer({ pollMs: 1 });
  t.teardown(() => tracer.close());
  tracer.start();
  const proc = tracer.attach(openTarget(prog.pid));
  // Rounds of work until the reader has been stopped and started more than 20 times while the program worked
  // (a loaded machine fits fewer cycles into one round).
  let cycles = 0;
  let rounds = 0;
  while (cycles <= 20 && rounds < 20) {
    rounds++;
    const load = prog.command('work 200 50', /^WORK DONE .*$/m);
    let done = false;
    void load.then(() => (done = true));
    while (!done) {
      await tracer.drain();
      tracer.start();
      cycles++;
    }
  }
  await tracer.drain();
  t.ok(cycles > 20, `${cycles} stop/start cycles while the program worked (${rounds} rounds)`);
  const workers = proc.table.recentlyExited().filter((r) => goroutineRecord(proc, r, r.exitedAt).createdBy?.function === 'main.runWork');
  t.equal(workers.length, 200 * rounds, 'every worker created and exited across the restarts');
  const bad = workers.filter((r) => !(r.parkCount >= 50 && r.readyCount === r.parkCount)).map((r) => `${r.goid}: ${r.parkCount} parks, ${r.readyCount} readies`);
  t.same(bad.slice(0, 10), [], `every worker: its 50 sleeps at least, a ready per park (${bad.length} not)`);
  // The scans of the goroutine list went on meanwhile: one applied while the reader was stopped, before the
  // records older than it were in, ended workers whose last park and exit were still on their way (ring-reader.ts).
  t.equal(proc.table.counters.endedByScan, 0, 'no worker ended by a scan: every exit was seen before any scan after it was applied');
  t.equal(tracer.lostTotal(), 0, 'nothing lost across the restarts');
});

// The bridge maps each ring's data once (not twice back to back as libbpf does): a record that crosses the
// ring's end is put together from its two pieces. A small ring wraps many times; a record put together wrong
// would name no traced process or no known kind (a stray record).
t.test('records that cross the end of a small ring arrive whole', { skip: noBpf ?? false }, async (t) => {
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const ringBytes = 256 << 10;
  const tracer = new GoroutineTracer({ pollMs: 1, ringBytes });
  t.teardown(() => tracer.close());
  tracer.start();
  const proc = tracer.attach(openTarget(prog.pid));
  const slot = 8 + goroutineEventLayout.size; // the kernel's 8-byte header, the record, 8-aligned
  t.ok(ringBytes % slot !== 0, `records (${slot} bytes a slot) do not divide the ring: some cross its end`);
  let rounds = 0;
  while (tracer.records * slot < 16 * ringBytes && rounds < 20) {
    rounds++;
    await prog.command('work 200 50', /^WORK DONE .*$/m);
  }
  await tracer.drain();
  t.ok(tracer.records * slot >= 16 * ringBytes, `${tracer.records} records went through the ring: ${Math.floor((tracer.records * slot) / ringBytes)} times its size`);
  t.equal(tracer.strayRecords, 0, 'every record names the traced process and a known kind');
  const lost = tracer.lostTotal();
  const workers = proc.table.recentlyExited().filter((r) => goroutineRecord(proc, r, r.exitedAt).createdBy?.function === 'main.runWork');
  if (lost === 0) {
    t.equal(workers.length, 200 * rounds, 'every worker created and exited');
    t.ok(workers.every((r) => r.parkCount >= 50 && r.readyCount === r.parkCount), 'every worker: its 50 sleeps at least, a ready per park');
  } else {
    t.comment(`${lost} records lost to the full ${ringBytes >> 10} KiB ring on a loaded machine: worker counts not compared`);
  }
});

/** Wake-ups so far of this process's reader threads (named by the bridge): their voluntary context switches. */
function readerWakeups(): number {
  let n = 0;
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      if (readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== 'gs-ring-reader') continue;
      n += Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* gone meanwhile */
    }
  }
  return n;
}

// Each wake-up of the agent costs the node more than its CPU time shows (agent/native/reader.c), so a reader whose
// ring is quiet waits up to a second between drains, ending on a whole second as the agent's other waits do; while
// a goroutine probe is on it waits at most 4 polls, since that ring never wakes it and a flood would fill it; and
// whoever needs the records up to now asks for them.
t.test('a quiet reader wakes about once a second on the grid, a drain asked for comes at once, probes on keep it short', { skip: noBpf ?? false }, async (t) => {
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const tracer = new GoroutineTracer({ pollMs: 10, scan: false });
  t.teardown(() => tracer.close());
  tracer.start();
  tracer.attach(openTarget(prog.pid), { off: true });
  await sleep(2500); // 10, 20, ... 640 ms, then 1 s waits
  const quiet = readerWakeups();
  // When each round went back to sleep, looked at every 2 ms: its quiet rounds keep the agent's grid, the whole
  // seconds of CLOCK_MONOTONIC, where its other readers and its timers wake too (agent/src/tracer/clock.ts).
  const phasesMs: number[] = [];
  for (let seen = quiet, until = performance.now() + 3000; performance.now() < until; await sleep(2)) {
    const now = readerWakeups();
    if (now !== seen) phasesMs.push((monoNowNs() % 1e9) / 1e6);
    seen = now;
  }
  const quietWakeups = readerWakeups() - quiet;
  t.ok(quietWakeups >= 1 && quietWakeups <= 6, `no probe on: ${quietWakeups} wake-ups of the reader in 3 s (about 3; it was 75 at 40 ms waits)`);
  const offGrid = phasesMs.filter((ms) => ms > 60);
  t.ok(phasesMs.length >= 2 && offGrid.length === 0,
    `quiet rounds on the second's grid: ${phasesMs.map((ms) => ms.toFixed(0)).join(', ')} ms past a whole second (at most 60: seen every 2 ms, timers late under load)`);

  const asked = monoNowNs();
  t.ok(tracer.appliedThroughNs() < asked, 'the reader has not drained since');
  tracer.bpf.requestDrain();
  const until = performance.now() + 2000;
  while (tracer.appliedThroughNs() < asked && performance.now() < until) await sleep(5);
  const tookMs = (monoNowNs() - asked) / 1e6;
  t.ok(tracer.appliedThroughNs() >= asked && tookMs < 300, `a drain asked for: the records up to then applied ${tookMs.toFixed(0)} ms later (the idle wait is 1 s)`);

  await tracer.setProbes(prog.pid, ['create', 'exit', 'park', 'ready'], true);
  await sleep(500);
  const on = readerWakeups();
  await sleep(2000);
  const onWakeups = readerWakeups() - on;
  t.ok(onWakeups >= 30, `probes on, the program idle: ${onWakeups} wake-ups in 2 s (waits of at most 40 ms: 50 or more)`);
});
