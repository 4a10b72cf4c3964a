// Seeded fuzzing of a collector process (the real command, on a real SQLite file): >= 10,000 ingest cases
// (before and after hello: mutated messages, multibyte text in every string and field name, huge and deep
// values, invalid UTF-8 in binary and text frames, frames cut short) and >= 10,000 API requests (every route,
// hostile paths, query strings, methods, bodies and raw HTTP). The collector must answer each with a clear
// error, a 4xx or a policy close: never exit, never a 5xx; and the valid records sent between the garbage
// must all be stored, their text exactly as sent.
// FUZZ_SEED, FUZZ_INGEST_CASES and FUZZ_API_CASES change the run (the figures say what ran).
import t from 'tap';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import WebSocket from 'ws';
import type { AgentRecord } from '../../collector/src/protocol/records.ts';
import { startCollectorProcess } from '../lib/collector-process.ts';
import { rowsOf } from '../../collector/src/protocol/rows.ts';
import { API_TOKEN, conn, fatal, gor, INGEST_TOKEN, leak, pause, proc, rowBatch, tempDir, win } from './helpers.ts';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed);
const INGEST_CASES = Number(process.env.FUZZ_INGEST_CASES ?? 10_000);
const API_CASES = Number(process.env.FUZZ_API_CASES ?? 10_000);
const MAX_MESSAGE = 256 * 1024; // the fuzzed collector's limit: huge messages stay cheap to send

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
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  return { next, int, pick, bytes };
}

