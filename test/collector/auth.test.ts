// Tokens on ingest and API, and refusing to run open on a reachable address.
import t from 'tap';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { startCollector } from '../../collector/src/server.ts';
import { tokenMatches } from '../../collector/src/auth.ts';
import { API_TOKEN, INGEST_TOKEN, api, tempDir, TestAgent, testCollector } from './helpers.ts';

t.test('API routes need the API token', async (t) => {
  const c = await testCollector(t);
  for (const path of ['/api/v1/nodes', '/api/v1/goroutines', '/api/v1/goroutines/summary?by=waitReason', '/api/v1/connections', '/api/v1/processes', '/api/v1/windows', '/metrics']) {
    const none = await api(c, path, null);
    t.equal(none.status, 401, `${path} without token`);
    t.match(none.body, { statusCode: 401, error: 'Unauthorized', message: /API token/ });
    t.equal((await api(c, path, 'wrong')).status, 401, `${path} with a wrong token`);
    t.equal((await api(c, path, INGEST_TOKEN)).status, 401, `${path} with the ingest token`);
    t.equal((await api(c, path, API_TOKEN)).status, 200, `${path} with the API token`);
  }
  const raw = await fetch(`${c.url}/api/v1/nodes`, { headers: { authorization: `Basic ${API_TOKEN}` } });
  t.equal(raw.status, 401, 'only Bearer');
  for (const open of ['/api/v1/healthz', '/api/v1/readyz', '/api/v1/openapi.json', '/api/v1/docs/static/index.html']) {
    t.equal((await api(c, open, null)).status, 200, `${open} is open`);
  }
});

t.test('one auth check for HTTP routes and WebSocket upgrades: the same answer from both', async (t) => {
  const c = await testCollector(t);
  const { default: WebSocket } = await import('ws');
  /** A refused upgrade's status, WWW-Authenticate and JSON body, as the client reads them off the socket. */
  const refusedUpgrade = (path: string, token: string | null) => new Promise<{ status: number; challenge: unknown; body: unknown }>((resolve, reject) => {
    const ws = new WebSocket(`${c.url.replace('http', 'ws')}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    ws.once('open', () => reject(new Error(`${path} upgraded`)));
    ws.once('unexpected-response', (_q, res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, challenge: res.headers['www-authenticate'], body: JSON.parse(body) }));
    });
  });
  for (const [path, token, want] of [['/api/v1/stream', INGEST_TOKEN, /API token/], ['/api/v1/ingest', API_TOKEN, /ingest token/], ['/api/v1/stream', null, /API token/]] as const) {
    const up = await refusedUpgrade(path, token);
    const http = await fetch(`${c.url}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    t.match(up, { status: 401, challenge: 'Bearer', body: { statusCode: 401, error: 'Unauthorized', message: want } }, `${path} upgrade with ${token}`);
    t.same(up.body, await http.json(), `${path}: the upgrade is refused as the plain request is`);
  }
  // Past auth, each endpoint's own checks answer over the same path.
  t.match(await refusedUpgrade('/api/v1/stream?kind=nothing', API_TOKEN), { status: 400, body: { message: /querystring\/kind/ } });
  t.match(await refusedUpgrade('/api/v1/elsewhere', API_TOKEN), { status: 404, body: { message: /no route GET \/api\/v1\/elsewhere/ } });
});

t.test('ingest needs the ingest token', async (t) => {
  const c = await testCollector(t);
  for (const token of [null, 'wrong', API_TOKEN]) {
    const a = new TestAgent(c.url, token);
    const err = await a.opened.then(() => undefined, (e: { statusCode?: number }) => e);
    t.equal(err?.statusCode, 401, `token ${token}`);
  }
  const ok = new TestAgent(c.url, INGEST_TOKEN);
  await ok.opened;
  ok.close();
  // The stream needs the API token.
  const { default: WebSocket } = await import('ws');
  const ws = new WebSocket(`${c.url.replace('http', 'ws')}/api/v1/stream`, { headers: { authorization: `Bearer ${INGEST_TOKEN}` } });
  t.equal(await new Promise((r) => ws.once('unexpected-response', (_q, res) => r(res.statusCode))), 401);
});

t.test('token comparison', async (t) => {
  t.ok(tokenMatches('abc', 'Bearer abc'));
  t.ok(tokenMatches('abc', 'bearer  abc'));
  t.notOk(tokenMatches('abc', 'Bearer abcd'));
  t.notOk(tokenMatches('abc', 'Bearer ab'));
  t.notOk(tokenMatches('abc', 'abc'));
  t.notOk(tokenMatches('abc', undefined));
  t.notOk(tokenMatches('abc', 'Bearer '));
});

t.test('without tokens the collector only starts with noAuth on loopback', async (t) => {
  const db = join(tempDir(t), 'c.db');
  await t.rejects(startCollector({ listen: '127.0.0.1:0', db }), /refusing to start without authentication: set GOROSCOPE_INGEST_TOKEN and GOROSCOPE_API_TOKEN/);
  await t.rejects(startCollector({ listen: '0.0.0.0:0', db, noAuth: true }), /non-loopback address '0.0.0.0'/);
  await t.rejects(startCollector({ listen: '[::]:0', db, noAuth: true }), /non-loopback/);
  await t.rejects(startCollector({ listen: '0.0.0.0:0', db, noAuth: true, ingestToken: INGEST_TOKEN }), /set GOROSCOPE_API_TOKEN/);
  await t.rejects(startCollector({ listen: 'nonsense', db, noAuth: true }), /invalid listen address/);

  const open = await startCollector({ listen: '127.0.0.1:0', db, noAuth: true });
  t.teardown(() => open.close());
  t.equal((await api(open, '/api/v1/nodes', null)).status, 200, 'open on loopback');
  const a = new TestAgent(open.url, null);
  await a.hello();
  t.same(await a.send(1, []), { type: 'ack', seq: 1 });
  a.close();

  // A token that is set is enforced even with noAuth.
  const half = await startCollector({ listen: '127.0.0.1:0', db: join(tempDir(t), 'd.db'), noAuth: true, apiToken: API_TOKEN });
  t.teardown(() => half.close());
  t.equal((await api(half, '/api/v1/nodes', null)).status, 401);
});

t.test('the CLI refuses a non-loopback address without tokens, with a clear message', async (t) => {
  const env = { ...process.env };
  delete env.GOROSCOPE_INGEST_TOKEN;
  delete env.GOROSCOPE_API_TOKEN;
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'collector/src/cli-main.ts', '--listen', '0.0.0.0:0', '--db', join(tempDir(t), 'x.db'), '--no-auth'], { env, encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 1);
  t.match(r.stderr, /refusing to start without authentication on non-loopback address '0.0.0.0'/);
});
