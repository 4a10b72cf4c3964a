// Read queries over server requests (RequestRecord rows, migration 9): single requests newest first, and RED
// figures per route (rate, errors, duration percentiles) with where the requests' goroutines spent their time.
import type { Database, Statement } from 'better-sqlite3';
import { GRPC_SERVER_ERROR_CODES } from '../protocol/records.ts';
import { finishPage, parseCursor, processClause, statementCache, Where, type Page, type Paging, type ProcessFilter, type TimeRange } from './reader.ts';

export interface RequestFilter extends ProcessFilter, TimeRange {
  route?: string;
  method?: string;
  protocol?: string;
  status?: number;
  /** Only server errors (true) or only others (false). */
  errors?: boolean;
  minDurationNs?: number;
  goid?: number;
}

export type RequestQuery = RequestFilter & Paging;

export interface RequestSummaryQuery extends RequestFilter {
  limit: number;
}

/** isServerErrorStatus (protocol/records.ts) in SQL over a requests row r. */
const SERVER_ERROR = `(CASE WHEN r.protocol = 'grpc' THEN r.status IN (${GRPC_SERVER_ERROR_CODES.join(', ')}) ELSE r.status >= 500 END)`;

/** The weighted nearest-rank q-quantile of values sorted ascending, each standing for weights[i] requests. */
export function weightedQuantile(values: ArrayLike<number>, weights: ArrayLike<number>, total: number, q: number): number {
  if (values.length === 0) return 0;
  const rank = Math.max(1, Math.ceil(q * total - 1e-9));
  let seen = 0;
  for (let i = 0; i < values.length; i++) {
    seen += weights[i];
    if (seen >= rank) return values[i];
  }
  return values[values.length - 1];
}

export class RequestReader {
  private readonly stmt: (sql: string) => Statement;

  constructor(db: Database) {
    this.stmt = statementCache(db, 200);
  }

  private where(q: RequestFilter): Where {
    const w = new Where();
    processClause(w, q, 'r.process_id');
    if (q.since !== undefined) w.add('r.started_at >= ?', q.since);
    if (q.until !== undefined) w.add('r.started_at <= ?', q.until);
    if (q.route !== undefined) w.add('r.route = ?', q.route);
    if (q.method !== undefined) w.add('r.method = ?', q.method);
    if (q.protocol !== undefined) w.add('r.protocol = ?', q.protocol);
    if (q.status !== undefined) w.add('r.status = ?', q.status);
    if (q.errors !== undefined) w.add(q.errors ? SERVER_ERROR : `NOT ${SERVER_ERROR}`);
    if (q.minDurationNs !== undefined) w.add('r.duration_ns >= ?', q.minDurationNs);
    if (q.goid !== undefined) w.add('r.goid = ?', q.goid);
    return w;
  }

  /** Requests, newest first (by when they were stored). */
  list(q: RequestQuery): Page<Record<string, unknown>> {
    const w = this.where(q);
    const after = parseCursor(q.cursor);
    if (after !== undefined) w.add('r.id < ?', after);
    const rows = this.stmt(`SELECT r.*, p.node, p.pid FROM requests r JOIN processes p ON p.id = r.process_id ${w.sql()}
      ORDER BY r.id DESC LIMIT ?`).all(...w.params, q.limit + 1) as (Record<string, any> & { id: number })[];
    return finishPage(rows, q.limit, requestFromRow);
  }

