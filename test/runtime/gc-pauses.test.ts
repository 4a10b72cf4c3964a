// Stop-the-world pauses and GC cycles of a real Go program, seen by real uprobes, checked against the numbers
// the program reads from its own runtime: MemStats.NumGC and PauseNs per cycle, debug.ReadGCStats' PauseTotal,
// and (Go 1.22+) runtime/metrics' /sched/pauses/total/gc:seconds histogram, bucket by bucket.
import t from 'tap';
import { RuntimeEventsTracer } from '../../agent/src/runtime/runtime-tracer.ts';
import type { Child } from '../lib/child.ts';
import { eachGoVersion, goVersions, sleep, startGo } from './helpers.ts';
import { newestGo } from '../lib/go.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

const FORCED = 20;

/** The machine's Go, 1.19, 1.22 (the first whose restart is handed the runtime's own pause start) and the
 * newest release; RUNTIME_TEST_GO / RUNTIME_TEST_ALL_GO as the other runtime tests. */
const versions = process.env.RUNTIME_TEST_GO || process.env.RUNTIME_TEST_ALL_GO ? goVersions : [...new Set(['local', '1.19', '1.22.12', newestGo])];

/** The output less what depends on timing: pause times, and how many GCs building the heap took. */
function normalize(out: string): string {
  return out
    .replace(/pause_ns=\d+/g, 'pause_ns=N')
    .replace(/numgc=\d+/g, 'numgc=N')
    .replace(/^(PAUSETOTAL|SCHEDPAUSES) .*\n/gm, '')
    .replace(/before=(\d+) after=(\d+)/g, (_m, b, a) => `cycles=${Number(a) - Number(b)}`);
}

/** Runs the fixture: READY, `gc N`, quit. Returns its stdout and exit code; `during` runs after READY. */
async function run(bin: string, during?: (p: Child) => void): Promise<{ p: Child; out: string; code: number | null }> {
  const p = startGo(bin);
  await p.until(/^READY$/m);
  during?.(p);
  p.send(`gc ${FORCED}`);
  await p.until(/^GC DONE .*$/m);
  p.send('quit');
  await p.until(/^BYE \d+$/m);
  const { code } = await p.exit();
  return { p, out: p.out, code };
}

