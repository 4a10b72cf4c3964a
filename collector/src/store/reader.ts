// Read queries behind the HTTP API. Lists page by id, newest first (keyset paging:
// the cursor is the last id returned, so a page costs the same wherever it is).
import type { Database, Statement } from 'better-sqlite3';
import { goroutineStates } from '../protocol/records.ts';

type GoroutineRowRaw = Record<string, any> & { id: number };

export interface Page<T> { items: T[]; nextCursor: string | null }

export interface ProcessFilter { node?: string; pid?: number }
export interface TimeRange { since?: number; until?: number }
export interface Paging { limit: number; cursor?: string }

export interface GoroutineQuery extends ProcessFilter, TimeRange, Paging {
  state?: string;
  waitReason?: string;
  createdBy?: string;
  minBlockedNs?: number;
}

export interface ConnectionQuery extends ProcessFilter, TimeRange, Paging {
  peer?: string;
  state?: string;
  errorsOnly?: boolean;
}

export interface LeakQuery extends ProcessFilter, TimeRange {
  createdBy?: string;
  minCount?: number;
  suspect?: string;
  limit: number;
}

export interface GcQuery extends ProcessFilter, TimeRange, Paging {
  /** Only pauses of the garbage collector (true) or only others (false); both when absent. */
  gc?: boolean;
}

export interface PauseQuery extends GcQuery {
  minDurationNs?: number;
}

export interface ProfileQuery extends ProcessFilter, TimeRange {
  kind: 'goroutine' | 'block';
  /** Pod name, and its namespace. */
  pod?: string;
  namespace?: string;
}

export interface ProfileSampleRow {
  frames: { function: string; file: string; line: number }[];
  values: number[];
  labels: Record<string, string>;
}

export interface FatalQuery extends ProcessFilter, TimeRange, Paging {
  errorKind?: string;
}

/** Up to this many processes, a page filtered by process is merged from one indexed query per process. */
const MERGE_MAX_PROCESSES = 64;

/** A bad cursor is the client's fault; the API layer turns this into a 400. */
export class BadQueryError extends Error {}

export function parseCursor(cursor: string | undefined): number | undefined {
  if (cursor === undefined) return undefined;
  if (!/^[1-9][0-9]{0,15}$/.test(cursor)) throw new BadQueryError(`invalid cursor '${cursor}'`);
  return Number(cursor);
}

/** Collects WHERE clauses and their parameters. */
export class Where {
  readonly clauses: string[] = [];
  readonly params: unknown[] = [];
  add(clause: string, ...params: unknown[]): void {
    this.clauses.push(clause);
    this.params.push(...params);
  }
  sql(): string {
    return this.clauses.length ? `WHERE ${this.clauses.join(' AND ')}` : '';
  }
}

export function processClause(w: Where, f: ProcessFilter, column = 'process_id'): void {
  if (f.node === undefined && f.pid === undefined) return;
  const sub = new Where();
  if (f.node !== undefined) sub.add('node = ?', f.node);
  if (f.pid !== undefined) sub.add('pid = ?', f.pid);
  w.add(`${column} IN (SELECT id FROM processes ${sub.sql()})`, ...sub.params);
}

/** A page of at most `limit` of rows (limit + 1 were read: one more means a next page), newest first. */
export function finishPage<R extends { id: number }, T>(rows: R[], limit: number, map: (r: R) => T): Page<T> {
  const more = rows.length > limit;
  if (more) rows.length = limit;
  return { items: rows.map(map), nextCursor: more ? String(rows[rows.length - 1].id) : null };
}

/** createdBy is either a function name or "file:line". */
export function parseCreatedBy(v: string): { function: string } | { file: string; line: number } {
  const m = /^(.+):(\d+)$/.exec(v);
  if (m && (m[1].includes('/') || m[1].endsWith('.go'))) return { file: m[1], line: Number(m[2]) };
  return { function: v };
}

export interface GoroutineRow {
  id: number; node: string; pid: number; processStartTime: number | null; goid: number; parentGoid: number | null;
  state: string; waitReason: string | null; createdBy: { function: string; file: string; line: number } | null;
  startFunction: string | null; createdAt: number | null; exitedAt: number | null; lastParkAt: number | null;
  parkCount: number; readyCount: number; blockedNs: number; blockedByReason: Record<string, number>;
  preexisting: boolean; system: boolean; observedAt: number; firstSeenAt: number;
}

