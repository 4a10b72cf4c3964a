// A time range's goroutines (alive at some point in [since, until]) from the store equal a filter over every row,
// wherever the range ends within a second or a minute, with rows stored out of order (an agent's spool sends old
// goroutines late), and after a migration from the marks a minute of schema 11.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Database } from 'better-sqlite3';
import { openDatabase } from '../../collector/src/store/db.ts';
import { migrations } from '../../collector/src/store/migrations.ts';
import { StoreReader } from '../../collector/src/store/reader.ts';
import { StoreWriter } from '../../collector/src/store/writer.ts';
import type { GoroutineRecord } from '../../collector/src/protocol/records.ts';
import { gor, proc, tempDir } from './helpers.ts';

const MINUTE0 = Math.floor(1_796_000_000_000 / 60_000) * 60_000;

/** 600 goroutines created over three minutes, stored in batches mostly in time order, every 7th batch late. */
function records(): GoroutineRecord[] {
  let seed = 11;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const out: GoroutineRecord[] = [];
  for (let goid = 1; goid <= 600; goid++) {
    const createdAt = MINUTE0 + goid * 300 + rnd(300);
    const exited = rnd(3) === 0;
    out.push(gor(1, goid, {
      createdAt, exitedAt: exited ? createdAt + rnd(5_000) : null, state: exited ? 'dead' : 'waiting',
      waitReason: exited ? null : 'chan receive', observedAt: createdAt + 10_000,
    }));
  }
  const batches: GoroutineRecord[][] = [];
  for (let i = 0; i < out.length; i += 20) batches.push(out.slice(i, i + 20));
  const late = batches.filter((_, i) => i % 7 === 3);
  return [...batches.filter((_, i) => i % 7 !== 3), ...late].flat();
}

/** goids of the newest `limit` rows alive in [since, until], by a scan of every row. */
function oracle(db: Database, since: number, until: number, limit: number): number[] {
  return (db.prepare(`SELECT goid FROM goroutines WHERE coalesce(created_at, first_seen_at) <= ? AND (exited_at IS NULL OR exited_at >= ?)
    ORDER BY id DESC LIMIT ?`).pluck().all(until, since, limit) as number[]);
}

function ranges(): [number, number][] {
  const out: [number, number][] = [];
  // Ends just before, at and after second and minute edges, and inside seconds; lengths of 0.5 s to 2 minutes.
  for (const end of [0, 1, 999, 1_000, 1_001, 59_999, 60_000, 60_001, 61_500, 90_250, 119_999, 120_000, 150_777, 179_999, 200_000]) {
    for (const len of [500, 5_000, 60_000, 120_000]) out.push([MINUTE0 + end - len, MINUTE0 + end]);
  }
  return out;
}

function check(t: Test, db: Database): void {
  const reader = new StoreReader(db);
  let nonEmpty = 0;
  for (const [since, until] of ranges()) {
    for (const limit of [5, 1000]) {
      const got = reader.goroutines({ since, until, limit }).items.map((g) => g.goid);
      const want = oracle(db, since, until, limit);
      if (want.length) nonEmpty++;
      t.same(got, want, `since ${since - MINUTE0} until ${until - MINUTE0} limit ${limit}`);
    }
  }
  t.ok(nonEmpty > 50, `${nonEmpty} ranges hold goroutines`);
}

t.test('time ranges match a scan of every row', async (t) => {
  const db = openDatabase(join(tempDir(t), 'r.db'));
  t.teardown(() => db.close());
  const w = new StoreWriter(db);
  db.transaction(() => w.writeRecords('n', [proc(1)]))();
  const all = records();
  for (let i = 0; i < all.length; i += 20) db.transaction(() => w.writeRecords('n', all.slice(i, i + 20)))();
  check(t, db);
});

t.test('a database with marks a minute (schema 11) migrates, and its time ranges stay exact', async (t) => {
  const file = join(tempDir(t), 'old.db');
  const old = new BetterSqlite3(file);
  old.exec('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)');
  for (const m of migrations.filter((m) => m.version <= 11)) {
    old.exec(m.sql);
    old.prepare('INSERT INTO schema_version VALUES (?, ?, 0)').run(m.version, m.name);
  }
  old.exec(`INSERT INTO processes (id, node, pid, start_time, exe, seen_at) VALUES (1, 'n', 1, 1, '/x', 0)`);
  const ins = old.prepare(`INSERT INTO goroutines (process_id, goid, state, wait_reason, created_at, exited_at, park_count, ready_count,
    blocked_ns, blocked_by_reason, preexisting, system, observed_at, first_seen_at) VALUES (1, ?, ?, ?, ?, ?, 0, 0, 0, '{}', 0, 0, ?, ?)`);
  // As schema 11's writer marked them: the highest id of each minute of goroutine time.
  const mark = old.prepare('INSERT INTO goroutine_id_marks (minute, max_id) VALUES (?, ?) ON CONFLICT DO UPDATE SET max_id = max(max_id, excluded.max_id)');
  old.transaction(() => {
    for (const r of records()) {
      const id = Number(ins.run(r.goid, r.state, r.waitReason, r.createdAt, r.exitedAt, r.observedAt, r.observedAt).lastInsertRowid);
      mark.run(Math.floor(r.createdAt! / 60_000), id);
    }
  })();
  old.close();
  const db = openDatabase(file);
  t.teardown(() => db.close());
  const seconds = (db.prepare('SELECT count(DISTINCT CAST(created_at / 1000 AS INTEGER)) AS n FROM goroutines').get() as { n: number }).n;
  t.equal((db.prepare('SELECT count(*) AS n FROM goroutine_id_seconds').get() as { n: number }).n, seconds, 'a mark for each second the rows began in');
  check(t, db);
  // Rows stored after the migration get marks a second, beside the old ones.
  const w = new StoreWriter(db);
  db.transaction(() => w.writeRecords('n', [gor(1, 1000, { createdAt: MINUTE0 + 150_500, observedAt: MINUTE0 + 170_000 })]))();
  check(t, db);
});
