// The TCP connections of the traced processes: open ones keyed by the kernel's struct sock address (bounded),
// the most recent closed ones per process (bounded), listeners apart. Times are CLOSE_MONOTONIC ns. The table
// owns the connection state machine: apply() takes bpf/tcp.bpf.c's records as the ring hands them over, so it
// is tested with synthetic batches as well as with the kernel's.
import {
  AF_INET6,
  errnoName,
  TcpEventKind,
  tcpEv,
  TCP_FLAG_FIN_ACKED,
  TCP_FLAG_FIN_RECEIVED,
  TcpState,
  tcpStateNames,
} from '../events/tcp-event.ts';
import { monoToWallMs } from '../tracer/clock.ts';
import type { PeerStats } from './peer-stats.ts';
import { LRUCache } from 'lru-cache';

export type Role = 'client' | 'server' | 'listener' | 'unknown';

export interface Connection {
  /** struct sock address (low 48 bits); 0 for a seeded connection not yet seen by BPF */
  key: number;
  pid: number;
  tid: number;
  /** 0: not a Go process, or the goroutine could not be read */
  goid: number;
  comm: string;
  family: 'inet' | 'inet6';
  role: Role;
  localAddress: string;
  localPort: number;
  peerAddress: string;
  peerPort: number;
  state: string;
  openedNs: number | null;
  establishedNs: number | null;
  closedNs: number | null;
  /** payload bytes acknowledged by the peer (tcp_sock.bytes_acked less SYN and FIN) */
  bytesSent: number;
  /** payload bytes received (tcp_sock.bytes_received less the peer's FIN) */
  bytesReceived: number;
  /** tcp_sock.bytes_acked and bytes_received as the kernel keeps them (and ss -i shows): SYN/FIN included */
  kernelBytesAcked: number;
  kernelBytesReceived: number;
  /** tcp_sock.bytes_sent - bytes_retrans at close: payload transmitted */
  payloadTransmitted: number;
  srttUs: number | null;
  retransmits: number;
  resets: number;
  error: string | null;
  preexisting: boolean;
}

export interface ConnectionTableOptions {
  /** Per-peer aggregates the records also feed. */
  peers?: PeerStats;
  maxOpen?: number;
  maxClosedPerProcess?: number;
  maxListeners?: number;
  maxRecentlyClosed?: number;
}

const roleNames: Record<number, Role> = { 0: 'unknown', 1: 'client', 2: 'server', 3: 'listener' };

export function tupleKey(family: string, la: string, lp: number, pa: string, pp: number): string {
  return `${family}|${la}|${lp}|${pa}|${pp}`;
}

export class ConnectionTable {
  readonly open = new Map<number, Connection>();
  /** Seeded connections, by 4-tuple, until BPF reports on them (then they move to `open` by key). */
  readonly seeded = new Map<string, Connection>();
  readonly listeners = new Map<number, Connection>();
  private readonly closed = new Map<number, Connection[]>();
  /** Closed connections by key, for what the kernel does right after TCP_CLOSE (an abortive close changes
   * the state first and sends its reset after). Bounded; an open connection with the same key wins. */
  readonly recentlyClosed: LRUCache<number, Connection>;
  private readonly opts: Required<Omit<ConnectionTableOptions, 'peers'>>;
  private readonly peers?: PeerStats;
  /** Connections forgotten to stay within the bounds (open ones evicted oldest first). */
  evictedOpen = 0;
  evictedClosed = 0;
  /** Records about sockets with no known owner (closed before accept, or sockets of no traced process). */
  unowned = 0;
  /** Records of a kind this table does not know. */
  strayRecords = 0;
  /** Retransmit records applied (a sample when the BPF side samples them). */
  retransmitRecords = 0;

