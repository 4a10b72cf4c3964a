// TCP between two network namespaces joined by a veth pair (addresses only inside them: nothing leaves this
// machine): a Go server in one, Go clients in the other, IPv4 and IPv6, and induced loss for retransmits.
import t, { type Test } from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { TcpTracer } from '../../agent/src/tcp/tcp-tracer.ts';
import type { ConnectionRecord } from '../../collector/src/protocol/records.ts';
import { buildRoot, repoRoot } from '../lib/go.ts';
import type { Child } from '../lib/child.ts';
import { buildTcpnet, makeNetnsPair, netnsUnavailable, tcpUnavailable, splitHostPort, ssInfo, startInNetns, type NetnsPair, waitFor } from './lib.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

const why = (await tcpUnavailable()) ?? netnsUnavailable();
if (why) t.test('TCP between namespaces', { skip: `unavailable: ${why}` }, () => {});
else await main();

function closedOf(tr: TcpTracer, pid: number, pred: (c: ConnectionRecord) => boolean): () => ConnectionRecord | undefined {
  return () => tr.connections(pid).find((c) => c.state === 'closed' && pred(c));
}

/**
 * Loses ~30% of the data from `from` to `to`: netem on the sender's veth where the kernel has sch_netem, else a
 * tc BPF filter (test/fixtures/tcp-loss/drop.bpf.c) on the receiver's ingress, dropping 30% of the large
 * packets. (Not on the sender's egress: a drop there is a local congestion drop that TCP resends as new data,
 * not a retransmission.) Returns how.
 */
function induceLoss(pair: NetnsPair): string {
  try {
    execFileSync('ip', ['netns', 'exec', pair.b, 'tc', 'qdisc', 'add', 'dev', pair.vethB, 'root', 'netem', 'loss', '30%'], { stdio: 'pipe' });
    return 'netem loss 30% on the client side';
  } catch {
    /* no sch_netem: fall back to BPF */
  }
  const out = join(buildRoot, 'bpf');
  mkdirSync(out, { recursive: true });
  const obj = join(out, 'tcp-loss-drop.bpf.o');
  execFileSync('clang', ['-O2', '-g', '-target', 'bpf', '-I/usr/include/x86_64-linux-gnu', '-c', join(repoRoot, 'test', 'fixtures', 'tcp-loss', 'drop.bpf.c'), '-o', obj], { stdio: 'pipe' });
  execFileSync('ip', ['netns', 'exec', pair.a, 'tc', 'qdisc', 'add', 'dev', pair.vethA, 'clsact'], { stdio: 'pipe' });
  execFileSync('ip', ['netns', 'exec', pair.a, 'tc', 'filter', 'add', 'dev', pair.vethA, 'ingress', 'bpf', 'direct-action', 'obj', obj, 'sec', 'tc'], { stdio: 'pipe' });
  return "tc BPF filter dropping 30% of the data packets at the server side's ingress (sch_netem is not in this kernel)";
}

