// Requests and scheduler figures end to end: a real Go server (test/fixtures/httpserver, GOMAXPROCS=1), the agent
// with real BPF shipping to a real collector (SQLite file, WebSocket), read back over the collector's HTTP API.
// Each request comes back with its method, route and status, and its serving goroutine's time split as its handler
// is known to spend it: a sleep parked, a CPU loop running, a CPU loop against two busy goroutines mostly runnable.
// The scheduler API's run-queue percentiles are the agent's own snapshot's.
import http from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startAgent } from '../../agent/src/agent/run.ts';
import { schedSnapshot } from '../../agent/src/snapshot/snapshot.ts';
import { startCollector } from '../../collector/src/server.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { buildFixture, sleep } from '../runtime/helpers.ts';
import { httpGet, startHttpServer } from '../lib/http-server.ts';

const built = buildFixture('httpserver', 'local');

interface Case {
  path: string;
  route: string;
  ms: number;
  /** Which share of the request the goroutine spends where, as bounds on a loaded 2-core machine. */
  expect: 'parked' | 'running' | 'runnable';
}

const CASES: Case[] = [
  { path: '/sleep/80', route: 'GET /sleep/{ms}', ms: 80, expect: 'parked' },
  { path: '/spin/120', route: 'GET /spin/{ms}', ms: 120, expect: 'running' },
  { path: '/contend/240', route: 'GET /contend/{ms}', ms: 240, expect: 'runnable' },
];