  constructor(opts: ConnectionTableOptions = {}) {
    this.peers = opts.peers;
    this.opts = {
      maxOpen: opts.maxOpen ?? 262_144,
      maxClosedPerProcess: opts.maxClosedPerProcess ?? 4096,
      maxListeners: opts.maxListeners ?? 16_384,
      maxRecentlyClosed: opts.maxRecentlyClosed ?? 8192,
    };
    this.recentlyClosed = new LRUCache({ max: this.opts.maxRecentlyClosed });
  }

  addOpen(c: Connection): void {
    if (!this.open.has(c.key) && this.open.size >= this.opts.maxOpen) {
      const oldest = this.open.keys().next().value as number;
      this.open.delete(oldest);
      this.evictedOpen++;
    }
    this.open.set(c.key, c);
  }

  addSeeded(c: Connection): void {
    if (this.seeded.size >= this.opts.maxOpen) {
      this.evictedOpen++;
      return;
    }
    this.seeded.set(tupleKey(c.family, c.localAddress, c.localPort, c.peerAddress, c.peerPort), c);
  }

  /** A seeded connection with this tuple, moved under the key BPF knows it by. */
  claimSeeded(key: number, family: string, la: string, lp: number, pa: string, pp: number): Connection | undefined {
    const t = tupleKey(family, la, lp, pa, pp);
    const c = this.seeded.get(t);
    if (!c) return undefined;
    this.seeded.delete(t);
    c.key = key;
    this.addOpen(c);
    return c;
  }

  addListener(c: Connection): void {
    if (!this.listeners.has(c.key) && this.listeners.size >= this.opts.maxListeners) {
      const oldest = this.listeners.keys().next().value as number;
      this.listeners.delete(oldest);
    }
    this.listeners.set(c.key, c);
  }

  /** Moves a connection to its process's closed list. */
  retire(c: Connection): void {
    this.open.delete(c.key);
    if (c.key > 0) {
      this.recentlyClosed.set(c.key, c);
    }
    let list = this.closed.get(c.pid);
    if (!list) this.closed.set(c.pid, (list = []));
    list.push(c);
    // Trimmed in bulk (amortised O(1) per close); readers see only the newest maxClosedPerProcess.
    const max = this.opts.maxClosedPerProcess;
    if (list.length >= 2 * max) {
      this.evictedClosed += list.length - max;
      list.splice(0, list.length - max);
    }
  }

  /** Open (seeded included) and recently closed connections, of one process or all. */
  all(pid?: number): Connection[] {
    const out: Connection[] = [];
    for (const c of this.open.values()) if (pid === undefined || c.pid === pid) out.push(c);
    for (const c of this.seeded.values()) if (pid === undefined || c.pid === pid) out.push(c);
    const newest = (list: Connection[]): Connection[] => list.slice(-this.opts.maxClosedPerProcess);
    if (pid === undefined) for (const list of this.closed.values()) out.push(...newest(list));
    else out.push(...newest(this.closed.get(pid) ?? []));
    return out;
  }

  /** Whether the process has a listener on this port (a scan: listeners are few, and this is a rare path). */
  private listensOn(pid: number, port: number): boolean {
    for (const l of this.listeners.values()) if (l.pid === pid && l.localPort === port) return true;
    return false;
  }

  listenersOf(pid?: number): Connection[] {
    return [...this.listeners.values()].filter((c) => pid === undefined || c.pid === pid);
  }

  /** Forgets a process's closed connections (e.g. once reported, or when it exits). */
  forgetClosed(pid: number): void {
    this.closed.delete(pid);
  }

  private fromRecord(v: DataView, at: number, role: Role): Connection {
    const fam = tcpEv.family(v, at);
    const goid = tcpEv.goid(v, at);
    return {
      key: tcpEv.skKey(v, at),
      pid: tcpEv.pid(v, at),
      tid: tcpEv.tid(v, at),
      goid,
      comm: tcpEv.comm(v, at),
      family: fam === AF_INET6 ? 'inet6' : 'inet',
      role,
      localAddress: tcpEv.saddr(v, at),
      localPort: tcpEv.sport(v, at),
      peerAddress: tcpEv.daddr(v, at),
      peerPort: tcpEv.dport(v, at),
      state: tcpStateNames[tcpEv.newState(v, at)] ?? 'unknown',
      openedNs: tcpEv.boundNs(v, at) || null,
      establishedNs: null,
      closedNs: null,
      bytesSent: 0,
      bytesReceived: 0,
      kernelBytesAcked: 0,
      kernelBytesReceived: 0,
      payloadTransmitted: 0,
      srttUs: null,
      retransmits: 0,
      resets: 0,
      error: null,
      preexisting: false,
    };
  }