export interface ConnectionRow {
  id: number; node: string; pid: number; goid: number | null; family: string; role: string;
  localAddress: string; localPort: number; peerAddress: string; peerPort: number; state: string;
  openedAt: number | null; closedAt: number | null; bytesSent: number; bytesReceived: number;
  srttUs: number | null; retransmits: number; resets: number; error: string | null; preexisting: boolean;
  observedAt: number;
}

/** Prepared statements by their SQL: dynamic SQL has few shapes, each is prepared once (a bounded cache). */
export function statementCache(db: Database, max = 500): (sql: string) => Statement {
  const cache = new Map<string, Statement>();
  return (sql) => {
    let s = cache.get(sql);
    if (!s) {
      s = db.prepare(sql);
      if (cache.size > max) cache.clear();
      cache.set(sql, s);
    }
    return s;
  };
}

export class StoreReader {
  private readonly stmt: (sql: string) => Statement;

  constructor(db: Database) {
    this.stmt = statementCache(db);
  }

  private page<R extends { id: number }, T>(sql: (where: string) => string, w: Where, q: Paging, map: (r: R) => T, idCol: string): Page<T> {
    const after = parseCursor(q.cursor);
    if (after !== undefined) w.add(`${idCol} < ?`, after);
    const rows = this.stmt(`${sql(w.sql())} ORDER BY ${idCol} DESC LIMIT ?`).all(...w.params, q.limit + 1) as R[];
    return this.finishPage(rows, q.limit, map);
  }

  private finishPage<R extends { id: number }, T>(rows: R[], limit: number, map: (r: R) => T): Page<T> {
    return finishPage(rows, limit, map);
  }

  /**
   * The processes a node/pid filter names: their ids when there are few, else the subquery naming them (a
   * node can have more processes than one statement has variables), or undefined for no filter.
   */
  private processIds(f: ProcessFilter): number[] | Where | undefined {
    if (f.node === undefined && f.pid === undefined) return undefined;
    const w = new Where();
    if (f.node !== undefined) w.add('node = ?', f.node);
    if (f.pid !== undefined) w.add('pid = ?', f.pid);
    const ids = (this.stmt(`SELECT id FROM processes ${w.sql()} LIMIT ${MERGE_MAX_PROCESSES + 1}`).all(...w.params) as { id: number }[]).map((r) => r.id);
    return ids.length > MERGE_MAX_PROCESSES ? w : ids;
  }

  /**
   * Keyset page over a big table filtered by process. "process_id IN (...) ORDER BY id" makes
   * SQLite gather every row of those processes and sort them; for a few processes, one indexed, already
   * ordered query per process merged here reads at most limit+1 rows from each.
   */
  private pageByProcess<R extends { id: number }, T>(
    sql: (where: string) => string, base: () => Where, processes: number[] | Where, q: Paging, map: (r: R) => T, table: string,
  ): Page<T> {
    const after = parseCursor(q.cursor);
    if (!Array.isArray(processes)) {
      // Many processes: walk the table newest first; the unary + stops SQLite from using the process index.
      const w = base();
      w.add(`+${table}.process_id IN (SELECT id FROM processes ${processes.sql()})`, ...processes.params);
      if (after !== undefined) w.add(`${table}.id < ?`, after);
      return this.finishPage(this.stmt(`${sql(w.sql())} ORDER BY ${table}.id DESC LIMIT ?`).all(...w.params, q.limit + 1) as R[], q.limit, map);
    }
    const rows: R[] = [];
    for (const id of processes) {
      const w = base();
      w.add(`${table}.process_id = ?`, id);
      if (after !== undefined) w.add(`${table}.id < ?`, after);
      rows.push(...(this.stmt(`${sql(w.sql())} ORDER BY ${table}.id DESC LIMIT ?`).all(...w.params, q.limit + 1) as R[]));
    }
    rows.sort((a, b) => b.id - a.id);
    return this.finishPage(rows, q.limit, map);
  }

