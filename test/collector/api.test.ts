// API contract: OpenAPI description, JSON errors for bad input, probes and metrics.
import t from 'tap';
import { api, gor, INGEST_TOKEN, proc, TestAgent, testCollector } from './helpers.ts';

t.test('OpenAPI describes every route with its parameters', async (t) => {
  const c = await testCollector(t);
  const doc = (await api(c, '/api/v1/openapi.json', null)).body;
  t.equal(doc.openapi.split('.')[0], '3');
  for (const path of ['/api/v1/nodes', '/api/v1/processes', '/api/v1/goroutines', '/api/v1/goroutines/summary', '/api/v1/connections', '/api/v1/windows', '/api/v1/healthz', '/api/v1/readyz']) {
    t.ok(doc.paths[path]?.get?.responses?.['200'], `${path} documented with a 200 response`);
  }
  const params = doc.paths['/api/v1/goroutines'].get.parameters.map((p: any) => p.name).sort();
  t.same(params, ['createdBy', 'cursor', 'limit', 'minBlockedNs', 'node', 'pid', 'since', 'state', 'until', 'waitReason']);
  t.same(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer' });
});

t.test('bad input gets a 400 that names the problem', async (t) => {
  const c = await testCollector(t);
  const cases: [string, RegExp][] = [
    ['/api/v1/goroutines?limit=0', /limit must be >= 1/],
    ['/api/v1/goroutines?limit=5000', /limit must be <= 1000/],
    ['/api/v1/goroutines?pid=abc', /pid must be integer/],
    ['/api/v1/goroutines?pid=1&pid=2', /pid must be integer/],
    ['/api/v1/goroutines?state=sleeping', /state must be one of/],
    ['/api/v1/goroutines?since=-5', /since must be >= 0/],
    ['/api/v1/goroutines?cursor=0', /cursor must match pattern/],
    ['/api/v1/goroutines?sort=id', /unknown parameter 'sort'/],
    ['/api/v1/goroutines/summary', /must have required property 'by'/],
    ['/api/v1/goroutines/summary?by=state', /by must be one of \["waitReason","createdBy"\]/],
    ['/api/v1/connections?errorsOnly=maybe', /errorsOnly must be boolean/],
    ['/api/v1/nodes?x=1', /unknown parameter 'x'/],
    ['/api/v1/goroutines?limit=Infinity', /querystring\/limit must be a finite number/],
    ['/api/v1/connections?since=1e400', /querystring\/since must be a finite number/],
    ['/api/v1/gc?until=-Infinity', /until must be >= 0|querystring\/until must be a finite number/],
  ];
  for (const [path, message] of cases) {
    const res = await api(c, path);
    t.equal(res.status, 400, path);
    t.match(res.body, { statusCode: 400, error: 'Bad Request', message }, path);
  }
  t.match(await api(c, '/api/v1/nowhere'), { status: 404, body: { statusCode: 404, message: /no route GET \/api\/v1\/nowhere/ } });
  // A WebSocket endpoint answers a plain GET with a hint, to the token it takes (the ingest token for /ingest).
  t.match(await api(c, '/api/v1/ingest', INGEST_TOKEN), { status: 426, body: { message: /WebSocket/ } });
  t.match(await api(c, '/api/v1/stream'), { status: 426, body: { message: /WebSocket/ } });
  t.equal((await api(c, '/api/v1/ingest')).status, 401, 'the ingest endpoint does not take the API token');
});

t.test('probes and metrics', async (t) => {
  const c = await testCollector(t);
  t.same((await api(c, '/api/v1/healthz', null)).body, { status: 'ok' });
  t.same((await api(c, '/api/v1/readyz', null)).body, { status: 'ok' });
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [proc(1), gor(1, 1), gor(1, 2)]);
  const m = (await api(c, '/metrics')).body as string;
  t.match(m, /goroscope_collector_ingest_records_total\{kind="goroutine"\} 2/);
  t.match(m, /goroscope_collector_ingest_batches_total\{result="stored"\} 1/);
  t.match(m, /goroscope_collector_connected_agents 1/);
  t.match(m, /goroscope_collector_ingest_queue_depth 0/);
  t.match(m, /goroscope_collector_database_size_bytes [1-9]\d+/);
  t.match(m, /goroscope_collector_export_errors_total 0/);
  a.close();
  await a.closed;
  await new Promise((r) => setTimeout(r, 50));
  t.match((await api(c, '/metrics')).body, /goroscope_collector_connected_agents 0/);
  t.match((await api(c, '/api/v1/nodes')).body, { items: [{ agentId: 'agent-1', connected: false }] });
});
