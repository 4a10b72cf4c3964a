// Collector store micro-benchmark: the SQLite write path and the parse/validate step, each
// variant on the same generated records, side by side in one run. Prints JSON.
//
//   node --import tsx scripts/bench/collector-store.ts [--rows 200000] [--group 4000] [--variants a,b] [--rounds 3]
//        [--baseline DIR]
//
// Write variants start from a fresh database opened exactly as the collector opens it, then
// change one thing (a pragma, an index, the rollup triggers); the records go through StoreWriter
// in transactions of --group rows, as the ingest queue's group commit does. Each variant inserts
// --rows new goroutines, then re-sends all of them with a new state (the update path), then lets size retention delete
// about half of them (what a writer at the file's bound does for every insert). --baseline DIR adds the store of another
// checkout (its db.ts, writer.ts and retention.ts) as a variant. Variants run in interleaved rounds (forward, then
// backward), figures are medians and ratios to the first variant are paired per round: the machine is shared.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { median } from './lib.ts';
import { parseArgs } from 'node:util';
import type { Database } from 'better-sqlite3';
import { databaseSizeBytes, openDatabase as openDb, type openDatabase } from '../../collector/src/store/db.ts';
import { StoreWriter as Writer, type StoreWriter } from '../../collector/src/store/writer.ts';
import { Retention as Retain, type Retention } from '../../collector/src/store/retention.ts';
import { parseAgentMessage } from '../../collector/src/protocol/validate.ts';
import type { GoroutineRecord, ProcessRecord } from '../../collector/src/protocol/records.ts';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '200000' },
    group: { type: 'string', default: '4000' },
    variants: { type: 'string' },
    dir: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    baseline: { type: 'string' },
  },
});
const ROWS = Number(args.rows);
const GROUP = Number(args.group);
const dir = args.dir ?? mkdtempSync(join(tmpdir(), 'goroscope-store-bench-'));

const T0 = Date.now() - 3_600_000;
const REASONS = ['chan receive', 'select', 'IO wait', 'sync.Mutex.Lock', 'sleep', 'GC worker (idle)', 'semacquire', 'chan send'];
const STATES = ['waiting', 'waiting', 'waiting', 'runnable', 'running', 'syscall', 'dead', 'dead'] as const;

/** Goroutine records of the shape the collector benchmarks send (scripts/bench/collector.ts). */
function goroutine(pid: number, goid: number, i: number, shift = 0): GoroutineRecord {
  const state = STATES[(i + shift) % STATES.length];
  const reason = state === 'waiting' ? REASONS[((i >>> 3) + shift) % REASONS.length] : null;
  const site = i % 200;
  const created = T0 + (i % 3_600_000);
  return {
    kind: 'goroutine', pid, goid, parentGoid: Math.max(1, goid - 1 - (i % 50)), state, waitReason: reason,
    createdBy: { function: `main.spawner${site}`, file: `/src/pkg${site % 20}/file.go`, line: 10 + site },
    startFunction: `main.worker${site}`, createdAt: created, exitedAt: state === 'dead' ? created + (i % 5000) : null,
    lastParkAt: reason ? created + 1 : null, parkCount: i % 17, readyCount: i % 13, blockedNs: (i % 1000) * 1_000_000 + shift,
    blockedByReason: reason ? { [reason]: (i % 1000) * 1_000_000 } : {}, preexisting: false, system: i % 97 === 0,
    observedAt: created + 10 + shift,
  };
}

const processRecord = (pid: number): ProcessRecord => ({
  kind: 'process', pid, startTime: 1000 + pid, exe: `/app/svc${pid}`, goVersion: 'go1.22.1', containerId: `c${pid}`,
  pod: { name: `svc-${pid}`, namespace: 'prod', uid: `u${pid}`, container: 'app' }, seenAt: T0, exitedAt: null,
});

