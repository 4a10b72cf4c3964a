// States from the runtime's memory: a Go program moves known numbers of goroutines between states (chan
// receive, select, mutex, sleep, IO wait, running) after the agent attached with the park and ready probes off;
// the snapshot and /metrics then report every goroutine in the state the program's own runtime.Stack(all) dump
// shows, and goroutines that exit leave them, with no probe telling.
import { openTarget } from '../../agent/src/tracer/target.ts';
import t from 'tap';
import { LeakDetector } from '../../agent/src/analysis/leaks.ts';
import { AgentMetrics } from '../../agent/src/metrics/agent-metrics.ts';
import { buildSnapshot } from '../../agent/src/snapshot/snapshot.ts';
import { GoroutineTracer, type TracedProcess } from '../../agent/src/tracer/goroutine-tracer.ts';
import type { GoroutineProbeName } from '../../agent/src/probes/goroutine-probes.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { goBuild, repoRoot } from '../lib/go.ts';
import type { DumpGoroutine } from '../lib/godump.ts';
import { PopulationProcess } from '../lib/population.ts';
import { join } from 'node:path';
import { overload } from '../lib/load.ts';

const noBpf = await bpfUnavailable();
const src = join(repoRoot, 'test', 'fixtures', 'states');
/** What each group of the program moves to (test/fixtures/states/main.go). */
const GROUPS = { chan: 3, select: 4, mutex: 5, sleep: 6, io: 3, spin: 2 };
const SPIN = new Set(['running', 'runnable']);

/** Waits until the tracer has applied `n` more scans of the process than now (each takes minIntervalMs, then waits
 * for the events older than it); 5 s on a quiet machine, longer as the load rises (a scan waits for the event loop:
 * 5 s passed at load 14). */
async function scansApplied(proc: TracedProcess, n: number, timeoutMs = Math.round(5000 * overload())): Promise<void> {
  const target = proc.scan.counts.applied + n;
  const deadline = Date.now() + timeoutMs;
  while (proc.scan.counts.applied < target) {
    if (Date.now() > deadline) throw new Error(`no scan of pid ${proc.info.pid} applied in ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const count = (xs: string[]) => xs.reduce<Record<string, number>>((m, k) => ((m[k] = (m[k] ?? 0) + 1), m), {});

for (const version of ['local', '1.19']) {
  let binary = '';
  let skip: string | false = noBpf ?? false;
  if (!skip) {
    try {
      binary = goBuild({ srcDir: src, version, name: 'states' });
    } catch (e) {
      skip = `cannot build with Go ${version}: ${(e as Error).message.split('\n')[0]}`;
    }
  }
  const probes: GoroutineProbeName[] = ['create', 'exit'];
  t.test(`Go ${version}: states from memory, park/ready probes off`, { skip, timeout: 60_000 }, async (t) => {
    const prog = await PopulationProcess.start(binary);
    t.teardown(() => prog.kill());
    const tracer = new GoroutineTracer({ scan: { minIntervalMs: 100 } });
    t.teardown(() => tracer.close());
    tracer.start();
    const proc = tracer.attach(openTarget(prog.pid), { probes });
    t.same([...new Set(proc.sites.map((s) => s.probe))].filter((p) => p !== 'creator').sort(), ['create', 'exit'], 'only the creation and exit probes (and Go < 1.21\'s creator)');
    const metrics = new AgentMetrics({ tracer, leaks: new LeakDetector() });
    const port = await metrics.listen('127.0.0.1:0');
    t.teardown(() => metrics.close());
    const scrape = async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const out: Record<string, number> = {};
      for (const l of text.split('\n')) {
        const m = /^goroscope_goroutines\{(.*)\} (\d+)$/.exec(l);
        if (!m || !m[1].includes(`pid="${prog.pid}"`) || !m[1].includes('system="false"')) continue;
        const state = /state="([^"]*)"/.exec(m[1])![1];
        const reason = /wait_reason="([^"]*)"/.exec(m[1])![1];
        out[reason || state] = (out[reason || state] ?? 0) + Number(m[2]);
      }
      return out;
    };
    const before = buildSnapshot(proc, { lost: 0 });
    t.equal(before.totals.byWaitReason.select, Object.values(GROUPS).reduce((a, b) => a + b), 'at attach the population waits in select');

    await prog.command('move', /^MOVED$/m);
    const dump = await prog.dump();
    await scansApplied(proc, 2);
    // The dump's first goroutine is the one printing it (main): running then, reading stdin now.
    const dumper = dump[0].goid;
    const oracle = dump.filter((g) => g.goid !== dumper);
    const isSpinner = (g: DumpGoroutine) => g.frames.includes('main.member') && SPIN.has(g.state);
    t.equal(oracle.filter(isSpinner).length, GROUPS.spin, `the dump shows the ${GROUPS.spin} spinners running or runnable`);

    const snap = buildSnapshot(proc, { lost: 0 });
    const mine = new Map(snap.goroutines.map((g) => [g.goid, g]));
    const stateOf = (goid: number) => {
      const g = mine.get(goid);
      return g ? (g.waitReason ?? g.state) : 'MISSING';
    };
    t.same(
      oracle.map((g) => `${g.goid} ${isSpinner(g) ? (SPIN.has(stateOf(g.goid)) ? 'running|runnable' : stateOf(g.goid)) : stateOf(g.goid)}`),
      oracle.map((g) => `${g.goid} ${isSpinner(g) ? 'running|runnable' : g.state}`),
      'the snapshot: every goroutine in the state the dump shows',
    );
    t.same(snap.goroutines.filter((g) => g.goid !== dumper && !oracle.some((o) => o.goid === g.goid)).map((g) => g.goid), [], 'and no other');
    const gomaxprocs = Number(process.env.GOMAXPROCS) || (await import('node:os')).availableParallelism();
    t.ok((snap.totals.byState.running ?? 0) <= gomaxprocs, `at most GOMAXPROCS (${gomaxprocs}) running: ${snap.totals.byState.running ?? 0}`);

    const expected = count(oracle.filter((g) => !isSpinner(g)).map((g) => g.state));
    const got = await scrape();
    const stable = Object.fromEntries(Object.keys(expected).map((k) => [k, got[k] ?? 0]));
    t.same(stable, expected, '/metrics: goroutines by wait reason as in the dump');
    const onCpu = (got.running ?? 0) + (got.runnable ?? 0) + (got.syscall ?? 0) + (got['IO wait'] ?? 0) - (expected['IO wait'] ?? 0);
    t.equal(onCpu, GROUPS.spin + 1, '/metrics: the spinners and main (running, runnable or in a read of stdin)');
    t.ok(proc.table.counters.parked === 0 && proc.table.counters.readied === 0, 'no park or ready event was recorded');

    // Everyone but the sleepers exits; the exit probe is on, and the scans agree.
    await prog.command('release', /^RELEASED$/m);
    await new Promise((r) => setTimeout(r, 200));
    const after = await prog.dump();
    await scansApplied(proc, 2);
    const left = buildSnapshot(proc, { lost: 0 });
    t.same(
      left.goroutines.filter((g) => g.goid !== after[0].goid).map((g) => `${g.goid} ${g.waitReason ?? g.state}`),
      after.slice(1).map((g) => `${g.goid} ${g.state}`),
      'after release: the sleepers, as the dump shows',
    );
    t.same(count(left.goroutines.filter((g) => g.waitReason).map((g) => g.waitReason!)), { sleep: GROUPS.sleep }, 'only the sleepers wait');
  });
}
