// Churn: many distinct, short-lived Go processes under one agent, a few dozen at a time (a node running jobs).
// Every one is traced, its probes leave within a second of its exit (the kernel's fdinfo of the agent's links
// is the judge), no per-process BPF map keeps an entry of a gone process, and the process after them all is
// traced and reaches the collector. CI runs CHURN_PROCESSES (default 200); scripts/churn.sh runs 5,000.
import t from 'tap';
import { join } from 'node:path';
import { bpfUnavailable } from '../lib/bpf.ts';
import { startChild } from '../lib/child.ts';
import { startCollectorProcess } from '../lib/collector-process.ts';
import { goBuild, repoRoot } from '../lib/go.ts';
import { ExitWatch } from '../lib/exit-watch.ts';
import { overload } from '../lib/load.ts';
import { api, tempDir, INGEST_TOKEN, API_TOKEN } from '../collector/helpers.ts';

const TOTAL = Number(process.env.CHURN_PROCESSES ?? 200);
const AT_ONCE = Number(process.env.CHURN_CONCURRENCY ?? 24);
/** A second on a machine with a core free per runnable task; scaled by how far the machine's load (taken at the
 * test's start) exceeds its cores, since the agent's event loop and the kernel's detach both wait for a CPU (2.1 s
 * seen at load 27 on 2 cores, 395 ms p99 at load 10). */
const DETACH_LIMIT_MS = Math.round(1000 * overload());
/** Each process lives 1.5-3 s on a quiet machine, longer as the load rises, so that every one lives long enough to
 * be found and attached (one of 200 exited untraced at load 20 on 2 cores). */
const MIN_LIFE_MS = Math.round(1500 * Math.min(4, overload()));
const noBpf = await bpfUnavailable();

const noMulti = noBpf ? undefined : (await import('../../agent/src/bpf/bridge.ts')).loadAddon().hasUprobeMulti()
  ? undefined : 'no uprobe multi-links on this kernel (Linux 6.9+): the kernel cannot say which pid a classic probe watches';

