// Issue 16, findings 4, 5 and 6: the agent's shipper and its spool against a real collector on a real SQLite
// file. A truncated spool file hung the agent; a lost seq counter made the collector drop new batches as old;
// a batch over the collector's limit never got through.
import t from 'tap';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Shipper, type ShipperOptions } from '../../agent/src/ship/shipper.ts';
import { batchFileName } from '../../agent/src/ship/spool.ts';
import type { AgentRecord } from '../../collector/src/protocol/records.ts';
import { toRow } from '../../collector/src/protocol/rows.gen.ts';
import { fatal, INGEST_TOKEN, pause, tempDir, testCollector } from '../collector/helpers.ts';

type Collector = Awaited<ReturnType<typeof testCollector>>;

function shipper(c: Collector, spoolDir: string | undefined, logs: string[] = [], o: Partial<ShipperOptions> = {}): Shipper {
  return new Shipper({
    url: c.url, token: INGEST_TOKEN, node: 'node-s', agentVersion: 'test', spoolDir, log: (m) => logs.push(m), ...o,
  });
}

const count = (c: Collector, table: string) => (c.db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
const pauses = (from: number, n: number): AgentRecord[] => Array.from({ length: n }, (_, i) => pause(7, from + i));

t.test('finding 4: a truncated or garbage spool file is set aside and counted; the rest ships', async (t) => {
  const c = await testCollector(t);
  const dir = join(tempDir(t), 'spool');
  // A previous run: two batches spooled, never acked (no collector).
  const first = shipper(c, dir);
  first.send(pauses(0, 3));
  first.send(pauses(3, 3));
  first.close();
  const files = readdirSync(dir).filter((f) => f.startsWith('batch-')).sort();
  t.equal(files.length, 2, 'two batches spooled');
  const body = readFileSync(join(dir, files[1]), 'utf8');
  writeFileSync(join(dir, files[1]), body.slice(0, body.length >> 1)); // cut short by a crash
  writeFileSync(join(dir, batchFileName('x', 9)), '{"type":"batch"'); // garbage with a batch's name
  writeFileSync(join(dir, '.tmp-batch-x-10.json'), '{'); // a write that never finished

  const logs: string[] = [];
  const s = shipper(c, dir, logs);
  t.equal(s.stats.corruptSpoolFiles, 2, 'both bad files counted');
  t.ok(logs.some((l) => /set aside/.test(l)), 'and said');
  t.same(readdirSync(join(dir, 'corrupt')).length, 2, 'kept in corrupt/ for a look');
  t.notOk(existsSync(join(dir, '.tmp-batch-x-10.json')), 'the unfinished write is gone');
  s.start();
  t.ok(await s.flush(10_000), 'the whole batch is acked');
  await c.idle();
  t.equal(count(c, 'pauses'), 3, 'its records are stored');
  s.close();
});

t.test('finding 5: a lost or unreadable counter starts a new epoch; no new batch is taken for an old one', async (t) => {
  for (const loss of ['deleted', 'truncated']) {
    const c = await testCollector(t);
    const dir = join(tempDir(t), 'spool');
    const a = shipper(c, dir);
    a.start();
    for (let i = 0; i < 20; i++) a.send(pauses(i * 10, 10));
    t.ok(await a.flush(10_000), `${loss}: 20 batches acked`);
    a.close();
    for (const f of ['counter', 'next-seq']) {
      if (!existsSync(join(dir, f))) continue;
      if (loss === 'deleted') rmSync(join(dir, f));
      else writeFileSync(join(dir, f), '');
    }
    const logs: string[] = [];
    const b = shipper(c, dir, logs);
    t.equal(b.stats.counterResets, 1, `${loss}: the loss is counted`);
    t.ok(logs.some((l) => /new batches start epoch/.test(l)), 'and said');
    b.start();
    for (let i = 20; i < 40; i++) b.send(pauses(i * 10, 10));
    t.ok(await b.flush(10_000), `${loss}: 20 more acked`);
    b.close();
    await c.idle();
    t.equal(count(c, 'pauses'), 400, `${loss}: all 40 batches stored (400 records)`);
    t.equal(count(c, 'ingested_batches'), 40, 'as 40 batches');
  }
});

t.test('finding 6: batches are cut to what the collector takes', async (t) => {
  // The collector takes 4 MiB; 20,000 records of ~790 bytes as rows (16 MB) are queued before the agent knows that.
  const c = await testCollector(t, { maxMessageBytes: 4 * 1024 * 1024 });
  const logs: string[] = [];
  const s = shipper(c, join(tempDir(t), 'spool'), logs);
  const message = 'm'.repeat(700);
  const records = Array.from({ length: 20_000 }, (_, i) => fatal(1 + (i % 50), { at: 1_700_000_000_000 + i, goid: i, message }));
  const size = Buffer.byteLength(JSON.stringify(toRow.fatal(records[0]))); // as a row (protocol 2)
  s.send(records);
  s.start();
  const started = Date.now();
  t.ok(await s.flush(60_000), `every batch acked in ${Date.now() - started} ms`);
  await c.idle();
  t.equal(count(c, 'fatal_errors'), 20_000, `all 20,000 records of ${size} bytes stored`);
  t.ok(s.stats.resplits > 0, `the batches cut at the default limit were cut again (${s.stats.resplits})`);
  t.equal(s.stats.reconnects, 0, 'without a reconnect');
  t.equal(s.stats.droppedRecords, 0, 'and without a drop');
  const largest = (c.db.prepare('SELECT max(records) AS n FROM ingested_batches').get() as { n: number }).n;
  t.ok(largest * size < 4 * 1024 * 1024, `no batch over the limit (largest ${largest} records)`);
  s.close();

  // A record larger than the whole limit cannot go: it is dropped, counted and said; the rest go.
  const small = await testCollector(t, { maxMessageBytes: 2048 });
  const logs2: string[] = [];
  const s2 = shipper(small, undefined, logs2);
  s2.start();
  await new Promise((r) => setTimeout(r, 200)); // welcomed
  s2.send([fatal(1, { message: 'x'.repeat(4000) }), pause(1, 1), pause(1, 2)]);
  t.ok(await s2.flush(10_000), 'the rest acked');
  t.equal(s2.stats.droppedByReason.tooBig, 1, 'one record too big, counted');
  t.ok(logs2.some((l) => /larger than the collector takes/.test(l)), 'and said');
  await small.idle();
  t.equal(count(small, 'pauses'), 2);
  s2.close();
});

t.test('the spool is private: files 0600 in a 0700 directory', async (t) => {
  const c = await testCollector(t);
  const dir = join(tempDir(t), 'spool');
  const s = shipper(c, dir);
  s.send(pauses(0, 2));
  s.close();
  t.equal(statSync(dir).mode & 0o777, 0o700, 'directory 0700');
  for (const f of readdirSync(dir)) t.equal(statSync(join(dir, f)).mode & 0o777, 0o600, `${f} 0600`);
});

t.test('an agent writes only as itself', async (t) => {
  const c = await testCollector(t);
  const dir = join(tempDir(t), 'spool');
  const a = shipper(c, dir);
  a.start();
  a.send(pauses(0, 1));
  t.ok(await a.flush(), 'the agent ships');
  const id = a.agentId;
  a.close();
  // Another holder of the ingest token claims the id: without its key, with another key, or while it is connected.
  const { TestAgent } = await import('../collector/helpers.ts');
  for (const [what, key] of [['no key', undefined], ['another key', 'k'.repeat(43)]] as const) {
    const thief = new TestAgent(c.url, INGEST_TOKEN, id, 'node-s');
    t.equal(await thief.hello(key), undefined, `${what}: refused`);
    t.match((await thief.closed).reason, /belongs to another agent/);
  }
  const b = shipper(c, dir);
  b.start();
  b.send(pauses(1, 1));
  t.ok(await b.flush(), 'the agent itself comes back');
  const twin = new TestAgent(c.url, INGEST_TOKEN, id, 'node-s');
  t.equal(await twin.hello(readFileSync(join(dir, 'agent-key'), 'utf8')), undefined, 'a second live connection with its id and key: refused');
  t.match((await twin.closed).reason, /already has a live connection/);
  const metrics = await (await fetch(`${c.url}/metrics`, { headers: { authorization: 'Bearer api-token-0123456789abcdef' } })).text();
  t.match(metrics, /goroscope_collector_websocket_refused_total\{endpoint="ingest",reason="agent_key"\} 2/);
  t.match(metrics, /goroscope_collector_websocket_refused_total\{endpoint="ingest",reason="agent_busy"\} 1/);
  b.close();
  const db = new BetterSqlite3(c.dbFile, { readonly: true });
  t.teardown(() => db.close());
  t.equal((db.prepare('SELECT count(*) AS n FROM ingested_batches WHERE agent_id = ?').get(id) as { n: number }).n, 2, 'only its own batches');
});

t.test('a spool directory someone else made is narrowed only while it holds nothing else', async (t) => {
  const { chmodSync, mkdirSync, writeFileSync: write } = await import('node:fs');
  const c = await testCollector(t);
  const empty = join(tempDir(t), 'made-by-kubelet');
  mkdirSync(empty, { mode: 0o755 });
  chmodSync(empty, 0o755);
  shipper(c, empty).close();
  t.equal(statSync(empty).mode & 0o777, 0o700, 'an empty 0755 directory becomes 0700');
  const shared = join(tempDir(t), 'shared');
  mkdirSync(shared, { mode: 0o755 });
  chmodSync(shared, 0o755);
  write(join(shared, 'someone-elses-file'), 'x');
  const logs: string[] = [];
  shipper(c, shared, logs).close();
  t.equal(statSync(shared).mode & 0o777, 0o755, 'a directory holding other files is left as it is');
  t.ok(logs.some((l) => /others can list it/.test(l)), 'and the agent says so');
  for (const f of readdirSync(shared).filter((n) => n !== 'someone-elses-file')) t.equal(statSync(join(shared, f)).mode & 0o777, 0o600, `${f} 0600 still`);
});

t.test('finding 4: an agent whose spool cannot be had says so in one line and exits, holding nothing', async (t) => {
  const { spawnSync } = await import('node:child_process');
  const file = join(tempDir(t), 'a-file');
  writeFileSync(file, 'x');
  const started = Date.now();
  const r = spawnSync(process.execPath, ['bin/goroscope.js', 'agent', '--collector', 'ws://127.0.0.1:1', '--spool-dir', join(file, 'spool')],
    { encoding: 'utf8', timeout: 60_000 });
  t.equal(r.status, 1, `exits 1 (in ${Date.now() - started} ms)`);
  t.equal(r.stderr.trim(), `goroscope: cannot use the spool directory ${join(file, 'spool')}: a part of the path is a file (--spool-dir)`);
});
