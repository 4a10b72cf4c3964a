// The connection state machine fed record batches built with the generated layout's encoder (bpf/tcp.h ->
// tcp.bpf.ts), no kernel: the cases the loopback and namespace tests cannot produce on demand (a connect refused
// before any SYN, a reset while waiting in the accept queue, a reset after close, a connection the seed found).
import t from 'tap';
import { encode } from '../../agent/src/events/layout.ts';
import { AF_INET, forEachTcpEvent, TCP_FLAG_FIN_ACKED, TCP_FLAG_FIN_RECEIVED, TcpEventKind, tcpEventLayout, TcpRole, TcpState } from '../../agent/src/events/tcp-event.ts';
import { ConnectionTable, type Connection } from '../../agent/src/tcp/connection-table.ts';
import { PeerStats } from '../../agent/src/tcp/peer-stats.ts';
import { monoNowNs } from '../../agent/src/tracer/clock.ts';

type Fields = Parameters<typeof encode<typeof tcpEventLayout>>[1];
const CLIENT = { saddr: [10, 0, 0, 1], sport: 40000, daddr: [10, 0, 0, 2], dport: 80 };

/** One struct tcp_event, as bpf/tcp.bpf.c writes it: IPv4 addresses in the first 4 bytes of saddr/daddr. */
function record(f: Fields, addr: { saddr: number[]; sport: number; daddr: number[]; dport: number } | null = CLIENT): Buffer {
  const b = encode(tcpEventLayout, { ...(addr ? { family: AF_INET, sport: addr.sport, dport: addr.dport } : {}), ...f });
  if (addr) {
    Buffer.from(addr.saddr).copy(b, tcpEventLayout.fields.saddr.offset);
    Buffer.from(addr.daddr).copy(b, tcpEventLayout.fields.daddr.offset);
  }
  return b;
}

function applyBatch(table: ConnectionTable, records: Buffer[]): number {
  return forEachTcpEvent(Buffer.concat(records), (v, at) => table.apply(v, at));
}

/** Peer aggregates keep a sliding window that ends now: records stamped now (CLOCK_MONOTONIC ns). */
const T0 = monoNowNs();
const SK = 0xffff_8880_1234_5600; // a struct sock address (its low 48 bits are the key)
const KEY = SK % 2 ** 48;

t.test('a client: connect, established, close with payload bytes less SYN and FIN', async (t) => {
  const peers = new PeerStats();
  const table = new ConnectionTable({ peers });
  const n = applyBatch(table, [
    record({ kind: TcpEventKind.connect, ts_ns: T0 + 1000, skaddr: SK, pid: 7, tid: 8, goid: 42, bound_ns: T0 + 900 }),
    record({ kind: TcpEventKind.state, ts_ns: T0 + 2000, skaddr: SK, pid: 7, old_state: TcpState.synSent, new_state: TcpState.established, srtt_us: 50 }),
  ]);
  t.equal(n, 2, 'two records walked by stride');
  const open = table.open.get(KEY)!;
  t.match(open, { pid: 7, goid: 42, role: 'client', state: 'established', openedNs: T0 + 1000, establishedNs: T0 + 2000, srttUs: 50, localAddress: '10.0.0.1', peerPort: 80 });
  applyBatch(table, [
    record({
      kind: TcpEventKind.close, ts_ns: T0 + 5000, skaddr: SK, pid: 7, old_state: TcpState.lastAck, new_state: TcpState.close,
      bytes_acked: 1 + 100 + 1, bytes_received: 300 + 1, bytes_sent: 100, srtt_us: 60, total_retrans: 2,
      flags: TCP_FLAG_FIN_ACKED | TCP_FLAG_FIN_RECEIVED,
    }),
  ]);
  t.notOk(table.open.has(KEY), 'no longer open');
  const [closed] = table.all(7);
  t.match(closed, { state: 'closed', closedNs: T0 + 5000, bytesSent: 100, bytesReceived: 300, kernelBytesAcked: 102, retransmits: 2, srttUs: 60, error: null });
  const [pair] = peers.snapshot();
  t.match(pair, { localAddress: '10.0.0.1', peerAddress: '10.0.0.2', opened: 1, closed: 1, bytesSent: 100, bytesReceived: 300, errors: 0 });
});

t.test('connect(2) refused before any SYN: closed at once with its errno, never open', async (t) => {
  const peers = new PeerStats();
  const table = new ConnectionTable({ peers });
  applyBatch(table, [record({ kind: TcpEventKind.connect, ts_ns: T0 + 10, skaddr: SK, pid: 7, error: 111 })]);
  t.equal(table.open.size, 0);
  t.match(table.all(7), [{ state: 'closed', error: 'ECONNREFUSED', closedNs: T0 + 10 }]);
  t.match(peers.snapshot(), [{ errors: 1, opened: 0 }]);
});