  nodes(): { agentId: string; node: string; agentVersion: string; protocol: number; firstSeenAt: number; lastSeenAt: number }[] {
    return this.stmt(`SELECT agent_id AS agentId, node, agent_version AS agentVersion, protocol,
      first_seen_at AS firstSeenAt, last_seen_at AS lastSeenAt FROM agents ORDER BY node, agent_id`).all() as never;
  }

  processes(q: ProcessFilter & Paging): Page<Record<string, unknown>> {
    const w = new Where();
    if (q.node !== undefined) w.add('node = ?', q.node);
    if (q.pid !== undefined) w.add('pid = ?', q.pid);
    return this.page((where) => `SELECT * FROM processes ${where}`, w, q, (r: Record<string, any>) => ({
      id: r.id, node: r.node, pid: r.pid, startTime: r.start_time === -1 ? null : r.start_time, exe: r.exe,
      goVersion: r.go_version, containerId: r.container_id,
      pod: r.pod_name === null ? null : { name: r.pod_name, namespace: r.pod_namespace, uid: r.pod_uid, container: r.pod_container },
      seenAt: r.seen_at, exitedAt: r.exited_at,
    }), 'id');
  }

  private goroutineWhere(q: Omit<GoroutineQuery, 'limit' | 'cursor'>, withProcess = true): Where {
    const w = new Where();
    if (withProcess) processClause(w, q, 'g.process_id');
    if (q.state !== undefined) w.add('g.state = ?', q.state);
    if (q.waitReason !== undefined) w.add('g.wait_reason = ?', q.waitReason);
    if (q.createdBy !== undefined) {
      // Sites are interned (code_sites): a filter names the ids of the sites it matches; one id is the usual case,
      // and an equality on the site index walks it in id order (a page stops after limit rows).
      const c = parseCreatedBy(q.createdBy);
      const ids = ('file' in c
        ? this.stmt('SELECT id FROM code_sites WHERE file = ? AND line = ?').pluck().all(c.file, c.line)
        : this.stmt("SELECT id FROM code_sites WHERE function = ? AND line != -1").pluck().all(c.function)) as number[];
      if (ids.length === 1) w.add('g.site_id = ?', ids[0]);
      else w.add(`g.site_id IN (${ids.map(() => '?').join(',') || 'NULL'})`, ...ids);
    }
    if (q.minBlockedNs !== undefined) w.add('g.blocked_ns >= ?', q.minBlockedNs);
    // A goroutine matches a time range it was alive in. Rows are walked newest first, from the highest id of a row
    // created (else first seen) up to the range's end's second (goroutine_id_seconds), not from the newest row.
    if (q.until !== undefined) {
      w.add('coalesce(g.created_at, g.first_seen_at) <= ?', q.until);
      w.add('g.id <= coalesce((SELECT max(max_id) FROM goroutine_id_seconds WHERE second <= ?), 0)', Math.floor(q.until / 1000));
    }
    if (q.since !== undefined) w.add('(g.exited_at IS NULL OR g.exited_at >= ?)', q.since);
    return w;
  }

  goroutines(q: GoroutineQuery): Page<GoroutineRow> {
    const sql = (where: string) => `SELECT g.*, s.function AS created_by_function, s.file AS created_by_file, s.line AS created_by_line,
      st.function AS start_function, p.node, p.pid, p.start_time FROM goroutines g JOIN processes p ON p.id = g.process_id
      LEFT JOIN code_sites s ON s.id = g.site_id LEFT JOIN code_sites st ON st.id = g.start_id ${where}`;
    const ids = this.processIds(q);
    if (ids === undefined) return this.page(sql, this.goroutineWhere(q), q, goroutineFromRow, 'g.id');
    if (Array.isArray(ids) && q.state === undefined && q.waitReason === undefined && q.createdBy === undefined) {
      // A process's newest goroutines: the (process_id, state) index holds each state's rows in id order; one
      // indexed query per process and state, merged, reads at most limit+1 rows from each.
      const after = parseCursor(q.cursor);
      const rows: GoroutineRowRaw[] = [];
      for (const id of ids) {
        for (const state of goroutineStates) {
          const w = this.goroutineWhere(q, false);
          w.add('g.process_id = ? AND g.state = ?', id, state);
          if (after !== undefined) w.add('g.id < ?', after);
          rows.push(...(this.stmt(`${sql(w.sql())} ORDER BY g.id DESC LIMIT ?`).all(...w.params, q.limit + 1) as GoroutineRowRaw[]));
        }
      }
      rows.sort((a, b) => b.id - a.id);
      return this.finishPage(rows, q.limit, goroutineFromRow);
    }
    return this.pageByProcess(sql, () => this.goroutineWhere(q, false), ids, q, goroutineFromRow, 'g');
  }