  private updateAddresses(c: Connection, v: DataView, at: number): void {
    const fam = tcpEv.family(v, at);
    if (!fam) return;
    c.family = fam === AF_INET6 ? 'inet6' : 'inet';
    c.localAddress = tcpEv.saddr(v, at);
    c.localPort = tcpEv.sport(v, at);
    c.peerAddress = tcpEv.daddr(v, at);
    c.peerPort = tcpEv.dport(v, at);
  }

  /** The open connection a record is about: by struct sock, else a seeded one with its 4-tuple. */
  private lookup(v: DataView, at: number): Connection | undefined {
    const key = tcpEv.skKey(v, at);
    const c = this.open.get(key);
    if (c || !this.seeded.size) return c;
    const fam = tcpEv.family(v, at) === AF_INET6 ? 'inet6' : 'inet';
    return this.claimSeeded(key, fam, tcpEv.saddr(v, at), tcpEv.sport(v, at), tcpEv.daddr(v, at), tcpEv.dport(v, at));
  }

  /** An event reports a connection the seed also found (it opened while ss ran): keep the event's. */
  private dropSeededTwin(c: Connection): void {
    if (this.seeded.size) this.seeded.delete(tupleKey(c.family, c.localAddress, c.localPort, c.peerAddress, c.peerPort));
  }

