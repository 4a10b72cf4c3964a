// A retention pass tells of each chunk it deletes as it goes, so the collector's count of deleted rows follows a pass
// that runs for seconds under sustained ingest (it once counted a pass only when the pass ended).
import t from 'tap';
import { join } from 'node:path';
import { openDatabase } from '../../collector/src/store/db.ts';
import { Retention } from '../../collector/src/store/retention.ts';
import { StoreWriter } from '../../collector/src/store/writer.ts';
import { gor, proc, tempDir } from './helpers.ts';

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
