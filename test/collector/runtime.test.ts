// Leak suspects, stop-the-world pauses and fatal errors: ingest -> SQLite -> API, stream, metrics, retention.
import t from 'tap';
import WebSocket from 'ws';
import { api, API_TOKEN, fatal, gor, leak, pause, proc, T0, TestAgent, testCollector } from './helpers.ts';

t.test('leak suspects round-trip, upsert by site, filter and order by growth', async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  await a.hello();
  t.same(await a.send(1, [
    proc(10), proc(20),
    leak(10, 42),
    leak(10, 43, { growthPerMinute: 500, count: 2000 }),
    leak(10, 44, { suspect: 'growing-creation-rate', createdBy: null, startFunction: 'time.goFunc', waitReason: null, count: 12.5, growthPerMinute: 3.25, oldestAgeMs: 0 }),
    leak(20, 42, { count: 10, growthPerMinute: 5 }),
  ]), { type: 'ack', seq: 1 });

  let items = (await api(c, '/api/v1/leaks')).body.items;
  t.same(items.map((l: any) => [l.pid, l.growthPerMinute]), [[10, 500], [10, 50], [20, 5], [10, 3.25]], 'fastest growing first');
  const l42 = items.find((l: any) => l.pid === 10 && l.createdBy?.line === 42);
  t.same(l42, {
    id: l42.id, node: 'node-a', pid: 10, processStartTime: 1010, exe: '/usr/bin/svc10', suspect: 'growing-live',
    createdBy: { function: 'main.serve', file: '/src/main.go', line: 42 }, startFunction: 'main.worker', waitReason: 'chan receive',
    count: 500, growthPerMinute: 50, oldestAgeMs: 600_000, since: T0, firstSeenAt: T0 + 60_000, lastSeenAt: T0 + 60_000,
    stack: null,
  }, 'every field as sent');
  t.match(items.find((l: any) => l.suspect === 'growing-creation-rate'), { createdBy: null, startFunction: 'time.goFunc', count: 12.5 });

  // The agent re-sends the suspect while it holds: one row, latest count and growth, first seen kept.
  await a.send(2, [leak(10, 42, { count: 900, growthPerMinute: 60, observedAt: T0 + 120_000 })]);
  // A stale report (older observedAt) arriving late changes neither the figures nor first seen.
  await a.send(3, [leak(10, 42, { count: 1, growthPerMinute: 1, observedAt: T0 + 90_000 })]);
  // Same for the site-less suspect: NULL site and wait reason still name one row.
  await a.send(4, [leak(10, 44, { suspect: 'growing-creation-rate', createdBy: null, startFunction: 'time.goFunc', waitReason: null, count: 20, growthPerMinute: 4, observedAt: T0 + 120_000 })]);
  items = (await api(c, '/api/v1/leaks?pid=10')).body.items;
  t.equal(items.length, 3, 'upserted, not appended');
  t.match(items.find((l: any) => l.createdBy?.line === 42), { count: 900, growthPerMinute: 60, firstSeenAt: T0 + 60_000, lastSeenAt: T0 + 120_000 });
  t.match(items.find((l: any) => l.createdBy === null), { count: 20, growthPerMinute: 4 });

  const q = async (qs: string) => (await api(c, `/api/v1/leaks?${qs}`)).body.items.map((l: any) => `${l.pid}:${l.createdBy?.line ?? '-'}`);
  t.same(await q('minCount=900'), ['10:43', '10:42']);
  t.same(await q('createdBy=/src/main.go:42'), ['10:42', '20:42']);
  t.same(await q('createdBy=time.goFunc'), ['10:-'], 'a function matches the start function too');
  t.same(await q('suspect=growing-creation-rate'), ['10:-']);
  t.same(await q('node=node-a&pid=20'), ['20:42']);
  t.same(await q(`since=${T0 + 100_000}`), ['10:42', '10:-'], 'reported at or after since');
  t.same(await q(`until=${T0 + 1}`), [], 'first reported after until');
  t.same(await q('limit=1'), ['10:43']);
  a.close();
});

