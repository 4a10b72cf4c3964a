// Server requests: ingest -> SQLite -> the API's request list and RED summary, over real WebSocket and HTTP.
import t from 'tap';
import WebSocket from 'ws';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { TraceModel } from '../../collector/src/otel/trace-model.ts';
import type { RequestRecord } from '../../collector/src/protocol/records.ts';
import { weightedQuantile } from '../../collector/src/store/request-reader.ts';
import { api, API_TOKEN, proc, T0, TestAgent, testCollector } from './helpers.ts';

function request(pid: number, goid: number, at: number, o: Partial<RequestRecord> = {}): RequestRecord {
  return {
    kind: 'request', pid, goid, protocol: 'http/1.1', method: 'GET', route: 'GET /items/{id}', path: `/items/${goid}`, status: 200,
    startedAt: T0 + at, durationNs: 1_000_000, requestBytes: 0, responseBytes: 2, parkedNs: 0, parkedByReason: {}, parks: [],
    traceParent: null, weight: 1, ...o,
  };
}

t.test('weighted nearest rank', async (t) => {
  t.equal(weightedQuantile([1, 2, 3, 4], [1, 1, 1, 1], 4, 0.5), 2);
  t.equal(weightedQuantile([1, 2, 3, 4], [1, 1, 1, 1], 4, 0.99), 4);
  t.equal(weightedQuantile([1, 100], [9, 1], 10, 0.9), 1, 'a record standing for 9 requests fills 9 ranks');
  t.equal(weightedQuantile([1, 100], [9, 1], 10, 0.91), 100);
  t.equal(weightedQuantile([], [], 0, 0.5), 0);
});

t.test("a request's span carries its goroutine's time split", async (t) => {
  const rec = request(10, 5, 0, { durationNs: 10e6, parkedNs: 4e6, sched: { runningNs: 5e6, runnableNs: 1e6, syscallNs: 2e6, runs: 2, preemptions: 1 } });
  const [span] = new TraceModel().spans(rec, { node: 'n', pid: 10, startTime: 1 }, resourceFromAttributes({ 'service.name': 'svc' }));
  t.match(span.attributes, {
    'goroscope.request.parked_ns': 4e6, 'goroscope.request.running_ns': 5e6, 'goroscope.request.runnable_ns': 1e6,
    'goroscope.request.syscall_ns': 2e6, 'goroscope.request.runs': 2, 'goroscope.request.preemptions': 1,
  });
  const [plain] = new TraceModel().spans(request(10, 6, 0), { node: 'n', pid: 10, startTime: 1 }, resourceFromAttributes({ 'service.name': 'svc' }));
  t.equal(plain.attributes['goroscope.request.running_ns'], undefined, 'no split sent: none on the span');
});

