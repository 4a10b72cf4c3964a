// Turns what the tracer knows into records for the collector, selectively: a busy service creates 1e5
// goroutines a second, most living microseconds. Shipped: every goroutine that lived past minAgeMs, every
// pre-existing one, and whole units of work (traces, chosen by a hash of their root's goid) among the short-lived;
// the counts of all of them travel in the window records.
//
// Each shipped goroutine carries its place in the trace model (collector/src/otel/trace-model.ts), decided here
// where every goroutine is known: the root of its trace, which of its spans a record is about, its long parks
// with their wakers. What is shipped is exported, so a shipped goroutine ships its parent in the same trace with
// it (the parent is present), and a live goroutine's record is sent again at the end of each report interval
// (its span of that interval: long-lived goroutines are seen while alive).
import {
  MAX_LONG_PARKS, type AgentRecord, type ConnectionRecord, type GoroutineRecord, type LongParkRecord, type ProcessRecord, type WindowRecord,
} from '../../../collector/src/protocol/records.ts';
import { defaultTraceOptions, segmentAt, type ExitedGoroutine, type ExitSummary, type GoroutineRow, type LongPark } from '../model/goroutine-table.ts';
import { waitReasonString } from '../gobinary/layouts.ts';
import { parkSampled } from '../overhead/sampling.ts';
import { goroutineRecord } from '../snapshot/snapshot.ts';
import { monoToWallMs } from '../tracer/clock.ts';
import type { TracedProcess } from '../tracer/goroutine-tracer.ts';
import type { ProcessMetadataSource } from '../k8s/pod-metadata.ts';

export interface SelectionPolicy {
  /** Goroutines younger than this are shipped only when their unit of work is sampled. */
  minAgeMs: number;
  /** Share of short-lived units of work (whole traces) shipped anyway. */
  shortLivedSample: number;
  /** Ship the runtime's own goroutines too. */
  system: boolean;
  /** Connections open at least this long are exported (as are failed ones, and those of shipped goroutines). */
  longConnectionMs: number;
  /** Report-interval records per process and ship at most; the rest wait for the next interval (counted). */
  maxSegmentReports: number;
  /** A connection's span ends every segmentMs while it is open (goroutines: TraceOptions.segmentMs, the same value). */
  segmentMs: number;
}

export const defaultPolicy: SelectionPolicy = {
  minAgeMs: 1000, shortLivedSample: 0.01, system: false, longConnectionMs: 10_000, maxSegmentReports: 2000, segmentMs: defaultTraceOptions.segmentMs,
};

interface ProcCursor {
  exitSerial: number;
  windowsTo: number;
  /** When the last build ran (monotonic ns): report intervals that ended since are re-sent. */
  builtAt: number;
}

/** The share of a stretch of wall time during which park and ready probes were on (OverheadGovernor). */
export type ParkCoverage = (pid: number, fromMs: number, toMs: number) => number;

export class RecordBuilder {
  private readonly cursors = new Map<number, ProcCursor>();
  /** Report-interval records left out because a process had more than maxSegmentReports at once. */
  segmentReportsDropped = 0;

  constructor(private readonly policy: SelectionPolicy = defaultPolicy, private readonly coverage: ParkCoverage = () => 1) {}

  /** `metadata` names the process's container and pod (agent/src/k8s); without it both stay null. */
  processRecord(proc: TracedProcess, exitedAt: number | null = null, metadata?: ProcessMetadataSource | null): ProcessRecord {
    const m = metadata?.lookup(proc.info.pid, proc.info.startTime) ?? null;
    return {
      kind: 'process',
      pid: proc.info.pid,
      startTime: proc.info.startTime,
      exe: proc.info.exe,
      goVersion: proc.binary.goVersion,
      containerId: m?.containerId ?? null,
      pod: m?.pod ? { name: m.pod.name, namespace: m.pod.namespace, uid: m.pod.uid, container: m.container } : null,
      seenAt: monoToWallMs(proc.attachedAt),
      exitedAt,
      serviceVersion: proc.binary.serviceVersion,
    };
  }