t.test(`churn: ${TOTAL} Go processes, ${AT_ONCE} at a time, under one agent`, { skip: noBpf ?? noMulti ?? false }, async (t) => {
  const { startAgent } = await import('../../agent/src/agent/run.ts');
  const bin = goBuild({ srcDir: join(repoRoot, 'test/fixtures/churn') });
  // The collector in a process of its own, as on a node: its commits must not stall the agent's event loop.
  const collector = await startCollectorProcess({ db: join(tempDir(t), 'churn.db'), ingestToken: INGEST_TOKEN, apiToken: API_TOKEN, t });
  // The agent watches the pids in this list (its --pid list, read at every scan): the test's own processes
  // only, not every Go program of the engineers sharing this machine.
  const pids: number[] = [];
  const traced = new Set<number>();
  /** Processes traced, counted by start: pids come round again (pid_max is often 32768). */
  let tracedStarts = 0;
  /** What the agent said about each pid, with when (ms into the run). */
  const said = new Map<number, string[]>();
  const t0 = performance.now();
  const agent = await startAgent({
    collector: collector.url.replace(/^http/, 'ws'), token: INGEST_TOKEN, pids, overheadBudget: 0.02, full: true,
    spoolDir: join(tempDir(t), 'spool'), intervalMs: 500, scanMs: 200, leakSampleMs: 60_000,
    log: (m) => {
      const pid = Number(/^tracing pid (\d+)/.exec(m)?.[1]);
      if (pid) {
        traced.add(pid);
        tracedStarts++;
      }
      const about = Number(/pid (\d+)/.exec(m)?.[1]);
      if (about) said.set(about, [...(said.get(about) ?? []).slice(-4), `${Math.round(performance.now() - t0)} ms: ${m}`]);
      else if (!/a probe hit costs/.test(m)) t.comment(m);
    },
  });
  t.teardown(() => agent.stop());
  t.ok(agent.tracer && agent.runtime, `goroutine and runtime parts up: ${JSON.stringify(agent.parts.list())}`);

  const exitedAt = new Map<number, number>(); // pid -> when this thread saw it exit (ms, monotonic)
  let started = 0;
  const mapViolations: string[] = [];
  const mapsHold = (tracerBpf: { keys(m: string): Buffer[] } | undefined, map: string) =>
    (tracerBpf?.keys(map) ?? []).map((k) => (k.length === 8 ? Number(k.readBigUInt64LE() >> 32n) : k.readUInt32LE()));
  const checkMaps = () => {
    const now = performance.now();
    for (const [bpf, map] of [[agent.runtime?.bpf, 'rt_procs'], [agent.runtime?.bpf, 'stw_pending'],
      [agent.tracer?.bpf, 'creator_by_thread'], [agent.tcp?.bpf, 'tcp_process_layouts']] as const) {
      for (const pid of mapsHold(bpf, map)) {
        const at = exitedAt.get(pid);
        if (at !== undefined && now - at > DETACH_LIMIT_MS && !pids.includes(pid)) {
        const rt = agent.runtime?.summary?.(pid);
        mapViolations.push(`${map} holds pid ${pid}, gone ${Math.round(now - at)} ms (agent: tracer ${agent.tracer?.process(pid) ? 'has it' : 'no'}, ` +
          `runtime ${rt ? (rt.attached ? 'attached' : 'detached') : 'no'}; said: ${(said.get(pid) ?? []).join(' | ')})`);
      }
      }
    }
  };
  // Exit and probes-gone times, measured on a thread of their own (the agent runs on this one).
  let exited = 0;
  const watch = new ExitWatch('self', (pid) => {
    exitedAt.set(pid, performance.now());
    const i = pids.indexOf(pid);
    if (i >= 0) pids.splice(i, 1);
    exited++;
  });
  t.teardown(() => watch.stop());
  // The processes come from a launcher of their own: a fork of this big process per spawn would block the
  // event loop the agent runs on, which no agent on a node has to bear.
  const launch = (total: number, atOnce: number) => {
    const launcher = startChild(bin, ['launch', String(total), String(atOnce), String(MIN_LIFE_MS)], { what: 'churn launcher', t });
    launcher.onLine((line) => {
      const pid = Number(/^started (\d+)$/.exec(line)?.[1]);
      if (!pid) return;
      started++;
      pids.push(pid);
      watch.watch(pid);
    });
    return launcher;
  };

  launch(TOTAL, AT_ONCE);
  await new Promise<void>((resolve) => {
    let checked = 0;
    const tick = setInterval(() => {
      if (exited - checked >= 100) {
        checked = exited;
        checkMaps();
      }
      if (exited >= TOTAL) {
        clearInterval(tick);
        resolve();
      }
    }, 50);
  });
  const elapsedS = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, DETACH_LIMIT_MS + 200));
  checkMaps();

  const untraced = [...exitedAt.keys()].filter((p) => !traced.has(p));
  t.equal(tracedStarts, started, `every process traced (${tracedStarts} of ${started} started, ${traced.size} distinct pids, ${(TOTAL / elapsedS).toFixed(1)} processes/s)`);
  for (const p of untraced.slice(0, 5)) t.comment(`not traced: pid ${p}: ${(said.get(p) ?? ['nothing said']).join(' | ')}`);
  const latencies: number[] = [];
  const late: string[] = [];
  let unseen = 0;
  for (const pid of traced) {
    const w = watch.done.get(pid);
    if (!w) {
      late.push(`pid ${pid}: probes still there`);
      continue;
    }
    if (w.links === 0) unseen++;
    const ms = w.linksGoneAt - w.exitedAt;
    latencies.push(ms);
    if (ms > DETACH_LIMIT_MS) late.push(`pid ${pid}: ${Math.round(ms)} ms (exited ${Math.round(w.exitedAt - performance.timeOrigin - t0)} ms into the run)`);
  }
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? NaN);
  for (const l of late.slice(0, 5)) t.comment(`late: ${l}`);
  for (const v of mapViolations.slice(0, 5)) t.comment(`map: ${v}`);
  t.same(late.slice(0, 10), [], `no uprobe outlives its process by more than ${DETACH_LIMIT_MS} ms (${late.length} did; exit to links gone: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${pct(1)} ms)`);
  t.ok(unseen <= traced.size / 20, `the kernel showed the probes of nearly every process while it ran (${unseen} unseen)`);
  t.same(mapViolations.slice(0, 10), [], 'no BPF map holds entries of gone processes');

  // The next one is traced, and what it does reaches the collector.
  const before = new Set(traced);
  launch(1, 1);
  const deadline = Date.now() + 10_000;
  let next: number | undefined;
  while (next === undefined && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    next = [...traced].find((p) => !before.has(p));
  }
  t.ok(next, `process ${TOTAL + 1} is traced`);
  await new Promise((r) => setTimeout(r, 1000));
  t.ok(await agent.flush(), 'shipped (acked: committed)');
  const gs = await api(collector, `/api/v1/goroutines?pid=${next}&limit=5`);
  t.ok(gs.body.items.length > 0, `its goroutines are in the collector (${gs.body.items.length})`);
  t.comment(`churn figures: ${TOTAL} processes in ${elapsedS.toFixed(0)} s; exit to probes gone p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms, max ${pct(1)} ms`);
});
