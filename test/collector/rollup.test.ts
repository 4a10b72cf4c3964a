// The per-group goroutine counts behind /goroutines/summary must always equal GROUP BY over the
// goroutines table: after inserts, updates (new wait reason, exit, new site, stale re-sends),
// deletes by retention, and when a migration builds them from an older database.
import t from 'tap';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Database } from 'better-sqlite3';
import { openDatabase } from '../../collector/src/store/db.ts';
import { migrations } from '../../collector/src/store/migrations.ts';
import { StoreWriter } from '../../collector/src/store/writer.ts';
import { deleteGoroutines } from '../../collector/src/store/retention.ts';
import type { AgentRecord } from '../../collector/src/protocol/records.ts';
import { api, gor, proc, T0, TestAgent, tempDir, testCollector } from './helpers.ts';

function groupsFromRows(db: Database) {
  const wait = db.prepare(`SELECT process_id, wait_reason AS k, count(*) AS n, sum(exited_at IS NULL) AS live, total(blocked_ns) AS b
    FROM goroutines GROUP BY process_id, wait_reason ORDER BY process_id, k`).all();
  const site = db.prepare(`SELECT process_id, created_by_function AS f, created_by_file AS fi, created_by_line AS l, count(*) AS n,
    sum(exited_at IS NULL) AS live, total(blocked_ns) AS b FROM goroutines_named GROUP BY process_id, f, fi, l ORDER BY process_id, f, fi, l`).all();
  return { wait, site };
}

function groupsFromRollup(db: Database) {
  const wait = db.prepare(`SELECT process_id, nullif(wait_key, 0) AS k, goroutines AS n, live, CAST(blocked_ns AS REAL) AS b
    FROM goroutine_wait_groups WHERE goroutines > 0 ORDER BY process_id, k`).all();
  const site = db.prepare(`SELECT process_id, nullif(function_key, 0) AS f, nullif(file_key, 0) AS fi, nullif(line_key, -1) AS l,
    goroutines AS n, live, CAST(blocked_ns AS REAL) AS b FROM goroutine_site_groups WHERE goroutines > 0 ORDER BY process_id, f, fi, l`).all();
  return { wait, site };
}

const REASONS = [null, 'chan receive', 'select', '', '0', 'IO wait'];
const SITES = [null, { function: 'main.a', file: '/a.go', line: 1 }, { function: 'main.a', file: '/a.go', line: 2 }, { function: 'x:1', file: '2:y', line: 3 }, { function: 'x', file: '1:2:y', line: 3 }];

t.test('random inserts, updates and deletes keep the groups exact', async (t) => {
  const db = openDatabase(join(tempDir(t), 'r.db'));
  t.teardown(() => db.close());
  const w = new StoreWriter(db);
  let seed = 7;
  const rnd = (n: number) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  for (let round = 0; round < 40; round++) {
    const records: AgentRecord[] = [];
    for (let i = 0; i < 200; i++) {
      const pid = 1 + rnd(3);
      const goid = 1 + rnd(150);
      records.push(gor(pid, goid, {
        waitReason: REASONS[rnd(REASONS.length)], createdBy: SITES[rnd(SITES.length)],
        exitedAt: rnd(4) === 0 ? T0 + 5 : null, blockedNs: rnd(1000) * 1000,
        observedAt: T0 + round * 100 + rnd(150), // some stale: older than the stored row
      }));
    }
    db.transaction(() => w.writeRecords('n', records))();
    if (round % 10 === 9) deleteGoroutines(db, 'goid % 7 = ?', round % 7);
  }
  // A rolled-back batch must leave no trace in the groups either.
  t.throws(() => db.transaction(() => { w.writeRecords('n', [gor(1, 1000, { observedAt: T0 + 1e6 })]); throw new Error('abort'); })());
  t.ok((db.prepare('SELECT count(*) AS n FROM goroutines').get() as { n: number }).n > 100);
  t.same(groupsFromRollup(db), groupsFromRows(db));
});

t.test('migrating an older database builds the groups from its goroutines', async (t) => {
  const file = join(tempDir(t), 'old.db');
  const old = new BetterSqlite3(file);
  old.exec('CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)');
  for (const m of migrations.filter((m) => m.version < 3)) {
    old.exec(m.sql);
    old.prepare('INSERT INTO schema_version VALUES (?, ?, 0)').run(m.version, m.name);
  }
  old.exec(`INSERT INTO processes (id, node, pid, start_time, exe, seen_at) VALUES (1, 'n', 1, 1, '/x', 0)`);
  const ins = old.prepare(`INSERT INTO goroutines (process_id, goid, state, wait_reason, created_by_function, created_by_file, created_by_line,
    park_count, ready_count, blocked_ns, blocked_by_reason, preexisting, system, observed_at, first_seen_at, exited_at)
    VALUES (1, ?, 'waiting', ?, ?, ?, ?, 0, 0, ?, '{}', 0, 0, 0, 0, ?)`);
  for (let i = 0; i < 100; i++) {
    const s = SITES[i % SITES.length];
    ins.run(i, REASONS[i % REASONS.length], s?.function ?? null, s?.file ?? null, s?.line ?? null, i * 10, i % 3 ? null : 5);
  }
  old.close();
  const db = openDatabase(file);
  t.teardown(() => db.close());
  t.same(groupsFromRollup(db), groupsFromRows(db));
  t.equal((groupsFromRollup(db).wait as unknown[]).length, REASONS.length);
});

t.test('the summary API answers the same from the groups as from the rows', async (t) => {
  const c = await testCollector(t);
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [
    proc(10), proc(20),
    ...Array.from({ length: 60 }, (_, i) => gor(10 + 10 * (i % 2), i, {
      waitReason: REASONS[i % REASONS.length], createdBy: SITES[i % SITES.length], exitedAt: i % 5 ? null : T0 + 1, blockedNs: i * 1e6,
    })),
  ]);
  await a.send(2, Array.from({ length: 20 }, (_, i) => gor(10, i * 2, { waitReason: 'select', observedAt: T0 + 1000, exitedAt: T0 + 999 })));
  for (const by of ['waitReason', 'createdBy']) {
    for (const filter of ['', '&pid=10', '&node=node-a', '&node=node-b']) {
      // since=0 matches every goroutine but forces the query over the rows.
      const fast = (await api(c, `/api/v1/goroutines/summary?by=${by}${filter}`)).body.groups;
      const slow = (await api(c, `/api/v1/goroutines/summary?by=${by}${filter}&since=0`)).body.groups;
      const key = (g: any) => JSON.stringify([g.waitReason, g.createdBy]);
      t.same([...fast].sort((x, y) => key(x).localeCompare(key(y))), [...slow].sort((x, y) => key(x).localeCompare(key(y))), `${by}${filter}`);
    }
  }
  const byReason = (await api(c, '/api/v1/goroutines/summary?by=waitReason&pid=10')).body.groups;
  // 20 moved to select and exited; goids 44, 50, 56 were select already (50 exited).
  t.match(byReason[0], { waitReason: 'select', goroutines: 23, live: 2 }, 'largest first, exits counted');
  a.close();
});
