// Ingest over a real WebSocket into a real SQLite file, read back over real HTTP.
import t from 'tap';
import BetterSqlite3 from 'better-sqlite3';
import { api, conn, gor, proc, T0, TestAgent, testCollector, win } from './helpers.ts';
import type { CollectorMessage } from '../../collector/src/protocol/records.ts';

for (const protocol of [1, 2] as const) t.test(`every record kind round-trips through ingest and the API (protocol ${protocol}: ${protocol === 1 ? 'objects' : 'rows'})`, async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  a.protocol = protocol;
  await a.hello();
  const ack = await a.send(0, [
    proc(10), proc(20, { pod: null, containerId: null }),
    gor(10, 1, { parentGoid: null, state: 'running', waitReason: null, createdBy: null }),
    gor(10, 5), gor(10, 6, { state: 'syscall', waitReason: null, blockedNs: 5e9, blockedByReason: { select: 5e9 } }),
    gor(20, 5, { createdBy: { function: 'net/http.(*Server).Serve', file: '/go/src/net/http/server.go', line: 3285 } }),
    conn(10, 40000), conn(10, 40001, { error: 'connection refused', state: 'CLOSE', closedAt: T0 + 300 }),
    conn(20, 40002, { family: 'inet6', localAddress: '::1', peerAddress: '::1', peerPort: 8080, role: 'server' }),
    win(10, 0), win(10, 1000),
  ]);
  t.same(ack, { type: 'ack', seq: 0 });

  const nodes = await api(c, '/api/v1/nodes');
  t.equal(nodes.status, 200);
  t.match(nodes.body.items, [{ agentId: 'agent-1', node: 'node-a', agentVersion: 'test', connected: true }]);

  const procs = await api(c, '/api/v1/processes?node=node-a');
  t.equal(procs.body.items.length, 2);
  t.match(procs.body.items.find((p: any) => p.pid === 10), { startTime: 1010, exe: '/usr/bin/svc10', pod: { name: 'pod-10', namespace: 'default' } });
  t.equal(procs.body.items.find((p: any) => p.pid === 20).pod, null);

  const all = await api(c, '/api/v1/goroutines');
  t.equal(all.body.items.length, 4);
  const g5 = all.body.items.find((g: any) => g.pid === 10 && g.goid === 5);
  t.same(g5, {
    id: g5.id, node: 'node-a', pid: 10, processStartTime: 1010, goid: 5, parentGoid: 1, state: 'waiting', waitReason: 'chan receive',
    createdBy: { function: 'main.serve', file: '/src/main.go', line: 42 }, startFunction: 'main.worker', createdAt: T0 + 5,
    exitedAt: null, lastParkAt: T0 + 10, parkCount: 3, readyCount: 2, blockedNs: 1_000_000, blockedByReason: { 'chan receive': 1_000_000 },
    preexisting: false, system: false, observedAt: T0 + 15, firstSeenAt: T0 + 15,
  }, 'every field as sent');

  const q = async (qs: string) => (await api(c, `/api/v1/goroutines?${qs}`)).body.items.map((g: any) => `${g.pid}/${g.goid}`).sort();
  t.same(await q('pid=10'), ['10/1', '10/5', '10/6']);
  t.same(await q('state=syscall'), ['10/6']);
  t.same(await q('waitReason=chan%20receive'), ['10/5', '20/5']);
  t.same(await q('createdBy=main.serve'), ['10/5', '10/6']);
  t.same(await q('createdBy=/go/src/net/http/server.go:3285'), ['20/5']);
  t.same(await q('minBlockedNs=2000000000'), ['10/6']);
  t.same(await q('node=node-b'), []);
  t.same(await q(`until=${T0 + 4}`), ['10/1'], 'only goroutine 1 existed by then');

  const sum = await api(c, '/api/v1/goroutines/summary?by=waitReason&pid=10');
  t.same(sum.body.groups.map((g: any) => [g.waitReason, g.goroutines]), [[null, 2], ['chan receive', 1]], 'largest group first');
  const byCreator = await api(c, '/api/v1/goroutines/summary?by=createdBy');
  t.match(byCreator.body.groups[0], { createdBy: { function: 'main.serve', file: '/src/main.go', line: 42 }, goroutines: 2, blockedNs: 5_001_000_000 });

  const conns = await api(c, '/api/v1/connections?errorsOnly=true');
  t.match(conns.body.items, [{ localPort: 40001, error: 'connection refused', state: 'CLOSE' }]);
  t.equal((await api(c, '/api/v1/connections?peer=10.0.0.2:5432')).body.items.length, 2);
  t.equal((await api(c, '/api/v1/connections?peer=10.0.0.2:5433')).body.items.length, 0);
  t.match((await api(c, '/api/v1/connections?peer=::1')).body.items, [{ family: 'inet6', role: 'server' }]);
  t.match((await api(c, '/api/v1/connections?peer=%5B::1%5D:8080')).body.items, [{ peerPort: 8080 }]);

  const wins = await api(c, '/api/v1/windows?pid=10');
  t.equal(wins.body.items.length, 2);
  t.same(wins.body.items[1].probes, ['newproc', 'goexit']);
  a.close();
});