t.test('requests: list with filters, RED per route, bad queries', async (t) => {
  const c = await testCollector(t);
  // A live stream of pid 20's requests, subscribed before they arrive.
  const sub = new WebSocket(`${c.url.replace(/^http/, 'ws')}/api/v1/stream?kind=request,sched&pid=20`, { headers: { authorization: `Bearer ${API_TOKEN}` } });
  t.teardown(() => sub.close());
  const streamed: any[] = [];
  sub.on('message', (d) => streamed.push(...JSON.parse(d.toString())));
  await new Promise((r) => sub.once('open', r));
  const a = new TestAgent(c.url);
  await a.hello();
  // pid 10: 100 GET /items/{id} of 1..100 ms (every tenth a 500), 10 POST /orders of 50 ms, each standing for 3
  // requests, parked 40 ms on "sync.Mutex.Lock"; a gRPC call failing UNAVAILABLE and one NOT_FOUND (a client error).
  // pid 20: one unmatched request.
  const items = Array.from({ length: 100 }, (_, i) => request(10, 100 + i, i * 100, { durationNs: (i + 1) * 1e6, status: i % 10 === 9 ? 500 : 200 }));
  const orders = Array.from({ length: 10 }, (_, i) => request(10, 300 + i, 50 + i * 1000, {
    method: 'POST', route: 'POST /orders', path: '/orders', status: 201, durationNs: 50e6, weight: 3, requestBytes: 17,
    parkedNs: 40e6, parkedByReason: { 'sync.Mutex.Lock': 40e6 },
    parks: [{ waitReason: 'sync.Mutex.Lock', from: T0 + 51 + i * 1000, durationNs: 40e6, resumedUnseen: false, wakerGoid: 7 }],
    traceParent: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' },
    sched: { runningNs: 6e6, runnableNs: 4e6, syscallNs: 1e6, runs: 3, preemptions: 1 },
  }));
  const grpc = [
    request(10, 400, 9_000, { protocol: 'grpc', method: 'POST', route: '/svc.Api/Get', path: '/svc.Api/Get', status: 14, requestBytes: null, responseBytes: null, parkedNs: null }),
    request(10, 401, 9_100, { protocol: 'grpc', method: 'POST', route: '/svc.Api/Get', path: '/svc.Api/Get', status: 5, requestBytes: null, responseBytes: null, parkedNs: null }),
  ];
  t.same(await a.send(1, [proc(10), proc(20), ...items, ...orders, ...grpc, request(20, 5, 0, { route: '', path: '/nope', status: 404 })]), { type: 'ack', seq: 1 });
  // A re-sent record (same goroutine and start) is stored once.
  t.same(await a.send(2, [items[0]]), { type: 'ack', seq: 2 });

  for (let i = 0; i < 200 && streamed.length < 1; i++) await new Promise((r) => setTimeout(r, 10));
  t.same(streamed.map((e) => [e.node, e.record.kind, e.record.path, e.record.status]), [['node-a', 'request', '/nope', 404]], 'the live stream: pid 20\'s request');

  const list = async (qs: string) => {
    const r = await api(c, `/api/v1/requests?${qs}`);
    t.equal(r.status, 200, `GET /requests?${qs}`);
    return r.body;
  };
  const all = await list('limit=1000');
  t.equal(all.items.length, 113, 'every request stored once');
  const order = all.items.find((r: any) => r.route === 'POST /orders');
  t.same(order, {
    id: order.id, node: 'node-a', pid: 10, goid: order.goid, protocol: 'http/1.1', method: 'POST', route: 'POST /orders', path: '/orders',
    status: 201, startedAt: order.startedAt, durationNs: 50e6, requestBytes: 17, responseBytes: 2, parkedNs: 40e6,
    parkedByReason: { 'sync.Mutex.Lock': 40e6 },
    parks: [{ waitReason: 'sync.Mutex.Lock', from: order.startedAt + 1, durationNs: 40e6, resumedUnseen: false, wakerGoid: 7 }],
    traceParent: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7' }, weight: 3,
    sched: { runningNs: 6e6, runnableNs: 4e6, syscallNs: 1e6, runs: 3, preemptions: 1 },
  }, 'a request with every field as sent');
  t.equal(all.items.find((r: any) => r.route === 'GET /items/{id}').sched, null, 'no scheduler figures sent: null');

  const count = async (qs: string) => (await list(`${qs}&limit=1000`)).items.length;
  t.equal(await count('pid=20'), 1);
  t.equal(await count('route='), 1, 'route= names the unmatched requests');
  t.equal(await count(`route=${encodeURIComponent('GET /items/{id}')}`), 100);
  t.equal(await count('method=POST&protocol=http/1.1'), 10);
  t.equal(await count('status=500'), 10);
  t.equal(await count('errors=true'), 11, 'server errors: ten 500s and the UNAVAILABLE call, not NOT_FOUND');
  t.equal(await count('errors=false&pid=10'), 101);
  t.equal(await count('minDurationNs=95000000'), 6);
  t.equal(await count('goid=150'), 1);
  t.equal(await count(`since=${T0 + 9_000}&until=${T0 + 9_100}`), 5, 'started in [since, until]: two of each kind at the edges, one order');
  const p1 = await list('pid=10&limit=50');
  const p2 = await list(`pid=10&limit=50&cursor=${p1.nextCursor}`);
  const p3 = await list(`pid=10&limit=50&cursor=${p2.nextCursor}`);
  t.equal(p3.nextCursor, null);
  t.equal(new Set([...p1.items, ...p2.items, ...p3.items].map((r: any) => r.id)).size, 112, 'pages cover every request once');

  const sum = await api(c, `/api/v1/requests/summary?pid=10&since=${T0}&until=${T0 + 10_000}`);
  t.equal(sum.status, 200);
  t.same([sum.body.from, sum.body.to], [T0, T0 + 10_000]);
  const byRoute = Object.fromEntries(sum.body.items.map((g: any) => [g.route, g]));
  t.same(sum.body.items.map((g: any) => g.route), ['GET /items/{id}', 'POST /orders', '/svc.Api/Get'], 'busiest first');
  t.match(byRoute['GET /items/{id}'], {
    node: 'node-a', pid: 10, processStartTime: 1010, protocols: ['http/1.1'], requests: 100, records: 100, errors: 10, errorRatio: 0.1,
    ratePerSecond: 10, meanNs: 50.5e6, p50Ns: 50e6, p90Ns: 90e6, p99Ns: 99e6, maxNs: 100e6, parkedMeanNs: 0, runningMeanNs: null, runnableMeanNs: null,
  });
  t.match(byRoute['POST /orders'], { requests: 30, records: 10, errors: 0, ratePerSecond: 3, p50Ns: 50e6, parkedMeanNs: 40e6, runningMeanNs: 6e6, runnableMeanNs: 4e6 }, 'weights count');
  t.match(byRoute['/svc.Api/Get'], { protocols: ['grpc'], requests: 2, errors: 1, errorRatio: 0.5, parkedMeanNs: null });
  const unmatched = (await api(c, '/api/v1/requests/summary?pid=20')).body;
  t.same(unmatched.items.map((g: any) => [g.route, g.requests, g.errors]), [['', 1, 0]], 'a 404 is no server error');
  t.same((await api(c, '/api/v1/requests/summary?pid=99')).body, { from: null, to: null, items: [] }, 'nothing in range');

  for (const [qs, why] of [
    ['status=abc', /status/], ['protocol=http/3', /protocol must be one of/], ['limit=0', /limit/], ['minDurationNs=-1', /minDurationNs/],
    ['bogus=1', /unknown parameter 'bogus'/], ['cursor=x', /cursor/], ['since=Infinity', /since/], ['errors=maybe', /errors/],
  ] as const) {
    const r = await api(c, `/api/v1/requests?${qs}`);
    t.equal(r.status, 400, `${qs}: 400`);
    t.match(r.body.message, why, `${qs}: ${r.body.message}`);
  }
  t.equal((await api(c, '/api/v1/requests/summary?limit=5000')).status, 400, 'summary: limit bounded');
  t.equal((await api(c, '/api/v1/requests', null)).status, 401, 'a token is needed');
  a.close();
});
