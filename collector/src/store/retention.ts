// Deletes old data by age and by database size, a chunk at a time so ingest and
// queries are never stalled for long.
import type { Database } from 'better-sqlite3';
import { databaseSizeBytes } from './db.ts';

export interface RetentionOptions {
  /** Delete records last observed longer ago than this. */
  maxAgeMs?: number;
  /** Delete the oldest records while the database holds more than this. */
  maxBytes?: number;
}

const CHUNK = 5_000;
/**
 * Rows a size pass deletes at most between yields. Between two rounds the writer thread takes the write groups that
 * wait (up to two of 50k records, ingest/queue.ts), and a row's delete costs about what its insert did: a round must
 * delete more than that, or under sustained ingest the pass never reaches the bound (with 20k, a 100-agent bench
 * never finished one). 200k rows hold the writer ~1-2 s here.
 */
const SIZE_CHUNK = 200_000;

/**
 * Tables in deletion order, each with the column that says how old a row is, and the order its oldest rows are
 * found in: that column's index, or for goroutines (no index on observed_at: it would cost every upsert) the rowid,
 * which grows with first sight.
 */
const AGED: readonly { table: string; time: string; order?: 'rowid' }[] = [
  { table: 'goroutines', time: 'observed_at', order: 'rowid' },
  { table: 'connections', time: 'observed_at' },
  { table: 'windows', time: 'to_ms' },
  { table: 'profile_samples', time: 'to_ms' },
  { table: 'pauses', time: 'started_at' },
  { table: 'requests', time: 'started_at' },
  { table: 'sched_reports', time: 'to_ms' },
  { table: 'leak_suspects', time: 'last_seen_at' },
  { table: 'fatal_errors', time: 'at' },
];

/**
 * What size retention deletes from. Leak suspects and fatal errors are few and small, and a fatal
 * error is the one record that explains why a process is gone: only age retention removes them.
 */
const BULKY = AGED.filter((a) => a.table !== 'leak_suspects' && a.table !== 'fatal_errors');

/** Tables whose rows keep their process row alive. */
const CHILDREN = AGED.map((a) => a.table);

export class Retention {
  /**
   * onDeleted: told of each chunk's rows as it is deleted (a pass under sustained ingest can run for many seconds).
   * betweenChunks: runs after each chunk, before the pass goes on (the writer thread lets waiting write groups in).
   */
  constructor(
    private readonly db: Database,
    private readonly opts: RetentionOptions,
    private readonly onDeleted: (rows: number) => void = () => {},
    private readonly betweenChunks: () => void = () => {},
  ) {}

  /** After a chunk: what waits runs, then the event loop gets a turn. */
  private async pause(): Promise<void> {
    this.betweenChunks();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }

  private counted(rows: number): number {
    if (rows > 0) this.onDeleted(rows);
    return rows;
  }

  /** One retention pass; returns rows deleted. Yields to the event loop between chunks. */
  async run(now = Date.now()): Promise<number> {
    let deleted = 0;
    const cutoff = this.opts.maxAgeMs === undefined ? undefined : now - this.opts.maxAgeMs;
    if (cutoff !== undefined) deleted += await this.byAge(cutoff);
    if (this.opts.maxBytes !== undefined) deleted += await this.bySize(this.opts.maxBytes);
    if (deleted > 0) {
      // Groups whose goroutines are all gone (deleteGoroutines brought them to zero).
      this.db.exec(`DELETE FROM goroutine_wait_groups WHERE goroutines <= 0; DELETE FROM goroutine_site_groups WHERE goroutines <= 0;
        DELETE FROM goroutine_id_seconds WHERE max_id < coalesce((SELECT min(id) FROM goroutines), 9007199254740991)`);
      this.db.pragma('incremental_vacuum');
      await this.truncateWal();
    }
    // Last, with no yield after it: write groups run between a pass's chunks (write-worker.ts), and the writer must
    // forget the process ids it cached (it does when the pass returns) before it writes again.
    if (cutoff !== undefined) deleted += this.deleteEmptyProcesses(cutoff);
    return deleted;
  }

