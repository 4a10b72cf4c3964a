// The overhead budget: park/ready probes are duty-cycled, creation and exit stay whole, every window is recorded.
import t from 'tap';
import { OverheadGovernor } from '../../agent/src/overhead/governor.ts';
import { calibrateHitCost, pingpongBinary } from '../../agent/src/overhead/calibrate.ts';
import { parkSampled } from '../../agent/src/overhead/sampling.ts';
import { GoroutineTracer } from '../../agent/src/tracer/goroutine-tracer.ts';
import { goroutineRecord } from '../../agent/src/snapshot/snapshot.ts';
import { existsSync } from 'node:fs';
import { bpfUnavailable } from '../lib/bpf.ts';
import { buildPopulation, PopulationProcess } from '../lib/population.ts';

const noBpf = await bpfUnavailable();

t.test('a tight budget turns park/ready off in windows; creations and exits stay exact', { skip: noBpf ?? false }, async (t) => {
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const tracer = new GoroutineTracer({ ringBytes: 4 << 20 });
  t.teardown(() => tracer.close());
  tracer.start();
  const proc = tracer.attach(prog.pid);
  // A cost per hit so high that any parking exceeds the budget: the governor must cut the on-fraction.
  const governor = new OverheadGovernor(tracer, { budget: 0.02, nsPerHit: 1e6, periodMs: 400, minOnMs: 50 });
  governor.add(proc);
  const parkSites = () => proc.sites.filter((s) => s.probe === 'park' || s.probe === 'ready');
  // Keep the load up for several governor periods (not a fixed number of rounds: a fast machine finishes
  // those inside the first measuring window), then one more round so the last window saw parking too.
  let sawOff = false;
  let rounds = 0;
  const until = Date.now() + 2_000;
  while (rounds < 30 && (Date.now() < until || !sawOff)) {
    await prog.command('work 40 25', /^WORK DONE .*$/m);
    await prog.command('churn 200', /^CHURN DONE .*$/m);
    rounds++;
    if (parkSites().every((s) => !proc.links.has(s))) sawOff = true;
  }
  governor.stop();
  await tracer.drain();
  const exited = proc.table.recentlyExited().map((r) => goroutineRecord(proc, r, r.exitedAt));
  t.equal(exited.filter((g) => g.createdBy?.function === 'main.runWork').length, 40 * rounds, 'every worker exit seen');
  t.equal(exited.filter((g) => g.createdBy?.function === 'main.runChurn').length, 200 * rounds, 'every churner exit seen');
  t.ok(governor.fraction(prog.pid) < 1, `on-fraction cut to ${governor.fraction(prog.pid).toFixed(3)}`);
  t.ok(sawOff, 'the park and ready probes were detached during an off window');
  // Creations and exits are charged first: at this cost per hit they alone exceed the budget, and say so.
  const est = governor.estimatedOverhead(prog.pid);
  t.ok(est && est.createExit > 0.02, `creations and exits alone estimated over the 2% budget (${est && est.createExit.toExponential(1)} of the CPU at 1 ms per hit)`);
  t.ok(est && Math.abs(est.total - est.createExit - est.parkReady) <= 1e-9 * est.total, 'the total is the sum of its parts');
  const windows = governor.windows(prog.pid);
  t.ok(windows.some((w) => w.probes.includes('park')) && windows.some((w) => !w.probes.includes('park')), 'windows with and without park');
  t.ok(windows.every((w) => w.probes.includes('create') && w.probes.includes('exit')), 'creation and exit on in every window');
  t.ok(windows.every((w, i) => i === 0 || w.from === windows[i - 1].to), 'windows tile the observed time');
  const coverage = governor.parkCoverage(prog.pid);
  t.ok(coverage > 0 && coverage < 1, `park coverage ${coverage.toFixed(2)} is reported`);
  const parks = exited.filter((g) => g.createdBy?.function === 'main.runWork').reduce((n, g) => n + g.parkCount, 0);
  t.ok(parks < 40 * rounds * 25, `parks are a sample (${parks} of ${40 * rounds * 25})`);
});

t.test('park sampling keeps whole goroutines, by the same hash as the BPF program', { skip: noBpf ?? false }, async (t) => {
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const tracer = new GoroutineTracer({ ringBytes: 4 << 20 });
  t.teardown(() => tracer.close());
  tracer.start();
  tracer.setParkSampling(0.25);
  const proc = tracer.attach(prog.pid);
  await prog.command('work 200 4', /^WORK DONE .*$/m);
  await tracer.drain();
  const workers = proc.table.recentlyExited().map((r) => goroutineRecord(proc, r, r.exitedAt)).filter((g) => g.createdBy?.function === 'main.runWork');
  t.equal(workers.length, 200, 'creation and exit are not sampled');
  const kept = workers.filter((g) => g.parkCount > 0);
  t.ok(workers.every((g) => g.parkCount === 0 || (g.parkCount === 4 && g.readyCount === 4)), 'a kept goroutine has all its parks and readies');
  t.same(kept.map((g) => g.goid).sort(), workers.filter((g) => parkSampled(g.goid, 0.25)).map((g) => g.goid).sort(), 'the agent predicts which goroutines are kept');
  t.ok(kept.length > 20 && kept.length < 100, `about a quarter kept (${kept.length} of 200)`);
});

t.test('calibration measures a cost per hit', { skip: noBpf ?? (existsSync(pingpongBinary) ? false : 'the calibration ping-pong is not built (scripts/setup.sh)') }, async (t) => {
  const tracer = new GoroutineTracer({ ringBytes: 4 << 20 });
  t.teardown(() => tracer.close());
  tracer.start();
  const c = await calibrateHitCost(tracer, { roundTrips: 20_000, useCache: false });
  t.equal(c.source, 'measured');
  t.ok(Math.abs(c.hitsPerRoundTrip! - 4) < 0.05, `4 hits per round trip (${c.hitsPerRoundTrip})`);
  t.ok(c.nsPerHit > 0 && c.nsPerHit < 100_000, `${Math.round(c.nsPerHit)} ns per hit`);
  t.comment(`calibration: ${JSON.stringify(c)}`);
});
