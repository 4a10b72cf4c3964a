// The perf-buffer transport, for kernels without BPF ring buffers (< 5.8), forced here on a kernel that has
// them: the same programs, with use_perf_events set and the events maps retyped to perf event arrays. The
// goroutine lifecycle and stress tests run a cell on it too; this file covers TCP, and choosing a transport.
import t from 'tap';
import { resolveTransport } from '../../agent/src/bpf/events-source.ts';
import { TcpTracer } from '../../agent/src/tcp/tcp-tracer.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { startChild, type Child } from '../lib/child.ts';
import { buildTcpnet, sleep, splitHostPort } from '../tcp/lib.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

const noBpf = await bpfUnavailable();

t.test('choosing a transport', { skip: noBpf ?? false }, async (t) => {
  t.equal(resolveTransport('perf'), 'perf', 'perf can always be asked for');
  t.equal(resolveTransport('auto'), 'ringbuf', 'auto takes the ring buffer on this kernel (5.8+)');
  t.throws(() => resolveTransport('carrier-pigeon' as 'perf'), /unknown event transport "carrier-pigeon"/, 'a typo is a clear error');
});

t.test('TCP over perf buffers: pids, goroutines and exact bytes, in order', { skip: noBpf ?? false }, async (t) => {
  const tr = new TcpTracer({ transport: 'perf', seed: false });
  t.teardown(() => tr.close());
  t.equal(tr.transport, 'perf');
  tr.start();
  const tcpnet = buildTcpnet();
  const N = 4;
  const SEND = 23_456;
  const RECV = 6_543;
  const server = startChild(tcpnet, ['server', '-listen', '127.0.0.1:0', '-recv', String(SEND), '-send', String(RECV)]);
  t.teardown(() => server.kill());
  const listen = await server.until(/^LISTEN pid=\d+ goid=\d+ addr=(\S+)$/m);
  const serverPort = splitHostPort(listen[1]).port;
  tr.attach(openTarget(server.pid));
  const client = startChild(tcpnet, ['client', '-connect', listen[1], '-n', String(N), '-send', String(SEND), '-recv', String(RECV), '-wait']);
  t.teardown(() => client.kill());
  await client.until(/^CLIENT pid=/m);
  tr.attach(openTarget(client.pid));
  client.send('go');
  const connects = await client.lines(/^CONNECT goid=(\d+) local=(\S+) remote=(\S+)$/, N);
  await client.lines(/^DONE local=(\S+) remote=\S+ sent=(\d+) received=(\d+)/, N);
  await server.lines(/^SERVED .* received=(\d+) sent=(\d+)/, N);

  const deadline = Date.now() + 10_000;
  const closed = () => tr.connections(client.pid).filter((c) => c.state === 'closed' && c.peerPort === serverPort);
  while (closed().length < N && Date.now() < deadline) {
    await tr.drain();
    await sleep(50);
  }
  for (const m of connects) {
    const local = splitHostPort(m[2]);
    const c = closed().find((r) => r.localPort === local.port);
    t.ok(c, `${m[2]}: connect and close seen`);
    if (!c) continue;
    t.equal(c.goid, Number(m[1]), `${m[2]}: the goroutine that dialled`);
    t.equal(c.bytesSent, SEND, 'bytes sent, exact');
    t.equal(c.bytesReceived, RECV, 'bytes received, exact');
    t.ok(c.openedAt !== null && c.openedAt <= c.closedAt!, 'opened before closed: the connect record came first');
  }
  t.equal(tr.lostTotal(), 0, 'nothing lost');
  const stats = tr.bpf.readerStats(); // since the last drain restarted the reader
  t.equal(stats.malformed, 0, 'every perf sample had the record size');
  t.equal(stats.reorderOverflows, 0, 'every record went out in time order');
});
