// The TCP model's pieces without BPF: ss parsing, address formatting, the peer window, bounds, and where Go
// binaries keep g in TLS (decoded from real builds, including an externally linked static cgo binary).
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compressV6, formatAddress } from '../../agent/src/events/tcp-event.ts';
import { openGoBinary } from '../../agent/src/gobinary/index.ts';
import { ConnectionTable, type Connection } from '../../agent/src/tcp/connection-table.ts';
import { findTlsGOffset } from '../../agent/src/tcp/go-tls.ts';
import { PeerStats } from '../../agent/src/tcp/peer-stats.ts';
import { parseEndpoint, parseSs } from '../../agent/src/tcp/seed.ts';
import { buildRoot, goCommand } from '../lib/go.ts';
import { buildTcpnet } from './lib.ts';

t.test('ss output: tuples, states, owners, tcp_info', async (t) => {
  const text = [
    'LISTEN 0      4096       127.0.0.1:8080       0.0.0.0:*     users:(("srv",pid=10,fd=3)) ino:111 sk:1 cgroup:/ <->',
    '\t cubic cwnd:10',
    'ESTAB  0      0          127.0.0.1:8080     127.0.0.1:51000 users:(("srv",pid=10,fd=7),("srv",pid=11,fd=7)) ino:222 sk:2 cgroup:/ <->',
    '\t cubic rtt:0.042/0.021 bytes_sent:12 bytes_acked:13 bytes_received:7 retrans:0/3 segs_out:4',
    'ESTAB  0      0     [::ffff:10.0.0.1]%eth0:443 [fd00::2]:40000 users:(("c",pid=12,fd=4)) ino:333 sk:3 <->',
    'TIME-WAIT 0   0          127.0.0.1:51001     127.0.0.1:8080 timer:(timewait,30sec,0) ino:0 sk:4',
  ].join('\n');
  const s = parseSs(text);
  t.equal(s.length, 4);
  t.match(s[0], { state: 'listen', localAddress: '127.0.0.1', localPort: 8080, pids: [10], inode: 111 });
  t.match(s[1], { state: 'established', peerPort: 51000, pids: [10, 11], bytesAcked: 13, bytesReceived: 7, srttUs: 42, retransmits: 3 });
  t.match(s[2], { family: 'inet6', localAddress: '::ffff:10.0.0.1', localPort: 443, peerAddress: 'fd00::2', pids: [12] });
  t.match(s[3], { state: 'time_wait', pids: [] });
  t.same(parseEndpoint('*:22'), { address: '0.0.0.0', port: 22, family: 'inet' });
  t.same(parseEndpoint('[::]:*'), { address: '::', port: 0, family: 'inet6' });
});

t.test('addresses: IPv4, IPv6 compressed as RFC 5952, v4-mapped', async (t) => {
  const b = Buffer.alloc(16);
  b.set([10, 77, 0, 2]);
  const v = new DataView(b.buffer, b.byteOffset, 16);
  t.equal(formatAddress(v, 0, 2), '10.77.0.2');
  b.fill(0);
  b[15] = 1;
  t.equal(formatAddress(v, 0, 10), '::1');
  b.fill(0);
  b.set([0xff, 0xff, 127, 0, 0, 1], 10);
  t.equal(formatAddress(v, 0, 10), '::ffff:127.0.0.1');
  t.equal(compressV6([0xfd00, 0x77, 0, 0, 0, 0, 0, 2]), 'fd00:77::2');
  t.equal(compressV6([1, 0, 0, 2, 0, 0, 0, 3]), '1:0:0:2::3', 'the longest zero run is compressed');
  t.equal(compressV6([1, 2, 3, 4, 5, 6, 7, 8]), '1:2:3:4:5:6:7:8');
});

t.test('peer aggregates slide over the window and stay bounded', async (t) => {
  const p = new PeerStats({ windowMs: 5000, maxPairs: 2 });
  const t0 = 1_000_000;
  p.add('a', 'b', 'opened', 1, t0);
  p.add('a', 'b', 'bytesSent', 100, t0 + 1000);
  p.add('a', 'b', 'opened', 1, t0 + 4500);
  let s = p.snapshot(t0 + 4900);
  t.match(s, [{ localAddress: 'a', peerAddress: 'b', opened: 2, bytesSent: 100 }]);
  s = p.snapshot(t0 + 5500);
  t.match(s, [{ opened: 1, bytesSent: 100 }], 'the first second slid out');
  s = p.snapshot(t0 + 20_000);
  t.same(s, [], 'all of it slid out, and the pair is forgotten');
  t.equal(p.size, 0);
  p.add('a', 'b', 'opened', 1, t0);
  p.add('a', 'c', 'opened', 1, t0);
  p.add('a', 'd', 'opened', 1, t0);
  t.equal(p.size, 2, 'maxPairs holds');
  t.equal(p.evicted, 1, 'and the eviction is counted');
});

