// Connections that existed before the agent started, from the kernel's socket table through iproute2's ss
// (netlink sock_diag): the 4-tuple, the state, tcp_info (bytes_acked, bytes_received, rtt, retransmits) and
// the owning processes (ss -p maps socket inodes in /proc/PID/fd). One ss per network namespace asked for.
import { execFileSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';

export interface SeededSocket {
  state: string;
  family: 'inet' | 'inet6';
  localAddress: string;
  localPort: number;
  peerAddress: string;
  peerPort: number;
  pids: number[];
  inode: number;
  bytesAcked: number;
  bytesReceived: number;
  srttUs: number | null;
  retransmits: number;
}

const ssStates: Record<string, string> = {
  ESTAB: 'established',
  'SYN-SENT': 'syn_sent',
  'SYN-RECV': 'syn_recv',
  'FIN-WAIT-1': 'fin_wait1',
  'FIN-WAIT-2': 'fin_wait2',
  'TIME-WAIT': 'time_wait',
  CLOSE: 'closed',
  'CLOSE-WAIT': 'close_wait',
  'LAST-ACK': 'last_ack',
  LISTEN: 'listen',
  CLOSING: 'closing',
  UNCONN: 'closed',
};

/** "127.0.0.1:80", "[::1]:80", "[::ffff:10.0.0.1]:80", "127.0.0.1%lo:80", "*:80" */
export function parseEndpoint(s: string): { address: string; port: number; family: 'inet' | 'inet6' } {
  const colon = s.lastIndexOf(':');
  let addr = s.slice(0, colon);
  const port = s.slice(colon + 1) === '*' ? 0 : Number(s.slice(colon + 1));
  const pct = addr.indexOf('%');
  if (pct >= 0) addr = addr.slice(0, pct);
  let family: 'inet' | 'inet6' = 'inet';
  if (addr.startsWith('[')) {
    addr = addr.slice(1, addr.endsWith(']') ? -1 : undefined);
    family = 'inet6';
  }
  if (addr === '*') addr = family === 'inet6' ? '::' : '0.0.0.0';
  return { address: addr, port, family };
}

export function parseSs(text: string): SeededSocket[] {
  const out: SeededSocket[] = [];
  let cur: SeededSocket | undefined;
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    if (/^\s/.test(line)) {
      if (!cur) continue;
      const acked = /\bbytes_acked:(\d+)/.exec(line);
      const recv = /\bbytes_received:(\d+)/.exec(line);
      const rtt = /\brtt:([\d.]+)\//.exec(line);
      const retrans = /\bretrans:\d+\/(\d+)/.exec(line);
      if (acked) cur.bytesAcked = Number(acked[1]);
      if (recv) cur.bytesReceived = Number(recv[1]);
      if (rtt) cur.srttUs = Math.round(Number(rtt[1]) * 1000);
      if (retrans) cur.retransmits = Number(retrans[1]);
      continue;
    }
    const f = line.trim().split(/\s+/);
    // State Recv-Q Send-Q Local Peer [users:((...))] [timer:...] [ino:N] [sk:...] ...
    if (f.length < 5) continue;
    const local = parseEndpoint(f[3]);
    const peer = parseEndpoint(f[4]);
    const pids = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
    const ino = /\bino:(\d+)/.exec(line);
    cur = {
      state: ssStates[f[0]] ?? f[0].toLowerCase(),
      family: local.family === 'inet6' || peer.family === 'inet6' ? 'inet6' : 'inet',
      localAddress: local.address,
      localPort: local.port,
      peerAddress: peer.address,
      peerPort: peer.port,
      pids: [...new Set(pids)],
      inode: ino ? Number(ino[1]) : 0,
      bytesAcked: 0,
      bytesReceived: 0,
      srttUs: null,
      retransmits: 0,
    };
    out.push(cur);
  }
  return out;
}

/** The network namespace (inode link text) of a process, or undefined if it is gone. */
export function netnsOf(pid: number | 'self'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/**
 * The TCP sockets of the agent's network namespace and of each namespace the given processes live in.
 * Sockets without an owning process (TIME-WAIT, orphans) are returned too, with no pids.
 */
export function seedSockets(pids: number[] = []): SeededSocket[] {
  const args = ['-t', '-a', '-i', '-n', '-p', '-e', '-H'];
  const seen = new Set<string>();
  const out: SeededSocket[] = [];
  const run = (prefix: string[]): void => {
    const cmd = prefix.length ? 'nsenter' : 'ss';
    const argv = prefix.length ? [...prefix, 'ss', ...args] : args;
    try {
      out.push(...parseSs(execFileSync(cmd, argv, { encoding: 'utf8', maxBuffer: 256 << 20, stdio: ['ignore', 'pipe', 'ignore'] })));
    } catch {
      /* no ss, or the namespace is gone: nothing to seed from it */
    }
  };
  const self = netnsOf('self');
  if (self) seen.add(self);
  run([]);
  for (const pid of pids) {
    const ns = netnsOf(pid);
    if (!ns || seen.has(ns)) continue;
    seen.add(ns);
    run([`--net=/proc/${pid}/ns/net`]);
  }
  return out;
}
