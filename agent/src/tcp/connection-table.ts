// The TCP connections of the traced processes: open ones keyed by the kernel's struct sock address (bounded),
// the most recent closed ones per process (bounded), listeners apart. Times are CLOSE_MONOTONIC ns.

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
  maxOpen?: number;
  maxClosedPerProcess?: number;
  maxListeners?: number;
  maxRecentlyClosed?: number;
}

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
  readonly recentlyClosed = new Map<number, Connection>();
  private readonly opts: Required<ConnectionTableOptions>;
  /** Connections forgotten to stay within the bounds (open ones evicted oldest first). */
  evictedOpen = 0;
  evictedClosed = 0;

  constructor(opts: ConnectionTableOptions = {}) {
    this.opts = {
      maxOpen: opts.maxOpen ?? 262_144,
      maxClosedPerProcess: opts.maxClosedPerProcess ?? 4096,
      maxListeners: opts.maxListeners ?? 16_384,
      maxRecentlyClosed: opts.maxRecentlyClosed ?? 8192,
    };
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
      this.recentlyClosed.delete(c.key);
      if (this.recentlyClosed.size >= this.opts.maxRecentlyClosed) this.recentlyClosed.delete(this.recentlyClosed.keys().next().value as number);
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

  listenersOf(pid?: number): Connection[] {
    return [...this.listeners.values()].filter((c) => pid === undefined || c.pid === pid);
  }

  /** Forgets a process's closed connections (e.g. once reported, or when it exits). */
  forgetClosed(pid: number): void {
    this.closed.delete(pid);
  }
}
