// Ack only after commit: kill -9 a collector process mid-stream, restart it on the
// same database, and check that every acked batch is there, whole, and only once.
import t from 'tap';
import { join } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { startCollectorProcess } from '../lib/collector-process.ts';
import { API_TOKEN, gor, INGEST_TOKEN, proc, tempDir, TestAgent, win } from './helpers.ts';
import type { AgentRecord } from '../../collector/src/protocol/records.ts';

const PER_BATCH = 200;

const start = (db: string) => startCollectorProcess({ db, ingestToken: INGEST_TOKEN, apiToken: API_TOKEN, fromSources: true });

function batch(seq: number): AgentRecord[] {
  return [
    proc(10),
    ...Array.from({ length: PER_BATCH }, (_, i) => gor(10, seq * PER_BATCH + i + 1)),
    win(10, seq * 1000),
  ];
}

t.test('kill -9 mid-stream loses no acked batch and duplicates nothing', async (t) => {
  const db = join(tempDir(t), 'crash.db');
  const first = await start(db);
  const agent = new TestAgent(first.url);
  agent.protocol = 2; // rows, as the shipper sends them
  await agent.hello();
  const acked = new Set<number>();
  let sent = 0;

  // Keep up to 16 batches in flight so the kill lands inside commits, not between them.
  await new Promise<void>((resolve) => {
    const pump = () => {
      while (sent - acked.size < 16 && sent < 100_000) {
        const seq = sent++;
        agent.send(seq, batch(seq)).then((m) => {
          if (m.type === 'ack') acked.add(m.seq);
          if (acked.size === 40) {
            first.proc.kill();
            resolve();
          }
          pump();
        });
      }
    };
    pump();
  });
  await first.proc.closed;
  await agent.closed;
  const ackedAtKill = new Set(acked);
  t.ok(sent > ackedAtKill.size, `killed with ${sent - ackedAtKill.size} of ${sent} batches unacknowledged`);

  const second = await start(db);
  t.teardown(() => second.proc.kill());
  const check = new BetterSqlite3(db, { readonly: true });
  t.teardown(() => check.close());
  const storedSeqs = new Set((check.prepare("SELECT seq FROM ingested_batches WHERE agent_id = 'agent-1'").all() as { seq: number }[]).map((r) => r.seq));
  for (const seq of ackedAtKill) if (!storedSeqs.has(seq)) t.fail(`acked batch ${seq} is missing`);
  t.pass(`all ${ackedAtKill.size} acked batches stored (${storedSeqs.size} stored in all)`);
  // Each batch is all or nothing.
  const perSeq = check.prepare('SELECT count(*) AS n FROM goroutines WHERE goid BETWEEN ? AND ?');
  let partial = 0;
  for (let seq = 0; seq < sent; seq++) {
    const n = (perSeq.get(seq * PER_BATCH + 1, (seq + 1) * PER_BATCH) as { n: number }).n;
    if (n !== (storedSeqs.has(seq) ? PER_BATCH : 0)) partial++;
  }
  t.equal(partial, 0, 'no partially stored batch');
  t.equal((check.prepare('SELECT count(*) AS n FROM windows').get() as { n: number }).n, storedSeqs.size);

  // The agent re-sends everything it has not seen acked (and, to be sure, the acked ones too).
  const again = new TestAgent(second.url);
  again.protocol = 2;
  await again.hello();
  const replies = await Promise.all(Array.from({ length: sent }, (_, seq) => again.send(seq, batch(seq))));
  t.ok(replies.every((m, seq) => m.type === 'ack' && m.seq === seq), 'every re-sent batch acked');
  t.equal((check.prepare('SELECT count(*) AS n FROM goroutines').get() as { n: number }).n, sent * PER_BATCH, 'each goroutine once');
  t.equal((check.prepare('SELECT count(*) AS n FROM windows').get() as { n: number }).n, sent, 'each window once');
  t.equal((check.prepare('SELECT count(*) AS n FROM ingested_batches').get() as { n: number }).n, sent, 'each batch once');
  t.equal((check.prepare('SELECT count(*) AS n FROM processes').get() as { n: number }).n, 1);
  again.close();
});