t.test('pauses: per-process percentiles, GC cycles, time range, raw pages', async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  await a.hello();
  // 100 GC pauses of 1..100 us in 50 cycles, and 2 other stop-the-world pauses of 5 ms.
  const gcs = Array.from({ length: 100 }, (_, i) => pause(10, i * 10, { durationNs: (i + 1) * 1000, cycle: Math.floor(i / 2) }));
  const others = [pause(10, 2000, { reason: 'ReadMemStats', gc: false, cycle: null, durationNs: 5e6 }), pause(10, 2010, { reason: 'GOMAXPROCS', gc: false, cycle: null, durationNs: 5e6 })];
  t.same(await a.send(1, [proc(10), proc(20), ...gcs, ...others, pause(20, 0, { durationNs: 7 })]), { type: 'ack', seq: 1 });

  const all = (await api(c, '/api/v1/gc?pid=10&gc=true')).body;
  t.same(all, {
    items: [{
      node: 'node-a', pid: 10, processStartTime: 1010, exe: '/usr/bin/svc10', pauses: 100, gcPauses: 100, gcCycles: 50,
      totalNs: 5_050_000, p50Ns: 50_000, p90Ns: 90_000, p99Ns: 99_000, maxNs: 100_000, firstAt: T0, lastAt: T0 + 990,
    }],
    nextCursor: null,
  });
  const withOthers = (await api(c, '/api/v1/gc?pid=10')).body.items[0];
  t.match(withOthers, { pauses: 102, gcPauses: 100, gcCycles: 50, maxNs: 5e6, p99Ns: 5e6 });
  const range = (await api(c, `/api/v1/gc?pid=10&gc=true&since=${T0 + 500}&until=${T0 + 590}`)).body.items[0];
  t.match(range, { pauses: 10, gcCycles: 5, p50Ns: 55_000, maxNs: 60_000 }, 'only pauses that started in the range');
  const procs = (await api(c, '/api/v1/gc?limit=1')).body;
  t.equal(procs.items.length, 1);
  t.equal(procs.items[0].pid, 20, 'newest process first');
  const next = (await api(c, `/api/v1/gc?limit=1&cursor=${procs.nextCursor}`)).body;
  t.same([next.items.map((p: any) => p.pid), next.nextCursor], [[10], null]);
  t.same((await api(c, '/api/v1/gc?pid=999')).body, { items: [], nextCursor: null });

  // Raw pauses, newest first, every one once across pages.
  const seen: number[] = [];
  let cursor: string | null = null;
  do {
    const res: any = await api(c, `/api/v1/gc/pauses?pid=10&limit=40${cursor ? `&cursor=${cursor}` : ''}`);
    t.equal(res.status, 200);
    seen.push(...res.body.items.map((p: any) => p.startedAt));
    cursor = res.body.nextCursor;
  } while (cursor);
  t.equal(seen.length, 102);
  t.equal(new Set(seen).size, 102);
  const longest = (await api(c, '/api/v1/gc/pauses?minDurationNs=1000000')).body.items;
  t.same(longest, [
    { id: longest[0].id, node: 'node-a', pid: 10, reason: 'GOMAXPROCS', gc: false, startedAt: T0 + 2010, durationNs: 5e6, goid: 3, cycle: null },
    { id: longest[1].id, node: 'node-a', pid: 10, reason: 'ReadMemStats', gc: false, startedAt: T0 + 2000, durationNs: 5e6, goid: 3, cycle: null },
  ]);
  t.same((await api(c, '/api/v1/gc/pauses?gc=false&node=node-a')).body.items.length, 2);

  // Re-sent pauses (a new seq after a reconnect) are stored once.
  t.same(await a.send(2, [...gcs.slice(0, 10), pause(10, 5000, { durationNs: 1 })]), { type: 'ack', seq: 2 });
  t.equal((await api(c, '/api/v1/gc?pid=10')).body.items[0].pauses, 103);
  a.close();
});