  private wanted(row: Omit<ExitSummary, 'exitedAt'>, until: number): boolean {
    if (row.shipped || row.mustShip || row.preexisting) return true;
    if (row.createdAt === null || (until - row.createdAt) / 1e6 >= this.policy.minAgeMs) return true;
    return parkSampled(row.root, this.policy.shortLivedSample);
  }

  /** One function for every build (a closure made per call is a new call target to the optimised code). */
  private readonly wantedExit = (e: ExitSummary): boolean => this.wanted(e, e.exitedAt);

  /** The records that changed for one process since the last call. */
  build(proc: TracedProcess, windows: WindowRecord[], now: number): AgentRecord[] {
    const pid = proc.info.pid;
    let cur = this.cursors.get(pid);
    if (!cur) this.cursors.set(pid, (cur = { exitSerial: 0, windowsTo: 0, builtAt: proc.attachedAt }));
    const out: AgentRecord[] = [];
    const table = proc.table;
    const keep = (g: GoroutineRecord) => this.policy.system || !g.system;
    for (const row of table.takeChanged(now)) {
      if (!this.wanted(row, now)) continue;
      const g = this.goroutine(proc, row, now, null);
      if (!keep(g) && !row.mustShip) continue;
      this.ship(proc, g, out, now);
    }
    // Only the wanted exits are made into rows (most are short-lived goroutines of traces not sampled).
    for (const row of table.exitedSince(cur.exitSerial, this.wantedExit)) {
      const g = this.goroutine(proc, row, row.exitedAt, null);
      if (!keep(g) && !row.mustShip) continue;
      this.ship(proc, g, out, now);
    }
    cur.exitSerial = table.lastExitSerial;
    // The span of each report interval that ended, for goroutines alive across it.
    let reports = 0;
    for (const { goid, segment } of table.segmentsEnded(cur.builtAt, now)) {
      const row = table.lookup(goid, now);
      if (!row || 'exitedAt' in row) continue;
      if (!this.wanted(row, now)) continue;
      if (++reports > this.policy.maxSegmentReports) {
        this.segmentReportsDropped++;
        continue;
      }
      const g = this.goroutine(proc, row, now, segment);
      if (keep(g)) this.ship(proc, g, out, now);
    }
    cur.builtAt = now;
    for (const w of windows) {
      if (w.to <= cur.windowsTo) continue;
      out.push(w);
      cur.windowsTo = w.to;
    }
    return out;
  }

  /** Ships g, marks it shipped, and ships its ancestors in the same trace that were not (so its parent is present). */
  private ship(proc: TracedProcess, g: GoroutineRecord, out: AgentRecord[], now: number): void {
    out.push(g);
    proc.table.markShipped(g.goid);
    let child = g;
    for (let depth = 0; depth < 64 && child.trace && child.trace.root !== child.goid && child.parentGoid; depth++) {
      const parent = proc.table.lookup(child.parentGoid, now);
      if (!parent || parent.shipped || parent.root !== child.trace.root) return;
      const exited = 'exitedAt' in parent;
      const p = this.goroutine(proc, parent, exited ? (parent as ExitedGoroutine).exitedAt : now, null);
      out.push(p);
      proc.table.markShipped(p.goid);
      child = p;
    }
  }

