// Collector benchmarks (npm run bench -- --only collector-ingest,collector-crash,collector-api):
//
//   collector-ingest  sustained ingest from 100 simulated agents speaking the real protocol with acks
//                     (agent-load.ts) into the collector as it runs (bin/goroscope.js collector, a real SQLite
//                     file), with retention bounding the file: records/s acked, ack latency, the collector's CPU,
//                     the database file's largest size against its bound
//   collector-crash   the same load; the collector is killed with SIGKILL mid-run and started again on its file;
//                     every record acked before the kill must be in the file (counted), and the agents' resent
//                     batches are stored once
//   collector-api     the HTTP API over a database of 10M goroutine rows (built once through the store's own write
//                     path, kept under build/bench/ for later runs): p50/p99 per query kind, p99 over all of them
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { openDatabase } from '../../collector/src/store/db.ts';
import { StoreWriter } from '../../collector/src/store/writer.ts';
import type { GoroutineRecord, ProcessRecord } from '../../collector/src/protocol/records.ts';
import { startCollectorProcess, type CollectorProcess } from '../../test/lib/collector-process.ts';
import { runAgents, startAgents } from './agent-load.ts';
import { figure, median, repoRoot, round, sleep, type BenchContext, type Figure } from './lib.ts';

export const TOKEN = 'bench-token-0123456789abcdef';

export interface CollectorBenchOptions {
  agents?: number;
  seconds?: number;
  batch?: number;
  rows?: number;
  /** Another checkout (its bundle built) whose collector collector-ingest runs against this one, interleaved. */
  baseline?: string;
  rounds?: number;
  /** --retention-max-bytes of the collectors under load (300 MB; 50 MB with --quick). */
  maxBytes?: number;
}

export type RunningCollector = CollectorProcess;

