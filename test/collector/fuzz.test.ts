// Seeded fuzzing of ingest messages and API requests: the collector must answer each
// with a clear 4xx / error message / policy close, never crash, never 5xx.
import t from 'tap';
import WebSocket from 'ws';
import { API_TOKEN, conn, fatal, gor, INGEST_TOKEN, leak, pause, proc, TestAgent, testCollector, win } from './helpers.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);
const WS_MESSAGES = 8_000;
const HTTP_REQUESTS = 6_000;

/** mulberry32: small, fast, reproducible. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)];
  return { next, int, pick };
}

t.test(`fuzz (seed ${SEED})`, async (t) => {
  const c = await testCollector(t, { maxMessageBytes: 1024 * 1024 });
  const r = prng(SEED);

  const badValues: unknown[] = [
    null, true, false, 0, -1, -0.5, 1.5, 1e300, -1e300, 2 ** 53, 2 ** 64, '', 'x', '1', 'null', '\u0000', '\ud800',
    'é'.repeat(300), 'y'.repeat(5000), [], [1, 2], {}, { a: 1 }, { kind: 'goroutine' }, [[[[[[[[]]]]]]]],
  ];
  const validRecord = () => r.pick([
    () => proc(1 + r.int(100)), () => gor(1 + r.int(100), r.int(1e6)), () => conn(1 + r.int(100), r.int(65536)), () => win(1 + r.int(100), r.int(1e6)),
    () => leak(1 + r.int(100), r.int(1000), r.int(2) ? {} : { suspect: 'growing-creation-rate', createdBy: null, count: r.next() * 100 }),
    () => pause(1 + r.int(100), r.int(1e6), { durationNs: r.int(1e8), cycle: r.int(2) ? r.int(1000) : null }),
    () => fatal(1 + r.int(100), { errorKind: r.pick(['fatal error', 'panic'] as const), goid: r.int(1000) }),
  ])();

  /** A batch with 1-3 mutations; most are invalid, a few may happen to stay valid. */
  function mutatedMessage(seq: number): string {
    const msg: any = { type: 'batch', agentId: 'agent-1', seq, records: Array.from({ length: 1 + r.int(3) }, validRecord) };
    const mutations = 1 + r.int(3);
    for (let i = 0; i < mutations; i++) {
      const target: any = r.next() < 0.7 && msg.records?.length ? r.pick(msg.records as any[]) : msg;
      if (typeof target !== 'object' || target === null) break;
      const keys = Object.keys(target);
      switch (r.int(9)) {
        case 0: target[r.pick(keys)] = r.pick(badValues); break;
        case 1: delete target[r.pick(keys)]; break;
        case 2: target[r.pick(['extra', '__proto__', 'constructor', 'kind2', ''])] = r.pick(badValues); break;
        case 3: if (target.pod !== undefined) target.pod = { name: r.pick(badValues) }; else target.blockedByReason = { [String(r.pick(badValues))]: r.pick(badValues) }; break;
        case 4: msg.records = r.pick(badValues); break;
        case 5: msg.type = r.pick(['hello', 'ack', 'BATCH', null, 7, 'batch ']); break;
        case 6: target.createdBy = r.pick([{ function: 'f', file: 'x.go', line: -1 }, { function: 'f' }, 'main.go:1', null]); break;
        case 7: target.kind = r.pick(['leak', 'pause', 'fatal', 'gc', 'Leak', null]); break;
        case 8: target[r.pick(['suspect', 'errorKind', 'durationNs', 'cycle', 'growthPerMinute', 'at', 'startedAt'])] = r.pick(badValues); break;
      }
    }
    let text = JSON.stringify(msg);
    const syntax = r.int(12);
    if (syntax === 0) text = text.slice(0, r.int(text.length)); // truncated
    else if (syntax === 1) text = Array.from({ length: 1 + r.int(200) }, () => String.fromCharCode(r.int(256))).join('');
    else if (syntax === 2) text = r.pick(['null', '[]', '1', '"batch"', '{', '}', '', ' ', '{"type":"batch"}', '[{"type":"batch"}]']);
    else if (syntax === 3) text = text.replace(/:/, '::');
    return text;
  }

  // --- Ingest -------------------------------------------------------------------------
  let agent: TestAgent | undefined;
  const counts = { error: 0, ack: 0, policyClose: 0, tooBig: 0, unauthorized: 0 };
  const nextReply = (a: TestAgent) => new Promise<'error' | 'ack' | 'closed'>((resolve) => {
    const onMsg = (d: WebSocket.RawData) => { cleanup(); resolve(JSON.parse(d.toString()).type); };
    const onClose = (code: number) => {
      cleanup();
      if (code === 1008) counts.policyClose++;
      else if (code === 1009) counts.tooBig++;
      else t.fail(`unexpected close code ${code}`);
      resolve('closed');
    };
    const cleanup = () => { a.ws.off('message', onMsg); a.ws.off('close', onClose); };
    a.ws.on('message', onMsg);
    a.ws.on('close', onClose);
  });

  for (let i = 0; i < WS_MESSAGES; i++) {
    if (!agent || agent.ws.readyState !== WebSocket.OPEN) {
      agent = new TestAgent(c.url);
      await agent.hello();
    }
    let text = mutatedMessage(i);
    if (r.int(500) === 0) text = JSON.stringify({ type: 'batch', agentId: 'agent-1', seq: i, records: [gor(1, 1, { startFunction: 'z'.repeat(1024 * 1024) })] });
    const reply = nextReply(agent);
    agent.ws.send(text);
    const got = await reply;
    if (got === 'error') counts.error++;
    else if (got === 'ack') counts.ack++;
  }
  agent?.close();

  // Garbage before hello, and bad tokens.
  for (let i = 0; i < 200; i++) {
    const a = new TestAgent(c.url);
    await a.opened;
    a.ws.send(mutatedMessage(i));
    const closed = await a.closed;
    if (closed.code === 1008) counts.policyClose++;
    else t.fail(`pre-hello garbage closed with ${closed.code}`);
  }
  for (let i = 0; i < 200; i++) {
    const token = r.pick([null, '', 'Bearer', 'x', INGEST_TOKEN.slice(0, -1), INGEST_TOKEN + 'x', API_TOKEN, INGEST_TOKEN.toUpperCase()]);
    const ws = new WebSocket(`${c.url.replace('http', 'ws')}/api/v1/ingest`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
    const status = await new Promise((resolve) => {
      ws.once('unexpected-response', (_q, res) => resolve(res.statusCode));
      ws.once('open', () => { ws.close(); resolve(101); });
      ws.once('error', () => resolve(-1));
    });
    if (status === 401) counts.unauthorized++;
    else t.fail(`bad ingest token got ${status}`);
  }
  t.equal(counts.error + counts.ack + counts.policyClose + counts.tooBig, WS_MESSAGES + 200, `every ingest message answered: ${JSON.stringify(counts)}`);
  t.ok(counts.error > WS_MESSAGES * 0.8, 'mostly rejected with an error message');

  // --- HTTP API -----------------------------------------------------------------------
  const paths = ['/api/v1/goroutines', '/api/v1/goroutines/summary', '/api/v1/connections', '/api/v1/processes', '/api/v1/windows', '/api/v1/nodes',
    '/api/v1/leaks', '/api/v1/gc', '/api/v1/gc/pauses', '/api/v1/fatal',
    '/api/v1/healthz', '/api/v1/nope', '/api/v1/goroutines/', '/api/v1//goroutines', '/metrics', '/api/v1/openapi.json', '/api/v1/ingest', '/api/v1/stream', '/%', '/api/v1/goroutines/%zz'];
  const keys = ['node', 'pid', 'state', 'waitReason', 'createdBy', 'minBlockedNs', 'since', 'until', 'limit', 'cursor', 'by', 'peer', 'errorsOnly', 'kind', 'minCount', 'suspect', 'gc', 'minDurationNs', 'errorKind', 'x', '', '__proto__', 'constructor', 'limit[]', 'pid[0]'];
  const values = ['', '0', '-1', '1', '100', '1001', '1e400', '9007199254740993', 'NaN', 'Infinity', 'true', 'false', 'waiting', 'nonsense', 'waitReason', 'createdBy',
    'main.go:12', 'growing-live', 'panic', 'fatal%20error', '%00', '%ff', '%', 'a'.repeat(5000), '[]', '{}', '1.5', '0x10', '10.0.0.2:5432', '[::1]:80', "'; DROP TABLE goroutines; --", '🙂'];
  const tokens = [...Array(12).fill(API_TOKEN), null, 'wrong', INGEST_TOKEN, `${API_TOKEN} extra`];
  let statuses: Record<number, number> = {};
  const one = async () => {
    const n = r.int(4);
    const qs = Array.from({ length: n }, () => `${r.pick(keys)}=${r.pick(values)}`).join('&');
    const url = `${c.url}${r.pick(paths)}${qs ? `?${qs}` : ''}`;
    const token = r.pick(tokens);
    const method = r.int(20) === 0 ? r.pick(['POST', 'PUT', 'DELETE', 'PATCH']) : 'GET';
    const res = await fetch(url, { method, headers: token === null ? {} : { authorization: `Bearer ${token}` } });
    const text = await res.text();
    statuses[res.status] = (statuses[res.status] ?? 0) + 1;
    if (res.status >= 500) t.fail(`${method} ${url.slice(0, 300)} -> ${res.status} ${text.slice(0, 300)}`);
    if (res.status >= 400) {
      let body: any;
      try { body = JSON.parse(text); } catch { /* checked below */ }
      if (!body || body.statusCode !== res.status || typeof body.message !== 'string' || !body.message) {
        t.fail(`${method} ${url.slice(0, 200)} -> ${res.status} without a clear JSON error: ${text.slice(0, 200)}`);
      }
    }
  };
  const workers = Array.from({ length: 8 }, async () => {
    for (let i = 0; i < HTTP_REQUESTS / 8; i++) await one();
  });
  await Promise.all(workers);
  t.pass(`HTTP statuses: ${JSON.stringify(statuses)}`);
  t.ok((statuses[400] ?? 0) > HTTP_REQUESTS * 0.3, 'many 400s');

  const ready = await fetch(`${c.url}/api/v1/readyz`);
  t.equal(ready.status, 200, 'collector still up and ready');
  const good = new TestAgent(c.url, INGEST_TOKEN, 'agent-2', 'node-b');
  await good.hello();
  t.same(await good.send(1, [proc(5), gor(5, 1)]), { type: 'ack', seq: 1 }, 'and still ingesting');
  good.close();
});