async function main(): Promise<void> {
  const tcpnet = buildTcpnet();
  let pair: NetnsPair;
  try {
    pair = makeNetnsPair('tcp');
  } catch (e) {
    t.test('TCP between namespaces', { skip: `cannot set up the namespaces: ${(e as Error).message.split('\n')[0]}` }, () => {});
    return;
  }
  const tr = new TcpTracer({ seed: false });
  tr.start();
  const procs: Child[] = [];
  // Cleaned up when the last subtest is done, not by a root-level teardown (which waits for an idle loop).
  try {
    const serverIn = async (t: Test, addr: string, recv: number, send: number) => {
      const s = startInNetns(pair.a, tcpnet, ['server', '-listen', addr, '-recv', String(recv), '-send', String(send)]);
      procs.push(s);
      const m = await s.until(/^LISTEN pid=(\d+) goid=\d+ addr=(\S+)$/m);
      t.equal(Number(m[1]), s.pid, 'ip netns exec runs the server as the pid we spawned');
      tr.attach(openTarget(s.pid));
      return { proc: s, addr: m[2], port: splitHostPort(m[2]).port };
    };
    const clientIn = async (addr: string, args: string[]) => {
      const c = startInNetns(pair.b, tcpnet, ['client', '-connect', addr, '-wait', ...args]);
      procs.push(c);
      await c.until(/^CLIENT pid=/m);
      tr.attach(openTarget(c.pid));
      c.send('go');
      return c;
    };

    for (const family of ['inet', 'inet6'] as const) {
      await t.test(`${family} across namespaces: both ends, their goroutines, exact bytes, ss agrees`, async (t) => {
        const [serverAddr, clientAddr] = family === 'inet' ? [pair.a4, pair.b4] : [pair.a6, pair.b6];
        const SEND = 20_000;
        const RECV = 30_000;
        const N = 2;
        const server = await serverIn(t, family === 'inet' ? `${serverAddr}:0` : `[${serverAddr}]:0`, SEND, RECV);
        const client = await clientIn(server.addr, ['-n', String(N), '-send', String(SEND), '-recv', String(RECV), '-hold']);
        const connects = await client.lines(/^CONNECT goid=(\d+) local=(\S+) remote=\S+$/, N);
        await client.lines(/^DONE .* sent=20000 received=30000/, N);
        const accepts = await server.proc.lines(/^ACCEPT goid=(\d+) local=\S+ remote=(\S+)$/, N);
        const ss = ssInfo(pair.b);
        client.send('close');
        await client.until(/^BYE$/m);
        await server.proc.lines(/^SERVED /, N);
        for (const m of connects) {
          const local = splitHostPort(m[2]);
          t.equal(local.host, clientAddr, 'the client dialled from its namespace address');
          const c = await waitFor(tr, closedOf(tr, client.pid, (r) => r.localPort === local.port), `client ${m[2]}`);
          t.equal(c.goid, Number(m[1]), `${m[2]}: the dialling goroutine, pid ${client.pid}`);
          t.equal(c.peerAddress, serverAddr);
          t.same([c.bytesSent, c.bytesReceived], [SEND, RECV], 'exact bytes');
          t.equal(c.family, family);
          const o = ss.find((s) => splitHostPort(s.local).port === local.port);
          const d = tr.connectionDetails(client.pid).find((x) => x.localPort === local.port && x.state === 'closed')!;
          t.ok(o, 'ss (in the client namespace) saw it open');
          if (o) {
            t.equal(d.kernelBytesAcked, o.bytesAcked + 1, 'bytes_acked: ss + our FIN');
            t.equal(d.kernelBytesReceived, o.bytesReceived + 1, 'bytes_received: ss + their FIN');
            t.ok(c.srttUs! > 0 && Math.abs(o.rttUs - c.srttUs!) < 20_000, `rtt: ss ${o.rttUs} us vs ${c.srttUs} us at close`);
          }
        }
        for (const a of accepts) {
          const remote = splitHostPort(a[2]);
          const c = await waitFor(tr, closedOf(tr, server.proc.pid, (r) => r.peerPort === remote.port), `server side of ${a[2]}`);
          t.equal(c.goid, Number(a[1]), `${a[2]}: the accepting goroutine, pid ${server.proc.pid}`);
          t.equal(c.role, 'server');
          t.equal(c.localAddress, serverAddr);
          t.same([c.bytesSent, c.bytesReceived], [RECV, SEND], 'exact bytes');
        }
        const agg = tr.peers().find((p) => p.localAddress === clientAddr && p.peerAddress === serverAddr);
        t.ok(agg && agg.opened === N && agg.closed === N && agg.bytesSent === N * SEND && agg.bytesReceived === N * RECV, `the client's peer aggregate: ${JSON.stringify(agg)}`);
        await server.proc.end();
      });
    }

    await t.test('induced loss makes retransmits, counted on the connection and its peer; bytes stay exact', async (t) => {
      const how = induceLoss(pair);
      t.comment(`loss: ${how}`);
      // A second tracer keeping half the retransmit details: what it keeps plus what it counts as left out
      // is what the first (keeping all) saw.
      const sampled = new TcpTracer({ seed: false, retransmitSampling: 0.5 });
      t.teardown(() => sampled.close());
      sampled.start();
      await tr.drain();
      const retransmitsBefore = tr.retransmitRecords;
      // Enough data that some of it is dropped: over a veth a segment can be 64 KB (GSO), so 400 KB was ~7 packets
      // and none of them dropped in ~8% of runs (0.7^7); 2 MB is ~30 (0.7^30: never).
      const SEND = 2_000_000;
      const server = await serverIn(t, `${pair.a4}:0`, SEND, 1000);
      const client = await clientIn(server.addr, ['-send', String(SEND), '-recv', '1000']);
      const conn = await client.until(/^CONNECT goid=(\d+) local=(\S+)/m);
      await client.until(/^BYE$/m, 60_000);
      const local = splitHostPort(conn[2]).port;
      const c = await waitFor(tr, closedOf(tr, client.pid, (r) => r.localPort === local), 'the lossy connection', 30_000);
      t.ok(c.retransmits > 0, `retransmits: ${c.retransmits} (tcp_sock.total_retrans)`);
      t.equal(c.bytesSent, SEND, 'payload sent counted once however often it was retransmitted');
      t.equal(c.bytesReceived, 1000);
      t.equal(c.goid, Number(conn[1]));
      const agg = tr.peers().find((p) => p.localAddress === pair.b4 && p.peerAddress === pair.a4);
      t.ok(agg && agg.retransmits > 0, `tcp_retransmit_skb events in the peer window: ${agg?.retransmits}`);
      await sampled.drain();
      await tr.drain();
      const all = tr.retransmitRecords - retransmitsBefore;
      const kept = sampled.retransmitRecords;
      const left = sampled.stats().retransmitUnsampled;
      t.equal(kept + left, all, `retransmit details at 50%: ${kept} kept + ${left} left out = ${all} seen`);
      if (all >= 20) t.ok(kept > 0 && left > 0, 'both kept and left out');
      await server.proc.end();
    });

    await t.test('nothing lost', async (t) => {
      await tr.drain();
      t.equal(tr.lostTotal(), 0);
      t.equal(tr.stats().goidUnread, 0);
    });
  } finally {
    for (const p of procs) p.kill();
    await tr.close();
    pair.destroy();
  }
}