/** The collector as it runs in production: the bundled CLI, in a process of its own. */
export async function startCollector(db: string, extra: string[] = [], port = 0, root = repoRoot): Promise<RunningCollector> {
  // GOROSCOPE_BENCH_CPU_PROF=DIR writes a V8 CPU profile of the collector there (what bounds it).
  const nodeArgs = process.env.GOROSCOPE_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.GOROSCOPE_BENCH_CPU_PROF}`] : [];
  return startCollectorProcess({ db, ingestToken: TOKEN, apiToken: TOKEN, listen: `127.0.0.1:${port}`, args: extra, nodeArgs, root });
}

export async function stopCollector(c: RunningCollector): Promise<void> {
  await c.proc.stop('SIGTERM', 20_000);
}

/** CPU seconds (user + system) of a process so far. */
function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

/** CPU seconds of each thread of a process, by thread id. */
function threadCpuSeconds(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(rest[11]) + Number(rest[12])) / 100);
    } catch { /* gone */ }
  }
  return out;
}

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

const fileBytes = (db: string) => ['', '-wal', '-shm'].reduce((n, s) => n + (existsSync(db + s) ? statSync(db + s).size : 0), 0);

const pct = (xs: number[], p: number) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * p))];
};

/** What one ingest run measured. */
interface IngestRun {
  rate: number;
  latencies: number[];
  /** CPU seconds after the warm-up: all threads, the main thread, the busiest other (the store writer). */
  cpu: number;
  mainCpu: number;
  writerCpu: number;
  loadSeconds: number;
  steadySeconds: number;
  steady: number;
  total: number;
  busySeconds: number;
  maxFile: number;
  /** The database file alone (no WAL) at its largest: what --retention-max-bytes bounds. */
  maxDb: number;
  /** The WAL file at its largest (checkpoints keep it short). */
  maxWal: number;
  endFile: number;
  /** Rows retention deleted to keep the file at its bound. */
  retentionDeleted: number;
  maxRss: number;
  warmSeconds: number;
}

/** 100 agents against the collector of the checkout at `root` (this one, or a baseline's), retention bounding its file. */
async function ingestRun(ctx: BenchContext, root: string, agents: number, seconds: number, batch: number, maxBytes: number): Promise<IngestRun> {
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-bench-ingest-'));
  const db = join(dir, 'ingest.db');
  try {
    const c = await startCollector(db, ['--retention-max-bytes', String(maxBytes), '--retention-interval', '10'], 0, root);
    const start = Date.now();
    const warm = start + Math.min(5000, seconds * 200);
    const acks: { at: number; records: number }[] = [];
    const latencies: number[] = [];
    let maxFile = 0;
    let maxWal = 0;
    let maxDb = 0;
    let maxRss = 0;
    const sampler = setInterval(() => {
      maxFile = Math.max(maxFile, fileBytes(db));
      maxWal = Math.max(maxWal, existsSync(`${db}-wal`) ? statSync(`${db}-wal`).size : 0);
      maxDb = Math.max(maxDb, existsSync(db) ? statSync(db).size : 0);
      maxRss = Math.max(maxRss, rssBytes(c.proc.pid));
    }, 500);
    let cpuAtWarm = 0;
    let loadCpuAtWarm = process.cpuUsage();
    let threadsAtWarm = new Map<number, number>();
    const warmTimer = setTimeout(() => { cpuAtWarm = cpuSeconds(c.proc.pid); threadsAtWarm = threadCpuSeconds(c.proc.pid); loadCpuAtWarm = process.cpuUsage(); }, warm - start);
    const tallies = await runAgents({
      url: c.url, token: TOKEN, agents, batch, window: 4, until: start + seconds * 1000,
      onAck: (_a, n, ms) => { const at = Date.now(); acks.push({ at, records: n }); if (at >= warm) latencies.push(ms); },
      log: ctx.log,
    });
    const end = Date.now();
    const cpu = cpuSeconds(c.proc.pid) - cpuAtWarm;
    const loadCpu = process.cpuUsage(loadCpuAtWarm);
    const threads = [...threadCpuSeconds(c.proc.pid)].map(([tid, t]) => [tid, t - (threadsAtWarm.get(tid) ?? 0)] as const);
    clearInterval(sampler);
    clearTimeout(warmTimer);
    const steady = acks.filter((a) => a.at >= warm).reduce((n, a) => n + a.records, 0);
    const metricsText = await (await fetch(`${c.url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    await stopCollector(c);
    return {
      rate: steady / ((end - warm) / 1000),
      latencies,
      cpu,
      mainCpu: threads.find(([tid]) => tid === c.proc.pid)?.[1] ?? 0,
      writerCpu: Math.max(0, ...threads.filter(([tid]) => tid !== c.proc.pid).map(([, t]) => t)),
      loadSeconds: (loadCpu.user + loadCpu.system) / 1e6,
      steadySeconds: (end - warm) / 1000,
      steady,
      total: tallies.reduce((n, t) => n + t.ackedRecords, 0),
      busySeconds: Number(/^goroscope_collector_ingest_commit_seconds_total (\S+)$/m.exec(metricsText)?.[1] ?? NaN),
      maxFile,
      maxDb,
      maxWal,
      endFile: fileBytes(db),
      retentionDeleted: Number(/^goroscope_collector_retention_deleted_rows_total (\S+)$/m.exec(metricsText)?.[1] ?? NaN),
      maxRss,
      warmSeconds: (warm - start) / 1000,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const loadAverage = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

/** Sustained ingest from many agents, retention keeping the file bounded. */
export async function runCollectorIngest(ctx: BenchContext, o: CollectorBenchOptions = {}): Promise<Figure[]> {
  if (o.baseline) return runCollectorIngestCompare(ctx, o.baseline, o);
  const agents = o.agents ?? (ctx.quick ? 10 : 100);
  const seconds = o.seconds ?? (ctx.quick ? 5 : 60);
  const batch = o.batch ?? 1000;
  // A bound the run exceeds several times over: retention (every 10 s here) must hold the file to it.
  const maxBytes = o.maxBytes ?? (ctx.quick ? 50e6 : 300e6);
  const command = `${ctx.invocation} (${agents} agents, ${batch} records a batch, 4 in flight each, ${seconds} s, --retention-max-bytes ${maxBytes} --retention-interval 10)`;
  ctx.log(`collector-ingest: ${agents} agents for ${seconds} s (load average ${loadAverage()})`);
  const r = await ingestRun(ctx, repoRoot, agents, seconds, batch, maxBytes);
  const load = `load average ${loadAverage()} at the end`;
  ctx.log(`collector-ingest: ${r.total} records acked, ${Math.round(r.rate)}/s steady, file at most ${Math.round(r.maxDb / 1e6)} MB (+WAL ${Math.round(r.maxFile / 1e6)}) (${load})`);
  const f = (id: string, label: string, value: number, unit: string, extra: Partial<Figure> = {}) =>
    figure({ id: `collector-ingest.${id}`, bench: 'collector-ingest', label, value, unit, command, ...extra });
  const share = (t: number) => round((t / r.steadySeconds) * 100, 0);
  return [
    f('records_per_second', `records/s acked, sustained (after ${Math.round(r.warmSeconds)} s of warm-up)`, Math.round(r.rate), 'records/s', { target: { op: '>=', value: 100_000 }, note: load }),
    f('ack_p50', 'ack latency p50', round(pct(r.latencies, 0.5), 1), 'ms'),
    f('ack_p99', 'ack latency p99', round(pct(r.latencies, 0.99), 1), 'ms'),
    f('collector_cpu', "collector's CPU, all threads (one core = 100%)", share(r.cpu), '%'),
    f('collector_cpu_main', "collector's main thread (WebSockets, parsing, validation, acks)", share(r.mainCpu), '%'),
    f('collector_cpu_writer', "collector's store writer thread", share(r.writerCpu), '%'),
    f('writer_busy', 'share of the run the writer thread spent in transactions (CPU and waiting for the disk)', round((r.busySeconds / (r.steadySeconds + r.warmSeconds)) * 100, 0), '%'),
    f('collector_us_per_record', "collector's CPU per record acked, all threads", round((r.cpu * 1e6) / r.steady, 1), 'us'),
    f('writer_capacity', "records/s the store writer thread would take on a core of its own (1 / its CPU per record)", Math.round(r.steady / r.writerCpu), 'records/s',
      { note: 'the machine has 2 cores, shared by the collector, the 100 simulated agents and other work' }),
    f('load_cpu', 'the simulated agents\' CPU (this process; one core = 100%)', share(r.loadSeconds), '%'),
    f('collector_rss_max', "collector's largest resident set", round(r.maxRss / 1e6, 0), 'MB'),
    f('db_main_max', `database file (no WAL) at its largest, bound ${maxBytes / 1e6} MB by --retention-max-bytes`, round(r.maxDb / 1e6, 0), 'MB',
      { target: { op: '<=', value: Math.round((maxBytes * 2.5) / 1e6) }, note: 'a size pass starts as soon as a write group leaves the used pages over the bound and deletes the oldest rows to 5% below it, letting two write groups in between its chunks; the file keeps the freed pages until the pass ends' }),
    f('db_file_max', 'database file and WAL at their largest', round(r.maxFile / 1e6, 0), 'MB',
      { note: 'the WAL is bounded by the checkpoints, not by --retention-max-bytes (below)' }),
    f('db_file_end', 'database file (+WAL) at the end of the run', round(r.endFile / 1e6, 0), 'MB'),
    f('wal_max', 'WAL file at its largest (checkpointed every 250 ms by its own thread, and by the writer past 10000 pages)', round(r.maxWal / 1e6, 0), 'MB'),
    f('retention_deleted', 'rows deleted by retention to hold the bound', r.retentionDeleted, 'rows'),
    f('records_total', 'records acked in all', r.total, 'records'),
  ];
}

/**
 * This checkout's collector against a baseline's (another checkout with its bundle built: --collector-baseline DIR),
 * in interleaved rounds (forward then backward order), each round the same load: rates, CPU per record of each
 * thread, and their ratios paired per round. The machine's load changes from minute to minute; ratios of
 * neighbouring runs hold better than any absolute figure.
 */
async function runCollectorIngestCompare(ctx: BenchContext, baseline: string, o: CollectorBenchOptions): Promise<Figure[]> {
  const agents = o.agents ?? (ctx.quick ? 10 : 100);
  const seconds = o.seconds ?? (ctx.quick ? 5 : 30);
  const rounds = o.rounds ?? (ctx.quick ? 1 : 3);
  const batch = o.batch ?? 1000;
  const maxBytes = o.maxBytes ?? (ctx.quick ? 50e6 : 300e6);
  const base = resolve(baseline);
  const command = `${ctx.invocation} (${rounds} rounds, each: the baseline ${base} and this checkout, ${agents} agents, ${batch} records a batch, 4 in flight each, ${seconds} s, --retention-max-bytes ${maxBytes})`;
  const runs: Record<'base' | 'new', IngestRun[]> = { base: [], new: [] };
  const loads: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? (['base', 'new'] as const) : (['new', 'base'] as const);
    for (const which of order) {
      loads.push(loadAverage());
      ctx.log(`collector-ingest: round ${round + 1}/${rounds}, ${which} (load average ${loads[loads.length - 1]})`);
      const r = await ingestRun(ctx, which === 'base' ? base : repoRoot, agents, seconds, batch, maxBytes);
      ctx.log(`collector-ingest: ${which} ${Math.round(r.rate)} records/s, ${((r.cpu * 1e6) / r.steady).toFixed(2)} us CPU/record (writer ${((r.writerCpu * 1e6) / r.steady).toFixed(2)}, main ${((r.mainCpu * 1e6) / r.steady).toFixed(2)}; the agents' ${((r.loadSeconds * 1e6) / r.steady).toFixed(2)}), file at most ${Math.round(r.maxFile / 1e6)} MB, ${r.retentionDeleted} rows deleted by retention`);
      runs[which].push(r);
    }
  }
  const note = `load average (1, 5, 15 min) before each run: ${loads.join('; ')}`;
  const out: Figure[] = [];
  const f = (id: string, label: string, samples: number[], unit: string, digits: number, extra: Partial<Figure> = {}) =>
    out.push(figure({ id: `collector-ingest.${id}`, bench: 'collector-ingest', label, value: round(median(samples), digits), unit, command, samples: samples.map((x) => round(x, digits)), ...extra }));
  const per = (r: IngestRun, t: number) => (t * 1e6) / r.steady;
  const measures: [string, string, (r: IngestRun) => number, string, number][] = [
    ['records_per_second', 'records/s acked, sustained', (r) => r.rate, 'records/s', 0],
    ['collector_us_per_record', "collector's CPU per record acked, all threads", (r) => per(r, r.cpu), 'us', 2],
    ['writer_us_per_record', "store writer thread's CPU per record", (r) => per(r, r.writerCpu), 'us', 2],
    ['main_us_per_record', "main thread's CPU per record (WebSockets, parsing, validation, acks)", (r) => per(r, r.mainCpu), 'us', 2],
    ['ack_p99', 'ack latency p99', (r) => pct(r.latencies, 0.99), 'ms', 1],
    ['agents_us_per_record', "the simulated agents' CPU per record (the bench's process, apart from the collector's)", (r) => per(r, r.loadSeconds), 'us', 2],
  ];
  for (const [id, label, get, unit, digits] of measures) {
    f(`${id}.baseline`, `${label}, baseline`, runs.base.map(get), unit, digits);
    f(id, `${label}, this checkout`, runs.new.map(get), unit, digits, id === 'records_per_second' ? { target: { op: '>=', value: 100_000 }, note } : {});
    f(`${id}.ratio`, `${label}, this checkout / baseline (paired per round)`, runs.new.map((r, i) => get(r) / get(runs.base[i])), 'x', 3);
  }
  f('retention_deleted', 'rows deleted by retention to hold the bound, this checkout', runs.new.map((r) => r.retentionDeleted), 'rows', 0);
  f('retention_deleted.baseline', 'rows deleted by retention to hold the bound, baseline', runs.base.map((r) => r.retentionDeleted), 'rows', 0);
  f('wal_max', 'WAL file at its largest, this checkout', runs.new.map((r) => r.maxWal / 1e6), 'MB', 0);
  f('db_main_max', `database file (no WAL) at its largest, this checkout, bound ${maxBytes / 1e6} MB by --retention-max-bytes`, runs.new.map((r) => r.maxDb / 1e6), 'MB', 0,
    { target: { op: '<=', value: Math.round((maxBytes * 2.5) / 1e6) } });
  f('db_file_max', 'database file and WAL at their largest, this checkout', runs.new.map((r) => r.maxFile / 1e6), 'MB', 0);
  return out;
}

/** Acked-before-the-kill records, counted in the file after a SIGKILL. */
function countStored(db: string, tallies: Map<string, { pid: number; maxAckedGoid: number; ackedBatches: number }>): { missingGoroutines: number; missingBatches: number } {
  const d = new BetterSqlite3(db); // read-write: opening replays the WAL the killed process left
  try {
    let missingGoroutines = 0;
    let missingBatches = 0;
    const rows = d.prepare(`SELECT count(*) AS n FROM goroutines g JOIN processes p ON g.process_id = p.id
      WHERE p.node = ? AND p.pid = ? AND g.goid <= ?`);
    const batches = d.prepare('SELECT count(*) AS n FROM ingested_batches WHERE agent_id = ?');
    for (const [agentId, t] of tallies) {
      const index = t.pid - 1000;
      missingGoroutines += t.maxAckedGoid - (rows.get(`node-${index}`, t.pid, t.maxAckedGoid) as { n: number }).n;
      missingBatches += Math.max(0, t.ackedBatches - (batches.get(agentId) as { n: number }).n);
    }
    return { missingGoroutines, missingBatches };
  } finally {
    d.close();
  }
}

/** kill -9 of the collector in the middle of the many-agent load: nothing acked may be lost. */
export async function runCollectorCrash(ctx: BenchContext, o: CollectorBenchOptions = {}): Promise<Figure[]> {
  const agents = o.agents ?? (ctx.quick ? 10 : 100);
  const seconds = o.seconds ?? (ctx.quick ? 6 : 20);
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-bench-crash-'));
  const db = join(dir, 'crash.db');
  const command = `${ctx.invocation} (${agents} agents, SIGKILL at ${Math.round(seconds / 2)} s of ${seconds} s)`;
  try {
    const first = await startCollector(db);
    const start = Date.now();
    const load = startAgents({ url: first.url, token: TOKEN, agents, batch: 1000, window: 4, until: start + seconds * 1000 });
    await sleep((seconds / 2) * 1000);
    first.proc.kill();
    // What was acked when it died (acks still on their way count too: they were sent after the commit).
    await first.proc.closed;
    const atKill = new Map(load.tallies.map((t) => [t.agentId, { pid: t.pid, maxAckedGoid: t.maxAckedGoid, ackedBatches: t.ackedBatches }]));
    const ackedAtKill = load.tallies.reduce((n, t) => n + t.ackedRecords, 0);
    const lostAtKill = countStored(db, atKill);
    ctx.log(`collector-crash: killed after ${ackedAtKill} records acked; missing from the file: ${JSON.stringify(lostAtKill)}`);
    const second = await startCollector(db, [], first.port);
    const tallies = await load.done;
    await stopCollector(second);
    const final = countStored(db, new Map(tallies.map((t) => [t.agentId, t])));
    const stored = new BetterSqlite3(db, { readonly: true });
    const storedBatches = (stored.prepare("SELECT count(*) AS n FROM ingested_batches WHERE agent_id LIKE 'bench-agent-%'").get() as { n: number }).n;
    stored.close();
    const ackedBatches = tallies.reduce((n, t) => n + t.ackedBatches, 0);
    const f = (id: string, label: string, value: number, unit: string, target?: Figure['target']) =>
      figure({ id: `collector-crash.${id}`, bench: 'collector-crash', label, value, unit, command, ...(target ? { target } : {}) });
    return [
      f('lost_at_kill', `acked goroutine records missing from the file right after kill -9 (${ackedAtKill} records acked by then)`, lostAtKill.missingGoroutines, 'records', { op: '==', value: 0 }),
      f('lost_batches_at_kill', 'acked batches not in the file right after kill -9', lostAtKill.missingBatches, 'batches', { op: '==', value: 0 }),
      f('lost_at_end', 'acked goroutine records missing at the end (after restart and the agents\' resends)', final.missingGoroutines, 'records', { op: '==', value: 0 }),
      f('stored_twice', 'batches stored more than once (resent after the kill)', storedBatches - ackedBatches, 'batches', { op: '==', value: 0 }),
      f('reconnects', 'agent reconnects after the kill', tallies.reduce((n, t) => n + t.reconnects, 0), 'reconnects'),
      f('acked_records', 'records acked in all', tallies.reduce((n, t) => n + t.ackedRecords, 0), 'records'),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const T0 = Date.now() - 3_600_000;
const REASONS = ['chan receive', 'select', 'IO wait', 'sync.Mutex.Lock', 'sleep', 'GC worker (idle)', 'semacquire', 'chan send'];
const STATES = ['waiting', 'waiting', 'waiting', 'runnable', 'running', 'syscall', 'dead', 'dead'] as const;
const PROCESSES = 50;

function processRecord(pid: number): ProcessRecord {
  return {
    kind: 'process', pid, startTime: 1000 + pid, exe: `/app/svc${pid % 7}`, goVersion: 'go1.22.1', containerId: `c${pid}`,
    pod: { name: `svc-${pid}`, namespace: 'prod', uid: `u${pid}`, container: 'app' }, seenAt: T0, exitedAt: null,
  };
}

/** Row i of `rows`, as a collector stores them: in the order they were first seen, an hour of them. */
function goroutine(pid: number, goid: number, i: number, rows: number): GoroutineRecord {
  const state = STATES[i % STATES.length];
  const reason = state === 'waiting' ? REASONS[(i >>> 3) % REASONS.length] : null;
  const site = i % 200;
  const created = T0 + Math.floor((i * 3_600_000) / rows);
  return {
    kind: 'goroutine', pid, goid, parentGoid: Math.max(1, goid - 1 - (i % 50)), state, waitReason: reason,
    createdBy: { function: `main.spawner${site}`, file: `/src/pkg${site % 20}/file.go`, line: 10 + site },
    startFunction: `main.worker${site}`, createdAt: created, exitedAt: state === 'dead' ? created + (i % 5000) : null,
    lastParkAt: reason ? created + 1 : null, parkCount: i % 17, readyCount: i % 13, blockedNs: (i % 1000) * 1_000_000,
    blockedByReason: reason ? { [reason]: (i % 1000) * 1_000_000 } : {}, preexisting: false, system: i % 97 === 0,
    observedAt: created + 10,
  };
}

/** Many goroutine rows through the store's own write path; kept for later runs (it takes minutes at 10M). */
function buildDatabase(file: string, rows: number, log: (m: string) => void): void {
  const started = performance.now();
  const tmp = `${file}.building`;
  rmSync(tmp, { force: true });
  const db = openDatabase(tmp);
  const writer = new StoreWriter(db);
  const CHUNK = 200_000;
  for (let from = 0; from < rows; from += CHUNK) {
    db.transaction(() => {
      if (from === 0) for (let p = 0; p < PROCESSES; p++) writer.writeRecord(`node-${p % 5}`, processRecord(1000 + p));
      const batches = new Map<string, GoroutineRecord[]>();
      for (let i = from; i < Math.min(rows, from + CHUNK); i++) {
        const p = i % PROCESSES;
        const node = `node-${p % 5}`;
        let b = batches.get(node);
        if (!b) batches.set(node, (b = []));
        b.push(goroutine(1000 + p, Math.floor(i / PROCESSES) + 1, i, rows));
        // Stored when it was observed: the collector's clock marks which ids each minute holds.
        if (b.length === 1000) { writer.writeRecords(node, b, b[b.length - 1].observedAt); batches.set(node, []); }
      }
      for (const [node, b] of batches) if (b.length) writer.writeRecords(node, b, b[b.length - 1].observedAt);
    })();
    if (from % 2_000_000 === 0) log(`collector-api: ${from + CHUNK} of ${rows} rows (${Math.round((from + CHUNK) / ((performance.now() - started) / 1000))} rows/s)`);
  }
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.exec('ANALYZE');
  db.close();
  // The built file becomes the kept one only when complete.
  for (const x of ['-wal', '-shm']) rmSync(tmp + x, { force: true });
  renameSync(tmp, file);
  log(`collector-api: ${rows} rows in ${Math.round((performance.now() - started) / 1000)} s, ${Math.round(statSync(file).size / 1e6)} MB`);
}

/** API latency over 10M goroutine rows. */
export async function runCollectorApi(ctx: BenchContext, o: CollectorBenchOptions = {}): Promise<Figure[]> {
  const rows = o.rows ?? (ctx.quick ? 100_000 : 10_000_000);
  const queries = ctx.quick ? 20 : 200;
  const dir = join(repoRoot, 'build', 'bench');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `collector-api-v7.1-${rows}.db`); // the store's schema it was built with
  if (!existsSync(file)) buildDatabase(file, rows, ctx.log);
  else ctx.log(`collector-api: reusing ${file} (delete it to build again)`);
  // Time ranges fall in the hour the rows span, which a kept file began when it was built (not an hour before now).
  const kept = new BetterSqlite3(file, { readonly: true });
  const from = kept.prepare('SELECT coalesce(created_at, first_seen_at) FROM goroutines ORDER BY id LIMIT 1').pluck().get() as number;
  kept.close();
  const c = await startCollector(file);
  const command = `${ctx.invocation} (${rows} goroutine rows in ${PROCESSES} processes, ${queries} requests per kind, one at a time)`;
  try {
    const get = async (path: string) => {
      const t0 = performance.now();
      const res = await fetch(`${c.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const body = await res.json() as any;
      if (res.status !== 200) throw new Error(`${path}: ${res.status} ${JSON.stringify(body)}`);
      return { ms: performance.now() - t0, body };
    };
    const first = await get('/api/v1/goroutines?limit=100');
    const deepCursor = (await get(`/api/v1/goroutines?limit=1000&cursor=${Math.floor(first.body.items[0].id / 2)}`)).body.nextCursor;
    const kinds: Record<string, (i: number) => string> = {
      newest: () => '/api/v1/goroutines?limit=100',
      deepPage: () => `/api/v1/goroutines?limit=100&cursor=${deepCursor}`,
      byPid: (i) => `/api/v1/goroutines?pid=${1000 + (i % PROCESSES)}&limit=100`,
      byNodeState: (i) => `/api/v1/goroutines?node=node-${i % 5}&state=syscall&limit=100`,
      byWaitReason: (i) => `/api/v1/goroutines?waitReason=${encodeURIComponent(REASONS[i % REASONS.length])}&limit=100`,
      byCreatedByFunction: (i) => `/api/v1/goroutines?createdBy=main.spawner${i % 200}&limit=100`,
      byCreatedBySite: (i) => `/api/v1/goroutines?createdBy=${encodeURIComponent(`/src/pkg${(i % 200) % 20}/file.go:${10 + (i % 200)}`)}&limit=100`,
      minBlocked: () => '/api/v1/goroutines?minBlockedNs=998000000&limit=100',
      // A minute's window anywhere in the hour the rows span, ending anywhere in a second: alive then, newest first.
      timeRange: (i) => `/api/v1/goroutines?since=${from + ((i * 97) % 3540) * 1000 + ((i * 37) % 1000)}&until=${from + ((i * 97) % 3540) * 1000 + ((i * 37) % 1000) + 60_000}&limit=100`,
      processes: () => '/api/v1/processes',
      summaryByWaitReason: (i) => `/api/v1/goroutines/summary?by=waitReason&pid=${1000 + (i % PROCESSES)}`,
      summaryByCreatedBy: (i) => `/api/v1/goroutines/summary?by=createdBy&pid=${1000 + (i % PROCESSES)}`,
      summaryAllProcesses: () => '/api/v1/goroutines/summary?by=waitReason',
    };
    const out: Figure[] = [];
    const all: number[] = [];
    for (const [name, path] of Object.entries(kinds)) {
      const times: number[] = [];
      for (let i = 0; i < queries; i++) times.push((await get(path(i))).ms);
      all.push(...times);
      ctx.log(`collector-api: ${name} p99 ${pct(times, 0.99).toFixed(1)} ms`);
      out.push(figure({ id: `collector-api.${name}.p99`, bench: 'collector-api', label: `${name}: p99 (p50 ${round(pct(times, 0.5), 1)} ms)`, value: round(pct(times, 0.99), 1), unit: 'ms', command, samples: times.map((x) => round(x, 2)), target: { op: '<=', value: 50 } }));
    }
    out.unshift(figure({ id: 'collector-api.p99', bench: 'collector-api', label: `p99 over every kind of request (${all.length} requests)`, value: round(pct(all, 0.99), 1), unit: 'ms', command, target: { op: '<=', value: 50 } }));
    return out;
  } finally {
    await stopCollector(c);
  }
}
