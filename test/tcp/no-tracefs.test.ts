// TCP tracing on a node without tracefs, as a fresh node is: `goroscope snapshot` runs in a private mount
// namespace where tracefs is unmounted (unshare -m: nothing changes on this machine), against real Go
// programs that move known byte counts, and must report those connections exactly (by default with no syscall
// hook: the accepting goroutine from a uprobe in Go's accept). Also the paths around it, with syscall hooks asked for:
// the raw sys_exit program (what the agent uses where it may not mount tracefs), the
// classic tracepoints of a kernel without BTF (forced here, with tracefs mounted in the namespace), and, in a
// process without CAP_SYS_ADMIN, the choice of path and the one line said when classic tracepoints cannot
// have their ids.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { bpfUnavailable } from '../lib/bpf.ts';
import { repoRoot } from '../lib/go.ts';
import { run, startChild, type Child } from '../lib/child.ts';
import { buildTcpnet } from './lib.ts';

const goroscope = join(repoRoot, 'bin', 'goroscope.js');
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !/TAP/i.test(k) && !/^GOROSCOPE_TCP_/.test(k)));
const noBpf = await bpfUnavailable();
const noUnshare = noBpf ? undefined : await canUnshare();

async function canUnshare(): Promise<string | undefined> {
  const r = await run('unshare', ['-m', 'true'], { timeoutMs: 10_000 });
  return r.code === 0 ? undefined : `unshare -m failed (${r.code ?? r.signal}: ${r.stderr.trim()}): a private mount namespace is needed`;
}

const SEND = 23_456;
const RECV = 65_432;
const N = 3;

interface Case {
  /** Shell commands run in the namespace before the snapshot (tracefs is unmounted first). */
  setup?: string;
  /** Whether tracefs is mounted in the namespace when the snapshot starts (checked). */
  tracefs: boolean;
  env?: Record<string, string>;
}

interface Snapshot {
  connections?: Array<{ pid: number; goid: number | null; role: string; state: string; bytesSent: number; bytesReceived: number; localPort: number; peerPort: number; error: string | null }>;
  parts?: Array<{ name: string; up: boolean; detail?: string }>;
  events: { created: number };
}

/** `goroscope snapshot --pid PID --json --duration 3s` in a private mount namespace. */
function startSnapshot(t: Test, pid: number, c: Case): Child {
  const script = [
    'umount /sys/kernel/tracing 2>/dev/null',
    'umount /sys/kernel/debug/tracing 2>/dev/null',
    c.setup ?? 'true',
    c.tracefs
      ? "grep -q ' tracefs ' /proc/self/mounts || { echo 'test: tracefs should be mounted here' >&2; exit 97; }"
      : "! grep -q ' tracefs ' /proc/self/mounts || { echo 'test: tracefs is still mounted' >&2; exit 97; }",
    'exec "$@"',
  ].join('\n');
  const argv = ['-m', 'sh', '-c', script, 'sh', 'env', '-u', 'NODE_OPTIONS', process.execPath, goroscope, 'snapshot', '--pid', String(pid), '--json', '--duration', '3s'];
  return startChild('unshare', argv, { env: { ...cleanEnv, ...c.env }, what: 'snapshot in a private mount namespace', timeoutMs: 45_000, t });
}

/** A Go server and a Go client that waits for "go": N connections, SEND bytes up and RECV down each. */
async function startPair(): Promise<{ server: Child; client: Child; addr: string }> {
  const tcpnet = buildTcpnet();
  const server = startChild(tcpnet, ['server', '-listen', '127.0.0.1:0', '-recv', String(SEND), '-send', String(RECV)]);
  const addr = (await server.until(/^LISTEN pid=\d+ goid=\d+ addr=(\S+)$/m))[1];
  const client = startChild(tcpnet, ['client', '-connect', addr, '-n', String(N), '-send', String(SEND), '-recv', String(RECV), '-wait']);
  await client.until(/^CLIENT pid=/m);
  return { server, client, addr };
}

function tcpPart(snap: Snapshot) {
  return snap.parts?.find((p) => p.name === 'tcp');
}

/** Runs the exchange under a snapshot of the client or the server and checks each connection's bytes exactly. */
async function exchange(t: Test, c: Case, side: 'client' | 'server'): Promise<Snapshot> {
  const { server, client } = await startPair();
  t.teardown(() => {
    client.kill();
    server.kill();
  });
  const target = side === 'client' ? client : server;
  const snap = startSnapshot(t, target.pid, c);
  await snap.inStderr(/observing pid/);
  client.send('go');
  const connects = await client.lines(/^CONNECT goid=(\d+) local=\S+:(\d+) remote=\S+$/, N);
  const dones = await client.lines(/^DONE local=\S+ remote=\S+ sent=(\d+) received=(\d+)/, N);
  for (const d of dones) t.same([Number(d[1]), Number(d[2])], [SEND, RECV], 'the client moved what it was told to');
  const accepts = await server.lines(/^ACCEPT goid=(\d+) local=\S+ remote=\S+:(\d+)$/, N);
  await client.until(/^BYE$/m);
  await server.lines(/^SERVED /, N);
  const { code } = await snap.exit();
  t.equal(code, 0, `the snapshot exits 0 (stderr: ${snap.err.slice(-1500)})`);
  const out: Snapshot = JSON.parse(snap.out);
  const conns = (out.connections ?? []).filter((x) => x.pid === target.pid && x.state === 'closed');
  // Each of the N connections, by the port the program itself printed, with its goroutine and exact bytes.
  const expected = side === 'client' ? connects.map((m) => ({ port: Number(m[2]), goid: Number(m[1]) })) : accepts.map((m) => ({ port: Number(m[2]), goid: Number(m[1]) }));
  for (const e of expected) {
    const x = conns.find((k) => (side === 'client' ? k.localPort : k.peerPort) === e.port);
    t.ok(x, `the ${side}'s connection on port ${e.port} is in the snapshot`);
    if (!x) continue;
    t.equal(x.role, side, 'its role');
    t.equal(x.goid, e.goid, `the goroutine that ${side === 'client' ? 'dialled' : 'accepted'} (as the program printed it)`);
    t.equal(x.bytesSent, side === 'client' ? SEND : RECV, 'bytes sent, exact');
    t.equal(x.bytesReceived, side === 'client' ? RECV : SEND, 'bytes received, exact');
    t.equal(x.error, null, 'no error');
  }
  t.ok(out.events.created >= N, `goroutines traced too: ${out.events.created} created (a goroutine per connection at least)`);
  return out;
}

