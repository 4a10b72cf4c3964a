// A retention pass tells of each chunk it deletes as it goes, so the collector's count of deleted rows follows a pass
// that runs for seconds under sustained ingest (it once counted a pass only when the pass ended).
import t from 'tap';
import { join } from 'node:path';
import { databaseSizeBytes, openDatabase } from '../../collector/src/store/db.ts';
import { Retention } from '../../collector/src/store/retention.ts';
import { StoreWriter } from '../../collector/src/store/writer.ts';
import { conn, gor, proc, tempDir } from './helpers.ts';

t.test('a pass reports its deletions chunk by chunk, adding up to what it returns', async (t) => {
  const db = openDatabase(join(tempDir(t), 'r.db'));
  t.teardown(() => db.close());
  const w = new StoreWriter(db);
  const now = Date.now();
  db.transaction(() => {
    w.writeRecords('n', [proc(1, { seenAt: now })]);
    // 12k goroutines older than the cutoff (three chunks of at most 5000), 10 newer.
    for (let from = 0; from < 12_010; from += 1000) {
      w.writeRecords('n', Array.from({ length: Math.min(1000, 12_010 - from) }, (_, i) => {
        const goid = from + i + 1;
        return gor(1, goid, { observedAt: goid <= 12_000 ? now - 120_000 : now });
      }));
    }
  })();
  const steps: number[] = [];
  const deleted = await new Retention(db, { maxAgeMs: 60_000 }, (rows) => steps.push(rows)).run(now);
  t.equal(deleted, 12_000);
  t.ok(steps.length >= 3, `told of ${steps.length} chunks`);
  t.equal(steps.reduce((a, b) => a + b, 0), deleted, 'the chunks add up to the pass');
  t.equal((db.prepare('SELECT count(*) AS n FROM goroutines').get() as { n: number }).n, 10);
});

t.test('a size pass deletes a small table\'s old rows in a round or two, not a sliver a round', async (t) => {
  // Goroutines fill the file, a connection comes with every 50th record. A round sized a table's chunk by its own rows
  // over the whole file's bytes: a few hundred connections a round, eight rounds where two do, each letting a write group in.
  const db = openDatabase(join(tempDir(t), 'r.db'));
  t.teardown(() => db.close());
  const w = new StoreWriter(db);
  const t0 = Date.now() - 600_000;
  let goid = 0;
  for (let b = 0; b < 100; b++) {
    const at = t0 + b * 1000;
    const records = [...(b === 0 ? [proc(10)] : []), ...Array.from({ length: 1000 }, (_, k) => (k % 50 === 49
      ? conn(10, 20_000 + b * 1000 + k, { observedAt: at, openedAt: at })
      : gor(10, ++goid, { observedAt: at, createdAt: at })))];
    db.transaction(() => w.writeRecords('n', records))();
  }
  const maxBytes = Math.floor(databaseSizeBytes(db).usedBytes / 5);
  const steps: number[] = [];
  await new Retention(db, { maxBytes }, (rows) => steps.push(rows)).run();
  t.ok(databaseSizeBytes(db).usedBytes <= maxBytes, 'under the bound');
  t.ok(steps.length <= 4, `${steps.length} rounds (${steps.join(', ')} rows)`);
  const oldest = (table: string) => (db.prepare(`SELECT min(observed_at) AS m FROM ${table}`).get() as { m: number }).m;
  t.ok(oldest('connections') >= t0 + 50_000 && oldest('goroutines') >= t0 + 50_000, 'the oldest of both tables went first');
});