  /** Goroutine counts and blocked time grouped by current wait reason or by creation site. */
  goroutineSummary(q: Omit<GoroutineQuery, 'limit' | 'cursor'> & { by: 'waitReason' | 'createdBy'; limit: number }) {
    // Filtered by node/pid at most: the per-group counts the writer and retention keep (migration 3) answer
    // without reading a goroutine row. Any other filter needs the rows themselves.
    const rollup = q.state === undefined && q.waitReason === undefined && q.createdBy === undefined &&
      q.minBlockedNs === undefined && q.since === undefined && q.until === undefined;
    // total(), not sum(): a sum of huge blocked times must not fail with an integer overflow.
    if (q.by === 'waitReason') {
      const rows = (rollup
        ? this.rollupRows('goroutine_wait_groups', 'nullif(x.wait_key, 0) AS key', 'x.wait_key', q)
        : this.groupRows('g.wait_reason AS key', 'g.wait_reason', q)) as any[];
      return rows.map((r) => ({ waitReason: r.key, goroutines: r.goroutines, live: r.live, blockedNs: Math.round(r.blockedNs) }));
    }
    const rows = (rollup
      ? this.rollupRows('goroutine_site_groups', 'nullif(x.function_key, 0) AS fn, nullif(x.file_key, 0) AS file, nullif(x.line_key, -1) AS line',
        'x.function_key, x.file_key, x.line_key', q)
      : this.groupRows('s.function AS fn, s.file AS file, s.line AS line', 'g.site_id', q, 'LEFT JOIN code_sites s ON s.id = g.site_id')) as any[];
    return rows.map((r) => ({
      createdBy: r.fn === null ? null : { function: r.fn, file: r.file, line: r.line },
      goroutines: r.goroutines, live: r.live, blockedNs: Math.round(r.blockedNs),
    }));
  }

  private groupRows(columns: string, groupBy: string, q: Omit<GoroutineQuery, 'limit' | 'cursor'> & { limit: number }, join = ''): unknown[] {
    const w = this.goroutineWhere(q);
    return this.stmt(`SELECT ${columns}, count(*) AS goroutines, total(g.blocked_ns) AS blockedNs, sum(g.exited_at IS NULL) AS live
      FROM goroutines g ${join} ${w.sql()} GROUP BY ${groupBy} ORDER BY goroutines DESC LIMIT ?`).all(...w.params, q.limit);
  }

  private rollupRows(table: string, columns: string, groupBy: string, q: ProcessFilter & { limit: number }): unknown[] {
    const w = new Where();
    processClause(w, q, 'x.process_id');
    return this.stmt(`SELECT ${columns}, sum(x.goroutines) AS goroutines, total(x.blocked_ns) AS blockedNs, sum(x.live) AS live
      FROM ${table} x ${w.sql()} GROUP BY ${groupBy} HAVING sum(x.goroutines) > 0 ORDER BY goroutines DESC LIMIT ?`).all(...w.params, q.limit);
  }