/** A WebSocket client done by hand, to send what ws will not: invalid UTF-8 in a text frame, half a frame. */
async function rawSocket(url: string, path: string, token: string): Promise<Socket> {
  const { port } = new URL(url);
  const s = connect(Number(port), '127.0.0.1');
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nAuthorization: Bearer ${token}\r\n\r\n`);
  await new Promise((r) => s.once('data', r));
  return s;
}

/** One masked client frame (opcode 1 text, 2 binary) with the payload given; `cut` bytes of it are withheld. */
function frame(opcode: number, payload: Buffer, cut = 0): Buffer {
  const mask = randomBytes(4);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len])
    : len < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 255])
      : (() => { const h = Buffer.alloc(10); h[0] = 0x80 | opcode; h[1] = 0x80 | 127; h.writeBigUInt64BE(BigInt(len), 2); return h; })();
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, body.subarray(0, body.length - cut)]);
}

t.test(`fuzz a collector process (seed ${SEED}: ${INGEST_CASES} ingest cases, ${API_CASES} API requests)`, async (t) => {
  const dir = tempDir(t);
  const db = join(dir, 'fuzz.db');
  const c = await startCollectorProcess({ db, ingestToken: INGEST_TOKEN, apiToken: API_TOKEN, args: ['--max-message-bytes', String(MAX_MESSAGE)], t });
  let exited: string | undefined;
  void c.proc.closed.then(({ code, signal }) => { exited = `exit ${code} ${signal ?? ''}: ${c.proc.err.slice(-2000)}`; });
  const wsUrl = `${c.url.replace('http', 'ws')}/api/v1/ingest`;
  const r = prng(SEED);

  // --- Text: multibyte in every shape ------------------------------------------------------------------------
  const atoms = ['é', 'ü', 'ß', '字段', '中文', '🙂', '👩‍👩‍👧', 'e\u0301', '\u202eRTL', '\u200b', '\ufeff', 'Ω', 'ﬀ', '\u0000', '"', '\\', '\n', '\t', '\ud800', '\udfff', 'x'];
  const text = (max = 40) => Array.from({ length: r.int(max) + 1 }, () => r.pick(atoms)).join('');
  /** Text that UTF-8 can hold: no unpaired surrogate (the collector stores one as U+FFFD). */
  const wellFormed = (max = 40) => text(max).replace(/[\ud800-\udfff]/gu, 'ø');
  const bad: unknown[] = [null, true, 0, -1, 1.5, 1e300, -1e300, 2 ** 53, 2 ** 64, NaN, '', '1', '\u0000', 'é'.repeat(5000),
    [], [1, 'é'], {}, { 'ü': 1 }, { kind: 'goroutine' }];
  const deep = (depth: number, obj = r.int(2) === 0): unknown => {
    let v: unknown = text(3);
    for (let i = 0; i < depth; i++) v = obj ? { [text(2)]: v } : [v];
    return v;
  };
  const weirdValue = () => r.pick([
    () => r.pick(bad), () => text(200), () => text(8000), () => deep(1 + r.int(50)), () => deep(1000 + r.int(20_000)),
    () => Array.from({ length: r.int(3000) }, () => r.int(10)), () => Object.fromEntries(Array.from({ length: r.int(500) }, () => [text(8), text(8)])),
  ])();

  const anyRecord = (): AgentRecord => r.pick([
    () => proc(1 + r.int(100)), () => gor(1 + r.int(100), r.int(1e6)), () => conn(1 + r.int(100), r.int(65536)), () => win(1 + r.int(100), r.int(1e6)),
    () => leak(1 + r.int(100), r.int(1000)), () => pause(1 + r.int(100), r.int(1e6)), () => fatal(1 + r.int(100), { goid: r.int(1000) }),
  ])();
  /** Every string of a value (and some field names) turned multibyte; may stay valid or not. */
  const multibyte = (v: unknown, depth = 0): unknown => {
    if (typeof v === 'string') return r.int(3) ? text(Math.max(2, Math.min(60, v.length))) : v;
    if (depth > 20) return v; // a deep value stays as it is
    // Array.from: a row's prototype may have been replaced (its '__proto__' set by a mutation).
    if (Array.isArray(v)) return Array.from(v as ArrayLike<unknown>, (x) => multibyte(x, depth + 1));
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[r.int(20) ? k : text(6)] = multibyte(x, depth + 1);
      return out;
    }
    return v;
  };
  function mutated(msg: any): any {
    for (let i = 1 + r.int(3); i > 0; i--) {
      // A record (protocol 1), or a row (protocol 2: its fields by position).
      const pool: unknown[] = Array.isArray(msg.records) ? msg.records : msg.rows && typeof msg.rows === 'object' ? Object.values(msg.rows).flat() : [];
      const target: any = r.next() < 0.7 && pool.length ? r.pick(pool) : msg;
      if (typeof target !== 'object' || target === null) break;
      const keys = Object.keys(target);
      switch (r.int(7)) {
        case 0: target[r.pick(keys)] = weirdValue(); break;
        case 1: delete target[r.pick(keys)]; break;
        case 2: target[r.pick(['extra', '__proto__', 'constructor', '', text(4), text(300)])] = weirdValue(); break;
        case 3: Object.assign(target, multibyte(target)); break;
        case 4: target.kind = r.pick(['leak', 'pause', 'fatal', 'stack', 'profile', 'gc', 'Leak', null, text(5)]); break;
        case 5: msg.type = r.pick(['hello', 'ack', 'welcome', 'BATCH', null, 7, text(5)]); break;
        case 6: msg[r.pick(['agentId', 'seq', 'epoch', 'records', 'rows'])] = weirdValue(); break;
      }
    }
    return msg;
  }
  const serialize = (msg: unknown): string | Buffer => {
    let s: string;
    try {
      s = JSON.stringify(msg);
    } catch {
      s = '{"type":"batch"'; // too deep for JSON.stringify here: send a cut one instead
    }
    switch (r.int(14)) {
      case 0: return s.slice(0, r.int(s.length)); // cut short
      case 1: return r.bytes(1 + r.int(300)).toString('latin1');
      case 2: return r.pick(['null', '[]', '1', '"batch"', '{', '}', '', ' ', '{"type":"batch"}', '\u0000']);
      case 3: return Buffer.concat([Buffer.from(s.slice(0, 40)), Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xed, 0xa0, 0x80]), Buffer.from(s.slice(40))]); // invalid UTF-8, binary frame
      default: return s;
    }
  };

  // --- Ingest ----------------------------------------------------------------------------------------------
  const outcomes: Record<string, number> = {};
  const note = (k: string) => { outcomes[k] = (outcomes[k] ?? 0) + 1; };
  let agentN = 0;
  let ws: WebSocket | undefined;
  let seq = 0;
  /** Valid batches sent between the garbage, with multibyte text: each must be acked and stored. */
  const valid: { reason: string; startedAt: number; message: string; at: number }[] = [];
  const open = async (): Promise<WebSocket> => {
    const w = new WebSocket(wsUrl, { headers: { authorization: `Bearer ${INGEST_TOKEN}` } });
    await new Promise<void>((resolve, reject) => { w.once('open', () => resolve()); w.once('error', reject); });
    return w;
  };
  /** The next message from the collector, or the close: whichever comes first. */
  const answer = (w: WebSocket) => new Promise<string>((resolve) => {
    const onMsg = (d: WebSocket.RawData) => { done(); resolve(String(JSON.parse(String(d)).type)); };
    const onClose = (code: number) => { done(); resolve(`close ${code}`); };
    const done = () => { w.off('message', onMsg); w.off('close', onClose); };
    w.on('message', onMsg);
    w.on('close', onClose);
  });
  const hello = (id: string) => ({ type: 'hello', protocol: 1, agentId: id, node: `node-${text(3)}`, agentVersion: text(5) });
  const helloed = async (): Promise<WebSocket> => {
    const w = await open();
    const a = answer(w);
    w.send(JSON.stringify(hello(`fuzz-${++agentN}`)));
    const got = await a;
    if (got !== 'welcome') throw new Error(`a valid hello got ${got}`);
    return w;
  };

  for (let i = 0; i < INGEST_CASES && !exited; i++) {
    const kind = r.int(100);
    if (kind < 12) {
      // Before hello: a mutated hello, or garbage. A valid one is welcomed; anything else closes with 1008.
      const w = await open();
      const a = answer(w);
      const msg = r.int(2) ? mutated(hello(`pre-${i}`)) : mutated({ type: 'batch', agentId: 'x', seq: 1, records: [anyRecord()] });
      w.send(serialize(msg));
      let got = await a;
      // A refusal is an error message, then the close.
      if (got === 'error') got = `error, ${await new Promise<string>((res) => (w.readyState === WebSocket.CLOSED ? res('closed') : w.once('close', (code) => res(`close ${code}`))))}`;
      note(`pre-hello ${got}`);
      if (!['welcome', 'error, close 1008', 'close 1009'].includes(got)) t.fail(`pre-hello case ${i}: ${got}`);
      w.terminate();
      continue;
    }
    if (kind < 17) {
      // Raw frames: invalid UTF-8 in a text frame (RFC 6455: close 1007), or a frame cut short and abandoned.
      const s = await rawSocket(c.url, '/api/v1/ingest', INGEST_TOKEN);
      const after = r.int(2) === 0;
      if (after) s.write(frame(1, Buffer.from(JSON.stringify(hello(`raw-${i}`)))));
      const payload = Buffer.from(JSON.stringify({ type: 'batch', agentId: `raw-${i}`, seq: 1, records: [pause(1, i)] }));
      if (r.int(2)) {
        s.write(frame(1, Buffer.concat([payload.subarray(0, 20), Buffer.from([0xc3, 0x28, 0xff]), payload.subarray(20)])));
        const closed = await new Promise<boolean>((resolve) => { s.once('close', () => resolve(true)); setTimeout(() => resolve(false), 3000); });
        note(`raw invalid utf-8 ${closed ? 'closed' : 'open'}`);
        if (!closed) t.fail(`case ${i}: a text frame with invalid UTF-8 did not close the connection`);
      } else {
        s.write(frame(r.int(2) ? 1 : 2, payload, 1 + r.int(payload.length)));
        note('raw frame cut short');
      }
      s.destroy();
      continue;
    }
    // After hello, on a connection that stays open while the collector keeps it.
    if (!ws || ws.readyState !== WebSocket.OPEN) ws = await helloed();
    let out: string | Buffer;
    let expectAck = false;
    if (kind < 27) {
      // Valid, with multibyte text in every string it has.
      const reason = `GC ${wellFormed(20)}`.slice(0, 100);
      const message = wellFormed(300);
      const at = 1_700_000_000_000 + i;
      valid.push({ reason, startedAt: at, message, at });
      const records = [
        pause(4242, i, { reason }), fatal(4242, { message, text: `fatal error: ${message}`.slice(0, 4000), goid: i, at }),
        proc(4242, { exe: `/usr/bin/${text(10)}`, pod: { name: text(20), namespace: text(10), uid: text(10), container: text(5) } }),
      ];
      // As objects (protocol 1) or as rows (2): both are stored as sent.
      out = r.int(2) ? JSON.stringify({ type: 'batch', agentId: `fuzz-${agentN}`, seq: seq++, records }) : rowBatch(`fuzz-${agentN}`, seq++, records);
      expectAck = true;
    } else if (kind < 29) {
      out = `{"type":"batch","agentId":"fuzz-${agentN}","seq":${seq++},"records":[${'x'.repeat(MAX_MESSAGE)}]}`; // over the limit
    } else {
      const msg = r.int(2)
        ? mutated({ type: 'batch', agentId: `fuzz-${agentN}`, seq: seq++, records: Array.from({ length: 1 + r.int(3) }, () => multibyte(anyRecord())) })
        : mutated({ type: 'batch', agentId: `fuzz-${agentN}`, seq: seq++, rows: rowsOf(Array.from({ length: 1 + r.int(3) }, () => anyRecord())) });
      out = serialize(msg);
    }
    const a = answer(ws);
    ws.send(out);
    const got = await a;
    note(got.startsWith('close') ? got : `post-hello ${got}`);
    if (expectAck && got !== 'ack') t.fail(`case ${i}: a valid batch got ${got}`);
    if (!['ack', 'error', 'close 1008', 'close 1009', 'close 1007'].includes(got)) t.fail(`case ${i}: ${got}`);
  }
  ws?.close();
  t.notOk(exited, `the collector is running after ${INGEST_CASES} ingest cases (${exited ?? 'no exit'})`);
  t.equal(Object.values(outcomes).reduce((a, b) => a + b, 0), INGEST_CASES, 'every ingest case answered');
  t.comment(`ingest outcomes: ${JSON.stringify(outcomes)}`);

  // --- HTTP API --------------------------------------------------------------------------------------------
  const routes = ['/api/v1/goroutines', '/api/v1/goroutines/summary', '/api/v1/connections', '/api/v1/processes', '/api/v1/windows',
    '/api/v1/nodes', '/api/v1/leaks', '/api/v1/gc', '/api/v1/gc/pauses', '/api/v1/fatal', '/api/v1/profiles/goroutine',
    '/api/v1/profiles/block', '/api/v1/profiles/x', '/api/v1/healthz', '/api/v1/readyz', '/metrics', '/api/v1/openapi.json',
    '/api/v1/ingest', '/api/v1/stream', '/api/v1/docs', '/api/v1/nope', '/api/v1/goroutines/', '/api/v1//goroutines', '/'];
  const keys = ['node', 'pid', 'state', 'waitReason', 'createdBy', 'minBlockedNs', 'since', 'until', 'limit', 'cursor', 'by', 'peer',
    'errorsOnly', 'kind', 'minCount', 'suspect', 'gc', 'minDurationNs', 'errorKind', '__proto__', 'constructor', 'limit[]', 'pid[0]'];
  /** Percent-encoded UTF-8 (a lone surrogate goes as U+FFFD), or now and then the raw text. */
  const enc = (s: string) => (r.int(4) ? [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('') : s.replace(/[&#]/g, ''));
  const values = () => r.pick([
    () => r.pick(['', '0', '-1', '1', '100', '1001', '1e400', '9007199254740993', 'NaN', 'Infinity', 'true', 'waiting', 'waitReason',
      'main.go:12', 'growing-live', 'panic', '10.0.0.2:5432', '[::1]:80', "'; DROP TABLE goroutines; --"]),
    () => enc(text(30)), () => enc(text(r.int(8) ? 300 : 3000)), () => r.pick(['%', '%zz', '%C3%28', '%ED%A0%80', '%F0%90%80', '%00', '%ff%fe', '%25%32%35']),
  ])();
  const tokens = [...Array(14).fill(API_TOKEN), null, 'wrong', INGEST_TOKEN, `${API_TOKEN} extra`, API_TOKEN.toUpperCase()];
  const statuses: Record<number, number> = {};
  const fiveHundreds: string[] = [];
  const count = (s: number, what: string) => {
    statuses[s] = (statuses[s] ?? 0) + 1;
    if (s >= 500) fiveHundreds.push(`${s} ${what.slice(0, 200)}`);
  };
  const viaFetch = async () => {
    let path = r.int(10) ? r.pick(routes) : `/api/v1/${enc(text(20))}${r.pick(['', '/%', '/..', '/%2e%2e/%2e%2e', '//'])}`;
    if (r.int(30) === 0) path += `/${'a'.repeat(10_000)}`;
    const qs = Array.from({ length: r.int(5) }, () => `${r.int(8) ? r.pick(keys) : enc(text(6))}=${values()}`).join('&');
    const method = r.int(12) === 0 ? r.pick(['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']) : 'GET';
    const token = r.pick(tokens);
    const headers: Record<string, string> = token === null ? {} : { authorization: `Bearer ${token}` };
    let body: string | undefined;
    if (method !== 'GET' && method !== 'HEAD' && r.int(2)) {
      headers['content-type'] = r.pick(['application/json', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'é/ü']
        .map((v) => v.replace(/[^\x20-\x7e]/g, '?')));
      body = r.pick([() => JSON.stringify(deep(200)), () => text(2000), () => '{', () => 'x'.repeat(100_000)])();
    }
    const url = `${c.url}${path}${qs ? `?${qs}` : ''}`;
    let res: Response;
    try {
      res = await fetch(url, { method, headers, body });
    } catch (e) {
      return count(-1, `${method} ${url}: ${(e as Error).message}`); // the client refused to send it
    }
    const textBody = await res.text();
    count(res.status, `${method} ${url} -> ${textBody}`);
    if (res.status >= 400 && method !== 'HEAD') {
      let parsed: any;
      try { parsed = JSON.parse(textBody); } catch { /* checked next */ }
      if (!parsed || parsed.statusCode !== res.status || typeof parsed.message !== 'string' || !parsed.message) {
        t.fail(`${method} ${url.slice(0, 200)} -> ${res.status} without a clear JSON error: ${textBody.slice(0, 200)}`);
      }
    }
  };
  /** HTTP that fetch would never send: invalid bytes, broken request lines, huge headers, requests cut short. */
  const viaSocket = async () => {
    const { port } = new URL(c.url);
    const s = connect(Number(port), '127.0.0.1');
    s.on('error', () => {});
    await new Promise((res) => s.once('connect', res));
    const lines = r.pick([
      () => Buffer.concat([Buffer.from('GET /api/v1/goroutines?node='), r.bytes(50), Buffer.from(' HTTP/1.1\r\nHost: x\r\n\r\n')]),
      () => Buffer.from(`GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${text(10)}\r\n\r\n`),
      () => Buffer.from(`GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`),
      () => Buffer.from(`${text(5)} / HTTP/1.1\r\n\r\n`),
      () => Buffer.from('GET /api/v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc'),
      () => Buffer.from(`GET /api/v1/stream?kind=${enc(text(5))} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nAuthorization: Bearer ${API_TOKEN}\r\n\r\n`),
      () => r.bytes(1 + r.int(500)),
    ])();
    s.write(lines);
    const head = await new Promise<string>((res) => {
      let got = '';
      s.on('data', (d) => { got += d.toString('latin1'); if (got.includes('\r\n')) res(got); });
      s.once('close', () => res(got));
      setTimeout(() => res(got), 500);
    });
    s.destroy();
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
    count(status, `raw ${lines.subarray(0, 80).toString('latin1')} -> ${head.slice(0, 100)}`);
  };
  let n = 0;
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (n < API_CASES && !exited) {
      n++;
      await (r.int(20) === 0 ? viaSocket() : viaFetch());
    }
  }));
  t.comment(`HTTP statuses (0: no answer to a request cut short or unparseable, -1: the client refused it): ${JSON.stringify(statuses)}`);
  t.equal(Object.values(statuses).reduce((a, b) => a + b, 0), API_CASES, 'every API request made');
  t.same(fiveHundreds.slice(0, 10), [], `0 of ${API_CASES} API requests got a 5xx`);
  t.notOk(exited, `the collector is running after ${API_CASES} API requests (${exited ?? 'no exit'})`);

  // --- What was valid is all there, exactly --------------------------------------------------------------------
  const ready = await fetch(`${c.url}/api/v1/readyz`);
  t.equal(ready.status, 200, 'ready');
  const last = await helloed();
  const a = answer(last);
  last.send(JSON.stringify({ type: 'batch', agentId: `fuzz-${agentN}`, seq: 0, records: [pause(4243, 1, { reason: 'after ü 🙂' }), pause(4243, 2, { reason: 'lone \ud800' })] }));
  t.equal(await a, 'ack', 'a valid batch after all the garbage is acked');
  last.close();
  const check = new BetterSqlite3(db, { readonly: true });
  t.teardown(() => check.close());
  const stored = check.prepare(`SELECT x.reason, x.started_at AS startedAt FROM pauses x JOIN processes p ON p.id = x.process_id
    WHERE p.pid = 4242 ORDER BY x.started_at`).all() as { reason: string; startedAt: number }[];
  t.equal(stored.length, valid.length, `all ${valid.length} valid batches sent between the garbage are stored`);
  const want = new Map(valid.map((v) => [v.startedAt - 1_700_000_000_000, v.reason]));
  const mismatched = stored.filter((s) => want.get(s.startedAt - 1_700_000_000_000) !== s.reason);
  t.equal(mismatched.length, 0, 'their multibyte text exactly as sent');
  const fatals = check.prepare('SELECT count(*) AS n FROM fatal_errors f JOIN processes p ON p.id = f.process_id WHERE p.pid = 4242').get() as { n: number };
  t.equal(fatals.n, valid.length, 'and their fatal records');
  const api = await (await fetch(`${c.url}/api/v1/gc/pauses?pid=4243`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).json() as any;
  t.same(api.items.map((p: any) => p.reason), ['lone \ufffd', 'after ü 🙂'], 'the API answers it as sent (an unpaired surrogate as U+FFFD)');
  t.notOk(exited, 'the collector never exited');
});