  /**
   * Copies the WAL into the database and empties it: only then does the file shrink to what the vacuum left. While the
   * checkpointer thread runs a passive checkpoint this one is refused at once (busy, no error): it is tried again.
   */
  private async truncateWal(): Promise<void> {
    for (let attempt = 0; attempt < 40; attempt++) {
      const [r] = this.db.pragma('wal_checkpoint(TRUNCATE)') as { busy: number }[];
      if (!r?.busy) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  private deleteOlderChunk(table: string, time: string, cutoff: number): number {
    return this.db.prepare(
      `DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} WHERE ${time} < ? ORDER BY ${time} LIMIT ${CHUNK})`,
    ).run(cutoff).changes;
  }

  /** The next chunk of goroutines older than cutoff, walking rowids from `after` (rows seen lately are stepped over). */
  private deleteOlderByRowid(table: string, time: string, cutoff: number, after: number): { n: number; last: number } {
    const ids = this.db.prepare(`SELECT rowid FROM ${table} WHERE rowid > ? AND ${time} < ? ORDER BY rowid LIMIT ${CHUNK}`).pluck().all(after, cutoff) as number[];
    if (!ids.length) return { n: 0, last: after };
    const n = deleteGoroutines(this.db, `rowid >= ? AND rowid <= ? AND ${time} < ?`, ids[0], ids[ids.length - 1], cutoff);
    return { n, last: ids[ids.length - 1] };
  }

  private async byAge(cutoff: number): Promise<number> {
    let total = 0;
    for (const { table, time, order } of AGED) {
      let after = 0;
      for (;;) {
        let n: number;
        if (order === 'rowid') ({ n, last: after } = this.deleteOlderByRowid(table, time, cutoff, after));
        else n = this.deleteOlderChunk(table, time, cutoff);
        total += this.counted(n);
        if (n < CHUNK) break;
        await this.pause();
      }
    }
    total += this.counted(this.db.prepare('DELETE FROM ingested_batches WHERE received_at < ?').run(cutoff).changes);
    return total;
  }

  /** Processes with nothing left that exited (or were last seen) before the cutoff. */
  private deleteEmptyProcesses(cutoff: number): number {
    return this.counted(this.db.prepare(`DELETE FROM processes WHERE coalesce(exited_at, seen_at) < ?
      ${CHILDREN.map((t) => `AND NOT EXISTS (SELECT 1 FROM ${t} WHERE process_id = processes.id)`).join('\n      ')}`).run(cutoff).changes);
  }

  private async bySize(maxBytes: number): Promise<number> {
    let total = 0;
    // Rows per used byte over every bulky table, counted once per pass (a count of 10M rows takes a second): ingest goes
    // on during a pass, so what is left over the bound, not what was deleted, sizes the next chunk. Per byte of the
    // whole file, not of one table: a small table's own count over the file's bytes sized its chunks at a sliver of what
    // was over (500 connection rows a round while goroutines filled the file), and every round let a write group in.
    let density: number | undefined;
    for (let round = 0; round < 10_000; round++) {
      const used = databaseSizeBytes(this.db).usedBytes;
      if (used <= maxBytes) break;
      // Delete from whichever table has the oldest row, up to the oldest row of the others.
      let oldest: { table: string; time: string; t: number } | undefined;
      let next = Infinity;
      for (const { table, time, order } of BULKY) {
        const row = (order === 'rowid'
          ? this.db.prepare(`SELECT ${time} AS t FROM ${table} ORDER BY rowid LIMIT 1`).get() ?? { t: null }
          : this.db.prepare(`SELECT min(${time}) AS t FROM ${table}`).get()) as { t: number | null };
        if (row.t === null) continue;
        if (!oldest || row.t < oldest.t) {
          if (oldest) next = Math.min(next, oldest.t);
          oldest = { table, time: order ?? time, t: row.t };
        } else next = Math.min(next, row.t);
      }
      if (!oldest) break;
      density ??= BULKY.reduce((n, { table }) => n + (this.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n, 0) / used;
      // Rows are about equally big: delete the share of rows that is over the limit; up to SIZE_CHUNK a round (ingest
      // goes on between rounds, and a round must delete more than it adds). Aimed 5% of the bound below it: a pass that
      // stopped just over the bound (a deleted row frees no page) went on a row at a time, up to 10k rounds, while
      // ingest waited between them.
      const chunk = Math.max(1, Math.min(SIZE_CHUNK, Math.ceil(density * (used - maxBytes * 0.95))));
      let n: number;
      if (oldest.table === 'goroutines') {
        // The oldest `chunk` rows by rowid: those up to the chunk's last one.
        const last = this.db.prepare('SELECT rowid FROM goroutines ORDER BY rowid LIMIT 1 OFFSET ?').pluck().get(chunk - 1) as number | undefined;
        n = last === undefined ? deleteGoroutines(this.db, 'true') : deleteGoroutines(this.db, 'rowid <= ?', last);
      } else {
        n = this.db.prepare(`DELETE FROM ${oldest.table} WHERE rowid IN
          (SELECT rowid FROM ${oldest.table} WHERE ${oldest.time} <= ? ORDER BY ${oldest.time} LIMIT ?)`).run(Math.min(next, Number.MAX_VALUE), chunk).changes;
      }
      total += this.counted(n);
      if (n === 0) break;
      await this.pause();
    }
    return total;
  }
}

const ADD = 'ON CONFLICT DO UPDATE SET goroutines = goroutines + excluded.goroutines, live = live + excluded.live, blocked_ns = blocked_ns + excluded.blocked_ns';

/**
 * Deletes the goroutine rows `where` names and takes them out of the per-group counts (goroutine_wait_groups and
 * goroutine_site_groups, migration 3) with one GROUP BY over the chunk, where a trigger ran two updates for every
 * deleted row: a delete costs ~27% less CPU (scripts/bench/collector-store.ts). Every delete of goroutine rows goes through
 * here.
 */
export function deleteGoroutines(db: Database, where: string, ...params: unknown[]): number {
  return db.transaction(() => {
    const groups = db.prepare(`SELECT g.process_id, g.wait_reason, g.site_id, s.function, s.file, s.line, g.n, g.live, g.blocked FROM
      (SELECT process_id, wait_reason, site_id, count(*) AS n, sum(exited_at IS NULL) AS live, sum(blocked_ns) AS blocked
        FROM goroutines WHERE ${where} GROUP BY process_id, wait_reason, site_id) g
      LEFT JOIN code_sites s ON s.id = g.site_id`).raw().all(...params) as [number, string | null, number | null, string | null, string | null, number | null, number, number, number][];
    // By process, then wait reason or site id (keys as the writer stores them: none is 0, a line -1).
    const wait = new Map<number, Map<string | null, number[]>>();
    const site = new Map<number, Map<number | null, (string | number)[]>>();
    for (const [processId, reason, siteId, fn, file, line, n, live, blocked] of groups) {
      let w = wait.get(processId);
      if (!w) wait.set(processId, (w = new Map()));
      const dw = w.get(reason);
      if (dw) { dw[0] += n; dw[1] += live; dw[2] += blocked; } else w.set(reason, [n, live, blocked]);
      let st = site.get(processId);
      if (!st) site.set(processId, (st = new Map()));
      const ds = st.get(siteId);
      if (ds) { (ds[3] as number) += n; (ds[4] as number) += live; (ds[5] as number) += blocked; } else st.set(siteId, [fn ?? 0, file ?? 0, line ?? -1, n, live, blocked]);
    }
    const subWait = db.prepare(`INSERT INTO goroutine_wait_groups (process_id, wait_key, goroutines, live, blocked_ns) VALUES (?, ?, ?, ?, ?) ${ADD}`);
    for (const [processId, byReason] of wait) {
      for (const [reason, [n, live, blocked]] of byReason) subWait.run(processId, reason ?? 0, -n, -live, -blocked);
    }
    const subSite = db.prepare(`INSERT INTO goroutine_site_groups (process_id, function_key, file_key, line_key, goroutines, live, blocked_ns)
      VALUES (?, ?, ?, ?, ?, ?, ?) ${ADD}`);
    for (const [processId, bySite] of site) {
      for (const [fn, file, line, n, live, blocked] of bySite.values()) subSite.run(processId, fn, file, line, -n, -live, -blocked);
    }
    return db.prepare(`DELETE FROM goroutines WHERE ${where}`).run(...params).changes;
  })();
}
