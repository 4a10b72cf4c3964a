// What the agent sends, every interval: each traced process's records (goroutines, windows, scheduler figures), the
// connections that changed and the spans of those open across a report interval's end, and whatever the other parts
// queued (process records, pauses, fatal errors, leak suspects, profiles), cut into batches for the collector and OTLP.
import { MAX_RECORDS_PER_BATCH, type AgentRecord } from '../../../collector/src/protocol/records.ts';
import type { OverheadGovernor } from '../overhead/governor.ts';
import { SchedReports } from '../sched/sched-report.ts';
import { callSiteOf } from '../snapshot/snapshot.ts';
import { monoNowNs, monoToWallMs } from '../tracer/clock.ts';
import type { ConnectionChanges } from './connection-changes.ts';
import type { TracedProcess } from '../tracer/goroutine-tracer.ts';
import type { TracedProcesses } from './processes.ts';
import type { RecordBuilder } from './record-builder.ts';
import type { Tracers } from './tracers.ts';

export interface OutboxOptions extends Tracers {
  governor?: OverheadGovernor;
  builder: RecordBuilder;
  connections: ConnectionChanges;
  processes: TracedProcesses;
  queue: AgentRecord[];
  pids?: number[];
  /** A live connection's span ends this often (the trace model's report interval). */
  segmentMs: number;
  /** Each batch, to every destination. */
  send(batch: AgentRecord[]): void;
}

export class Outbox {
  private connectionsShippedAt = Date.now();
  private readonly sched = new SchedReports();

  constructor(private readonly o: OutboxOptions) {}

  ship(): void {
    const { tracer, tcp, governor, builder, connections, processes, queue, pids } = this.o;
    const now = monoNowNs();
    if (tracer && governor) for (const proc of tracer.processes()) queue.push(...builder.build(proc, governor.closedWindows(proc.info.pid), now));
    if (tracer) this.shipSched(tracer.processes(), queue);
    if (tcp) {
      const wanted = tcp.connections().filter((c) => !pids || pids.includes(c.pid));
      for (const c of connections.take(wanted)) {
        // The collector files a connection under its process: an untraced process gets a process record first.
        processes.announce(c.pid);
        if (processes.known(c.pid)) queue.push(builder.connection(tracer?.process(c.pid), c, connections.start(c), now, queue));
      }
      // Connections open across a report interval's end: their span of that interval.
      const wallNow = Date.now();
      for (const seg of connections.segmentsEnded(this.connectionsShippedAt, wallNow, this.o.segmentMs)) {
        const c = seg.record;
        if (processes.known(c.pid)) queue.push(builder.connection(tracer?.process(c.pid), c, connections.start(c), now, queue, seg));
      }
      this.connectionsShippedAt = wallNow;
    }
    while (queue.length) this.o.send(queue.splice(0, MAX_RECORDS_PER_BATCH));
  }

  /** Each process's scheduler figures since its last record. */
  private shipSched(procs: Iterable<TracedProcess>, queue: AgentRecord[]): void {
    const live = new Set<number>();
    const nowMs = Date.now();
    for (const proc of procs) {
      const pid = proc.info.pid;
      live.add(pid);
      const rec = this.sched.take({ pid, sched: proc.sched, attachedAtMs: monoToWallMs(proc.attachedAt), siteOf: (pc) => callSiteOf(proc, pc) }, nowMs);
      if (rec) queue.push(rec);
    }
    this.sched.keepOnly(live);
  }
}
