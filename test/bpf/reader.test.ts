// The bridge's reader can be stopped and started again and again while batches are still on their way to
// JavaScript: each stopped reader lives until its last queued batch is delivered (a use-after-free here
// once crashed the agent now and then).
import t from 'tap';
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
