// kill -9 of the agent while it writes its spool and counter, at random points, many times: each restart ships
// everything it had on disk, and the collector stores every record once. The agent here is the agent's own
// shipping code (agent/src/ship) in a process of its own (fixtures/spool-writer.ts), fed records with ids, so
// what it had is known exactly: every batch it reported durable.
import t from 'tap';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { INGEST_TOKEN, tempDir, testCollector } from '../collector/helpers.ts';
import { startChild } from '../lib/child.ts';
import { repoRoot } from '../lib/go.ts';

const KILLS = Number(process.env.KILLS ?? 25);
const T0 = 1_700_000_000_000;

t.test(`kill -9 the agent ${KILLS} times while it writes its spool`, async (t) => {
  const c = await testCollector(t);
  const spool = join(tempDir(t), 'spool');
  // Bundled once, so each start is node's own (~0.1 s), not a TypeScript compile.
  const writer = join(repoRoot, 'build', 'test', 'spool-writer.mjs');
  await build({ entryPoints: [join(repoRoot, 'test/robust/fixtures/spool-writer.ts')], bundle: true, platform: 'node', format: 'esm',
    target: 'node20', packages: 'external', outfile: writer, logLevel: 'warning' });

  const durable: Array<[number, number]> = [];
  let corrupt = 0;
  let resets = 0;
  const run = async (n: number, kill: boolean): Promise<{ code: number | null; signal: string | null; lines: number }> => {
    // Every other run writes its counter with every batch, so kills land in counter writes too.
    const child = startChild(process.execPath, [writer, c.url, INGEST_TOKEN, spool, String(n * 10_000_000), n % 2 ? '1' : '1000'], { what: `spool writer ${n + 1}`, t });
    let lines = 0;
    child.onLine((line) => {
      const d = /^durable (\d+) (\d+)$/.exec(line);
      if (d) {
        durable.push([Number(d[1]), Number(d[2])]);
        lines++;
        return;
      }
      const s = /^spool (\d+) (\d+)$/.exec(line);
      if (s) {
        corrupt += Number(s[1]);
        resets += Number(s[2]);
        // Killed at a random moment of its writing (it writes all the time), or asked to finish.
        if (kill) setTimeout(() => child.kill(), 150 + Math.random() * 600);
        else setTimeout(() => child.child.stdin.end(), 500);
      }
    });
    const { code, signal } = await child.exit(90_000);
    return { code, signal, lines };
  };

  let batches = 0;
  const cutShort: Record<string, number> = { batch: 0, counter: 0 };
  for (let i = 0; i < KILLS; i++) {
    const r = await run(i, true);
    t.equal(r.signal, 'SIGKILL', `run ${i + 1}: killed after ${r.lines} batches`);
    batches += r.lines;
    for (const f of readdirSync(spool).filter((n) => n.startsWith('.tmp-'))) cutShort[f.startsWith('.tmp-counter') ? 'counter' : 'batch']++;
  }
  t.comment(`kills that cut a write short: ${JSON.stringify(cutShort)} (the next start removes the temporary file)`);
  const last = await run(KILLS, false);
  t.equal(last.code, 0, 'the last run ships everything it has and exits');
  t.equal(corrupt, 0, 'no restart found a torn spool file');
  t.equal(resets, 0, 'nor a torn counter');
  await c.idle();

  const stored = new Set((c.db.prepare("SELECT x.started_at AS at FROM pauses x JOIN processes p ON p.id = x.process_id WHERE p.pid = 7")
    .all() as { at: number }[]).map((r) => r.at - T0));
  let had = 0;
  const missing: number[] = [];
  for (const [from, to] of durable) {
    for (let id = from; id <= to; id++) {
      had++;
      if (!stored.has(id)) missing.push(id);
    }
  }
  t.same(missing.slice(0, 10), [], `every record the agent had on disk is stored (${had} records in ${batches + last.lines} batches, ${missing.length} missing)`);
  const sent = (c.db.prepare('SELECT sum(records) AS n, count(*) AS b FROM ingested_batches').get() as { n: number; b: number });
  t.equal(sent.n, stored.size, `each stored once: ${sent.b} batches hold ${sent.n} records for ${stored.size} distinct ids`);
  t.comment(`kill -9 figures: ${KILLS} kills (${cutShort.batch} inside a batch write, ${cutShort.counter} inside a counter write), ${had} records reported on disk, ${stored.size} stored, ${sent.b} batches`);
});
