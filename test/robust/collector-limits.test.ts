// Issue 16, the limits an operator expects of the collector: WebSocket connections in all and per client,
// bytes of unfinished messages held (40 connections each holding an almost-16-MiB partial frame added 606 MB),
// pending batches per connection, and a heartbeat for connections that went silent; each counted in /metrics.
import t from 'tap';
import { connect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { API_TOKEN, INGEST_TOKEN, pause, TestAgent, testCollector } from '../collector/helpers.ts';

type Collector = Awaited<ReturnType<typeof testCollector>>;

async function metric(c: Collector, name: string): Promise<number> {
  const text = await (await fetch(`${c.url}/metrics`, { headers: { authorization: `Bearer ${API_TOKEN}` } })).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : NaN;
}

/** A raw WebSocket client: the handshake by hand, so it can send what ws would not (half a frame, no pong). */
async function rawClient(c: Collector, path = '/api/v1/ingest'): Promise<Socket> {
  const { port } = new URL(c.url);
  const s = connect(Number(port), '127.0.0.1');
  await new Promise((r) => s.once('connect', r));
  s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nAuthorization: Bearer ${INGEST_TOKEN}\r\n\r\n`);
  const head = await new Promise<string>((r) => s.once('data', (d) => r(d.toString())));
  if (!head.startsWith('HTTP/1.1 101')) throw new Error(head.split('\r\n')[0]);
  return s;
}

/** The header of one masked text frame that announces `length` payload bytes. */
function frameHeader(length: number): Buffer {
  const h = Buffer.alloc(14);
  h[0] = 0x81;
  h[1] = 0x80 | 127;
  h.writeBigUInt64BE(BigInt(length), 2);
  randomBytes(4).copy(h, 10);
  return h;
}

const closed = (s: Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));

t.test('connections: in all and per client, refused with 503 and 429, counted', async (t) => {
  const status = (ws: WebSocket) => new Promise<number>((r) => {
    ws.once('open', () => r(101));
    ws.once('unexpected-response', (_q, res) => r(res.statusCode!));
  });
  for (const [limits, over, reason] of [
    [{ maxConnections: 3, maxConnectionsPerClient: 100 }, 503, 'connections'],
    [{ maxConnections: 100, maxConnectionsPerClient: 3 }, 429, 'client_connections'],
  ] as const) {
    const c = await testCollector(t, { limits });
    const dial = () => new WebSocket(`${c.url.replace('http', 'ws')}/api/v1/ingest`, { headers: { authorization: `Bearer ${INGEST_TOKEN}` } });
    const open = [dial(), dial(), dial()];
    t.same(await Promise.all(open.map(status)), [101, 101, 101], `${reason}: three open`);
    t.equal(await metric(c, 'goroscope_collector_websocket_connections{endpoint="ingest"}'), 3, 'shown');
    t.equal(await status(dial()), over, `${reason}: the fourth gets ${over}`);
    t.equal(await metric(c, `goroscope_collector_websocket_refused_total{endpoint="ingest",reason="${reason}"}`), 1, 'counted');
    for (const ws of open) ws.close();
    await new Promise((r) => setTimeout(r, 300));
    t.equal(await metric(c, 'goroscope_collector_websocket_connections{endpoint="ingest"}'), 0, 'given back when they close');
    const again = dial();
    t.equal(await status(again), 101, 'room again');
    again.close();
  }
});

t.test('unfinished messages: the connection that brings the total over the limit is closed, memory is given back', async (t) => {
  const LIMIT = 4 * 1024 * 1024;
  const c = await testCollector(t, { limits: { maxBufferedBytes: LIMIT } });
  const chunk = randomBytes(1024 * 1024);
  const socks: Socket[] = [];
  for (let i = 0; i < 3; i++) {
    const s = await rawClient(c);
    s.on('error', () => {});
    s.write(frameHeader(15 * 1024 * 1024)); // under the 16 MiB message limit, never finished
    for (let k = 0; k < 1.5 * 1024 * 1024 / chunk.length; k++) s.write(chunk.subarray(0, chunk.length / 2 * (k % 2 ? 1 : 2)));
    socks.push(s);
    await new Promise((r) => setTimeout(r, 300));
  }
  await new Promise((r) => setTimeout(r, 500));
  const buffered = await metric(c, 'goroscope_collector_ingest_buffered_bytes');
  t.ok(buffered <= LIMIT, `held ${buffered} bytes, at most the limit`);
  t.ok((await metric(c, 'goroscope_collector_ingest_closed_total{reason="buffered_bytes"}')) >= 1, 'a connection closed for it, counted');
  for (const s of socks) s.destroy();
  await Promise.all(socks.map(closed));
  await new Promise((r) => setTimeout(r, 200));
  t.equal(await metric(c, 'goroscope_collector_ingest_buffered_bytes'), 0, 'nothing held once they are gone');
  const a = new TestAgent(c.url);
  await a.hello();
  t.same(await a.send(1, [pause(1, 1)]), { type: 'ack', seq: 1 }, 'and agents still ship');
  a.close();
});

t.test('a connection that stops answering pings is closed', async (t) => {
  const c = await testCollector(t, { limits: { heartbeatMs: 200 } });
  const s = await rawClient(c); // never answers a ping
  s.on('error', () => {});
  const started = Date.now();
  await closed(s);
  t.ok(Date.now() - started < 2000, `closed after ${Date.now() - started} ms`);
  t.equal(await metric(c, 'goroscope_collector_ingest_closed_total{reason="heartbeat"}'), 1, 'counted');
  const a = new TestAgent(c.url); // ws answers pings: it stays
  await a.hello();
  await new Promise((r) => setTimeout(r, 800));
  t.same(await a.send(1, [pause(1, 1)]), { type: 'ack', seq: 1 }, 'a live agent stays connected');
  a.close();
});

t.test('one connection with many batches waiting pauses alone, and everything is acked', async (t) => {
  const c = await testCollector(t, { limits: { maxPendingPerConnection: 4 } });
  const a = new TestAgent(c.url);
  await a.hello();
  const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => a.send(i, [pause(1, i)])));
  t.ok(replies.every((m) => m.type === 'ack'), 'all 200 acked');
  t.ok((await metric(c, 'goroscope_collector_ingest_paused_total{reason="connection_pending"}')) > 0, 'its reading paused, counted');
  a.close();
});