const skip = noBpf ?? noUnshare ?? false;

t.test('tracefs unmounted: the BTF programs, no syscall hooks, report every connection with exact bytes and its accepting goroutine', { skip, timeout: 60_000 }, async (t) => {
  const snap = await exchange(t, { tracefs: false }, 'server');
  const part = tcpPart(snap);
  t.equal(part?.up, true, 'TCP is up');
  t.match(part?.detail, /^tp_btf events, no syscall hooks: accept owners from Go's accept \(no tracefs needed\)$/, `BTF-typed tracepoints, no syscall hook (${part?.detail})`);
});

t.test('tracefs unmounted, the raw sys_exit program (no tracefs at all): accept gets its owner', { skip, timeout: 60_000 }, async (t) => {
  const snap = await exchange(t, { tracefs: false, env: { GOROSCOPE_TCP_SYSCALLS: 'raw' } }, 'server');
  t.match(tcpPart(snap)?.detail, /^tp_btf events, raw sys_exit for connect\/accept \(no tracefs needed\)/, `no tracefs at all (${tcpPart(snap)?.detail})`);
});

t.test('classic tracepoints (a kernel without BTF), tracefs mounted in the namespace', { skip, timeout: 60_000 }, async (t) => {
  const snap = await exchange(t, { tracefs: true, setup: 'mount -t tracefs tracefs /sys/kernel/tracing', env: { GOROSCOPE_TCP_PROGRAMS: 'classic', GOROSCOPE_TCP_SYSCALLS: 'auto' } }, 'server');
  t.match(tcpPart(snap)?.detail, /^classic tracepoint events, classic syscall tracepoints for connect\/accept \(tracefs ids: mounted\)/, `classic (${tcpPart(snap)?.detail})`);
});

// Without CAP_SYS_ADMIN the goroutine probes cannot be attached on this kernel (its uprobe PMU asks for it), so
// this runs the TCP part alone, in a process that lacks it: what an agent without it decides.
const probe = `
import { tracepointIds } from './agent/src/bpf/tracefs.ts';
import { TcpTracer, describeAttachMode } from './agent/src/tcp/tcp-tracer.ts';
const out = {};
try { tracepointIds(['sock/inet_sock_set_state']); out.ids = 'read'; } catch (e) { out.ids = e.message; }
const auto = new TcpTracer({ seed: false });
auto.start();
out.auto = describeAttachMode(auto.attachMode);
await auto.close();
const hooks = new TcpTracer({ seed: false, syscalls: 'auto' });
hooks.start();
out.hooks = describeAttachMode(hooks.attachMode);
await hooks.close();
try { new TcpTracer({ seed: false, programs: 'classic' }); out.classic = 'loaded'; } catch (e) { out.classic = e.message; }
console.log(JSON.stringify(out));
`;

t.test('no tracefs and no CAP_SYS_ADMIN: raw syscalls; classic tracepoints say in one line what they need', { skip, timeout: 60_000 }, async (t) => {
  const script = "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; exec \"$@\"";
  const argv = ['-m', 'sh', '-c', script, 'sh', 'env', '-u', 'NODE_OPTIONS', 'setpriv', '--inh-caps=-sys_admin', '--bounding-set=-sys_admin', process.execPath, '--import', 'tsx', '--input-type=module', '-e', probe];
  const r = await run('unshare', argv, { cwd: repoRoot, env: cleanEnv, timeoutMs: 40_000 });
  t.equal(r.code, 0, `the probe ran (stderr: ${r.stderr.slice(-1000)})`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { ids: string; auto: string; hooks: string; classic: string };
  t.match(out.ids, /^tracefs is not mounted and the agent lacks CAP_SYS_ADMIN to mount it: mount -t tracefs tracefs \/sys\/kernel\/tracing on the node, or give the agent CAP_SYS_ADMIN$/, 'tracepoint ids: what is missing and the fix');
  t.equal(out.auto, "tp_btf events, no syscall hooks: accept owners from Go's accept (no tracefs needed)", 'by default: no syscall hook');
  t.equal(out.hooks, 'tp_btf events, raw sys_exit for connect/accept (no tracefs needed)', 'with --tcp-syscall-hooks, the path that needs no tracefs');
  t.notMatch(out.classic, /\n/, 'classic tracepoints: one line');
  t.match(out.classic, /^TCP tracing needs BTF \(\/sys\/kernel\/btf\/vmlinux\) or tracefs: .*mount -t tracefs tracefs \/sys\/kernel\/tracing/, 'classic tracepoints: what they need');
});