  /**
   * RED per process and route over the range: requests (what the records stand for, weights summed), server
   * errors, rate per second over the range (since..until, else the first request's start to the last one's end),
   * duration percentiles (weighted nearest rank), and the serving goroutines' mean time parked, running and
   * runnable inside a request. Busiest first.
   */
  summary(q: RequestSummaryQuery): { from: number | null; to: number | null; items: Record<string, unknown>[] } {
    const w = this.where(q);
    const span = this.stmt(`SELECT min(r.started_at) AS first, max(r.started_at + r.duration_ns / 1e6) AS last FROM requests r ${w.sql()}`)
      .get(...w.params) as { first: number | null; last: number | null };
    const from = q.since ?? span.first;
    const to = q.until ?? span.last;
    if (from === null || to === null) return { from, to, items: [] };
    const seconds = Math.max((to - from) / 1000, 1e-3);
    const groups = this.stmt(`SELECT r.process_id AS processId, r.route AS route, total(r.weight) AS requests, count(*) AS records,
        total(iif(${SERVER_ERROR}, r.weight, 0)) AS errors, total(r.duration_ns * r.weight) AS durationNs, max(r.duration_ns) AS maxNs,
        total(r.parked_ns * r.weight) AS parkedNs, total(iif(r.parked_ns IS NULL, 0, r.weight)) AS parkedKnown,
        total(r.running_ns * r.weight) AS runningNs, total(r.runnable_ns * r.weight) AS runnableNs,
        total(iif(r.running_ns IS NULL, 0, r.weight)) AS schedKnown,
        group_concat(DISTINCT r.protocol) AS protocols
      FROM requests r ${w.sql()} GROUP BY r.process_id, r.route ORDER BY requests DESC LIMIT ?`).all(...w.params, q.limit) as any[];
    const items = groups.map((g) => {
      const gw = this.where({ ...q, node: undefined, pid: undefined, route: undefined });
      gw.add('r.process_id = ? AND r.route = ?', g.processId, g.route);
      const rows = this.stmt(`SELECT r.duration_ns AS d, r.weight AS w FROM requests r ${gw.sql()} ORDER BY r.duration_ns`).raw().all(...gw.params) as [number, number][];
      const values = rows.map((r) => r[0]);
      const weights = rows.map((r) => r[1]);
      const p = this.stmt('SELECT node, pid, start_time, exe FROM processes WHERE id = ?').get(g.processId) as Record<string, any>;
      const quantile = (x: number) => weightedQuantile(values, weights, g.requests, x);
      return {
        node: p.node, pid: p.pid, processStartTime: p.start_time === -1 ? null : p.start_time, exe: p.exe || null,
        route: g.route, protocols: String(g.protocols ?? '').split(',').filter(Boolean).sort(),
        requests: g.requests, records: g.records, errors: g.errors, errorRatio: g.requests > 0 ? g.errors / g.requests : 0,
        ratePerSecond: g.requests / seconds,
        meanNs: Math.round(g.durationNs / g.requests), p50Ns: quantile(0.5), p90Ns: quantile(0.9), p99Ns: quantile(0.99), maxNs: g.maxNs,
        parkedMeanNs: g.parkedKnown > 0 ? Math.round(g.parkedNs / g.parkedKnown) : null,
        runningMeanNs: g.schedKnown > 0 ? Math.round(g.runningNs / g.schedKnown) : null,
        runnableMeanNs: g.schedKnown > 0 ? Math.round(g.runnableNs / g.schedKnown) : null,
      };
    });
    return { from, to, items };
  }
}

function requestFromRow(r: Record<string, any>): Record<string, unknown> {
  return {
    id: r.id, node: r.node, pid: r.pid, goid: r.goid, protocol: r.protocol, method: r.method, route: r.route, path: r.path,
    status: r.status, startedAt: r.started_at, durationNs: r.duration_ns, requestBytes: r.request_bytes, responseBytes: r.response_bytes,
    parkedNs: r.parked_ns, parkedByReason: JSON.parse(r.parked_by_reason), parks: JSON.parse(r.parks),
    traceParent: r.trace_id === null ? null : { traceId: r.trace_id, spanId: r.parent_span_id },
    weight: r.weight,
    sched: r.running_ns === null ? null : {
      runningNs: r.running_ns, runnableNs: r.runnable_ns, syscallNs: r.syscall_ns, runs: r.runs, preemptions: r.preemptions,
    },
  };
}
