// Collector benchmark: sustained ingest over real WebSockets into a real SQLite file,
// then API latency over a database of many goroutine rows. Prints JSON.
//
//   node --import tsx scripts/bench/collector-ingest.ts [--rows 10000000] [--ingest-seconds 15]
//        [--batch 1000] [--agents 2] [--queries 200] [--dir /tmp/x]
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { openDatabase } from '../../collector/src/store/db.ts';
import { StoreWriter } from '../../collector/src/store/writer.ts';
import type { GoroutineRecord, ProcessRecord } from '../../collector/src/protocol/records.ts';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    'ingest-seconds': { type: 'string', default: '15' },
    batch: { type: 'string', default: '1000' },
    agents: { type: 'string', default: '2' },
    queries: { type: 'string', default: '200' },
    dir: { type: 'string' },
    /** Reuse <dir>/query.db from an earlier run instead of building it again. */
    'reuse-db': { type: 'boolean', default: false },
    'skip-ingest': { type: 'boolean', default: false },
    'skip-query': { type: 'boolean', default: false },
    /** Write a CPU profile of the collector (ingest phase) into this directory. */
    profile: { type: 'string' },
  },
});
const ROWS = Number(args.rows);
const INGEST_SECONDS = Number(args['ingest-seconds']);
const BATCH = Number(args.batch);
const AGENTS = Number(args.agents);
const QUERIES = Number(args.queries);
const TOKEN = 'bench-token-0123456789';
const dir = args.dir ?? mkdtempSync(join(tmpdir(), 'goroscope-bench-'));

const T0 = Date.now() - 3_600_000;
const REASONS = ['chan receive', 'select', 'IO wait', 'sync.Mutex.Lock', 'sleep', 'GC worker (idle)', 'semacquire', 'chan send'];
const STATES = ['waiting', 'waiting', 'waiting', 'runnable', 'running', 'syscall', 'dead', 'dead'] as const;

function processRecord(pid: number): ProcessRecord {
  return {
    kind: 'process', pid, startTime: 1000 + pid, exe: `/app/svc${pid % 7}`, goVersion: 'go1.22.1', containerId: `c${pid}`,
    pod: { name: `svc-${pid}`, namespace: 'prod', uid: `u${pid}`, container: 'app' }, seenAt: T0, exitedAt: null,
  };
}

function goroutine(pid: number, goid: number, i: number): GoroutineRecord {
  const state = STATES[i % STATES.length];
  const reason = state === 'waiting' ? REASONS[(i >>> 3) % REASONS.length] : null;
  const site = i % 200;
  const created = T0 + (i % 3_600_000);
  return {
    kind: 'goroutine', pid, goid, parentGoid: Math.max(1, goid - 1 - (i % 50)), state, waitReason: reason,
    createdBy: { function: `main.spawner${site}`, file: `/src/pkg${site % 20}/file.go`, line: 10 + site },
    startFunction: `main.worker${site}`, createdAt: created, exitedAt: state === 'dead' ? created + (i % 5000) : null,
    lastParkAt: reason ? created + 1 : null, parkCount: i % 17, readyCount: i % 13, blockedNs: (i % 1000) * 1_000_000,
    blockedByReason: reason ? { [reason]: (i % 1000) * 1_000_000 } : {}, preexisting: false, system: i % 97 === 0,
    observedAt: created + 10,
  };
}

function startCollector(db: string, nodeArgs: string[] = []): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'collector/src/cli-main.ts', '--listen', '127.0.0.1:0', '--db', db], {
    env: { ...process.env, GOROSCOPE_INGEST_TOKEN: TOKEN, GOROSCOPE_API_TOKEN: TOKEN }, stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`collector exited with ${code}`)));
    createInterface({ input: child.stdout! }).on('line', (l) => {
      const m = /"url":"([^"]+)"/.exec(l);
      if (m) resolve({ child, url: m[1] });
    });
  });
}

async function stopCollector(c: { child: ChildProcess }): Promise<void> {
  c.child.removeAllListeners('exit');
  const exited = new Promise((r) => c.child.once('exit', r));
  c.child.kill('SIGTERM');
  await exited;
}

/** Each agent keeps a few batches in flight, as a real agent with an ack window would. */
async function ingestPhase(): Promise<Record<string, number>> {
  const db = join(dir, 'ingest.db');
  const c = await startCollector(db, args.profile ? ['--cpu-prof', `--cpu-prof-dir=${args.profile}`] : []);
  const deadline = Date.now() + INGEST_SECONDS * 1000;
  let records = 0;
  let batches = 0;
  const latencies: number[] = [];
  await Promise.all(Array.from({ length: AGENTS }, async (_, agentIx) => {
    const ws = new WebSocket(`${c.url.replace('http', 'ws')}/api/v1/ingest`, { headers: { authorization: `Bearer ${TOKEN}` } });
    await new Promise((r, j) => { ws.once('open', r); ws.once('error', j); });
    const agentId = `bench-${agentIx}`;
    ws.send(JSON.stringify({ type: 'hello', protocol: 1, agentId, node: `node-${agentIx}`, agentVersion: 'bench' }));
    const pid = 100 + agentIx;
    const sentAt = new Map<number, number>();
    let seq = 0;
    let goid = 1;
    await new Promise<void>((done) => {
      const send = () => {
        const recs: unknown[] = seq === 0 ? [processRecord(pid)] : [];
        for (let i = 0; i < BATCH; i++, goid++) recs.push(goroutine(pid, goid, goid));
        sentAt.set(seq, performance.now());
        ws.send(JSON.stringify({ type: 'batch', agentId, seq, records: recs }));
        seq++;
      };
      ws.on('message', (d) => {
        const m = JSON.parse(d.toString());
        if (m.type !== 'ack') throw new Error(JSON.stringify(m));
        latencies.push(performance.now() - sentAt.get(m.seq)!);
        records += BATCH;
        batches++;
        if (Date.now() < deadline) send();
        else if (m.seq === seq - 1) { ws.close(); done(); } // the last batch in flight is acked
      });
      for (let i = 0; i < 4; i++) send();
    });
  }));
  const elapsed = (Date.now() - (deadline - INGEST_SECONDS * 1000)) / 1000;
  await stopCollector(c);
  latencies.sort((a, b) => a - b);
  return {
    agents: AGENTS, batchRecords: BATCH, seconds: +elapsed.toFixed(2), records, batches,
    recordsPerSecond: Math.round(records / elapsed),
    ackLatencyP50Ms: +latencies[Math.floor(latencies.length * 0.5)].toFixed(1),
    ackLatencyP99Ms: +latencies[Math.floor(latencies.length * 0.99)].toFixed(1),
    dbBytes: statSync(db).size,
  };
}

