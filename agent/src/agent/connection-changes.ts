// Which connections changed since they were last shipped, and running totals per process for the metrics.
// A connection is identified by its process and 4-tuple and when it opened (as the collector stores it).
import type { ConnectionRecord } from '../../../collector/src/protocol/records.ts';

export interface TcpTotals {
  opened: number;
  closed: number;
  failed: number;
  retransmits: number;
  resets: number;
}

const identity = (c: ConnectionRecord) => `${c.pid}|${c.localAddress}|${c.localPort}|${c.peerAddress}|${c.peerPort}|${c.openedAt ?? 0}`;
const signature = (c: ConnectionRecord) => `${c.state}|${c.closedAt}|${c.bytesSent}|${c.bytesReceived}|${c.retransmits}|${c.resets}|${c.error}`;

export class ConnectionChanges {
  private readonly last = new Map<string, ConnectionRecord>();
  readonly totals = new Map<number, TcpTotals>();

  constructor(private readonly maxTracked = 200_000) {}

  /** The records that are new or changed; closed ones are forgotten once shipped. */
  take(records: ConnectionRecord[]): ConnectionRecord[] {
    const out: ConnectionRecord[] = [];
    for (const c of records) {
      const id = identity(c);
      const before = this.last.get(id);
      if (before && signature(before) === signature(c)) continue;
      out.push(c);
      const t = this.totals.get(c.pid) ?? { opened: 0, closed: 0, failed: 0, retransmits: 0, resets: 0 };
      this.totals.set(c.pid, t);
      if (!before && !c.preexisting) t.opened++;
      if (c.closedAt !== null && before?.closedAt == null) {
        t.closed++;
        if (c.error) t.failed++;
      }
      t.retransmits += Math.max(0, c.retransmits - (before?.retransmits ?? 0));
      t.resets += Math.max(0, c.resets - (before?.resets ?? 0));
      if (c.closedAt !== null) this.last.delete(id);
      else {
        this.last.set(id, c);
        if (this.last.size > this.maxTracked) this.last.delete(this.last.keys().next().value!);
      }
    }
    return out;
  }
}