  connections(q: ConnectionQuery): Page<ConnectionRow> {
    const w = new Where();
    processClause(w, q, 'c.process_id');
    if (q.peer !== undefined) {
      const m = /^\[?([^\]]+?)\]?:(\d{1,5})$/.exec(q.peer);
      // "addr:port" and "[v6]:port" name an endpoint; a bare address (including a bare IPv6) names a host.
      if (m && (q.peer.startsWith('[') || !m[1].includes(':'))) w.add('c.peer_address = ? AND c.peer_port = ?', m[1], Number(m[2]));
      else w.add('c.peer_address = ?', q.peer);
    }
    if (q.state !== undefined) w.add('c.state = ?', q.state);
    if (q.errorsOnly) w.add('(c.error IS NOT NULL OR c.resets > 0)');
    if (q.until !== undefined) w.add('(c.opened_at IS NULL OR c.opened_at <= ?)', q.until);
    if (q.since !== undefined) w.add('(c.closed_at IS NULL OR c.closed_at >= ?)', q.since);
    return this.page(
      (where) => `SELECT c.*, p.node, p.pid FROM connections c JOIN processes p ON p.id = c.process_id ${where}`,
      w, q, connectionFromRow, 'c.id');
  }

  windows(q: ProcessFilter & TimeRange & Paging): Page<Record<string, unknown>> {
    const w = new Where();
    processClause(w, q, 'w.process_id');
    if (q.since !== undefined) w.add('w.to_ms >= ?', q.since);
    if (q.until !== undefined) w.add('w.from_ms <= ?', q.until);
    return this.page(
      (where) => `SELECT w.*, p.node, p.pid FROM windows w JOIN processes p ON p.id = w.process_id ${where}`,
      w, q, (r: Record<string, any>) => ({
        id: r.id, node: r.node, pid: r.pid, from: r.from_ms, to: r.to_ms, probes: JSON.parse(r.probes),
        created: r.created, parked: r.parked, readied: r.readied, exited: r.exited, lost: r.lost,
      }), 'w.id');
  }

  /**
   * Profile samples of the processes the query names, over its time range: block samples of every window that
   * overlaps it; for goroutines, each process's latest profile in the range (a population, not a sum over time).
   */
  profileSamples(q: ProfileQuery): { samples: ProfileSampleRow[]; processes: number; from: number | null; to: number | null } {
    const sub = new Where();
    if (q.node !== undefined) sub.add('node = ?', q.node);
    if (q.pid !== undefined) sub.add('pid = ?', q.pid);
    if (q.pod !== undefined) sub.add('pod_name = ?', q.pod);
    if (q.namespace !== undefined) sub.add('pod_namespace = ?', q.namespace);
    const w = new Where();
    w.add('s.kind = ?', q.kind);
    if (sub.clauses.length) w.add(`s.process_id IN (SELECT id FROM processes ${sub.sql()})`, ...sub.params);
    if (q.since !== undefined) w.add('s.to_ms >= ?', q.since);
    if (q.until !== undefined) w.add(q.kind === 'block' ? 's.from_ms <= ?' : 's.to_ms <= ?', q.until);
    if (q.kind === 'goroutine') {
      w.add(`(s.process_id, s.to_ms) IN (SELECT s.process_id, max(s.to_ms) FROM profile_samples s ${w.sql()} GROUP BY s.process_id)`, ...w.params);
    }
    const rows = this.stmt(`SELECT s.process_id, s.from_ms, s.to_ms, s.labels, s.v0, s.v1, st.frames FROM profile_samples s
      LEFT JOIN stacks st ON st.agent_id = s.agent_id AND st.stack_id = s.stack_id ${w.sql()}`).all(...w.params) as Record<string, any>[];
    const processes = new Set<number>();
    let from: number | null = null;
    let to: number | null = null;
    const samples = rows.map((r) => {
      processes.add(r.process_id);
      from = from === null ? r.from_ms : Math.min(from, r.from_ms);
      to = to === null ? r.to_ms : Math.max(to, r.to_ms);
      return {
        frames: r.frames === null ? [{ function: '[stack not received]', file: '', line: 0 }] : JSON.parse(r.frames),
        values: q.kind === 'block' ? [r.v0, r.v1] : [r.v0],
        labels: JSON.parse(r.labels),
      };
    });
    return { samples, processes: processes.size, from, to };
  }

  /** Leak suspects, fastest growing first. Few rows per process: no paging, a limit. */
  leaks(q: LeakQuery): Record<string, unknown>[] {
    const w = new Where();
    processClause(w, q, 'l.process_id');
    if (q.since !== undefined) w.add('l.last_seen_at >= ?', q.since);
    if (q.until !== undefined) w.add('l.first_seen_at <= ?', q.until);
    if (q.minCount !== undefined) w.add('l.count >= ?', q.minCount);
    if (q.suspect !== undefined) w.add('l.suspect = ?', q.suspect);
    if (q.createdBy !== undefined) {
      const cb = parseCreatedBy(q.createdBy);
      if ('function' in cb) w.add('(l.created_by_function = ? OR l.start_function = ?)', cb.function, cb.function);
      else w.add('l.created_by_file = ? AND l.created_by_line = ?', cb.file, cb.line);
    }
    const rows = this.stmt(`SELECT l.*, p.node, p.pid, p.start_time, p.exe FROM leak_suspects l
      JOIN processes p ON p.id = l.process_id ${w.sql()}
      ORDER BY l.growth_per_minute DESC, l.id DESC LIMIT ?`).all(...w.params, q.limit) as Record<string, any>[];
    return rows.map((r) => ({
      id: r.id, node: r.node, pid: r.pid, processStartTime: r.start_time === -1 ? null : r.start_time, exe: r.exe || null,
      suspect: r.suspect,
      createdBy: r.created_by_function === null ? null : { function: r.created_by_function, file: r.created_by_file, line: r.created_by_line },
      startFunction: r.start_function, waitReason: r.wait_reason, count: r.count, growthPerMinute: r.growth_per_minute,
      oldestAgeMs: r.oldest_age_ms, since: r.since, firstSeenAt: r.first_seen_at, lastSeenAt: r.last_seen_at,
      stack: r.stack === null || r.stack === undefined ? null : JSON.parse(r.stack),
    }));
  }

  private pauseWhere(q: Omit<PauseQuery, 'limit' | 'cursor'>): Where {
    const w = new Where();
    processClause(w, q, 'x.process_id');
    if (q.since !== undefined) w.add('x.started_at >= ?', q.since);
    if (q.until !== undefined) w.add('x.started_at <= ?', q.until);
    if (q.gc !== undefined) w.add('x.gc = ?', q.gc ? 1 : 0);
    if (q.minDurationNs !== undefined) w.add('x.duration_ns >= ?', q.minDurationNs);
    return w;
  }

  /**
   * Pause statistics per process over a time range, newest process first. Counts come from SQL;
   * percentiles (nearest rank) from the sorted durations of each process on the page.
   */
  gcSummary(q: GcQuery): Page<Record<string, unknown>> {
    const w = this.pauseWhere(q);
    const after = parseCursor(q.cursor);
    if (after !== undefined) w.add('x.process_id < ?', after);
    const groups = this.stmt(`SELECT x.process_id AS id, count(*) AS pauses, sum(x.gc) AS gcPauses,
        count(DISTINCT iif(x.gc, x.cycle, NULL)) AS cycles, sum(x.duration_ns) AS totalNs,
        min(x.started_at) AS firstAt, max(x.started_at) AS lastAt
      FROM pauses x ${w.sql()} GROUP BY x.process_id ORDER BY x.process_id DESC LIMIT ?`).all(...w.params, q.limit + 1) as any[];
    const page = this.finishPage(groups, q.limit, (g) => g);
    const items = page.items.map((g) => {
      const pw = this.pauseWhere({ ...q, node: undefined, pid: undefined });
      pw.add('x.process_id = ?', g.id);
      const durations = Float64Array.from(
        this.stmt(`SELECT x.duration_ns FROM pauses x ${pw.sql()}`).pluck().all(...pw.params) as number[]);
      durations.sort();
      const rank = (p: number) => durations[Math.max(0, Math.ceil(p * durations.length) - 1)];
      const p = this.stmt('SELECT node, pid, start_time, exe FROM processes WHERE id = ?').get(g.id) as Record<string, any>;
      return {
        node: p.node, pid: p.pid, processStartTime: p.start_time === -1 ? null : p.start_time, exe: p.exe || null,
        pauses: g.pauses, gcPauses: g.gcPauses, gcCycles: g.cycles, totalNs: g.totalNs,
        p50Ns: rank(0.5), p90Ns: rank(0.9), p99Ns: rank(0.99), maxNs: durations[durations.length - 1],
        firstAt: g.firstAt, lastAt: g.lastAt,
      };
    });
    return { items, nextCursor: page.nextCursor };
  }

  /** Single pauses, newest first. */
  pauses(q: PauseQuery): Page<Record<string, unknown>> {
    const ids = this.processIds(q);
    const sql = (where: string) => `SELECT x.*, p.node, p.pid FROM pauses x JOIN processes p ON p.id = x.process_id ${where}`;
    const map = (r: Record<string, any>) => ({
      id: r.id, node: r.node, pid: r.pid, reason: r.reason, gc: r.gc === 1, startedAt: r.started_at,
      durationNs: r.duration_ns, goid: r.goid, cycle: r.cycle,
    });
    const base = () => this.pauseWhere({ ...q, node: undefined, pid: undefined });
    if (ids === undefined) return this.page(sql, base(), q, map, 'x.id');
    return this.pageByProcess(sql, base, ids, q, map, 'x');
  }

  /** Fatal errors, newest first, with what is known of their (usually exited) process. */
  fatalErrors(q: FatalQuery): Page<Record<string, unknown>> {
    const w = new Where();
    processClause(w, q, 'f.process_id');
    if (q.since !== undefined) w.add('f.at >= ?', q.since);
    if (q.until !== undefined) w.add('f.at <= ?', q.until);
    if (q.errorKind !== undefined) w.add('f.error_kind = ?', q.errorKind);
    return this.page(
      (where) => `SELECT f.*, p.node, p.pid, p.start_time, p.exe, p.go_version, p.container_id, p.pod_name, p.pod_namespace,
        p.pod_uid, p.pod_container, p.exited_at AS process_exited_at FROM fatal_errors f JOIN processes p ON p.id = f.process_id ${where}`,
      w, q, (r: Record<string, any>) => ({
        id: r.id, node: r.node, pid: r.pid, processStartTime: r.start_time === -1 ? null : r.start_time, exe: r.exe || null,
        goVersion: r.go_version, containerId: r.container_id,
        pod: r.pod_name === null ? null : { name: r.pod_name, namespace: r.pod_namespace, uid: r.pod_uid, container: r.pod_container },
        errorKind: r.error_kind, message: r.message, text: r.text, goid: r.goid, at: r.at,
        processExitedAt: r.process_exited_at, receivedAt: r.received_at,
      }), 'f.id');
  }

  /** The latest process of (node, pid): what OpenTelemetry resources are built from. */
  /**
   * Live goroutines of one process instance by state and wait reason (its rows not yet dead), for the OTLP gauge:
   * the goroutines_process_state index keeps it to the process's live rows.
   */
  liveGoroutineCounts(node: string, pid: number, startTime: number): { state: string; waitReason: string | null; count: number }[] {
    return this.stmt(`SELECT g.state AS state, g.wait_reason AS waitReason, count(*) AS count FROM processes p
      JOIN goroutines g ON g.process_id = p.id AND g.state != 'dead' AND g.exited_at IS NULL
      WHERE p.node = ? AND p.pid = ? AND p.start_time = ? GROUP BY g.state, g.wait_reason`).all(node, pid, startTime) as never;
  }

  latestProcess(node: string, pid: number): Record<string, any> | undefined {
    return this.stmt('SELECT * FROM processes WHERE node = ? AND pid = ? ORDER BY id DESC LIMIT 1').get(node, pid) as never;
  }
}