t.test('a SYN that gets no answer: closed from SYN_SENT says connect failed', async (t) => {
  const table = new ConnectionTable();
  applyBatch(table, [
    record({ kind: TcpEventKind.connect, ts_ns: 10, skaddr: SK, pid: 7 }),
    record({ kind: TcpEventKind.close, ts_ns: 20, skaddr: SK, pid: 7, old_state: TcpState.synSent, new_state: TcpState.close, bytes_acked: 0 }),
  ]);
  t.match(table.all(7), [{ state: 'closed', error: 'connect failed', bytesSent: 0 }]);
});

t.test('a server: accepted, reset by the peer, and the reset that follows the close still counts', async (t) => {
  const table = new ConnectionTable();
  const server = { saddr: [10, 0, 0, 2], sport: 80, daddr: [10, 0, 0, 1], dport: 40000 };
  applyBatch(table, [
    record({ kind: TcpEventKind.accept, ts_ns: 100, skaddr: SK, pid: 9, goid: 5, new_state: TcpState.established, srtt_us: 30 }, server),
    record({ kind: TcpEventKind.close, ts_ns: 200, skaddr: SK, pid: 9, old_state: TcpState.established, new_state: TcpState.close, error: 104, bytes_acked: 10, bytes_received: 20 }, server),
    record({ kind: TcpEventKind.resetReceived, ts_ns: 201, skaddr: SK, pid: 9 }, server),
  ]);
  const [c] = table.all(9);
  t.match(c, { role: 'server', goid: 5, openedNs: 100, establishedNs: 100, error: 'ECONNRESET', bytesSent: 10, bytesReceived: 20, resets: 1 });
  t.equal(table.unowned, 0, 'the late reset found its connection among the recently closed');
});

t.test('reset while it waited to be accepted: retired as ECONNRESET', async (t) => {
  const table = new ConnectionTable();
  applyBatch(table, [record({ kind: TcpEventKind.accept, ts_ns: 100, skaddr: SK, pid: 9, new_state: TcpState.close })]);
  t.equal(table.open.size, 0);
  t.match(table.all(9), [{ role: 'server', error: 'ECONNRESET', closedNs: 100 }]);
});

t.test('listeners are apart, and go when they close', async (t) => {
  const table = new ConnectionTable();
  const listen = { saddr: [0, 0, 0, 0], sport: 8080, daddr: [0, 0, 0, 0], dport: 0 };
  applyBatch(table, [record({ kind: TcpEventKind.state, ts_ns: 1, skaddr: SK, pid: 3, old_state: TcpState.close, new_state: TcpState.listen }, listen)]);
  t.match(table.listenersOf(3), [{ role: 'listener', localPort: 8080 }]);
  t.same(table.all(3), [], 'a listener is not a connection');
  applyBatch(table, [record({ kind: TcpEventKind.close, ts_ns: 2, skaddr: SK, pid: 3, old_state: TcpState.listen, new_state: TcpState.close }, listen)]);
  t.same(table.listenersOf(3), []);
});

t.test('a connection with no owner is counted, not invented; an unknown kind is counted too', async (t) => {
  const table = new ConnectionTable();
  applyBatch(table, [
    record({ kind: TcpEventKind.state, ts_ns: 1, skaddr: SK, pid: 0, old_state: TcpState.synRecv, new_state: TcpState.established }),
    record({ kind: TcpEventKind.retransmit, ts_ns: 2, skaddr: SK + 0x100, pid: 0 }),
    record({ kind: 200, ts_ns: 3, skaddr: SK, pid: 1 }),
  ]);
  t.equal(table.open.size, 0);
  t.equal(table.unowned, 2);
  t.equal(table.retransmitRecords, 1);
  t.equal(table.strayRecords, 1);
});