t.test('requests and scheduler figures through the collector API', { timeout: 120_000 }, async (t) => {
  const why = await bpfUnavailable();
  if (why) {
    t.test(why, { skip: why }, async () => {});
    return;
  }
  const { bin, skip } = built;
  if (!bin) {
    t.test(skip!, { skip: skip! }, async () => {});
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-reqapi-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const collector = await startCollector({ listen: '127.0.0.1:0', db: join(dir, 'goroscope.db'), ingestToken: 'ingest-secret', apiToken: 'api-secret' });
  t.teardown(() => collector.close());
  const { server, port } = await startHttpServer(bin, t, ['1']);

  const agent = await startAgent({
    collector: collector.url.replace(/^http/, 'ws'),
    token: 'ingest-secret',
    pids: [server.pid],
    overheadBudget: 0.02,
    full: true,
    tcp: false,
    profileIntervalMs: 0,
    spoolDir: join(dir, 'spool'),
    intervalMs: 200,
    scanMs: 1000,
    log: (m) => t.comment(m),
  });
  t.teardown(() => agent.stop());
  t.ok(agent.tracer?.process(server.pid), `goroutine probes on the server: ${JSON.stringify(agent.parts.list())}`);
  t.ok(agent.requests?.process(server.pid)?.sites.length, 'request probes on the server');

  const api = async (path: string) => {
    const r = await fetch(`${collector.url}/api/v1${path}`, { headers: { authorization: 'Bearer api-secret' } });
    return { status: r.status, body: (await r.json()) as any };
  };

  // Two of each, one after the other on one keep-alive connection.
  const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => keepAlive.destroy());
  const sent: { c: Case; ms: number }[] = [];
  for (let round = 0; round < 2; round++) {
    for (const c of CASES) {
      const r = await httpGet(port, c.path, keepAlive);
      t.equal(r.status, 200, `${c.path}: 200`);
      sent.push({ c, ms: r.ns / 1e6 });
    }
  }

  // The requests settle (the agent waits for the goroutine events of their time), ship, and are stored.
  let items: any[] = [];
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    await sleep(300);
    t.ok(await agent.flush(), 'every batch acknowledged');
    await collector.idle();
    items = (await api(`/requests?pid=${server.pid}&limit=100`)).body.items;
    if (items.length >= sent.length) break;
  }
  t.equal(items.length, sent.length, `every request stored (${items.length} of ${sent.length})`);

  for (const c of CASES) {
    const got = items.filter((r) => r.path === c.path);
    t.equal(got.length, 2, `${c.path}: both requests`);
    for (const r of got) {
      const label = `${c.path} (goroutine ${r.goid})`;
      t.match(r, { method: 'GET', route: c.route, status: 200, protocol: 'http/1.1', pid: server.pid }, `${label}: method, route, status`);
      t.ok(r.sched, `${label}: its goroutine's scheduling is known`);
      if (!r.sched) continue;
      const d = r.durationNs;
      const { runningNs, runnableNs } = r.sched;
      const parked = r.parkedNs;
      const ms = (ns: number) => (ns / 1e6).toFixed(1);
      const split = `ran ${ms(runningNs)}, runnable ${ms(runnableNs)}, parked ${ms(parked)} of ${ms(d)} ms`;
      // Running is what parks and run-queue waits leave; they never overlap, so nothing is cut off at zero.
      t.ok(runningNs + runnableNs + parked <= d * 1.01 + 1000, `${label}: the parts add up to its duration (${split})`);
      t.ok(d >= c.ms * 1e6 * 0.95, `${label}: lasted at least the handler's ${c.ms} ms (${ms(d)})`);
      if (c.expect === 'parked') {
        t.ok(parked >= 0.8 * c.ms * 1e6 && (r.parkedByReason.sleep ?? 0) >= 0.8 * c.ms * 1e6, `${label}: parked ~${c.ms} ms on sleep (${split})`);
        t.ok(runningNs + runnableNs < 0.5 * d, `${label}: mostly parked`);
      } else if (c.expect === 'running') {
        t.ok(runningNs >= 0.75 * d, `${label}: ran for most of it (${split})`);
        t.ok(parked < 0.1 * d, `${label}: hardly parked`);
      } else {
        // Two busy goroutines share the one P with it: it waits runnable about 2/3 of the time.
        t.ok(runnableNs >= 0.35 * d, `${label}: waited runnable for much of it (${split})`);
        t.ok(runningNs >= 0.1 * d, `${label}: and ran some of it`);
        t.ok(r.sched.runs >= 3 && r.sched.preemptions >= 1, `${label}: run ${r.sched.runs} times, preempted ${r.sched.preemptions} times`);
      }
    }
  }

  const red = (await api(`/requests/summary?pid=${server.pid}`)).body.items;
  const contend = red.find((g: any) => g.route === 'GET /contend/{ms}');
  t.match(contend, { requests: 2, errors: 0, records: 2 }, 'RED: the contended route');
  t.ok(contend && contend.runnableMeanNs >= 0.35 * contend.meanNs, `RED: runnable mean ${(contend?.runnableMeanNs / 1e6).toFixed(1)} ms of ${(contend?.meanNs / 1e6).toFixed(1)} ms`);
  t.ok(red.every((g: any) => g.p50Ns > 0 && g.p99Ns >= g.p50Ns), 'RED: percentiles per route');

  // The scheduler API against the agent's own snapshot, once the server is idle and everything shipped.
  await sleep(300);
  t.ok(await agent.flush(), 'flushed');
  await collector.idle();
  const own = schedSnapshot(agent.tracer!.process(server.pid)!);
  const sched = (await api(`/sched?pid=${server.pid}`)).body.items[0];
  t.ok(sched, 'the process has scheduler figures');
  const off = (a: number, b: number) => Math.abs(a - b) / Math.max(b, 1);
  // An idle server still runs a few goroutines (timers, the netpoller) between the snapshot and the last report.
  t.ok(off(sched.runQueue.count, own.runQueue.count) <= 0.05, `runs timed: API ${sched.runQueue.count}, agent ${own.runQueue.count}`);
  t.ok(off(sched.runQueue.p50Ns, own.runQueue.p50Ns) <= 0.1, `run-queue p50: API ${sched.runQueue.p50Ns} ns, agent ${Math.round(own.runQueue.p50Ns)} ns`);
  t.ok(off(sched.runQueue.p99Ns, own.runQueue.p99Ns) <= 0.1, `run-queue p99: API ${sched.runQueue.p99Ns} ns, agent ${Math.round(own.runQueue.p99Ns)} ns`);
  t.ok(sched.preemptions >= 4, `preemptions counted (${sched.preemptions}): the contended handlers were preempted`);
  t.equal(sched.ps, 1, 'GOMAXPROCS=1: one P');
  const sites = (await api(`/sched/sites?pid=${server.pid}`)).body.items;
  t.ok(sites.some((s: any) => s.createdBy?.function?.includes('main.serve')), `by site: the handler's busy goroutines (${sites.map((s: any) => s.createdBy?.function).join(', ')})`);
  t.equal((await api(`/requests?pid=${server.pid}&minDurationNs=abc`)).status, 400, 'a bad query is a 400');
});