function goroutineFromRow(r: Record<string, any>): GoroutineRow {
  return {
    id: r.id, node: r.node, pid: r.pid, processStartTime: r.start_time === -1 ? null : r.start_time, goid: r.goid, parentGoid: r.parent_goid,
    state: r.state, waitReason: r.wait_reason,
    createdBy: r.created_by_function === null ? null : { function: r.created_by_function, file: r.created_by_file, line: r.created_by_line },
    startFunction: r.start_function, createdAt: r.created_at, exitedAt: r.exited_at, lastParkAt: r.last_park_at,
    parkCount: r.park_count, readyCount: r.ready_count, blockedNs: r.blocked_ns, blockedByReason: JSON.parse(r.blocked_by_reason),
    preexisting: r.preexisting === 1, system: r.system === 1, observedAt: r.observed_at, firstSeenAt: r.first_seen_at,
  };
}

function connectionFromRow(r: Record<string, any>): ConnectionRow {
  return {
    id: r.id, node: r.node, pid: r.pid, goid: r.goid, family: r.family, role: r.role, localAddress: r.local_address,
    localPort: r.local_port, peerAddress: r.peer_address, peerPort: r.peer_port, state: r.state, openedAt: r.opened_at,
    closedAt: r.closed_at, bytesSent: r.bytes_sent, bytesReceived: r.bytes_received, srttUs: r.srtt_us,
    retransmits: r.retransmits, resets: r.resets, error: r.error, preexisting: r.preexisting === 1, observedAt: r.observed_at,
  };
}