  /**
   * Applies one record of bpf/tcp.bpf.c (a view of its batch, at its offset): the connection state machine,
   * from connect/accept/listen through established to close, with retransmits and resets on the way.
   */
  apply(v: DataView, at: number): void {
    const peers = this.peers;
    const kind = tcpEv.kind(v, at);
    if (kind === TcpEventKind.retransmit) this.retransmitRecords++;
    const ts = tcpEv.tsNs(v, at);
    switch (kind) {
      case TcpEventKind.connect: {
        const c = this.fromRecord(v, at, 'client');
        c.openedNs = ts;
        const err = tcpEv.error(v, at);
        if (err) {
          // connect(2) failed before any SYN
          c.error = errnoName(err);
          c.state = 'closed';
          c.closedNs = ts;
          this.retire(c);
          peers?.add(c.localAddress, c.peerAddress, 'errors', 1, monoToWallMs(ts));
          return;
        }
        c.state = 'syn_sent';
        this.addOpen(c);
        peers?.add(c.localAddress, c.peerAddress, 'opened', 1, monoToWallMs(ts));
        return;
      }
      case TcpEventKind.accept: {
        const c = this.fromRecord(v, at, 'server');
        c.openedNs = ts;
        c.establishedNs = ts;
        c.srttUs = tcpEv.srttUs(v, at) || null;
        this.dropSeededTwin(c);
        peers?.add(c.localAddress, c.peerAddress, 'opened', 1, monoToWallMs(ts));
        if (tcpEv.newState(v, at) === TcpState.close) {
          // reset while it waited to be accepted: its close went by before we knew the owner
          c.closedNs = ts;
          c.error = 'ECONNRESET';
          this.retire(c);
          return;
        }
        this.addOpen(c);
        return;
      }
      case TcpEventKind.state: {
        const ns = tcpEv.newState(v, at);
        if (ns === TcpState.listen) {
          const c = this.fromRecord(v, at, 'listener');
          c.openedNs = ts;
          this.addListener(c);
          return;
        }
        if (ns === TcpState.established) {
          let c = this.open.get(tcpEv.skKey(v, at));
          if (!c) {
            if (!tcpEv.pid(v, at)) {
              this.unowned++;
              return;
            }
            c = this.fromRecord(v, at, roleNames[tcpEv.role(v, at)] ?? 'client');
            this.addOpen(c);
          }
          this.updateAddresses(c, v, at);
          this.dropSeededTwin(c);
          c.state = 'established';
          c.establishedNs = ts;
          c.srttUs = tcpEv.srttUs(v, at) || c.srttUs;
        }
        return;
      }
      case TcpEventKind.close: {
        if (tcpEv.oldState(v, at) === TcpState.listen) {
          this.listeners.delete(tcpEv.skKey(v, at));
          return;
        }
        let c = this.lookup(v, at);
        if (!c) {
          if (!tcpEv.pid(v, at)) {
            this.unowned++;
            return;
          }
          c = this.fromRecord(v, at, roleNames[tcpEv.role(v, at)] ?? 'unknown');
          // Bound only at its close (a server the accept probe does not see, without syscall hooks): when
          // it opened is not known, and it is a server when its process listens on its local port.
          if (c.role === 'unknown') {
            c.openedNs = null;
            this.updateAddresses(c, v, at);
            if (this.listensOn(c.pid, c.localPort)) c.role = 'server';
          }
        }
        this.updateAddresses(c, v, at);
        c.state = 'closed';
        c.closedNs = ts;
        c.kernelBytesAcked = tcpEv.bytesAcked(v, at);
        c.kernelBytesReceived = tcpEv.bytesReceived(v, at);
        c.payloadTransmitted = tcpEv.bytesSent(v, at);
        // Payload acknowledged: bytes_acked counts the sequence space, so less an active open's SYN (acked
        // once it left SYN_SENT) and our FIN when acked. Unknown role: the transmitted payload instead.
        const flags = tcpEv.flags(v, at);
        if (c.role === 'client' || c.role === 'server') {
          const syn = c.role === 'client' && tcpEv.oldState(v, at) !== TcpState.synSent ? 1 : 0;
          c.bytesSent = Math.max(0, c.kernelBytesAcked - syn - (flags & TCP_FLAG_FIN_ACKED ? 1 : 0));
        } else {
          c.bytesSent = c.payloadTransmitted;
        }
        c.bytesReceived = Math.max(0, c.kernelBytesReceived - (flags & TCP_FLAG_FIN_RECEIVED ? 1 : 0));
        c.srttUs = tcpEv.srttUs(v, at) || c.srttUs;
        c.retransmits = Math.max(c.retransmits, tcpEv.totalRetrans(v, at));
        const err = tcpEv.error(v, at);
        if (err) c.error = errnoName(err);
        else if (tcpEv.oldState(v, at) === TcpState.synSent && !c.error) c.error = 'connect failed';
        const wall = monoToWallMs(ts);
        peers?.add(c.localAddress, c.peerAddress, 'closed', 1, wall);
        peers?.add(c.localAddress, c.peerAddress, 'bytesSent', c.bytesSent, wall);
        peers?.add(c.localAddress, c.peerAddress, 'bytesReceived', c.bytesReceived, wall);
        if (c.error) peers?.add(c.localAddress, c.peerAddress, 'errors', 1, wall);
        this.retire(c);
        return;
      }
      case TcpEventKind.retransmit:
      case TcpEventKind.resetSent:
      case TcpEventKind.resetReceived: {
        const key = tcpEv.skKey(v, at);
        const c = key ? (this.lookup(v, at) ?? this.recentlyClosed.get(key)) : undefined;
        const field = kind === TcpEventKind.retransmit ? 'retransmits' : 'resets';
        if (c) c[field]++;
        else this.unowned++;
        if (tcpEv.family(v, at)) peers?.add(tcpEv.saddr(v, at), tcpEv.daddr(v, at), field, 1, monoToWallMs(ts));
        return;
      }
      default:
        this.strayRecords++;
    }
  }
}
