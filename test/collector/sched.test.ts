// Scheduler figures: the agent's scheduler table -> its interval records (differences) -> ingest -> SQLite -> the
// API, over real WebSocket and HTTP. Summed over the records, the API's figures are the table's own, and its
// percentiles are within a bucket (~6%) of the exact ones over the same samples.
import t from 'tap';
import { SchedReports } from '../../agent/src/sched/sched-report.ts';
import { RunnableCause, SchedTable } from '../../agent/src/sched/sched-table.ts';
import { parseAgentMessage } from '../../collector/src/protocol/validate.ts';
import { api, proc, T0, TestAgent, testCollector } from './helpers.ts';

/** A deterministic spread of run-queue latencies (ns): 1 us .. ~20 ms, log-uniform-ish. */
function latencies(n: number, seed: number): number[] {
  let x = seed;
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return Math.round(1000 * 2 ** ((x / 2 ** 31) * 14.3));
  });
}

const exact = (sorted: number[], q: number) => sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];

t.test('sched: interval records sum to the table, percentiles within a bucket of exact, by site, bad queries', async (t) => {
  const table = new SchedTable();
  const reports = new SchedReports();
  const siteA = 0x401000;
  const siteB = 0x402000;
  const sites = new Map([[siteA, { function: 'main.serve', file: '/src/main.go', line: 42 }], [siteB, { function: 'main.poll', file: '/src/poll.go', line: 7 }]]);
  const source = { pid: 10, sched: table, attachedAtMs: T0, siteOf: (pc: number) => sites.get(pc) ?? null };
  const a = latencies(3000, 1);
  const b = latencies(1000, 2).map((v) => v * 4);
  // Two stretches: the second record carries only what ran since the first.
  a.slice(0, 1500).forEach((ns, i) => table.onRun(100 + (i % 7), 1000 + (i % 3), i % 2, RunnableCause.ready, ns, siteA));
  table.onSyscall(100, 2_000_000);
  table.onYield(101, RunnableCause.preempted);
  const first = reports.take(source, T0 + 2000)!;
  t.equal(reports.take(source, T0 + 2500), undefined, 'nothing ran since: no record');
  a.slice(1500).forEach((ns, i) => table.onRun(100 + (i % 7), 1000 + (i % 4), i % 2, RunnableCause.created, ns, siteA));
  b.forEach((ns, i) => table.onRun(200 + (i % 5), 1000, 1, RunnableCause.injected, ns, siteB));
  for (let i = 0; i < 10; i++) table.onRun(300, 1001, 0, RunnableCause.unknown, 0, siteB);
  table.onYield(102, RunnableCause.yielded);
  table.onSyscall(101, 6_000_000);
  const second = reports.take(source, T0 + 4000)!;
  t.match(first, { kind: 'sched', pid: 10, from: T0, to: T0 + 2000, runs: 1500, runsTimed: 1500, syscalls: 1, preemptions: 1, byCause: { ready: 1500 } });
  t.match(second, { from: T0 + 2000, to: T0 + 4000, runs: 2510, runsTimed: 2500, syscalls: 1, syscallNs: 6_000_000, yields: 1, preemptions: 0 });
  t.same(second.byCause, { created: 1500, injected: 1000, unknown: 10 }, 'by cause: only what changed');
  t.equal(second.runQueue.count, 2500, 'the second histogram holds the second stretch only');
  const parsed = parseAgentMessage(JSON.stringify({ type: 'batch', agentId: 'x', seq: 1, records: [first, second] }));
  t.ok(parsed.ok, `records pass the collector's validation${parsed.ok ? '' : `: ${parsed.error}`}`);

  const c = await testCollector(t);
  const agent = new TestAgent(c.url);
  await agent.hello();
  t.same(await agent.send(1, [proc(10), first, second]), { type: 'ack', seq: 1 });
  t.same(await agent.send(2, [second]), { type: 'ack', seq: 2 }, 'a re-sent record');

  const r = await api(c, '/api/v1/sched?pid=10');
  t.equal(r.status, 200);
  t.equal(r.body.items.length, 1);
  const s = r.body.items[0];
  const own = table.summary();
  t.match(s, {
    node: 'node-a', pid: 10, processStartTime: 1010, from: T0, to: T0 + 4000, reports: 2,
    runs: own.counters.runs, runsTimed: own.counters.runsTimed, yields: 1, preemptions: 1, syscalls: 2, syscallNs: 8_000_000,
    threadSwitches: own.counters.threadSwitches, pSwitches: own.counters.pSwitches, threads: own.threads, ps: own.ps,
    byCause: { ready: 1500, created: 1500, injected: 1000, unknown: 10 },
  }, 'counters: the sum of the records is the table (stored once)');
  t.same([s.runQueue.count, s.runQueue.p50Ns, s.runQueue.p90Ns, s.runQueue.p99Ns, s.runQueue.maxNs],
    [own.runQueue.count, Math.round(own.runQueue.p50Ns), Math.round(own.runQueue.p90Ns), Math.round(own.runQueue.p99Ns), own.runQueue.maxNs],
    'run-queue percentiles: the agent\'s own over the same runs');
  const all = [...a, ...b].sort((x, y) => x - y);
  for (const q of [0.5, 0.9, 0.99]) {
    const e = exact(all, q);
    const got = s.runQueue[`p${Math.round(q * 100)}Ns`];
    t.ok(Math.abs(got - e) / e <= 0.07, `p${q * 100}: ${got} ns, exact ${e} ns`);
  }
  t.equal(s.runQueue.meanNs, Math.round(all.reduce((x, y) => x + y, 0) / all.length), 'mean exact');
  t.match(s.syscallTime, { count: 2, sumNs: 8_000_000 });

  const later = (await api(c, `/api/v1/sched?pid=10&since=${T0 + 3000}`)).body.items[0];
  t.match(later, { reports: 1, runs: 2510, from: T0 + 2000 }, 'since: the reports that end after it');

  const bySite = (await api(c, '/api/v1/sched/sites?pid=10')).body.items;
  t.same(bySite.map((x: any) => [x.createdBy?.line, x.runQueue.count]), [[42, 3000], [7, 1000]], 'by site, most runs first');
  const bs = [...b].sort((x, y) => x - y);
  t.ok(Math.abs(bySite[1].runQueue.p50Ns - exact(bs, 0.5)) / exact(bs, 0.5) <= 0.07, `site B p50 ${bySite[1].runQueue.p50Ns} vs ${exact(bs, 0.5)}`);
  t.same((await api(c, '/api/v1/sched/sites?pid=10&limit=1')).body.items.length, 1);
  t.same((await api(c, '/api/v1/sched?pid=11')).body, { items: [] }, 'no reports: no items');

  for (const [path, why] of [
    ['/api/v1/sched?pid=0', /pid/], ['/api/v1/sched?limit=abc', /limit/], ['/api/v1/sched?by=site', /unknown parameter 'by'/],
    ['/api/v1/sched/sites?until=-5', /until/],
  ] as const) {
    const res = await api(c, path);
    t.equal(res.status, 400, `${path}: 400`);
    t.match(res.body.message, why, `${path}: ${res.body.message}`);
  }
  agent.close();
});