interface Store { openDatabase: typeof openDatabase; StoreWriter: typeof StoreWriter; Retention: typeof Retention }
type Variant = { name: string; setup?: (db: Database) => void; store?: Store };
const dropIndex = (...names: string[]) => (db: Database) => { for (const n of names) db.exec(`DROP INDEX ${n}`); };
const WRITE_VARIANTS: Variant[] = [
  { name: 'as shipped' },
  { name: 'wal_autocheckpoint=1000 (SQLite default)', setup: (db) => { db.pragma('wal_autocheckpoint = 1000'); } },
  { name: 'cache_size=-16384 (16 MiB)', setup: (db) => { db.pragma('cache_size = -16384'); } },
  { name: 'temp_store=DEFAULT', setup: (db) => { db.pragma('temp_store = DEFAULT'); } },
  { name: 'without the wait reason and site indexes', setup: dropIndex('goroutines_wait_reason', 'goroutines_site') },
  { name: 'without index goroutines_process_state', setup: dropIndex('goroutines_process_state') },
  { name: 'without every secondary index (the floor)', setup: dropIndex('goroutines_process_state', 'goroutines_wait_reason', 'goroutines_site') },
  { name: 'auto_vacuum=NONE (no pointer map pages)', setup: (db) => { db.pragma('journal_mode = DELETE'); db.pragma('auto_vacuum = NONE'); db.exec('VACUUM'); db.pragma('journal_mode = WAL'); } },
  { name: 'synchronous=OFF', setup: (db) => { db.pragma('synchronous = OFF'); } },
  { name: 'page_size=16384', setup: (db) => { db.pragma('journal_mode = DELETE'); db.pragma('page_size = 16384'); db.exec('VACUUM'); db.pragma('journal_mode = WAL'); } },
  { name: 'page_size=4096 (SQLite default)', setup: (db) => { db.pragma('journal_mode = DELETE'); db.pragma('page_size = 4096'); db.exec('VACUUM'); db.pragma('journal_mode = WAL'); } },
];

/** StoreWriter before writeRecords existed wrote one record at a time (for comparing against older commits). */
function writeRecords(w: StoreWriter, records: GoroutineRecord[]): void {
  const any = w as unknown as { writeRecords?: (n: string, r: GoroutineRecord[]) => void; writeRecord(n: string, r: GoroutineRecord): void };
  if (any.writeRecords) any.writeRecords('node', records);
  else for (const r of records) any.writeRecord('node', r);
}

async function writeVariant(v: Variant) {
  const { openDatabase, StoreWriter, Retention } = v.store ?? { openDatabase: openDb, StoreWriter: Writer, Retention: Retain };
  const file = join(dir, `${v.name.replace(/[^a-z0-9]+/gi, '_')}.db`);
  rmSync(file, { force: true });
  rmSync(`${file}-wal`, { force: true });
  const db = openDatabase(file);
  v.setup?.(db);
  const writer = new StoreWriter(db);
  const PROCESSES = 10;
  db.transaction(() => { for (let p = 0; p < PROCESSES; p++) writer.writeRecord('node', processRecord(100 + p)); })();
  // Wall time gives rows/s; CPU time per row (user + system) is steadier on a shared machine.
  const pass = (shift: number) => {
    const started = performance.now();
    const cpu0 = process.cpuUsage();
    for (let from = 0; from < ROWS; from += GROUP) {
      const records: GoroutineRecord[] = [];
      for (let i = from; i < Math.min(ROWS, from + GROUP); i++) records.push(goroutine(100 + (i % PROCESSES), Math.floor(i / PROCESSES) + 1, i, shift));
      // In agent-sized batches, as the ingest queue's group commit writes them.
      db.transaction(() => { for (let b = 0; b < records.length; b += 1000) writeRecords(writer, records.slice(b, b + 1000)); })();
    }
    const cpu = process.cpuUsage(cpu0);
    return { rowsPerSecond: Math.round(ROWS / ((performance.now() - started) / 1000)), cpuUsPerRow: +((cpu.user + cpu.system) / ROWS).toFixed(2) };
  };
  const ins = pass(0);
  const upd = pass(1);
  // Size retention down to half the used pages: the oldest rows, in the chunks a pass deletes under load.
  const rowsBefore = (db.prepare('SELECT count(*) AS n FROM goroutines').get() as { n: number }).n;
  const cpu0 = process.cpuUsage();
  await new Retention(db, { maxBytes: Math.floor(databaseSizeBytes(db).usedBytes / 2) }).run();
  const cpu = process.cpuUsage(cpu0);
  const deleted = rowsBefore - (db.prepare('SELECT count(*) AS n FROM goroutines').get() as { n: number }).n;
  db.close();
  const bytes = statSync(file).size;
  rmSync(file, { force: true });
  rmSync(`${file}-wal`, { force: true });
  rmSync(`${file}-shm`, { force: true });
  return {
    insertRowsPerSecond: ins.rowsPerSecond, insertCpuUsPerRow: ins.cpuUsPerRow,
    updateRowsPerSecond: upd.rowsPerSecond, updateCpuUsPerRow: upd.cpuUsPerRow, deleteCpuUsPerRow: +((cpu.user + cpu.system) / deleted).toFixed(2),
    deleted, dbBytes: bytes,
  };
}

