// Syscall hooks are off by default: any of them puts every syscall of every process on the node on the kernel's
// slow path (scripts/bench/tcp-attach.ts). Checked against the kernel's own account of the links this process
// holds (/proc/self/fdinfo names each BPF link's tracepoint). Without them, a Go server's accepted connections
// keep their owner and the accepting goroutine (a uprobe in its net.(*netFD).accept, go-owner.ts), checked
// against what the server printed and against ss's owner of each socket; a non-Go server (python3) is known by
// its pid from its close. With --tcp-syscall-hooks, the syscall tracepoints are there.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { TcpTracer } from '../../agent/src/tcp/tcp-tracer.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';
import { startChild } from '../lib/child.ts';
import { goBuild, newestGo } from '../lib/go.ts';
import { buildTcpnet, python3Unavailable, tcpUnavailable, pythonPeerDone, splitHostPort, startPythonPeer, tcpnetSrc, waitFor } from './lib.ts';

interface Link {
  type: string;
  /** the tracepoint's name (raw or classic), or '' */
  tp: string;
}

/** The BPF links this process holds, as the kernel describes them in /proc/self/fdinfo. */
function ownLinks(): Link[] {
  const out: Link[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    let info: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target !== 'anon_inode:bpf_link') continue;
      info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile
    }
    const field = (name: string) => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(info)?.[1] ?? '';
    out.push({ type: field('link_type'), tp: field('tp_name') });
  }
  return out;
}

const isSyscallTracepoint = (l: Link) => /^sys_(enter|exit)/.test(l.tp);

const why = await tcpUnavailable();
if (why) t.test('TCP syscall hooks', { skip: `TCP tracing unavailable: ${why}` }, () => {});
else await main();

async function main(): Promise<void> {
  await t.test('the default plan attaches no syscall tracepoint; --tcp-syscall-hooks does', async (t) => {
    const before = ownLinks().filter(isSyscallTracepoint).length;
    const tr = new TcpTracer({ seed: false });
    tr.start();
    try {
      const links = ownLinks();
      t.equal(tr.attachMode.syscalls, 'none', 'no syscall hook in the plan');
      t.ok(links.some((l) => l.tp === 'inet_sock_set_state'), `the kernel lists the TCP tracepoints (${links.map((l) => l.tp).filter(Boolean).join(', ')})`);
      t.equal(links.filter(isSyscallTracepoint).length, before, 'and no syscall tracepoint, raw or classic');
    } finally {
      await tr.close();
    }
    const hooked = new TcpTracer({ seed: false, syscalls: 'auto' });
    hooked.start();
    try {
      t.not(hooked.attachMode.syscalls, 'none', `asked for: ${hooked.attachMode.syscalls}`);
      t.ok(ownLinks().filter(isSyscallTracepoint).length > before, 'the kernel lists its syscall tracepoints');
    } finally {
      await hooked.close();
    }
  });

  const tcpnet = buildTcpnet();
  const tr = new TcpTracer({ seed: false });
  tr.start();
  try {
    // The machine's Go, the oldest and the newest the agent knows: the site is found in each build's code.
    for (const version of [...new Set(['local', '1.19', newestGo])]) await t.test(`Go ${version} server, no syscall hooks: each accepted connection has its pid and accepting goroutine, as ss and the server say`, async (t) => {
      const N = 3;
      let bin: string;
      try {
        bin = version === 'local' ? tcpnet : goBuild({ srcDir: tcpnetSrc, name: 'tcpnet', version });
      } catch (e) {
        t.fail(`cannot build with Go ${version}: ${(e as Error).message.split('\n')[0]}`);
        return;
      }
      const server = startChild(bin, ['server', '-listen', '127.0.0.1:0', '-recv', '100', '-send', '200']);
      t.teardown(() => server.kill());
      const listen = await server.until(/^LISTEN pid=\d+ goid=\d+ addr=(\S+)$/m);
      const port = splitHostPort(listen[1]).port;
      const proc = tr.attach(openTarget(server.pid));
      t.equal(proc.ownerSkipped, null, 'the accept probe has its site');
      t.equal(proc.links.length, 1, 'and is attached');
      const client = startChild(tcpnet, ['client', '-connect', listen[1], '-n', String(N), '-send', '100', '-recv', '200', '-hold']);
      t.teardown(() => client.kill());
      const accepts = await server.lines(/^ACCEPT goid=(\d+) local=\S+ remote=(\S+)$/, N);
      await client.lines(/^DONE /, N);
      await client.until(/^HOLDING$/m);
      // The kernel's socket table while they are open: the process that holds each accepted socket.
      const ss = execFileSync('ss', ['-t', '-n', '-p', '-H', 'state', 'established', 'sport', '=', `:${port}`], { encoding: 'utf8' });
      for (const a of accepts) {
        const remote = splitHostPort(a[2]);
        const c = await waitFor(tr, () => tr.connections(server.pid).find((r) => r.peerPort === remote.port), `the accepted connection from ${a[2]}`);
        t.equal(c.role, 'server');
        t.equal(c.goid, Number(a[1]), `${a[2]}: the goroutine that accepted (${a[1]})`);
        const line = ss.split('\n').find((l) => l.includes(`:${remote.port} `) || l.includes(`:${remote.port}\t`));
        const ssPid = Number(/pid=(\d+)/.exec(line ?? '')?.[1]);
        t.equal(c.pid, ssPid, `${a[2]}: the pid ss gives the socket (${ssPid})`);
      }
      client.send('close');
      await client.until(/^BYE$/m);
      await server.end();
    });

    await t.test('non-Go server (python3), no syscall hooks: its pid from its close, a server by its listener, no goroutine', async (t) => {
      const noPython = python3Unavailable();
      if (noPython) {
        t.test('python3 server', { skip: noPython }, () => {});
        return;
      }
      const py = startPythonPeer('server', { send: 500, recv: 300 });
      t.teardown(() => py.kill());
      const m = await py.until(/^LISTEN (\d+) (\d+)$/m);
      const [pid, port] = [Number(m[1]), Number(m[2])];
      const client = startChild(tcpnet, ['client', '-connect', `127.0.0.1:${port}`, '-send', '300', '-recv', '500']);
      t.teardown(() => client.kill());
      const conn = await client.until(/^CONNECT goid=\d+ local=(\S+)/m);
      await client.until(/^BYE$/m);
      t.equal((await pythonPeerDone(py)).got, 300, 'python received what the client sent');
      const clientPort = splitHostPort(conn[1]).port;
      const c = await waitFor(tr, () => tr.connections(pid).find((r) => r.peerPort === clientPort && r.state === 'closed'), 'the python server side closed');
      t.equal(c.pid, pid, "python's pid");
      t.equal(c.goid, null, 'no goroutine');
      t.equal(c.role, 'server', 'a server: its process listens on its port');
      t.equal(c.bytesReceived, 300);
      t.equal(c.openedAt, null, 'when it was accepted is not known without the hooks');
      py.kill();
    });
  } finally {
    await tr.close();
  }
}