t.test('GC pauses and cycles', async (t) => {
  await eachGoVersion(t, 'gcpause', versions, async (t, bin, goVersion) => {
    const baseline = await run(bin);
    t.equal(baseline.code, 0, 'without probes: exits 0');

    const tracer = new RuntimeEventsTracer({ lastN: 128 });
    t.teardown(() => tracer.close());
    tracer.start();
    // A second process, traced too, that never collects (GC off, no forced GC): nothing may be credited to it.
    const idle = startGo(bin);
    t.teardown(() => idle.kill());
    await idle.until(/^READY$/m);
    tracer.attach(openTarget(idle.pid));

    let pid = 0;
    const traced = await run(bin, (p) => {
      pid = p.pid;
      const proc = tracer.attach(openTarget(p.pid));
      t.same(proc.skipped, [], 'every runtime probe placed');
      t.equal(proc.sites.find((s) => s.probe === 'markTermination')?.kind, 'stack-check-jump', 'mark termination at the stack-check jump');
      // Go 1.26 marks it go:systemstack: its prologue compares with g.stackguard1 (24(R14)), which the site
      // finder does not take for a stack check, so the probe goes to the entry (rare function: cost is moot).
      t.match(proc.sites.find((s) => s.probe === 'stop')?.kind, /^(stack-check-jump|entry)$/, 'stop at the stack-check jump or the entry');
      const minor = Number(/^go1\.(\d+)/.exec(goVersion)?.[1]);
      t.equal(proc.sites.some((s) => s.probe === 'start'), minor >= 22, `restart's own pause start read (Go 1.22+): ${minor >= 22}`);
    });
    await sleep(100);
    await tracer.drain();
    t.equal(traced.code, 0, 'with probes: exits 0');
    t.equal(normalize(traced.out), normalize(baseline.out), 'with probes: the same output (pause times aside)');

    const done = /^GC DONE before=(\d+) after=(\d+)$/m.exec(traced.out)!;
    const before = Number(done[1]);
    const after = Number(done[2]);
    t.ok(after - before >= FORCED, `the program saw ${after - before} cycles`);
    const goPause = new Map<number, number>();
    for (const m of traced.out.matchAll(/^CYCLE numgc=(\d+) pause_ns=(\d+)$/gm)) goPause.set(Number(m[1]), Number(m[2]));

    const s = tracer.summary(pid)!;
    t.ok(s, 'stats kept after the process exited');
    const cycles = s.lastCycles.filter((c) => c.numgc !== null && c.numgc > before && c.numgc <= after);
    t.equal(cycles.length, after - before, `every cycle the program ran was seen (${cycles.length})`);
    // Each cycle's pause against Go's own PauseNs for it: within 10% (the runtime's own start and end are
    // read, so they agree to the nanosecond where the probes saw them).
    let worst = 0;
    for (const c of cycles) {
      const go = goPause.get(c.numgc!)!;
      t.ok(go > 0, `cycle ${c.numgc}: Go says ${go} ns`);
      t.equal(c.pauses, 2, `cycle ${c.numgc}: two pauses (sweep termination, mark termination)`);
      t.ok(c.durationNs !== null && c.durationNs >= c.pauseNs, `cycle ${c.numgc}: lasts ${c.durationNs} ns, paused ${c.pauseNs} ns`);
      worst = Math.max(worst, Math.abs(c.pauseNs - go) / go);
      t.ok(Math.abs(c.pauseNs - go) <= 0.1 * go, `cycle ${c.numgc}: our pause ${c.pauseNs} ns vs Go's PauseNs ${go} ns`);
    }
    t.comment(`worst cycle off Go's PauseNs by ${(worst * 100).toFixed(2)}%`);
    const inCycles = s.lastPauses.filter((p) => p.gc && p.cycle !== undefined && p.cycle > before && p.cycle <= after);
    t.equal(inCycles.length, 2 * FORCED, `${inCycles.length} GC pauses in the ${FORCED} cycles`);
    const ours = cycles.reduce((a, c) => a + c.pauseNs, 0);
    const total = Number(/^PAUSETOTAL ns=(\d+)$/m.exec(traced.out)![1]);
    t.ok(Math.abs(ours - total) <= 0.1 * total, `total ${ours} ns vs debug.ReadGCStats' PauseTotal ${total} ns (${((ours - total) / inCycles.length).toFixed(0)} ns a pause)`);
    // Go 1.22+: the runtime's histogram of the same pauses; ours put in its buckets must fill them alike.
    const buckets = [...traced.out.matchAll(/^SCHEDPAUSES lo=(-?\d+) hi=(-?\d+) n=(\d+)$/gm)].map((m) => ({ lo: Number(m[1]), hi: Number(m[2]), n: Number(m[3]) }));
    if (buckets.length) {
      const mine = buckets.map((b) => ({ ...b, n: inCycles.filter((p) => p.durationNs >= b.lo && (b.hi < 0 || p.durationNs < b.hi)).length }));
      t.same(mine, buckets, "our pauses fill /sched/pauses/total/gc:seconds' buckets as the runtime's own did");
    } else {
      t.comment(`${goVersion}: no /sched/pauses/total/gc:seconds (Go 1.22+)`);
    }

    t.ok((s.pauseReasons['GC sweep termination'] ?? 0) >= FORCED, 'sweep-termination pauses');
    t.ok((s.pauseReasons['GC mark termination'] ?? 0) >= FORCED, 'mark-termination pauses');
    t.ok((s.pauseReasons['read mem stats'] ?? s.pauseReasons.ReadMemStats ?? 0) >= 2, `ReadMemStats' own pauses, by name: ${JSON.stringify(s.pauseReasons)}`);
    t.ok(s.gcPauses.count >= 2 * FORCED, `${s.gcPauses.count} GC pauses`);
    const w = s.gcPauses.window;
    t.ok(w.p50Ns! <= w.p90Ns! && w.p90Ns! <= w.p99Ns! && w.p99Ns! <= w.maxNs!, `p50 ${w.p50Ns} <= p90 ${w.p90Ns} <= p99 ${w.p99Ns} <= max ${w.maxNs}`);
    t.equal(s.cycles.count, cycles.length, 'cycle durations counted');
    t.ok(s.lastPauses.every((p) => p.pid === pid && p.durationNs > 0 && p.durationNs < 1e9), 'pauses are this process\'s and plausible');
    t.ok(s.lastPauses.every((p) => p.goid > 0), 'each pause names the goroutine that stopped the world');
    t.same(s.fatal, [], 'no fatal error');
    t.same(JSON.parse(JSON.stringify(s)).pid, pid, 'JSON-ready');

    const idleStats = tracer.summary(idle.pid)!;
    t.equal(idleStats.cycles.count, 0, 'the idle process is credited no GC cycle');
    t.equal(idleStats.gcPauses.count, 0, 'nor any GC pause');
    t.equal(tracer.strayRecords, 0, 'no record for an untraced process');
    t.same(Object.values(tracer.lost()).filter((n) => n > 0), [], 'nothing lost');
  });
});