t.test('an owner learnt only at close (a non-Go server, no syscall hooks): a server by its listener, when it opened unknown', async (t) => {
  const table = new ConnectionTable();
  const listen = { saddr: [10, 0, 0, 2], sport: 80, daddr: [0, 0, 0, 0], dport: 0 };
  const accepted = { saddr: [10, 0, 0, 2], sport: 80, daddr: [10, 0, 0, 1], dport: 40000 };
  const other = { saddr: [10, 0, 0, 2], sport: 9999, daddr: [10, 0, 0, 1], dport: 40001 };
  const closeOf = (skaddr: number, pid: number) => ({
    kind: TcpEventKind.close, ts_ns: T0 + 50, skaddr, pid, role: TcpRole.unknown, bound_ns: T0 + 40,
    old_state: TcpState.finWait2, new_state: TcpState.close, bytes_acked: 500 + 1, bytes_received: 300 + 1,
    bytes_sent: 500, flags: TCP_FLAG_FIN_ACKED | TCP_FLAG_FIN_RECEIVED,
  });
  applyBatch(table, [
    record({ kind: TcpEventKind.state, ts_ns: T0, skaddr: SK + 0x800, pid: 9, old_state: TcpState.close, new_state: TcpState.listen }, listen),
    record(closeOf(SK, 9), accepted),
    record(closeOf(SK + 0x100, 9), other),
    record(closeOf(SK + 0x200, 10), accepted),
  ]);
  const closed = table.all();
  t.match(closed.find((c) => c.pid === 9 && c.localPort === 80), { role: 'server', openedNs: null, closedNs: T0 + 50, bytesSent: 500, bytesReceived: 300 }, 'its process listens on its port: a server');
  t.match(closed.find((c) => c.pid === 9 && c.localPort === 9999), { role: 'unknown', openedNs: null }, 'another port: unknown, not guessed');
  t.match(closed.find((c) => c.pid === 10), { role: 'unknown' }, 'another process: unknown');
});

t.test('an owner learnt at established (a client bound in connect) opens the connection with its role', async (t) => {
  const table = new ConnectionTable();
  applyBatch(table, [record({ kind: TcpEventKind.state, ts_ns: 5, skaddr: SK, pid: 4, role: TcpRole.client, old_state: TcpState.synSent, new_state: TcpState.established })]);
  t.match(table.open.get(KEY), { pid: 4, role: 'client', state: 'established', establishedNs: 5 });
});

t.test('a connection the seed found is claimed by its 4-tuple and keeps that it existed before', async (t) => {
  const table = new ConnectionTable();
  const seeded: Connection = {
    key: 0, pid: 7, tid: 0, goid: 0, comm: '', family: 'inet', role: 'client',
    localAddress: '10.0.0.1', localPort: 40000, peerAddress: '10.0.0.2', peerPort: 80, state: 'established',
    openedNs: null, establishedNs: null, closedNs: null, bytesSent: 0, bytesReceived: 0, kernelBytesAcked: 0,
    kernelBytesReceived: 0, payloadTransmitted: 0, srttUs: 40, retransmits: 0, resets: 0, error: null, preexisting: true,
  };
  table.addSeeded(seeded);
  applyBatch(table, [record({ kind: TcpEventKind.retransmit, ts_ns: 7, skaddr: SK, pid: 7 })]);
  t.equal(table.seeded.size, 0, 'moved under the key BPF knows it by');
  t.match(table.open.get(KEY), { preexisting: true, retransmits: 1 });
  applyBatch(table, [
    record({ kind: TcpEventKind.close, ts_ns: 9, skaddr: SK, pid: 7, old_state: TcpState.finWait2, new_state: TcpState.close, bytes_acked: 51, bytes_received: 70, flags: TCP_FLAG_FIN_ACKED }),
  ]);
  t.match(table.all(7), [{ preexisting: true, state: 'closed', bytesSent: 49, bytesReceived: 70 }], 'bytes less the SYN and the FIN');
});

t.test('an accept of a connection the seed also listed keeps the event\'s', async (t) => {
  const table = new ConnectionTable();
  const server = { saddr: [10, 0, 0, 2], sport: 80, daddr: [10, 0, 0, 1], dport: 40000 };
  table.addSeeded({
    key: 0, pid: 9, tid: 0, goid: 0, comm: '', family: 'inet', role: 'server',
    localAddress: '10.0.0.2', localPort: 80, peerAddress: '10.0.0.1', peerPort: 40000, state: 'established',
    openedNs: null, establishedNs: null, closedNs: null, bytesSent: 0, bytesReceived: 0, kernelBytesAcked: 0,
    kernelBytesReceived: 0, payloadTransmitted: 0, srttUs: null, retransmits: 0, resets: 0, error: null, preexisting: true,
  });
  applyBatch(table, [record({ kind: TcpEventKind.accept, ts_ns: 1, skaddr: SK, pid: 9, goid: 3, new_state: TcpState.established }, server)]);
  t.equal(table.seeded.size, 0);
  t.match(table.all(9), [{ goid: 3, preexisting: false }]);
});