t.test('paging walks every goroutine once, newest first', async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(0, [proc(10), ...Array.from({ length: 250 }, (_, i) => gor(10, i + 1))]);
  const seen: number[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const res: any = await api(c, `/api/v1/goroutines?limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    t.equal(res.status, 200);
    seen.push(...res.body.items.map((g: any) => g.goid));
    cursor = res.body.nextCursor;
    pages++;
  } while (cursor);
  t.equal(pages, 3);
  t.same(seen, Array.from({ length: 250 }, (_, i) => 250 - i));

  // A node filter naming several processes: pages merged across processes, still newest first.
  await a.send(1, [proc(20), proc(30), ...Array.from({ length: 90 }, (_, i) => gor([10, 20, 30][i % 3], 1000 + i, { state: i % 2 ? 'waiting' : 'running' }))]);
  const ids: number[] = [];
  cursor = null;
  do {
    const res: any = await api(c, `/api/v1/goroutines?node=node-a&state=running&limit=7${cursor ? `&cursor=${cursor}` : ''}`);
    ids.push(...res.body.items.map((g: any) => g.id));
    t.ok(res.body.items.every((g: any) => g.state === 'running'));
    cursor = res.body.nextCursor;
  } while (cursor);
  t.equal(ids.length, 45, 'every running goroutine of the node once');
  t.same(ids, [...ids].sort((x, y) => y - x), 'newest first across processes');
  t.equal(new Set(ids).size, ids.length);
  a.close();
});

t.test('a re-sent batch is stored once and acked again', async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  await a.hello();
  t.same(await a.send(7, [proc(10), win(10, 0), gor(10, 1)]), { type: 'ack', seq: 7 });
  // Same seq, different content: the collector must not store it (the first copy is the batch).
  t.same(await a.send(7, [win(10, 5000), gor(10, 2)]), { type: 'ack', seq: 7 });
  a.close();
  // And again on a new connection, as after an agent reconnect.
  const b = new TestAgent(c.url);
  await b.hello();
  t.same(await b.send(7, [win(10, 9000)]), { type: 'ack', seq: 7 });
  b.close();
  const db = new BetterSqlite3(c.dbFile, { readonly: true });
  t.teardown(() => db.close());
  t.equal((db.prepare('SELECT count(*) n FROM windows').get() as any).n, 1);
  t.equal((db.prepare('SELECT count(*) n FROM goroutines').get() as any).n, 1);
  t.equal((db.prepare('SELECT count(*) n FROM ingested_batches').get() as any).n, 1);
  const metrics = (await api(c, '/metrics')).body as string;
  t.match(metrics, /goroscope_collector_ingest_batches_total\{result="duplicate"\} 2/);
});

t.test('a bad batch gets an error, stores nothing, and the connection stays usable', async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  await a.hello();
  const bad = gor(10, 2, { state: 'sleeping' as any });
  const err = await a.send(1, [proc(10), gor(10, 1), bad]);
  t.match(err, { type: 'error', seq: 1, error: /records\/2\/state: must be one of/ });
  const err2 = await a.send(2, [gor(10, 1, { goid: -1 })]);
  t.match(err2, { type: 'error', seq: 2, error: /records\/0\/goid: must be >= 0/ });
  const extra = await a.send(3, [{ ...win(10, 0), surprise: 1 } as any]);
  t.match(extra, { type: 'error', seq: 3, error: /unknown field 'surprise'/ });
  t.same(await a.send(4, [proc(10), gor(10, 3)]), { type: 'ack', seq: 4 });
  const gs = await api(c, '/api/v1/goroutines');
  // The same mistakes in rows (protocol 2) name the row and its field.
  const rows = new TestAgent(c.url, undefined, 'agent-2');
  rows.protocol = 2;
  await rows.hello();
  t.match(await rows.send(1, [proc(10), gor(10, 1), bad]), { type: 'error', seq: 1, error: /rows\/goroutine\/1\/3 \(goroutine 1: state\): must be one of/ });
  t.match(await rows.send(2, [gor(10, 1, { goid: -1 })]), { type: 'error', seq: 2, error: /rows\/goroutine\/0\/1 \(goroutine 0: goid\): must be >= 0/ });
  t.match(await rows.send(3, [gor(10, 1, { createdBy: { function: 'f', file: 7 as any, line: 1 } })]),
    { type: 'error', seq: 3, error: /rows\/goroutine\/0\/5\/1 \(goroutine 0: createdBy.file\): must be string/ });
  rows.ws.send(JSON.stringify({ type: 'batch', agentId: 'agent-2', seq: 4, rows: { goroutine: [[10, 1]] } }));
  t.match(await rows.reply(4), { type: 'error', seq: 4, error: /rows\/goroutine\/0 \(goroutine 0\): must NOT have fewer than 17 items/ });
  rows.ws.send(JSON.stringify({ type: 'batch', agentId: 'agent-2', seq: 5, rows: { thread: [] } }));
  t.match(await rows.reply(5), { type: 'error', seq: 5, error: /unknown field 'thread'/ });
  rows.close();
  t.same(gs.body.items.map((g: any) => g.goid), [3], 'only the good batch was stored');
  // A failed seq can be re-sent once fixed.
  t.same(await a.send(1, [proc(10), gor(10, 1)]), { type: 'ack', seq: 1 });
  a.close();
});

t.test('protocol violations close the connection with 1008', async (t) => {
  const c = await testCollector(t);
  const noHello = new TestAgent(c.url);
  await noHello.opened;
  noHello.ws.send(JSON.stringify({ type: 'batch', agentId: 'agent-1', seq: 1, records: [] }));
  t.match(await noHello.closed, { code: 1008, reason: /batch before hello/ });

  const badHello = new TestAgent(c.url);
  await badHello.opened;
  badHello.ws.send(JSON.stringify({ type: 'hello', protocol: 99, agentId: 'a', node: 'n', agentVersion: '1' }));
  t.match(await badHello.closed, { code: 1008, reason: /unsupported protocol version 99/ });
  t.match(badHello.messages, [{ type: 'error', seq: null, error: /unsupported protocol version 99; this collector speaks 1, 2/ }]);

  const impostor = new TestAgent(c.url);
  await impostor.hello();
  impostor.ws.send(JSON.stringify({ type: 'batch', agentId: 'someone-else', seq: 1, records: [] }));
  t.match(await impostor.closed, { code: 1008, reason: /differs from this connection's hello agentId/ });

  const twice = new TestAgent(c.url);
  await twice.hello();
  await twice.hello();
  t.match(await twice.closed, { code: 1008, reason: /hello sent twice/ });

  t.equal((await api(c, '/api/v1/healthz')).status, 200, 'collector still up');
});

t.test('messages over the size limit close the connection with 1009', async (t) => {
  const c = await testCollector(t, { maxMessageBytes: 64 * 1024 });
  const a = new TestAgent(c.url);
  await a.hello();
  a.ws.send(JSON.stringify({ type: 'batch', agentId: 'agent-1', seq: 1, records: Array.from({ length: 500 }, (_, i) => gor(1, i)) }));
  t.equal((await a.closed).code, 1009);
  t.equal((await api(c, '/api/v1/goroutines')).body.items.length, 0);
});

t.test('goroutines before their process, pid reuse, and stale updates', async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [gor(10, 1)]);
  let procs = (await api(c, '/api/v1/processes')).body.items;
  t.match(procs, [{ pid: 10, startTime: null }], 'a placeholder process');
  await a.send(2, [proc(10)]);
  procs = (await api(c, '/api/v1/processes')).body.items;
  t.match(procs, [{ pid: 10, startTime: 1010, exe: '/usr/bin/svc10' }], 'the placeholder became the process');
  t.match((await api(c, '/api/v1/goroutines')).body.items, [{ pid: 10, processStartTime: 1010, goid: 1 }]);

  // An older observation must not overwrite a newer one.
  await a.send(3, [gor(10, 1, { state: 'dead', exitedAt: T0 + 50, observedAt: T0 + 60 })]);
  await a.send(4, [gor(10, 1, { state: 'running', observedAt: T0 + 20 })]);
  t.match((await api(c, '/api/v1/goroutines')).body.items, [{ goid: 1, state: 'dead', exitedAt: T0 + 50 }]);

  // pid 10 is reused by a new process: new goroutine records go to it.
  await a.send(5, [proc(10, { startTime: 5000, exe: '/usr/bin/other' }), gor(10, 1, { state: 'running', observedAt: T0 + 100 })]);
  const gs = (await api(c, '/api/v1/goroutines?pid=10')).body.items;
  t.same(gs.map((g: any) => [g.processStartTime, g.goid, g.state]), [[5000, 1, 'running'], [1010, 1, 'dead']]);
  a.close();
});

t.test('live stream pushes committed records matching its filter', async (t) => {
  const { default: WebSocket } = await import('ws');
  const c = await testCollector(t);
  const wsUrl = c.url.replace(/^http/, 'ws');
  const sub = new WebSocket(`${wsUrl}/api/v1/stream?kind=goroutine,connection&pid=10`, { headers: { authorization: 'Bearer api-token-0123456789abcdef' } });
  const got: any[] = [];
  sub.on('message', (d) => got.push(...JSON.parse(d.toString())));
  await new Promise((r) => sub.once('open', r));

  const bad = new WebSocket(`${wsUrl}/api/v1/stream?kind=bogus`, { headers: { authorization: 'Bearer api-token-0123456789abcdef' } });
  const status = await new Promise((r) => bad.once('unexpected-response', (_q, res) => r(res.statusCode)));
  t.equal(status, 400);

  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [proc(10), gor(10, 1), gor(20, 1), win(10, 0), conn(10, 1)]);
  const rejected = await a.send(2, [gor(10, 99, { state: 'nope' as any })]);
  t.equal(rejected.type, 'error');
  await a.send(3, [gor(10, 2)]);
  while (got.length < 3) await new Promise((r) => setTimeout(r, 10));
  t.same(got.map((e) => [e.node, e.record.kind, e.record.pid, e.record.goid]), [
    ['node-a', 'goroutine', 10, 1], ['node-a', 'connection', 10, 7], ['node-a', 'goroutine', 10, 2],
  ]);
  sub.close();
  a.close();
});

t.test('retention deletes old records by age and by size', async (t) => {
  const c = await testCollector(t, { retention: { maxAgeMs: 60_000, intervalMs: 3_600_000 } });
  const a = new TestAgent(c.url);
  await a.hello();
  const now = Date.now();
  await a.send(1, [
    proc(10, { seenAt: now }), gor(10, 1, { observedAt: now - 120_000 }), gor(10, 2, { observedAt: now }),
    conn(10, 1, { observedAt: now - 120_000 }), win(10, now - T0 - 200_000),
  ]);
  t.ok(await c.runRetention() >= 3);
  t.same((await api(c, '/api/v1/goroutines')).body.items.map((g: any) => g.goid), [2]);
  t.same((await api(c, '/api/v1/connections')).body.items, []);
  t.same((await api(c, '/api/v1/windows')).body.items, []);
  // Ingest still works after retention (cached process ids stay valid).
  t.same(await a.send(2, [gor(10, 3, { observedAt: now })]), { type: 'ack', seq: 2 });
  a.close();

  const s = await testCollector(t, { retention: { maxBytes: 1_000_000, intervalMs: 3_600_000 } });
  const b = new TestAgent(s.url);
  await b.hello();
  for (let seq = 0; seq < 10; seq++) {
    await b.send(seq, [proc(10), ...Array.from({ length: 1000 }, (_, i) => gor(10, seq * 1000 + i, { observedAt: now + seq * 1000 + i }))]);
  }
  const { databaseSizeBytes } = await import('../../collector/src/store/db.ts');
  // 10,000 goroutines hold ~2 MB: over the bound, unless a pass a write starts on its own (below) already ran.
  const usedBefore = databaseSizeBytes(s.db).usedBytes;
  const deletedBefore = Number(/^goroscope_collector_retention_deleted_rows_total (\S+)$/m.exec((await api(s, '/metrics')).body)?.[1]);
  t.ok(usedBefore > 1_000_000 || deletedBefore > 0, `over the limit before (${usedBefore} bytes used, ${deletedBefore} rows deleted by passes writes started)`);
  await s.runRetention();
  t.ok(databaseSizeBytes(s.db).usedBytes <= 1_000_000, 'under the limit after');
  const left = (s.db.prepare('SELECT count(*) AS n FROM goroutines').get() as { n: number }).n;
  // An empty file holds ~430 kB (8 KiB pages), 1000 goroutines ~165 kB: ~3500 fit under the bound.
  t.ok(left > 1000 && left < 5000, `deleted only about what was over the limit (${left} left)`);
  const newest = (await api(s, '/api/v1/goroutines?limit=1')).body.items[0];
  t.equal(newest.goid, 9999, 'the newest records are kept');
  b.close();
});

t.test('a size pass starts as soon as a write leaves the file over its bound, not at the next interval', async (t) => {
  const maxBytes = 600_000;
  const c = await testCollector(t, { retention: { maxBytes, intervalMs: 3_600_000 } }); // the timer never fires here
  const a = new TestAgent(c.url);
  await a.hello();
  const { databaseSizeBytes } = await import('../../collector/src/store/db.ts');
  const now = Date.now();
  let burstBytes = 0;
  let most = 0;
  for (let seq = 0; seq < 24; seq++) {
    const before = databaseSizeBytes(c.db).usedBytes;
    const ack = await a.send(seq, [proc(10), ...Array.from({ length: 1000 }, (_, i) => gor(10, seq * 1000 + i + 1, { observedAt: now + seq * 1000 + i }))]);
    t.same(ack, { type: 'ack', seq }, `batch ${seq} acked`);
    burstBytes = Math.max(burstBytes, databaseSizeBytes(c.db).usedBytes - before);
    most = Math.max(most, databaseSizeBytes(c.db).usedBytes);
  }
  // A pass started by batch N runs before batch N+2's write at the latest (two write groups between its chunks).
  t.ok(most <= maxBytes + 3 * burstBytes, `at most ${most} bytes used, bound ${maxBytes} and three batches (${burstBytes} bytes each)`);
  t.ok(24 * burstBytes > 4 * maxBytes, `the ingest exceeded the bound several times over (${24 * burstBytes} bytes)`);
  const deleted = Number(/^goroscope_collector_retention_deleted_rows_total (\S+)$/m.exec((await api(c, '/metrics')).body)?.[1]);
  t.ok(deleted > 0, `retention deleted ${deleted} rows with no timer and no pass asked for`);
  a.close();
});

t.test('the database file stays bounded under sustained ingest with size retention', async (t) => {
  // A bound the ingest exceeds several times over, retention passes between bursts: the file on disk (database and WAL)
  // must hold at most the bound plus what one burst adds, and after each pass the used pages are under the bound.
  const maxBytes = 600_000;
  const c = await testCollector(t, { retention: { maxBytes, intervalMs: 3_600_000 } });
  const a = new TestAgent(c.url);
  await a.hello();
  const { databaseSizeBytes } = await import('../../collector/src/store/db.ts');
  const { statSync, existsSync } = await import('node:fs');
  const size = (f: string) => (existsSync(f) ? statSync(f).size : 0);
  const now = Date.now();
  let seq = 0;
  let burstBytes = 0;
  let deleted = 0;
  for (let pass = 0; pass < 8; pass++) {
    const before = databaseSizeBytes(c.db).usedBytes;
    for (let b = 0; b < 3; b++, seq++) {
      const ack = await a.send(seq, [proc(10), ...Array.from({ length: 1000 }, (_, i) => gor(10, seq * 1000 + i + 1, { observedAt: now + seq * 1000 + i }))]);
      t.same(ack, { type: 'ack', seq }, `batch ${seq} acked`);
    }
    burstBytes = Math.max(burstBytes, databaseSizeBytes(c.db).usedBytes - before);
    deleted += await c.runRetention();
    const used = databaseSizeBytes(c.db).usedBytes;
    t.ok(used <= maxBytes, `pass ${pass}: ${used} bytes used, bound ${maxBytes}`);
    const file = size(c.dbFile) + size(`${c.dbFile}-wal`);
    t.ok(file <= (maxBytes + burstBytes) * 1.25, `pass ${pass}: ${file} bytes on disk, bound and one burst ${maxBytes + burstBytes}`);
  }
  // What is left is the newest goroutines, each once, and the group counts agree with the rows.
  const rows = c.db.prepare('SELECT count(*) AS n, max(goid) AS top, count(DISTINCT goid) AS distinct_ FROM goroutines').get() as { n: number; top: number; distinct_: number };
  // Counted in rows, not in a burst's bytes: the passes a write starts on its own (below) land inside bursts at
  // whatever moment, so one burst's growth in used bytes ranged 254-500 kB from run to run.
  t.ok(seq * 1000 > 4 * rows.n, `the ingest exceeded the bound several times over (${seq * 1000} goroutines written, ${rows.n} fit the bound)`);
  t.equal(rows.top, seq * 1000, 'the newest goroutine is kept');
  t.equal(rows.distinct_, rows.n);
  // Passes also start on their own as soon as a write leaves the file over the bound: the collector's count holds both.
  const deletedInAll = Number(/^goroscope_collector_retention_deleted_rows_total (\S+)$/m.exec((await api(c, '/metrics')).body)?.[1]);
  t.ok(deletedInAll >= deleted, `passes asked for deleted ${deleted} rows, ${deletedInAll} in all`);
  t.equal(rows.n + deletedInAll, seq * 1000, 'every goroutine was stored once: kept, or deleted by retention');
  const groups = c.db.prepare('SELECT sum(goroutines) AS n FROM goroutine_wait_groups').get() as { n: number };
  t.equal(groups.n, rows.n, 'the wait reason groups count exactly the rows left');
  a.close();
});

t.test('size retention runs while ingest goes on', async (t) => {
  // The agent sends on a clock without waiting for acks, as a node's agents together do: retention passes must run
  // between the write groups (they once waited for an empty ingest queue, and under sustained ingest the file grew
  // until the agents paused).
  const maxBytes = 600_000;
  const c = await testCollector(t, { retention: { maxBytes, intervalMs: 100 } });
  const a = new TestAgent(c.url);
  await a.hello();
  const oldest = () => (c.db.prepare('SELECT min(goid) AS m FROM goroutines').get() as { m: number | null }).m ?? 1;
  const now = Date.now();
  const acks: Promise<CollectorMessage>[] = [];
  let oldestWhileSending = 1;
  for (const until = Date.now() + 3000; Date.now() < until;) {
    const seq = acks.length;
    acks.push(a.send(seq, [proc(10), ...Array.from({ length: 1000 }, (_, i) => gor(10, seq * 1000 + i + 1, { observedAt: now + seq * 1000 + i }))]));
    await new Promise((r) => setTimeout(r, 10));
    oldestWhileSending = Math.max(oldestWhileSending, oldest());
  }
  const sent = acks.length;
  t.ok(oldestWhileSending > 1, `retention deleted the oldest goroutines while batches were being sent (oldest left then: goid ${oldestWhileSending}, ${sent} batches sent)`);
  t.same((await Promise.all(acks)).map((m) => m.type), Array(sent).fill('ack'), 'every batch acked');
  // Passes until one finds nothing over the bound (a pass under way when asked is joined, not repeated).
  for (let i = 0; i < 20 && await c.runRetention() > 0; i++);
  const { databaseSizeBytes } = await import('../../collector/src/store/db.ts');
  t.ok(databaseSizeBytes(c.db).usedBytes <= maxBytes, 'under the bound once ingest stops');
  const rows = c.db.prepare('SELECT count(*) AS n, max(goid) AS top FROM goroutines').get() as { n: number; top: number };
  t.equal(rows.top, sent * 1000, 'the newest goroutine is kept');
  const deleted = Number(/^goroscope_collector_retention_deleted_rows_total (\S+)$/m.exec((await api(c, '/metrics')).body)?.[1]);
  t.equal(rows.n + deleted, sent * 1000, 'every goroutine stored once: kept, or deleted by retention');
  a.close();
});
