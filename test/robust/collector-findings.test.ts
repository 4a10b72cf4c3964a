// Issue 16, findings 1 and 2: what one hostile message or a busy node did to the collector.
import t from 'tap';
import WebSocket from 'ws';
import { api, pause, proc, TestAgent, testCollector } from '../collector/helpers.ts';

t.test('finding 1: a refused hello with multibyte text closes the socket, not the collector', async (t) => {
  const c = await testCollector(t);
  // Each of these makes the refusal text longer than 123 bytes while staying under 120 characters.
  const hostile = [
    { type: 'ééé'.repeat(60) },
    { type: 'hello', protocol: 1, agentId: 'a', node: 'n', agentVersion: 'v', ['字段'.repeat(40)]: 1 },
    { type: 'hello', protocol: '🙂'.repeat(50), agentId: 'a', node: 'n', agentVersion: 'v' },
    { type: 'batch', agentId: 'ü'.repeat(100), seq: 1, records: [] },
  ];
  for (const msg of hostile) {
    const a = new TestAgent(c.url);
    await a.opened;
    a.ws.send(JSON.stringify(msg));
    const closed = await a.closed;
    t.equal(closed.code, 1008, `closed as a policy violation: ${closed.reason.slice(0, 40)}...`);
    t.ok(Buffer.byteLength(closed.reason) <= 123, `close reason fits a close frame (${Buffer.byteLength(closed.reason)} bytes)`);
    const error = a.messages.find((m) => m.type === 'error');
    t.ok(error && Buffer.byteLength(JSON.stringify(error)) < 2048, 'the error message is short');
  }
  t.equal((await api(c, '/api/v1/readyz')).status, 200, 'the collector is still up');
});

t.test('finding 1: a field name of 200 KB is not echoed back whole', async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  await a.hello();
  const reply = a.reply(1);
  a.ws.send(JSON.stringify({ type: 'batch', agentId: 'agent-1', seq: 1, records: [{ ...pause(1, 1), ['x'.repeat(200_000)]: 1 }] }));
  const m = await reply;
  t.equal(m.type, 'error');
  t.ok(JSON.stringify(m).length < 2048, `error reply is ${JSON.stringify(m).length} bytes`);
  a.close();
});

t.test('finding 2: node-wide queries stay 200 on a node with more processes than SQL variables', async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  await a.hello();
  const PROCESSES = 33_000; // SQLite allows 32,766 variables in one statement
  let seq = 0;
  for (let base = 1; base <= PROCESSES; base += 16_500) {
    const records = Array.from({ length: Math.min(16_500, PROCESSES - base + 1) }, (_, i) => proc(base + i, { pod: null }));
    t.same(await a.send(seq++, records), { type: 'ack', seq: seq - 1 });
  }
  t.same(await a.send(seq++, [pause(7, 1), pause(32_999, 2)]), { type: 'ack', seq: seq - 1 });
  for (const path of ['/api/v1/goroutines?node=node-a', '/api/v1/gc/pauses?node=node-a', '/api/v1/gc?node=node-a',
    '/api/v1/connections?node=node-a', '/api/v1/fatal?node=node-a', '/api/v1/windows?node=node-a', '/api/v1/leaks?node=node-a',
    '/api/v1/goroutines/summary?by=waitReason&node=node-a', '/api/v1/goroutines/summary?by=createdBy&node=node-a&state=waiting']) {
    const res = await api(c, path);
    t.equal(res.status, 200, `${path}: ${res.status} ${JSON.stringify(res.body).slice(0, 120)}`);
  }
  const pauses = await api(c, '/api/v1/gc/pauses?node=node-a&limit=1');
  t.same(pauses.body.items.map((p: any) => p.pid), [32_999], 'newest first');
  t.same((await api(c, `/api/v1/gc/pauses?node=node-a&limit=1&cursor=${pauses.body.nextCursor}`)).body.items.map((p: any) => p.pid), [7], 'and the next page');
  a.close();
});