/** JSON.parse + schema validation of 1000-record batches, as the ingest endpoint does per message. */
function parseVariant() {
  const texts = Array.from({ length: 50 }, (_, b) => JSON.stringify({
    type: 'batch', agentId: 'a', seq: b, records: Array.from({ length: 1000 }, (_, i) => goroutine(100, b * 1000 + i + 1, b * 1000 + i)),
  }));
  let parseMs = 0;
  let totalMs = 0;
  for (let round = 0; round < 3; round++) {
    for (const text of texts) {
      const t0 = performance.now();
      JSON.parse(text);
      const t1 = performance.now();
      const r = parseAgentMessage(text);
      const t2 = performance.now();
      if (!r.ok) throw new Error(r.error);
      if (round > 0) { parseMs += t1 - t0; totalMs += t2 - t1; }
    }
  }
  const n = texts.length * 2;
  return { jsonParseMsPer1000: +(parseMs / n).toFixed(2), parseAndValidateMsPer1000: +(totalMs / n).toFixed(2), validateMsPer1000: +((totalMs - parseMs) / n).toFixed(2) };
}

const wanted = args.variants?.split(',');
const variants = WRITE_VARIANTS.filter((v) => !wanted || wanted.some((w) => v.name.includes(w)));
if (args.baseline) {
  const base = resolve(args.baseline);
  const store: Store = {
    openDatabase: (await import(join(base, 'collector/src/store/db.ts'))).openDatabase,
    StoreWriter: (await import(join(base, 'collector/src/store/writer.ts'))).StoreWriter,
    Retention: (await import(join(base, 'collector/src/store/retention.ts'))).Retention,
  };
  variants.unshift({ name: `baseline ${base}`, store });
}
type Result = Awaited<ReturnType<typeof writeVariant>>;
const results = new Map<string, Result[]>(variants.map((v) => [v.name, []]));
for (let round = 0; round < Number(args.rounds); round++) {
  for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
    const r = await writeVariant(v);
    results.get(v.name)!.push(r);
    process.stderr.write(`round ${round + 1} ${v.name}: ${JSON.stringify(r)}\n`);
  }
}
const first = results.get(variants[0].name)!;
const write: Record<string, unknown> = {};
for (const [name, rs] of results) {
  const m = (k: keyof Result) => median(rs.map((r) => r[k]));
  const ratio = (k: keyof Result) => +median(rs.map((r, i) => r[k] / first[i][k])).toFixed(3);
  write[name] = {
    insertCpuUsPerRow: m('insertCpuUsPerRow'), updateCpuUsPerRow: m('updateCpuUsPerRow'), deleteCpuUsPerRow: m('deleteCpuUsPerRow'),
    insertRowsPerSecond: m('insertRowsPerSecond'),
    updateRowsPerSecond: m('updateRowsPerSecond'), dbBytes: m('dbBytes'),
    [`insertCpu / ${variants[0].name}`]: ratio('insertCpuUsPerRow'), [`updateCpu / ${variants[0].name}`]: ratio('updateCpuUsPerRow'),
    [`deleteCpu / ${variants[0].name}`]: ratio('deleteCpuUsPerRow'),
    samples: rs,
  };
}
console.log(JSON.stringify({ rows: ROWS, group: GROUP, rounds: Number(args.rounds), load: readFileSync('/proc/loadavg', 'utf8').trim(), write, parse: parseVariant(), node: process.version }, null, 2));
if (!args.dir) rmSync(dir, { recursive: true, force: true });
