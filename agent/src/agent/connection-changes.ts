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

export interface ConnectionSegment {
  record: ConnectionRecord;
  segment: number;
  from: number;
  to: number;
}

export class ConnectionChanges {
  private readonly last = new Map<string, ConnectionRecord>();
  /** When each open connection's spans start: its open, or when it was first seen (open before the agent). */
  private readonly startOf = new Map<string, number>();
  /**
   * Connections shipped closed: the TCP table keeps a closed connection for a while, and it must not be shipped
   * (and counted as opened) again each time it is listed. Bounded, oldest forgotten.
   */
  private readonly closed = new Set<string>();
  readonly totals = new Map<number, TcpTotals>();

  constructor(private readonly maxTracked = 200_000) {}

  /** The records that are new or changed; closed ones are forgotten once shipped. */
  take(records: ConnectionRecord[]): ConnectionRecord[] {
    const out: ConnectionRecord[] = [];
    for (const c of records) {
      const id = identity(c);
      if (this.closed.has(id)) continue;
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
      if (c.closedAt !== null) {
        this.last.delete(id);
        this.startOf.delete(id);
        this.closed.add(id);
        if (this.closed.size > this.maxTracked) this.closed.delete(this.closed.values().next().value!);
      } else {
        this.last.set(id, c);
        if (!this.startOf.has(id)) this.startOf.set(id, c.openedAt ?? c.observedAt);
        if (this.last.size > this.maxTracked) {
          const oldest = this.last.keys().next().value!;
          this.last.delete(oldest);
          this.startOf.delete(oldest);
        }
      }
    }
    return out;
  }

  /** When a connection's spans start: its open, or when it was first seen. */
  start(c: ConnectionRecord): number {
    return c.openedAt ?? this.startOf.get(identity(c)) ?? c.observedAt;
  }

  /**
   * Open connections whose span of a report interval ended in (afterMs, nowMs] (wall ms): each is exported again,
   * so a connection open for hours is seen while open. At most `max`, the longest open first.
   */
  segmentsEnded(afterMs: number, nowMs: number, segmentMs: number, max = 2000): ConnectionSegment[] {
    const out: ConnectionSegment[] = [];
    for (const [id, c] of this.last) {
      const start = this.startOf.get(id) ?? c.openedAt ?? c.observedAt;
      const last = Math.floor((nowMs - start) / segmentMs);
      const before = Math.max(0, Math.floor((afterMs - start) / segmentMs));
      for (let k = Math.max(before, last - 3); k < last; k++) out.push({ record: c, segment: k, from: start + k * segmentMs, to: start + (k + 1) * segmentMs });
      if (before === 0 && last > 3) out.push({ record: c, segment: 0, from: start, to: start + segmentMs });
    }
    return out.sort((a, b) => a.from - b.from).slice(0, max);
  }
}
