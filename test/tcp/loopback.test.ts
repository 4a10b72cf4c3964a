// TCP connections on loopback, traced by bpf/tcp.bpf.c while real programs talk: a Go server and Go clients
// that print their pid, the goroutine that dialled or accepted, and the bytes they moved; python3 as a
// non-Go client; ss as the kernel's own account of the same sockets while they are open.
import t from 'tap';
import { createServer } from 'node:net';
import type { ConnectionRecord } from '../../collector/src/protocol/records.ts';
import { TcpTracer } from '../../agent/src/tcp/tcp-tracer.ts';
import type { Connection } from '../../agent/src/tcp/connection-table.ts';
import { startChild, type Child } from '../lib/child.ts';
import { buildTcpnet, python3Unavailable, tcpUnavailable, pythonPeerDone, sleep, splitHostPort, ssInfo, startPythonPeer, waitFor } from './lib.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

const why = await tcpUnavailable();
if (why) {
  t.test('TCP tracing', { skip: `TCP tracing unavailable: ${why}` }, () => {});
} else {
  await main();
}

function find(tr: TcpTracer, pid: number, pred: (c: ConnectionRecord) => boolean): ConnectionRecord | undefined {
  return tr.connections(pid).find(pred);
}

function detail(tr: TcpTracer, pid: number, localPort: number, peerPort: number): Connection | undefined {
  return tr.connectionDetails(pid).find((c) => c.localPort === localPort && c.peerPort === peerPort && c.state === 'closed');
}

async function freePort(host: string): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, host, () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
}

