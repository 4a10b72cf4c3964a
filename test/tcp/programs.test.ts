// bpf/tcp.bpf.c has two programs per event: BTF-typed raw tracepoints and classic tracepoints, each a thin
// wrapper around one body; and two ways to the syscall exits (the raw sys_exit program, the classic
// per-syscall tracepoints). Both paths are attached at once here, in two copies of the object, so every event
// real programs cause reaches both: the records must be the same, field by field (times aside). Then what
// only one side of a path computes is checked against what the programs themselves printed: a reset for no
// socket (addresses from the packet, reversed), and a connect(2) that fails before any SYN.
import t from 'tap';
import { openBpfObject, percpuCounters, u32Key, type BpfObject } from '../../agent/src/bpf/bridge.ts';
import { tracepointIds } from '../../agent/src/bpf/tracefs.ts';
import { encodeTcpProcessLayout, forEachTcpEvent, TcpEventKind, tcpEv, tcpEventLayout } from '../../agent/src/events/tcp-event.ts';
import { openGoBinary } from '../../agent/src/gobinary/index.ts';
import { ALL_PROGRAMS, planFor, type EventPrograms, type SyscallPrograms } from '../../agent/src/tcp/attach-plan.ts';
import { tcpLayoutOf } from '../../agent/src/tcp/tcp-tracer.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { startChild, type Child } from '../lib/child.ts';
import { buildTcpnet, sleep, splitHostPort } from './lib.ts';

interface Path {
  name: string;
  bpf: BpfObject;
  records: Buffer[];
  close(): void;
}

/** The object loaded and attached with one plan's programs; its records collected. */
function openPath(events: EventPrograms, syscalls: SyscallPrograms): Path {
  const plan = planFor(events, syscalls);
  const names = [...new Set(plan.tracepoints.values())];
  const ids = names.length ? tracepointIds(names).ids : new Map<string, number>();
  const bpf = openBpfObject('tcp', { skipPrograms: ALL_PROGRAMS.filter((p) => !plan.programs.includes(p)) });
  const links: number[] = [];
  try {
    for (const p of plan.programs) {
      const tp = plan.tracepoints.get(p);
      links.push(tp ? bpf.attachTracepointId(p, ids.get(tp)!) : bpf.attach(p));
    }
  } catch (e) {
    bpf.close();
    throw e;
  }
  const records: Buffer[] = [];
  bpf.startReader([{ map: 'tcp_events', recordSize: tcpEventLayout.size }], (_r, b) => records.push(Buffer.from(b)));
  return {
    name: `${events} events, ${syscalls} syscalls`,
    bpf,
    records,
    close() {
      bpf.stopReader();
      bpf.close();
    },
  };
}

/** A record as comparable text: every field but the times (each object binds owners at its own moment). */
function fields(v: DataView, at: number): Record<string, unknown> {
  return {
    kind: tcpEv.kind(v, at),
    sk: tcpEv.skKey(v, at),
    pid: tcpEv.pid(v, at),
    tid: tcpEv.tid(v, at),
    goid: tcpEv.goid(v, at),
    comm: tcpEv.comm(v, at),
    role: tcpEv.role(v, at),
    family: tcpEv.family(v, at),
    local: `${tcpEv.saddr(v, at)}:${tcpEv.sport(v, at)}`,
    remote: `${tcpEv.daddr(v, at)}:${tcpEv.dport(v, at)}`,
    states: `${tcpEv.oldState(v, at)}->${tcpEv.newState(v, at)}`,
    error: tcpEv.error(v, at),
    flags: tcpEv.flags(v, at),
    acked: tcpEv.bytesAcked(v, at),
    received: tcpEv.bytesReceived(v, at),
    sent: tcpEv.bytesSent(v, at),
    srttUs: tcpEv.srttUs(v, at),
    retrans: tcpEv.totalRetrans(v, at),
  };
}

function decoded(p: Path, keep: (r: Record<string, unknown>) => boolean): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const b of p.records) forEachTcpEvent(b, (v, at) => {
    const r = fields(v, at);
    if (keep(r)) out.push(r);
  });
  return out.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

async function drain(paths: Path[]): Promise<void> {
  await sleep(200);
  for (const p of paths) p.bpf.stopReader();
  await sleep(100); // the last batches come through the event loop
  for (const p of paths) p.bpf.startReader([{ map: 'tcp_events', recordSize: tcpEventLayout.size }], (_r, b) => p.records.push(Buffer.from(b)));
}

const noBpf = await bpfUnavailable();