t.test('fatal errors outlive their process, idempotent on re-send', async (t) => {
  const c = await testCollector(t, { retention: { maxAgeMs: 60_000, intervalMs: 3_600_000 } });
  const a = new TestAgent(c.url);
  await a.hello();
  const now = Date.now();
  const f = fatal(10, { at: now - 1000 });
  const p = fatal(20, { errorKind: 'panic', message: 'runtime error: index out of range [5] with length 3', text: 'panic: runtime error: index out of range [5] with length 3', goid: 1, at: now - 500 });
  t.same(await a.send(1, [proc(10, { seenAt: now - 2000, exitedAt: now - 900 }), proc(20, { pod: null, containerId: null, seenAt: now }), gor(10, 42, { observedAt: now - 120_000 }), f, p]), { type: 'ack', seq: 1 });
  // Re-sent in a new batch (the agent reconnected before the ack): still one row each.
  t.same(await a.send(2, [f, p]), { type: 'ack', seq: 2 });
  // A fatal error for a pid whose process record never came.
  t.same(await a.send(3, [fatal(30, { at: now })]), { type: 'ack', seq: 3 });

  const items = (await api(c, '/api/v1/fatal')).body.items;
  t.equal(items.length, 3);
  const f10 = items.find((x: any) => x.pid === 10);
  t.same(f10, {
    id: f10.id, node: 'node-a', pid: 10, processStartTime: 1010, exe: '/usr/bin/svc10', goVersion: 'go1.22.1', containerId: 'cid10',
    pod: { name: 'pod-10', namespace: 'default', uid: 'uid-10', container: 'app' }, errorKind: 'fatal error',
    message: 'concurrent map writes', text: 'fatal error: concurrent map writes', goid: 42, at: now - 1000,
    processExitedAt: now - 900, receivedAt: f10.receivedAt,
  });
  t.match(items.find((x: any) => x.pid === 20), { errorKind: 'panic', pod: null, goid: 1 });
  t.match(items.find((x: any) => x.pid === 30), { processStartTime: null, exe: null, pod: null }, 'process facts unknown');
  t.same((await api(c, '/api/v1/fatal?errorKind=panic')).body.items.map((x: any) => x.pid), [20]);
  t.same((await api(c, `/api/v1/fatal?since=${now - 600}`)).body.items.map((x: any) => x.pid).sort(), [20, 30]);
  t.same((await api(c, '/api/v1/fatal?pid=10&node=node-a')).body.items.map((x: any) => x.goid), [42]);

  // Retention removes the old goroutine, but the exited process stays while its fatal error does.
  t.ok(await c.runRetention() >= 1);
  t.same((await api(c, '/api/v1/goroutines')).body.items, []);
  t.match((await api(c, '/api/v1/fatal?pid=10')).body.items, [{ exe: '/usr/bin/svc10', pod: { name: 'pod-10' } }]);
  t.equal((c.db.prepare('SELECT count(*) AS n FROM fatal_errors').get() as { n: number }).n, 3);
  a.close();
});

