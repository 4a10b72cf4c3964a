// Issue 16, finding 7: one listen-address parser for the agent's --metrics-listen and the collector's --listen,
// with one-line errors for bad values and busy ports.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { ListenError, parseListenAddress } from '../../collector/src/net/listen-address.ts';
import { AgentMetrics } from '../../agent/src/metrics/agent-metrics.ts';
import type { GoroutineTracer } from '../../agent/src/tracer/goroutine-tracer.ts';
import { tempDir } from '../collector/helpers.ts';

const noTracer = { processes: () => [], records: 0, lost: () => ({}) } as unknown as GoroutineTracer;

t.test('what each form means', async (t) => {
  t.same(parseListenAddress('127.0.0.1:9464'), { host: '127.0.0.1', port: 9464 });
  t.same(parseListenAddress('[::1]:9467'), { host: '::1', port: 9467 });
  t.same(parseListenAddress('localhost:80'), { host: 'localhost', port: 80 });
  t.same(parseListenAddress('node-1.example.com:7070'), { host: 'node-1.example.com', port: 7070 });
  t.same(parseListenAddress(':9464'), { host: undefined, port: 9464 }, ':PORT is every interface');
  t.same(parseListenAddress('9464'), { host: undefined, port: 9464 }, 'a bare port is every interface, like :PORT');
  t.same(parseListenAddress('0'), { host: undefined, port: 0 });
  for (const bad of ['', 'localhost', '1.2.3.4', '::1:9464', '[::1]', '[::1]9464', '[1.2.3.4]:80', 'host:99999', 'host:-1', 'host:80x',
    'a b:1', 'http://x:1', '-bad-.com:1', '🙂:1', '9'.repeat(400)]) {
    t.throws(() => parseListenAddress(bad), ListenError, `'${bad.slice(0, 20)}' is refused`);
    try {
      parseListenAddress(bad);
    } catch (e) {
      t.notOk((e as Error).message.includes('\n'), 'in one line');
      t.ok((e as Error).message.length < 300, 'of a sane length');
    }
  }
});

t.test('the agent metrics listener binds what the address says', async (t) => {
  for (const [listen, reachable] of [['0', ['127.0.0.1', '[::1]']], [':0', ['127.0.0.1', '[::1]']], ['[::1]:0', ['[::1]']], ['127.0.0.1:0', ['127.0.0.1']]] as const) {
    const m = new AgentMetrics({ tracer: noTracer });
    const port = await m.listen(listen);
    for (const host of reachable) {
      const res = await fetch(`http://${host}:${port}/metrics`);
      t.equal(res.status, 200, `${listen}: /metrics answers on ${host}`);
    }
    m.close();
  }
  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  t.teardown(() => busy.close());
  const port = (busy.address() as { port: number }).port;
  const m = new AgentMetrics({ tracer: noTracer });
  await t.rejects(m.listen(`127.0.0.1:${port}`), { name: 'ListenError', message: `cannot listen on 127.0.0.1:${port}: the port is in use by another process` });
});

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  spawnSync(process.execPath, ['bin/goroscope.js', ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } });

t.test('bad values and busy ports are one line on stderr, no stack trace', async (t) => {
  for (const bad of ['9464x', '::1:9464']) {
    const r = cli(['agent', '--collector', 'ws://127.0.0.1:1', '--metrics-listen', bad]);
    t.equal(r.status, 1, `agent --metrics-listen ${bad} exits 1`);
    t.match(r.stderr, /invalid listen address/);
    t.notMatch(r.stderr, /\n\s+at /, 'no stack trace');
  }
  const bad = cli(['collector', '--listen', 'localhost', '--db', join(tempDir(t), 'c.db'), '--no-auth']);
  t.equal(bad.status, 1, 'collector --listen localhost exits 1');
  t.match(bad.stderr, /invalid listen address 'localhost': missing :PORT/);

  const busy = createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
  t.teardown(() => busy.close());
  const port = (busy.address() as { port: number }).port;
  const r = cli(['collector', '--listen', `127.0.0.1:${port}`, '--db', join(tempDir(t), 'c.db'), '--no-auth']);
  t.equal(r.status, 1, 'collector on a busy port exits 1');
  t.equal(r.stderr.trim().split('\n').filter((l) => !/^goroscope collector: warning/.test(l)).join('\n'),
    `goroscope: cannot listen on 127.0.0.1:${port}: the port is in use by another process`);
});