async function main(): Promise<void> {
  const tcpnet = buildTcpnet();
  const started = Date.now();

  // A connection that exists before the tracer starts: held open by its client.
  const preServer = startChild(tcpnet, ['server', '-listen', '127.0.0.1:0', '-recv', '300', '-send', '700']);
  const preAddr = (await preServer.until(/^LISTEN .* addr=(\S+)$/m))[1];
  const preClient = startChild(tcpnet, ['client', '-connect', preAddr, '-send', '300', '-recv', '700', '-hold']);
  const preDone = await preClient.until(/^DONE local=(\S+) remote=\S+ sent=300 received=700/m);
  const preLocal = splitHostPort(preDone[1]);

  const tr = new TcpTracer({ seedPids: [preClient.pid, preServer.pid] });
  tr.start();
  // Cleaned up when the last subtest is done: a root-level teardown waits for the event loop to drain,
  // which the held connection's processes would never let happen.
  try {
    await t.test('a connection open before the agent started is seeded, marked preexisting, and its close is seen', async (t) => {
      const seeded = find(tr, preClient.pid, (c) => c.localPort === preLocal.port);
      t.ok(seeded, 'the held connection is in the table with the client pid');
      t.equal(seeded?.preexisting, true, 'marked preexisting');
      t.equal(seeded?.state, 'established');
      t.equal(seeded?.role, 'client');
      t.equal(seeded?.openedAt, null, 'its opening was before us: unknown');
      const serverSide = find(tr, preServer.pid, (c) => c.peerPort === preLocal.port);
      t.equal(serverSide?.role, 'server', 'the server end is seeded too, as a server (its port listens)');
      preClient.send('close');
      await preClient.until(/^BYE$/m);
      const closed = await waitFor(tr, () => find(tr, preClient.pid, (c) => c.localPort === preLocal.port && c.state === 'closed'), 'the seeded close');
      t.equal(closed.preexisting, true);
      t.equal(closed.bytesSent, 300, 'bytes sent, exact, from the socket at close');
      t.equal(closed.bytesReceived, 700, 'bytes received, exact');
      t.ok(closed.closedAt! >= started && closed.closedAt! <= Date.now() + 1, 'closedAt is now-ish (Unix ms)');
      await preServer.end();
    });

    for (const family of ['inet', 'inet6'] as const) {
      await t.test(`Go server and Go clients (${family}): pids, goroutines, exact bytes, ss agrees while open`, async (t) => {
        const host = family === 'inet' ? '127.0.0.1' : '[::1]';
        const N = 3;
        const SEND = 12_345;
        const RECV = 54_321;
        const server = startChild(tcpnet, ['server', '-listen', `${host}:0`, '-recv', String(SEND), '-send', String(RECV)]);
        t.teardown(() => server.kill());
        const listen = await server.until(/^LISTEN pid=\d+ goid=\d+ addr=(\S+)$/m);
        const serverAddr = splitHostPort(listen[1]);
        tr.attach(openTarget(server.pid));
        const client = startChild(tcpnet, ['client', '-connect', listen[1], '-n', String(N), '-send', String(SEND), '-recv', String(RECV), '-wait', '-hold']);
        t.teardown(() => client.kill());
        await client.until(/^CLIENT pid=/m);
        const layout = tr.attach(openTarget(client.pid)).goLayout;
        t.ok(layout, 'the client is recognised as a Go program');
        t.equal(layout?.tlsGOffset, -8, 'g at FS:-8 (decoded from the binary)');
        const tBefore = Date.now();
        client.send('go');
        const connects = await client.lines(/^CONNECT goid=(\d+) local=(\S+) remote=(\S+)$/, N);
        const dones = await client.lines(/^DONE local=(\S+) remote=\S+ sent=(\d+) received=(\d+)/, N);
        const accepts = await server.lines(/^ACCEPT goid=(\d+) local=(\S+) remote=(\S+)$/, N);
        for (const d of dones) t.same([Number(d[2]), Number(d[3])], [SEND, RECV], 'the client moved what it was told to');

        // The kernel's view while open (ss -tin): to compare with what BPF reads at close.
        const ss = ssInfo();
        await tr.drain();
        const openNow = tr.connections(client.pid).filter((c) => c.state === 'established' && c.peerPort === serverAddr.port);
        t.equal(openNow.length, N, 'the open client connections are in the table, established');

        client.send('close');
        await client.until(/^BYE$/m);
        await server.lines(/^SERVED .* received=(\d+) sent=(\d+)/, N);
        const tAfter = Date.now();

        for (const m of connects) {
          const goid = Number(m[1]);
          const local = splitHostPort(m[2]);
          const c = await waitFor(tr, () => find(tr, client.pid, (r) => r.localPort === local.port && r.state === 'closed'), `client ${m[2]} closed`);
          t.equal(c.pid, client.pid, `${m[2]}: the client's pid`);
          t.equal(c.goid, goid, `${m[2]}: the goroutine that dialled (${goid})`);
          t.equal(c.role, 'client');
          t.equal(c.family, family);
          t.equal(c.localAddress, local.host);
          t.equal(c.peerPort, serverAddr.port);
          t.equal(c.bytesSent, SEND, 'bytes sent, exact');
          t.equal(c.bytesReceived, RECV, 'bytes received, exact');
          t.equal(c.error, null);
          t.equal(c.preexisting, false);
          t.ok(c.openedAt! >= tBefore - 5 && c.openedAt! <= c.closedAt! && c.closedAt! <= tAfter + 5, 'opened and closed within the run, in order (Unix ms)');
          t.ok(c.srttUs !== null && c.srttUs > 0 && c.srttUs < 50_000, `srtt ${c.srttUs} us is plausible for loopback`);
          const o = ss.find((s) => splitHostPort(s.local).port === local.port);
          const d = detail(tr, client.pid, local.port, serverAddr.port)!;
          t.ok(o, 'ss saw the socket while it was open');
          if (o) {
            // Between ss and close only the FINs moved: one each way, each a sequence number.
            t.equal(d.kernelBytesAcked, o.bytesAcked + 1, `bytes_acked at close = ss's ${o.bytesAcked} + our FIN`);
            t.equal(d.kernelBytesReceived, o.bytesReceived + 1, `bytes_received at close = ss's ${o.bytesReceived} + their FIN`);
            t.equal(o.bytesAcked, SEND + 1, "ss's bytes_acked is the payload + the SYN");
            t.ok(Math.abs(o.rttUs - c.srttUs!) < 20_000, `rtt: ss ${o.rttUs} us vs ${c.srttUs} us at close`);
          }
        }
        const acceptGoids = new Set(accepts.map((a) => Number(a[1])));
        for (const a of accepts) {
          const remote = splitHostPort(a[3]);
          const c = await waitFor(tr, () => find(tr, server.pid, (r) => r.peerPort === remote.port && r.state === 'closed'), `server side of ${a[3]} closed`);
          t.equal(c.pid, server.pid, `${a[3]}: the server's pid`);
          t.equal(c.goid, Number(a[1]), `${a[3]}: the goroutine that accepted (${a[1]})`);
          t.equal(c.role, 'server');
          t.equal(c.localPort, serverAddr.port);
          t.equal(c.bytesSent, RECV, 'server bytes sent, exact');
          t.equal(c.bytesReceived, SEND, 'server bytes received, exact');
        }
        t.equal(acceptGoids.size, 1, 'one accept loop goroutine');
        t.notOk(acceptGoids.has(1), 'and it is not main: the goid is read, not guessed');
        const listener = tr.listeners(server.pid).find((l) => l.localPort === serverAddr.port);
        t.ok(listener, 'the listening socket is kept apart, as a listener');
        t.notOk(tr.connections(server.pid).some((c) => c.localPort === serverAddr.port && c.peerPort === 0), 'and is not among the connections');
        const peer = tr.peers().find((p) => p.localAddress === (family === 'inet' ? '127.0.0.1' : '::1') && p.peerAddress === p.localAddress);
        t.ok(peer && peer.opened >= 2 * N && peer.closed >= 2 * N, `peer aggregate counts the connections (${peer?.opened} opened, ${peer?.closed} closed)`);
        t.ok(peer && peer.bytesSent >= N * (SEND + RECV), 'and their bytes');
        await server.end();
        await sleep(100);
        await tr.drain();
        t.notOk(tr.listeners(server.pid).some((l) => l.localPort === serverAddr.port), 'the listener is gone once closed');
      });
    }

    await t.test('a refused connect is an error of the client, with its goroutine; the RST is seen', async (t) => {
      const port = await freePort('127.0.0.1');
      const client = startChild(tcpnet, ['client', '-connect', `127.0.0.1:${port}`, '-wait']);
      t.teardown(() => client.kill());
      await client.until(/^CLIENT pid=/m);
      tr.attach(openTarget(client.pid));
      client.send('go');
      const err = await client.until(/^DIALERR goid=(\d+) err=(.*)$/m);
      t.match(err[2], /connection refused/);
      const c = await waitFor(tr, () => find(tr, client.pid, (r) => r.peerPort === port && r.state === 'closed'), 'the failed connect');
      t.equal(c.error, 'ECONNREFUSED');
      t.equal(c.goid, Number(err[1]), 'the goroutine that dialled');
      t.equal(c.resets, 1, 'the reset it received');
      t.equal(c.bytesSent, 0);
      await client.exit();
      const peer = tr.peers().find((p) => p.localAddress === '127.0.0.1' && p.peerAddress === '127.0.0.1');
      t.ok(peer && peer.errors >= 1 && peer.resets >= 2, 'the peer aggregate counts the error and both resets (sent by the kernel for the closed port, received by the client)');
    });

    await t.test('an abortive close (SetLinger(0)) sends a reset that both ends show', async (t) => {
      const server = startChild(tcpnet, ['server', '-listen', '127.0.0.1:0', '-recv', '1000', '-send', '2000']);
      t.teardown(() => server.kill());
      const listen = await server.until(/^LISTEN .* addr=(\S+)$/m);
      const port = splitHostPort(listen[1]).port;
      tr.attach(openTarget(server.pid)); // as the agent does every Go process: who accepts is learnt in it
      const client = startChild(tcpnet, ['client', '-connect', listen[1], '-send', '1000', '-recv', '2000', '-linger0']);
      t.teardown(() => client.kill());
      const conn = await client.until(/^CONNECT goid=\d+ local=(\S+)/m);
      await client.until(/^BYE$/m);
      const local = splitHostPort(conn[1]).port;
      const c = await waitFor(tr, () => find(tr, client.pid, (r) => r.localPort === local && r.state === 'closed'), 'the client close');
      t.equal(c.resets, 1, 'the client sent a reset');
      t.equal(c.bytesSent, 1000);
      t.equal(c.bytesReceived, 2000);
      const s = await waitFor(tr, () => find(tr, server.pid, (r) => r.peerPort === local && r.state === 'closed'), 'the server close');
      t.equal(s.resets, 1, 'the server received it');
      t.equal(s.error, 'ECONNRESET');
      t.equal(s.role, 'server');
      await server.end();
    });

    await t.test('a non-Go client (python3): the right pid, no goroutine', async (t) => {
      const server = startChild(tcpnet, ['server', '-listen', '127.0.0.1:0', '-recv', '4096', '-send', '8192']);
      t.teardown(() => server.kill());
      const listen = await server.until(/^LISTEN .* addr=(\S+)$/m);
      const port = splitHostPort(listen[1]).port;
      const noPython = python3Unavailable();
      if (noPython) {
        t.test('python3 client', { skip: noPython }, () => {});
        return;
      }
      const py = startPythonPeer('client', { port, send: 4096, recv: 8192 });
      t.teardown(() => py.kill());
      const { pid, localPort, got } = await pythonPeerDone(py);
      t.equal(got, 8192, 'python received what the server sent');
      const c = await waitFor(tr, () => find(tr, pid, (r) => r.localPort === localPort && r.state === 'closed'), 'the python connection');
      t.equal(c.pid, pid, "python's pid");
      t.equal(c.goid, null, 'no goroutine');
      t.equal(c.bytesSent, 4096);
      t.equal(c.bytesReceived, 8192);
      const d = detail(tr, pid, localPort, port)!;
      t.equal(d.comm, 'python3', 'its comm');
      await server.end();
    });

    await t.test('nothing was lost, and the table stays bounded', async (t) => {
      await tr.drain();
      t.equal(tr.lostTotal(), 0, 'no record dropped by a full ring buffer');
      const s = tr.stats();
      t.equal(s.strayRecords, 0);
      t.equal(s.goidUnread, 0, 'every registered Go process had its goroutine read');
      t.ok(s.records > 0);
    });
  } finally {
    for (const p of [preServer, preClient]) p.kill();
    await tr.close();
  }
}