t.test('bad records of each new kind get an error naming the field', async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  await a.hello();
  const cases: [unknown, RegExp][] = [
    [leak(10, 1, { suspect: 'shrinking' as any }), /records\/0\/suspect: must be one of \["growing-live","growing-creation-rate"\]/],
    [leak(10, 1, { count: -1 }), /records\/0\/count: must be >= 0/],
    [leak(10, 1, { createdBy: { function: 'f', file: 'x.go' } as any }), /records\/0\/createdBy: must have required property 'line'/],
    [{ ...leak(10, 1), observedAt: undefined }, /records\/0: must have required property 'observedAt'/],
    [pause(10, 0, { durationNs: 1.5 }), /records\/0\/durationNs: must be integer/],
    [pause(10, 0, { reason: '' }), /records\/0\/reason: must NOT have fewer than 1 characters/],
    [pause(10, 0, { gc: 'yes' as any }), /records\/0\/gc: must be boolean/],
    [{ ...pause(10, 0), stack: [] }, /records\/0: unknown field 'stack'/],
    [fatal(10, { errorKind: 'oops' as any }), /records\/0\/errorKind: must be one of \["fatal error","panic"\]/],
    [fatal(10, { message: 'm'.repeat(5000) }), /records\/0\/message: must NOT have more than 4096 characters/],
    [fatal(10, { at: -1 }), /records\/0\/at: must be >= 0/],
    [{ kind: 'gc', pid: 10 }, /records\/0: 'kind' must be one of "process", "goroutine", "connection", "window", "leak", "pause", "fatal"/],
  ];
  let seq = 1;
  for (const [record, message] of cases) {
    t.match(await a.send(seq, [record as any, proc(10)]), { type: 'error', seq, error: message }, message.source);
    seq++;
  }
  t.same((await api(c, '/api/v1/processes')).body.items, [], 'nothing stored from rejected batches');
  t.same(await a.send(seq, [proc(10), leak(10, 1), pause(10, 0), fatal(10)]), { type: 'ack', seq }, 'connection still usable');
  const m = (await api(c, '/metrics')).body as string;
  for (const kind of ['leak', 'pause', 'fatal']) t.match(m, new RegExp(`goroscope_collector_ingest_records_total\\{kind="${kind}"\\} 1`), `${kind} counted`);
  t.match(m, /goroscope_collector_ingest_batches_total\{result="rejected"\} 12/);
  a.close();
});

t.test('API: new routes documented, bad parameters are 400s', async (t) => {
  const c = await testCollector(t);
  const doc = (await api(c, '/api/v1/openapi.json', null)).body;
  for (const path of ['/api/v1/leaks', '/api/v1/gc', '/api/v1/gc/pauses', '/api/v1/fatal']) {
    t.ok(doc.paths[path]?.get?.responses?.['200'], `${path} documented`);
  }
  t.same(doc.paths['/api/v1/leaks'].get.parameters.map((p: any) => p.name).sort(), ['createdBy', 'limit', 'minCount', 'node', 'pid', 'since', 'suspect', 'until']);
  const cases: [string, RegExp][] = [
    ['/api/v1/leaks?minCount=-1', /minCount must be >= 0/],
    ['/api/v1/leaks?cursor=5', /unknown parameter 'cursor'/],
    ['/api/v1/leaks?suspect=x', /suspect must be one of/],
    ['/api/v1/gc?gc=maybe', /gc must be boolean/],
    ['/api/v1/gc?limit=0', /limit must be >= 1/],
    ['/api/v1/gc/pauses?minDurationNs=1.5', /minDurationNs must be integer/],
    ['/api/v1/gc/pauses?cursor=abc', /cursor must match pattern/],
    ['/api/v1/fatal?errorKind=oops', /errorKind must be one of/],
    ['/api/v1/fatal?since=x', /since must be number/],
  ];
  for (const [path, message] of cases) {
    const res = await api(c, path);
    t.equal(res.status, 400, path);
    t.match(res.body, { statusCode: 400, message }, path);
  }
  t.equal((await api(c, '/api/v1/fatal', null)).status, 401, 'token required');
});

t.test('live stream carries the new kinds and filters by kind', async (t) => {
  const c = await testCollector(t);
  const wsUrl = c.url.replace(/^http/, 'ws');
  const open = async (qs: string) => {
    const ws = new WebSocket(`${wsUrl}/api/v1/stream?${qs}`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
    const got: any[] = [];
    ws.on('message', (d) => got.push(...JSON.parse(d.toString())));
    await new Promise((r) => ws.once('open', r));
    t.teardown(() => ws.close());
    return got;
  };
  const fatalOnly = await open('kind=fatal');
  const runtime = await open('kind=leak,pause&pid=10');
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [proc(10), gor(10, 1), leak(10, 1), pause(10, 0), pause(20, 0), fatal(10)]);
  while (fatalOnly.length < 1 || runtime.length < 2) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 50));
  t.same(fatalOnly.map((e) => e.record.kind), ['fatal']);
  t.same(runtime.map((e) => [e.record.kind, e.record.pid]), [['leak', 10], ['pause', 10]]);
  a.close();
});
