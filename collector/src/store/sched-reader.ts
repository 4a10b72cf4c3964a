// Read queries over scheduler figures (SchedRecord rows, migration 11): per process, the sums of the reports that
// overlap a range, with run-queue and system call percentiles from their merged histograms; and run-queue latency
// by creation site. Quantiles come from protocol/histogram.ts, so over the same runs they are the agent's own.
import type { Database, Statement } from 'better-sqlite3';
import { bucketQuantile } from '../protocol/histogram.ts';
import type { CodeLocation, LatencyBuckets } from '../protocol/records.ts';
import { processClause, statementCache, Where, type ProcessFilter, type TimeRange } from './reader.ts';

export interface SchedQuery extends ProcessFilter, TimeRange {
  limit: number;
}

/** Histograms summed. */
class Merged {
  readonly counts = new Map<number, number>();
  count = 0;
  sumNs = 0;
  maxNs = 0;

  add(h: LatencyBuckets): void {
    for (const [b, n] of Object.entries(h.buckets)) this.counts.set(Number(b), (this.counts.get(Number(b)) ?? 0) + n);
    this.count += h.count;
    this.sumNs += h.sumNs;
    if (h.maxNs > this.maxNs) this.maxNs = h.maxNs;
  }

  summary() {
    const q = (x: number) => Math.round(bucketQuantile(this.counts, this.count, this.maxNs, x));
    return {
      count: this.count, sumNs: this.sumNs, meanNs: this.count ? Math.round(this.sumNs / this.count) : 0, maxNs: this.maxNs,
      p50Ns: q(0.5), p90Ns: q(0.9), p99Ns: q(0.99),
    };
  }
}

const COUNTERS = [
  ['runs', 'runs'], ['runsTimed', 'runs_timed'], ['yields', 'yields'], ['preemptions', 'preemptions'], ['preemptParks', 'preempt_parks'],
  ['syscalls', 'syscalls'], ['syscallNs', 'syscall_ns'], ['threadSwitches', 'thread_switches'], ['pSwitches', 'p_switches'],
] as const;

export class SchedReader {
  private readonly stmt: (sql: string) => Statement;

  constructor(db: Database) {
    this.stmt = statementCache(db, 100);
  }

  private where(q: ProcessFilter & TimeRange): Where {
    const w = new Where();
    processClause(w, q, 's.process_id');
    if (q.since !== undefined) w.add('s.to_ms >= ?', q.since);
    if (q.until !== undefined) w.add('s.from_ms <= ?', q.until);
    return w;
  }

  /** Per process (newest process first): the reports overlapping the range, summed. */
  summary(q: SchedQuery): Record<string, unknown>[] {
    const w = this.where(q);
    const ids = this.stmt(`SELECT DISTINCT s.process_id AS id FROM sched_reports s ${w.sql()} ORDER BY s.process_id DESC LIMIT ?`)
      .pluck().all(...w.params, q.limit) as number[];
    return ids.map((id) => {
      const pw = this.where({ since: q.since, until: q.until });
      pw.add('s.process_id = ?', id);
      const rows = this.stmt(`SELECT s.* FROM sched_reports s ${pw.sql()} ORDER BY s.to_ms`).all(...pw.params) as Record<string, any>[];
      const sums = Object.fromEntries(COUNTERS.map(([k]) => [k, 0])) as Record<(typeof COUNTERS)[number][0], number>;
      const byCause: Record<string, number> = {};
      const runQueue = new Merged();
      const syscallTime = new Merged();
      let threads = 0;
      let ps = 0;
      for (const r of rows) {
        for (const [k, col] of COUNTERS) sums[k] += r[col];
        for (const [cause, n] of Object.entries(JSON.parse(r.by_cause) as Record<string, number>)) byCause[cause] = (byCause[cause] ?? 0) + n;
        runQueue.add(JSON.parse(r.run_queue));
        syscallTime.add(JSON.parse(r.syscall_time));
        threads = Math.max(threads, r.threads);
        ps = Math.max(ps, r.ps);
      }
      const p = this.stmt('SELECT node, pid, start_time, exe FROM processes WHERE id = ?').get(id) as Record<string, any>;
      return {
        node: p.node, pid: p.pid, processStartTime: p.start_time === -1 ? null : p.start_time, exe: p.exe || null,
        from: rows[0].from_ms, to: rows[rows.length - 1].to_ms, reports: rows.length,
        ...sums, byCause, threads, ps, runQueue: runQueue.summary(), syscallTime: syscallTime.summary(),
      };
    });
  }

  /** Run-queue latency by creation site over the range (the processes named merged), most runs first. */
  sites(q: SchedQuery): Record<string, unknown>[] {
    const w = this.where(q);
    const bySite = new Map<string, { createdBy: CodeLocation | null; h: Merged }>();
    for (const json of this.stmt(`SELECT s.sites FROM sched_reports s ${w.sql()}`).pluck().all(...w.params) as string[]) {
      for (const site of JSON.parse(json) as { createdBy: CodeLocation | null; runQueue: LatencyBuckets }[]) {
        const c = site.createdBy;
        const key = c ? `${c.function}\u0000${c.file}\u0000${c.line}` : '';
        let e = bySite.get(key);
        if (!e) bySite.set(key, (e = { createdBy: c, h: new Merged() }));
        e.h.add(site.runQueue);
      }
    }
    return [...bySite.values()]
      .sort((a, b) => b.h.count - a.h.count)
      .slice(0, q.limit)
      .map((e) => ({ createdBy: e.createdBy, runQueue: e.h.summary() }));
  }
}
