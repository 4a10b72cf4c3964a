// Run-queue latency (runnable -> running) from the scheduler probes, against the Go runtime's own
// /sched/latencies:seconds histogram over the same window, which the traced program reads and prints itself
// (test/fixtures/schedlat: GOMAXPROCS=1, CPU-bound goroutines yielding to each other, so each waits
// milliseconds: far above a probe hit's microsecond). p50 and p99 within 20%, on Go 1.22 and the machine's Go
// (1.26); yields, threads and Ps, and system calls checked against what the program does.
import { openTarget } from '../../agent/src/tracer/target.ts';
import t from 'tap';
import { GoroutineTracer } from '../../agent/src/tracer/goroutine-tracer.ts';
import { ev, GoroutineEventKind } from '../../agent/src/events/goroutine-event.ts';
import { RunnableCause } from '../../agent/src/sched/sched-table.ts';
import { buildSnapshot, formatSnapshot } from '../../agent/src/snapshot/snapshot.ts';
import { AgentMetrics } from '../../agent/src/metrics/agent-metrics.ts';
import { eachGoVersion, sleep, startGo } from '../runtime/helpers.ts';

const WINDOW_MS = 5000;
const MAX_WINDOWS = 3;
/** The machine's Go and 1.22 (the oldest with the run-queue histogram as it is now); SCHED_TEST_GO=a,b for others. */
const versions = process.env.SCHED_TEST_GO ? process.env.SCHED_TEST_GO.split(',') : ['local', '1.22.12'];

interface Bucket { lo: number; hi: number; n: number }

/** The q-quantile of the runtime's histogram, read as Go's metrics docs suggest: linear within its bucket. */
function goQuantile(buckets: Bucket[], q: number): number {
  const total = buckets.reduce((a, b) => a + b.n, 0);
  const rank = q * total;
  let seen = 0;
  for (const b of buckets) {
    if (seen + b.n >= rank) {
      const hi = b.hi < 0 ? b.lo * 1.25 : b.hi;
      return b.lo + ((rank - seen) / b.n) * (hi - b.lo);
    }
    seen += b.n;
  }
  return buckets[buckets.length - 1].lo;
}

const ms = (ns: number) => `${(ns / 1e6).toFixed(3)} ms`;