  /**
   * A goroutine's record with its place in the trace model. `segment` set: the record of that report interval's
   * end (the goroutine alive); else its current span, ended by its exit when it exited.
   */
  goroutine(proc: TracedProcess, row: GoroutineRow | ExitedGoroutine, at: number, segment: number | null): GoroutineRecord {
    const exitedAt = 'exitedAt' in row ? row.exitedAt : null;
    const g: GoroutineRecord = goroutineRecord(proc, row, at);
    if (exitedAt !== null) {
      g.state = 'dead';
      g.exitedAt = monoToWallMs(exitedAt);
    }
    const table = proc.table;
    const R = table.segmentNs;
    const k = segment ?? segmentAt(row.traceStart, at, R);
    const from = row.traceStart + k * R;
    g.trace = { root: row.root, segment: k, from: monoToWallMs(from) };
    if (segment !== null) {
      const to = from + R;
      g.trace.to = monoToWallMs(to);
      const parkedSince = row.waitingSince ?? row.lastParkAt;
      if (row.state === 'waiting' && parkedSince !== null && to - parkedSince >= table.trace.parkSpanMinMs * 1e6) {
        g.trace.parked = { waitReason: g.waitReason, from: monoToWallMs(parkedSince) };
      }
    }
    if (row.root === row.goid && row.parentGoid && row.createdAt !== null) g.trace.creator = table.placeAt(row.parentGoid, row.createdAt);
    const parks = 'longParks' in row ? row.longParks : table.takeLongParks(row.goid);
    if (parks.length) g.longParks = parks.slice(-MAX_LONG_PARKS).map((p) => this.longPark(proc, row, p));
    const spanFrom = segment !== null ? from : row.createdAt ?? row.traceStart;
    g.parkCoverage = this.coverage(proc.info.pid, monoToWallMs(spanFrom), monoToWallMs(exitedAt ?? (segment !== null ? from + R : at)));
    return g;
  }

  private longPark(proc: TracedProcess, row: GoroutineRow, p: LongPark): LongParkRecord {
    const R = proc.table.segmentNs;
    const k = segmentAt(row.traceStart, p.to, R);
    return {
      waitReason: p.reason === 255 ? null : waitReasonString(proc.layout, p.reason),
      from: monoToWallMs(p.from),
      to: monoToWallMs(p.to),
      segment: k,
      segmentFrom: monoToWallMs(row.traceStart + k * R),
      waker: p.waker,
    };
  }

  /**
   * A connection's place in the trace model, when it is exported: failed, open long, or used by a goroutine that is
   * shipped (that goroutine is shipped with it, so the connection's parent is present). Server connections are
   * children of the goroutine their acceptor started for them, with a link to the acceptor.
   */
  connection(proc: TracedProcess | undefined, c: ConnectionRecord, start: number, now: number, out: AgentRecord[], segment: { segment: number; from: number; to: number } | null = null): ConnectionRecord {
    const open = start;
    const lived = (c.closedAt ?? c.observedAt) - open;
    const failed = c.error !== null || c.resets > 0;
    const table = proc?.table;
    let servedBy = c.servedBy ?? null;
    if (table && c.role === 'server' && c.goid !== null && servedBy === null && c.openedAt !== null) {
      table.markAcceptor(c.goid);
      servedBy = table.startedAfter(c.goid, now - (monoToWallMs(now) - c.openedAt) * 1e6);
    }
    const user = c.role === 'server' ? servedBy ?? c.goid : c.goid;
    const at = now - (monoToWallMs(now) - open) * 1e6; // the open time on the monotonic clock
    const userRow = table && user !== null ? table.lookup(user, now) : undefined;
    const userUntil = userRow && 'exitedAt' in userRow ? (userRow as ExitedGoroutine).exitedAt : now;
    const exported = failed || segment !== null || lived >= this.policy.longConnectionMs || (userRow !== undefined && (userRow.shipped || this.wanted(userRow, userUntil)));
    const rec: ConnectionRecord = { ...c, servedBy };
    if (!exported) return rec;
    const parent = table && user !== null ? table.placeAt(user, at) : null;
    const links = [];
    if (table && c.role === 'server' && servedBy !== null && c.goid !== null) {
      const acceptor = table.placeAt(c.goid, at);
      if (acceptor) links.push(acceptor);
    }
    const R = this.policy.segmentMs;
    const k = Math.max(0, Math.floor(((c.closedAt ?? c.observedAt) - open) / R));
    const seg = segment ?? { segment: k, from: open + k * R, to: undefined };
    rec.trace = { parent, links, segment: seg.segment, from: seg.from, ...(seg.to !== undefined ? { to: seg.to } : {}) };
    // The goroutine it hangs off is shipped too.
    if (proc && userRow && !userRow.shipped && parent) {
      const exited = 'exitedAt' in userRow;
      this.ship(proc, this.goroutine(proc, userRow, exited ? (userRow as ExitedGoroutine).exitedAt : now, null), out, now);
    }
    return rec;
  }

  forget(pid: number): void {
    this.cursors.delete(pid);
  }
}