/** Many goroutine rows through the store's own write path, in one transaction. */
function buildDatabase(file: string): Record<string, number> {
  const started = performance.now();
  const db = openDatabase(file);
  const writer = new StoreWriter(db);
  const PROCESSES = 50;
  db.transaction(() => {
    for (let p = 0; p < PROCESSES; p++) writer.writeRecord(`node-${p % 5}`, processRecord(1000 + p));
    // One node's records at a time, in agent-sized batches.
    const batches = new Map<string, GoroutineRecord[]>();
    for (let i = 0; i < ROWS; i++) {
      const p = i % PROCESSES;
      const node = `node-${p % 5}`;
      let b = batches.get(node);
      if (!b) batches.set(node, (b = []));
      b.push(goroutine(1000 + p, Math.floor(i / PROCESSES) + 1, i));
      if (b.length === 1000) { writer.writeRecords(node, b); batches.set(node, []); }
    }
    for (const [node, b] of batches) writer.writeRecords(node, b);
  })();
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.exec('ANALYZE');
  db.close();
  const seconds = (performance.now() - started) / 1000;
  return { rows: ROWS, buildSeconds: +seconds.toFixed(1), buildRowsPerSecond: Math.round(ROWS / seconds), dbBytes: statSync(file).size };
}

async function queryPhase(): Promise<Record<string, unknown>> {
  const file = join(dir, 'query.db');
  const build = args['reuse-db'] && existsSync(file) ? { rows: ROWS, reused: 1, dbBytes: statSync(file).size } : buildDatabase(file);
  process.stderr.write(`database ready: ${JSON.stringify(build)}\n`);
  const c = await startCollector(file);
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
    byPid: (i) => `/api/v1/goroutines?pid=${1000 + (i % 50)}&limit=100`,
    byNodeState: (i) => `/api/v1/goroutines?node=node-${i % 5}&state=syscall&limit=100`,
    byWaitReason: (i) => `/api/v1/goroutines?waitReason=${encodeURIComponent(REASONS[i % REASONS.length])}&limit=100`,
    byCreatedByFunction: (i) => `/api/v1/goroutines?createdBy=main.spawner${i % 200}&limit=100`,
    byCreatedBySite: (i) => `/api/v1/goroutines?createdBy=${encodeURIComponent(`/src/pkg${(i % 200) % 20}/file.go:${10 + (i % 200)}`)}&limit=100`,
    minBlocked: () => '/api/v1/goroutines?minBlockedNs=998000000&limit=100',
    timeRange: (i) => `/api/v1/goroutines?since=${T0 + (i % 3000) * 1000}&until=${T0 + (i % 3000) * 1000 + 60_000}&limit=100`,
    processes: () => '/api/v1/processes',
    summaryByWaitReasonOnePid: (i) => `/api/v1/goroutines/summary?by=waitReason&pid=${1000 + (i % 50)}`,
  };
  const result: Record<string, { p50Ms: number; p99Ms: number; maxMs: number; n: number }> = {};
  const all: number[] = [];
  for (const [name, path] of Object.entries(kinds)) {
    const times: number[] = [];
    for (let i = 0; i < QUERIES; i++) times.push((await get(path(i))).ms);
    times.sort((a, b) => a - b);
    all.push(...times);
    process.stderr.write(`${name}: p99 ${times[Math.floor(times.length * 0.99)].toFixed(1)} ms\n`);
    result[name] = { n: times.length, p50Ms: +times[Math.floor(times.length / 2)].toFixed(2), p99Ms: +times[Math.floor(times.length * 0.99)].toFixed(2), maxMs: +times[times.length - 1].toFixed(2) };
  }
  // Whole-table summaries scan every row: timed a few times, reported apart.
  const fullScan: Record<string, number> = {};
  for (const by of ['waitReason', 'createdBy']) {
    const times: number[] = [];
    for (let i = 0; i < 3; i++) times.push((await get(`/api/v1/goroutines/summary?by=${by}`)).ms);
    fullScan[`summaryBy${by}AllRowsMs`] = +Math.max(...times).toFixed(0);
  }
  all.sort((a, b) => a - b);
  await stopCollector(c);
  return { ...build, queries: result, overallP99Ms: +all[Math.floor(all.length * 0.99)].toFixed(2), fullScan };
}

const ingest = args['skip-ingest'] ? {} : await ingestPhase();
const query = args['skip-query'] ? {} : await queryPhase();
console.log(JSON.stringify({ ingest, query, cpus: (await import('node:os')).cpus().length, node: process.version }, null, 2));
if (!args.dir) rmSync(dir, { recursive: true, force: true });