t.test('run-queue latency against /sched/latencies:seconds', async (t) => {
  await eachGoVersion(t, 'schedlat', versions, async (t, bin) => {
    const tracer = new GoroutineTracer({ ringBytes: 4 << 20 });
    t.teardown(() => tracer.close());
    const p = startGo(bin);
    t.teardown(() => p.kill());
    await p.until(/^READY$/m);
    const proc = tracer.attach(openTarget(p.pid));
    for (const probe of ['run', 'syscall'] as const) {
      t.ok(proc.sites.some((s) => s.probe === probe && s.program === (probe === 'run' ? 'sched_execute' : 'sched_exitsyscall')), `${probe} probes placed`);
    }
    t.comment(proc.sites.filter((s) => s.probe === 'run' || s.probe === 'syscall').map((s) => `${s.program}@${s.symbol}:${s.kind}`).join(' '));

    // Every run (execute) seen: when, and its run-queue time (-1: not known).
    const runs: Array<[number, number]> = [];
    tracer.start((_proc, kind, v, at) => {
      if (kind === GoroutineEventKind.run) runs.push([ev.tsNs(v, at), ev.cause(v, at) === RunnableCause.unknown ? -1 : ev.durationNs(v, at)]);
    });
    // Windows of WINDOW_MS: the runtime keeps one run in 8, so its p99 rests on ~10-20 runs of a window here. When
    // a quantile is off by more than 20%, another window is pooled with the first (both sides over the same
    // windows; none is dropped), up to MAX_WINDOWS.
    const buckets = new Map<number, Bucket>();
    const inWindow: number[] = [];
    let unknownInWindow = 0;
    let programRuns = 0;
    let windows = 0;
    const exact = (q: number) => inWindow[Math.min(inWindow.length - 1, Math.ceil(q * inWindow.length) - 1)];
    const off = (q: number) => Math.abs(exact(q) - goQuantile([...buckets.values()], q)) / goQuantile([...buckets.values()], q);
    while (windows < MAX_WINDOWS) {
      windows++;
      const from = p.out.length;
      p.send(`window ${WINDOW_MS}`);
      const start = Number((await p.until(/^WINDOW START mono=(\d+)$/m, 30_000))[1]);
      const endLine = await p.until(/^WINDOW END mono=(\d+) runs=(\d+)$/m, WINDOW_MS + 30_000);
      const end = Number(endLine[1]);
      programRuns += Number(endLine[2]);
      for (const m of p.out.slice(from).matchAll(/^SCHEDLAT lo=(\d+) hi=(-?\d+) n=(\d+)$/gm)) {
        const b = buckets.get(Number(m[1])) ?? { lo: Number(m[1]), hi: Number(m[2]), n: 0 };
        b.n += Number(m[3]);
        buckets.set(b.lo, b);
      }
      await sleep(100); // the reader drains every 10 ms
      // The window's runs only: those whose execute fell inside it.
      for (const [ts, d] of runs) {
        if (ts < start || ts > end) continue;
        if (d >= 0) inWindow.push(d);
        else unknownInWindow++;
      }
      inWindow.sort((a, b) => a - b);
      if (off(0.5) <= 0.2 && off(0.99) <= 0.2) break;
      t.comment(`window ${windows}: p50 off by ${(off(0.5) * 100).toFixed(1)}%, p99 by ${(off(0.99) * 100).toFixed(1)}%: pooling another`);
    }
    t.comment(`${windows} window(s) of ${WINDOW_MS} ms`);
    // System calls: ten nanosleep(2)s of 20 ms in one goroutine (the kernel sleeps at least that long; the
    // program's clock reads are raw syscalls that skip the runtime's hooks), and two goroutines that never
    // yield, which sysmon preempts every 10 ms.
    const syscallsBefore = proc.sched.counters.syscalls;
    p.send('sleeps 10 20');
    const slept = await p.until(/^SLEPT goid=(\d+) n=(\d+) ns=(\d+)$/m, 30_000);
    p.send('spin 300');
    const spun = await p.until(/^SPUN goids=(\d+),(\d+)$/m, 30_000);
    await sleep(100);
    await tracer.drain();
    p.send('quit');
    await p.until(/^BYE$/m);

    const goBuckets = [...buckets.values()].sort((a, b) => a.lo - b.lo);
    const goSamples = goBuckets.reduce((a, b) => a + b.n, 0);
    t.ok(goSamples >= 200, `the runtime sampled ${goSamples} runs in the window (one transition in 8)`);
    t.ok(inWindow.length >= programRuns, `${inWindow.length} timed runs seen in the window, the workers yielded ${programRuns} times (${unknownInWindow} runs of unknown start)`);
    t.ok(unknownInWindow <= 0.02 * (inWindow.length + unknownInWindow), `runs with no runnable stamp: ${unknownInWindow}`);

    for (const q of [0.5, 0.99]) {
      const go = goQuantile(goBuckets, q);
      const ours = exact(q);
      t.ok(Math.abs(ours - go) <= 0.2 * go, `p${q * 100}: ours ${ms(ours)}, the runtime's ${ms(go)} (${(((ours - go) / go) * 100).toFixed(1)}%)`);
    }

    // The product's own figures: the process histogram holds the windows' runs (and those around them).
    const s = proc.sched.summary();
    t.ok(s.runQueue.count >= inWindow.length, `process histogram: ${s.runQueue.count} runs, p50 ${ms(s.runQueue.p50Ns)}, p99 ${ms(s.runQueue.p99Ns)}`);
    t.ok(Math.abs(s.runQueue.p50Ns - exact(0.5)) <= 0.2 * exact(0.5), 'its p50 agrees with the window\'s');
    t.ok(s.counters.yields >= programRuns, `${s.counters.yields} yields (runtime.Gosched) >= the workers' ${programRuns}`);
    t.ok(s.counters.byCause.yielded > 0.8 * s.counters.runsTimed, `runs after a yield: ${s.counters.byCause.yielded} of ${s.counters.runsTimed}`);
    t.ok(s.counters.byCause.ready > 0, `runs after a wakeup (the sleeper's timer): ${s.counters.byCause.ready}`);
    t.equal(s.ps, 1, 'GOMAXPROCS=1: one P ran every goroutine');
    t.ok(s.syscalls.count > 0, `system calls seen: ${s.syscalls.count} (the program's reads and clock_gettime)`);
    const bySite = [...proc.sched.runQueueBySite.entries()].filter(([, h]) => h.count > 100);
    t.ok(bySite.length >= 1, `run-queue latency by creation site: ${bySite.map(([pc, h]) => `0x${pc.toString(16)}: ${h.count} runs, p50 ${ms(h.quantile(0.5))}`).join('; ')}`);
    const workerSite = bySite.sort((a, b) => b[1].count - a[1].count)[0];
    t.ok(workerSite[0] > 0, 'the workers\' runs are under their go statement');
    const g = [...Array(20).keys()].map((i) => proc.sched.of(i)).find((x) => x && x.yields > 10);
    // Every yield is followed by a run, but the last yield's run may not have happened (or been read) yet.
    t.ok(g && g.runs + 1 >= g.yields && g.runnableNs > 0 && g.p === 0 && g.tid > 0, `a worker goroutine's own figures: ${JSON.stringify(g)}`);

    // Shown: the snapshot (JSON and text), the agent's /metrics, and the goroutine records spans are made of.
    const snap = buildSnapshot(proc, { lost: 0 });
    t.equal(snap.sched.counters.runs, s.counters.runs, 'the snapshot carries the scheduler figures');
    t.match(snap.sched.runQueueBySite[0]?.createdBy, { function: 'main.main', file: /schedlat\/main\.go$/ }, 'most runs under the workers\' go statement, symbolized');
    const text = formatSnapshot(snap);
    t.match(text, /^run queue: \d+ runs \(\d+ timed\)  p50 [\d.]+ms  p99 [\d.]+ms/m, 'the text says the run-queue latency');
    t.match(text, /^RUN QUEUE BY CREATION SITE\n +\d+ runs  p50 +[\d.]+ms  p99 +[\d.]+ms  main\.main  .*schedlat\/main\.go:\d+$/m, 'and by creation site');
    const worker = snap.goroutines.find((x) => x.startFunction === 'main.worker');
    t.ok(worker?.sched && worker.sched.runsTimed > 0 && worker.sched.p === 0 && worker.sched.tid! > 0, 'a worker\'s record carries its scheduling');
    const metrics = new AgentMetrics({ tracer });
    const exposition = await metrics.registry.metrics();
    const count = Number(new RegExp(`^goroscope_sched_run_queue_latency_seconds_count\\{pid="${p.pid}"[^}]*\\} (\\d+)$`, 'm').exec(exposition)?.[1]);
    t.equal(count, proc.sched.runQueue.count, '/metrics: the run-queue histogram holds every timed run');
    t.match(exposition, new RegExp(`^goroscope_sched_runs_total\\{pid="${p.pid}",exe="[^"]+",cause="yielded"\\} \\d+$`, 'm'), '/metrics: runs by cause');
    const sleeper = proc.sched.of(Number(slept[1]))!;
    t.ok(sleeper, `the sleeping goroutine ${slept[1]} was seen`);
    t.equal(sleeper.syscalls, 10, 'its ten system calls, each timed from entersyscall to exitsyscall');
    // Bracketed by two real clocks: the kernel sleeps at least what was asked, and the program's own clock around
    // each call holds the call and, after it, the wait for a P (GOMAXPROCS=1, busy).
    t.ok(sleeper.syscallNs >= 10 * 20e6 && sleeper.syscallNs <= Number(slept[3]),
      `their time ${ms(sleeper.syscallNs)}: at least the 200 ms asked of the kernel, at most the program's own ${ms(Number(slept[3]))} around the calls`);
    t.ok(proc.sched.counters.syscalls - syscallsBefore >= 10, 'counted in the process too');
    t.ok(s.counters.byCause.syscall > 0 || proc.sched.counters.byCause.syscall > 0, `runs queued back from a system call with no P: ${proc.sched.counters.byCause.syscall}`);
    for (const goid of [Number(spun[1]), Number(spun[2])]) {
      const g = proc.sched.of(goid);
      t.ok(g && g.preemptions >= 2 && g.yields === 0, `spinner ${goid}: preempted ${g?.preemptions} times, never yielded`);
    }
    t.equal(tracer.strayRecords, 0, 'no stray records');
    t.same(Object.values(tracer.lost()).filter((n) => n > 0), [], 'nothing lost');
  });
});