t.test('the connection table is bounded: open, closed per process, recently closed', async (t) => {
  const tab = new ConnectionTable({ maxOpen: 3, maxClosedPerProcess: 2, maxRecentlyClosed: 2 });
  const mk = (key: number, pid = 1): Connection => ({
    key, pid, tid: pid, goid: 0, comm: '', family: 'inet', role: 'client', localAddress: '127.0.0.1', localPort: key,
    peerAddress: '127.0.0.1', peerPort: 80, state: 'established', openedNs: 1, establishedNs: null, closedNs: null,
    bytesSent: 0, bytesReceived: 0, kernelBytesAcked: 0, kernelBytesReceived: 0, payloadTransmitted: 0, srttUs: null,
    retransmits: 0, resets: 0, error: null, preexisting: false,
  });
  for (let k = 1; k <= 5; k++) tab.addOpen(mk(k));
  t.equal(tab.open.size, 3);
  t.equal(tab.evictedOpen, 2);
  for (const k of [3, 4, 5]) tab.retire(tab.open.get(k)!);
  t.equal(tab.all(1).length, 2, 'two closed kept for pid 1');
  t.same(tab.all(1).map((c) => c.key), [4, 5], 'the newest');
  tab.addOpen(mk(6));
  tab.retire(tab.open.get(6)!);
  t.equal(tab.evictedClosed, 2, 'trimmed in bulk, every forgotten one counted');
  t.same(tab.all(1).map((c) => c.key), [5, 6]);
  t.equal(tab.recentlyClosed.size, 2);
  t.notOk(tab.recentlyClosed.has(4), 'the oldest recently-closed entry went first');
});

t.test('g in TLS: decoded from the code of real builds', async (t) => {
  const tcpnet = buildTcpnet();
  t.match(findTlsGOffset(openGoBinary(tcpnet)), { offset: -8, source: 'code' }, 'internal linking: MOVQ FS:-8, R14');
  const dir = join(buildRoot, 'tls-cgo');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'go.mod'), 'module tlscgo\n\ngo 1.19\n');
  writeFileSync(join(dir, 'main.go'), 'package main\n\n// int add(int a, int b) { return a + b; }\nimport "C"\nimport "fmt"\n\nfunc main() { fmt.Println(C.add(1, 2)) }\n');
  const { cmd, env } = goCommand();
  const builds: Array<[string, string[]]> = [
    ['static', ['-ldflags=-linkmode=external -extldflags=-static']],
    ['pie', ['-buildmode=pie']],
  ];
  for (const [name, flags] of builds) {
    const out = join(dir, name);
    try {
      if (!existsSync(out)) execFileSync(cmd, ['build', ...flags, '-o', out, '.'], { cwd: dir, env: { ...env, CGO_ENABLED: '1' }, stdio: 'pipe' });
    } catch (e) {
      t.test(`cgo ${name} build`, { skip: `cannot build with cgo here: ${(e as Error).message.split('\n')[0]}` }, () => {});
      continue;
    }
    const got = findTlsGOffset(openGoBinary(out));
    // The oracle: what objdump shows the runtime loading g from.
    const dis = execFileSync('objdump', ['-d', '--no-show-raw-insn', out], { encoding: 'utf8', maxBuffer: 512 << 20 });
    const direct = /mov\s+%fs:0x([0-9a-f]+),%r14/.exec(dis);
    const viaReg = /mov\s+\$0x([0-9a-f]+),%r14\n[^\n]*mov\s+%fs:\(%r14\),%r14/.exec(dis);
    const hex = (direct ?? viaReg)?.[1];
    t.ok(hex, `${name}: objdump shows how g is loaded`);
    const want = hex ? Number(BigInt.asIntN(64, BigInt(`0x${hex}`))) : NaN;
    t.equal(got.offset, want, `${name}: ${got.offset} (objdump: ${want})`);
    t.equal(got.source, 'code');
  }
});