t.test('BTF and classic programs, raw and classic syscall hooks: the same records for the same events', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  let paths: Path[];
  try {
    paths = [openPath('btf', 'raw'), openPath('classic', 'classic')];
  } catch (e) {
    t.fail(`cannot attach both paths here: ${(e as Error).message.split('\n')[0]}`);
    return;
  }
  t.teardown(() => paths.forEach((p) => p.close()));
  const register = (pid: number) => {
    const l = tcpLayoutOf(openGoBinary(`/proc/${pid}/exe`));
    for (const p of paths) p.bpf.updateElem('tcp_process_layouts', u32Key(pid), encodeTcpProcessLayout(l.tlsGOffset, l.goidOffset));
  };
  const tcpnet = buildTcpnet();
  const pids = new Set<number>();
  const procs: Child[] = [];
  t.teardown(() => procs.forEach((p) => p.kill()));
  const start = async (args: string[], ready: RegExp): Promise<Child> => {
    const p = startChild(tcpnet, args);
    procs.push(p);
    await p.until(ready);
    pids.add(p.pid);
    register(p.pid);
    return p;
  };

  // A server, two clients that move bytes and close (one of them abortively), a refused connect, and a
  // connect(2) that fails before any SYN (a broadcast address: ENETUNREACH from the routing decision).
  const server = await start(['server', '-listen', '127.0.0.1:0', '-recv', '3000', '-send', '5000'], /^LISTEN .* addr=\S+$/m);
  const addr = (await server.lines(/^LISTEN .* addr=(\S+)$/, 1))[0][1]; // start() consumed the line: lines() reads it again
  const c1 = await start(['client', '-connect', addr, '-n', '2', '-send', '3000', '-recv', '5000', '-wait'], /^CLIENT pid=/m);
  c1.send('go');
  await c1.until(/^BYE$/m);
  const c2 = await start(['client', '-connect', addr, '-send', '3000', '-recv', '5000', '-linger0', '-wait'], /^CLIENT pid=/m);
  c2.send('go');
  await c2.until(/^BYE$/m);
  const closedPort = splitHostPort(addr).port; // free again once the server is gone
  await server.end();
  const refused = await start(['client', '-connect', `127.0.0.1:${closedPort}`, '-wait'], /^CLIENT pid=/m);
  refused.send('go');
  const refusedErr = await refused.until(/^DIALERR goid=(\d+) err=(.*)$/m);
  t.match(refusedErr[2], /connection refused/, 'the connect was refused');
  const unreachable = await start(['client', '-connect', '255.255.255.255:9', '-wait'], /^CLIENT pid=/m);
  unreachable.send('go');
  const unreachErr = await unreachable.until(/^DIALERR goid=(\d+) err=(.*)$/m);
  t.match(unreachErr[2], /network is unreachable/, 'the connect failed before any SYN');
  for (const p of procs) await p.exit();
  await drain(paths);

  // Ours: by pid, and the kernel's resets for no socket by the closed port.
  const ours = (r: Record<string, unknown>) => pids.has(r.pid as number) || (r.pid === 0 && ((r.local as string).endsWith(`:${closedPort}`) || (r.remote as string).endsWith(`:${closedPort}`)));
  const [btf, classic] = paths.map((p) => decoded(p, ours));
  t.ok(btf.length >= 15, `records of these programs (${btf.length})`);
  t.same(btf, classic, `${paths[0].name} and ${paths[1].name}: the same records`);
  for (const p of paths) t.same(Object.values(percpuCounters(p.bpf, 'drop_counts', TcpEventKind)).filter((n) => n > 0), [], `${p.name}: nothing dropped`);

  // What each side computes on its own, against the programs' own account.
  const reset = btf.find((r) => r.kind === TcpEventKind.resetSent && r.sk === 0 && (r.local as string).endsWith(`:${closedPort}`));
  t.ok(reset, 'the kernel\'s reset for the closed port: no socket, its addresses read from the packet (local = the closed port)');
  const clientSide = btf.find((r) => r.kind === TcpEventKind.resetReceived && r.pid === refused.pid);
  t.ok(clientSide, 'the refused client received the reset');
  t.equal(reset?.remote, clientSide?.local, "the reset went to the client's port (the packet's 4-tuple reversed)");
  const early = btf.find((r) => r.kind === TcpEventKind.connect && r.pid === unreachable.pid);
  t.match(early, { error: 101 /* ENETUNREACH */, goid: Number(unreachErr[1]), remote: '255.255.255.255:9', role: 1 }, 'the failure before any SYN: its errno, the goroutine that dialled, the address');
});
