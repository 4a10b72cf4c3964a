// Shared by the TCP tests: the tcpnet fixture (a Go server and client that print what they did), network
// namespaces joined by a veth pair, and ss as an oracle.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { TcpTracer } from '../../agent/src/tcp/tcp-tracer.ts';
import { startChild, type Child } from '../lib/child.ts';
import { goBuild, repoRoot } from '../lib/go.ts';

export const tcpnetSrc = join(repoRoot, 'test', 'fixtures', 'tcpnet');

export function buildTcpnet(): string {
  return goBuild({ srcDir: tcpnetSrc, name: 'tcpnet' });
}

/** host:port from Go's String() ("127.0.0.1:80", "[::1]:80"). */
export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  let host = s.slice(0, i);
  if (host.startsWith('[')) host = host.slice(1, -1);
  return { host, port: Number(s.slice(i + 1)) };
}

export interface SsInfo {
  local: string;
  peer: string;
  bytesAcked: number;
  bytesReceived: number;
  rttUs: number;
}

/** ss -tinH in a namespace (or ours): tcp_info of the established sockets. */
export function ssInfo(netns?: string): SsInfo[] {
  const args = ['-t', '-i', '-n', '-H', 'state', 'established'];
  // A busy node has thousands of sockets: more than execFileSync's default 1 MiB of output.
  const opts = { encoding: 'utf8' as const, maxBuffer: 256 << 20 };
  const out = netns ? execFileSync('ip', ['netns', 'exec', netns, 'ss', ...args], opts) : execFileSync('ss', args, opts);
  const res: SsInfo[] = [];
  let cur: SsInfo | undefined;
  for (const line of out.split('\n')) {
    if (!line.trim()) continue;
    if (/^\s/.test(line) && cur) {
      cur.bytesAcked = Number(/bytes_acked:(\d+)/.exec(line)?.[1] ?? 0);
      cur.bytesReceived = Number(/bytes_received:(\d+)/.exec(line)?.[1] ?? 0);
      cur.rttUs = Math.round(Number(/\brtt:([\d.]+)\//.exec(line)?.[1] ?? 0) * 1000);
      continue;
    }
    const f = line.trim().split(/\s+/);
    // with a state filter ss leaves the State column out: Recv-Q Send-Q Local Peer
    cur = { local: f[2], peer: f[3], bytesAcked: 0, bytesReceived: 0, rttUs: 0 };
    res.push(cur);
  }
  return res;
}

/** Why namespaces cannot be made here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  if (!existsSync('/usr/sbin/ip') && !existsSync('/sbin/ip') && !existsSync('/usr/bin/ip')) return 'iproute2 (ip) is not installed';
  const probe = `gs-probe-${process.pid}`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
    execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' });
    return undefined;
  } catch (e) {
    return `cannot create a network namespace: ${(e as Error).message.split('\n')[0]}`;
  }
}

export interface NetnsPair {
  a: string;
  b: string;
  /** the veth ends: vethA in a, vethB in b */
  vethA: string;
  vethB: string;
  a4: string;
  b4: string;
  a6: string;
  b6: string;
  destroy(): void;
}

const sh = (args: string[]): void => {
  execFileSync('ip', args, { stdio: 'pipe' });
};

/**
 * Two namespaces joined by a veth pair: 10.77.x.1/24 and 10.77.x.2/24, fd00:77::1/64 and fd00:77::2/64. Only
 * inside the namespaces: nothing is routed to or from the host's own interfaces.
 */
export function makeNetnsPair(tag: string): NetnsPair {
  const a = `gs-${tag}-a`;
  const b = `gs-${tag}-b`;
  const vethA = `gsv${tag}a`.slice(0, 15);
  const vethB = `gsv${tag}b`.slice(0, 15);
  const pair: NetnsPair = {
    a,
    b,
    vethA,
    vethB,
    a4: '10.77.0.1',
    b4: '10.77.0.2',
    a6: 'fd00:77::1',
    b6: 'fd00:77::2',
    destroy() {
      for (const ns of [a, b]) {
        try {
          sh(['netns', 'del', ns]);
        } catch {
          /* already gone */
        }
      }
    },
  };
  pair.destroy();
  try {
    sh(['netns', 'add', a]);
    sh(['netns', 'add', b]);
    sh(['-n', a, 'link', 'add', vethA, 'type', 'veth', 'peer', 'name', vethB, 'netns', b]);
    sh(['-n', a, 'addr', 'add', `${pair.a4}/24`, 'dev', vethA]);
    sh(['-n', b, 'addr', 'add', `${pair.b4}/24`, 'dev', vethB]);
    sh(['-n', a, 'addr', 'add', `${pair.a6}/64`, 'dev', vethA, 'nodad']);
    sh(['-n', b, 'addr', 'add', `${pair.b6}/64`, 'dev', vethB, 'nodad']);
    for (const [ns, dev] of [[a, vethA], [b, vethB]]) {
      sh(['-n', ns, 'link', 'set', 'lo', 'up']);
      sh(['-n', ns, 'link', 'set', dev, 'up']);
    }
  } catch (e) {
    pair.destroy();
    throw e;
  }
  return pair;
}

/** Runs a program inside a namespace; `ip netns exec` execs it, so the pid is the program's. */
export function startInNetns(ns: string, cmd: string, args: string[]): Child {
  return startChild('ip', ['netns', 'exec', ns, cmd, ...args], { what: `${args[0]} in ${ns}` });
}

/** Why the TCP programs cannot load here (a loud skip's reason), or undefined when they can. */
export async function tcpUnavailable(): Promise<string | undefined> {
  try {
    const tr = new TcpTracer({ seed: false });
    await tr.close();
    return undefined;
  } catch (e) {
    return `cannot load bpf/tcp.bpf.o here: ${(e as Error).message.split('\n')[0]}`;
  }
}

/** Why python3 (a non-Go program for the tests) cannot run here, or undefined when it can. */
export function python3Unavailable(): string | undefined {
  try {
    execFileSync('python3', ['--version'], { stdio: 'pipe' });
    return undefined;
  } catch (e) {
    return `python3 is not available: ${(e as Error).message.split('\n')[0]}`;
  }
}

// A non-Go twin of tcpnet (python3 minds indentation: the script starts at column 0). A server listens on
// 127.0.0.1 and prints `LISTEN pid port`, takes one connection, receives, then sends; a client connects to `port`,
// sends, then receives. Both print `DONE pid localPort received` once they closed; a server then waits for stdin.
const pythonPeerScript = [
  'import os, socket, sys',
  'role, port, send, recv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])',
  'if role == "server":',
  '    l = socket.socket()',
  '    l.bind(("127.0.0.1", 0))',
  '    l.listen()',
  '    print("LISTEN", os.getpid(), l.getsockname()[1], flush=True)',
  '    s, _ = l.accept()',
  'else:',
  '    s = socket.create_connection(("127.0.0.1", port))',
  '    s.sendall(b"p" * send)',
  'got = 0',
  'while got < recv:',
  '    d = s.recv(65536)',
  '    if not d: break',
  '    got += len(d)',
  'if role == "server":',
  '    s.sendall(b"q" * send)',
  'local = s.getsockname()[1]',
  's.close()',
  'print("DONE", os.getpid(), local, got, flush=True)',
  'if role == "server":',
  '    sys.stdin.read()',
].join('\n');

/** Starts the python3 peer (check python3Unavailable() first); `port` is the server's for a client. */
export function startPythonPeer(role: 'server' | 'client', o: { port?: number; send: number; recv: number }): Child {
  return startChild('python3', ['-c', pythonPeerScript, role, String(o.port ?? 0), String(o.send), String(o.recv)], { what: `python3 ${role}` });
}

/** `DONE pid localPort received` of a python3 peer. */
export async function pythonPeerDone(py: Child): Promise<{ pid: number; localPort: number; got: number }> {
  const m = await py.until(/^DONE (\d+) (\d+) (\d+)$/m);
  return { pid: Number(m[1]), localPort: Number(m[2]), got: Number(m[3]) };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Applies what the tracer's ring holds until `pick` finds what it waits for; throws after timeoutMs. */
export async function waitFor<T>(tr: TcpTracer, pick: () => T | undefined, what: string, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await tr.drain();
    const v = pick();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    await sleep(50);
  }
}
