// The collector's store threads (write-thread.ts starts them), each with its own SQLite connection:
//  - the writer: owns every write. Writing is most of ingest's cost; here it runs beside the main thread, which
//    takes WebSocket frames, parses and validates them and answers the API. Batches arrive encoded (batch-codec.ts).
//  - the checkpointer: copies the WAL into the database file with passive checkpoints, which never block the
//    writer, so the writer does not stop for that I/O (its own autocheckpoint stays as a backstop).
import { parentPort, workerData } from 'node:worker_threads';
import type { Database } from 'better-sqlite3';
import { openDatabase, type OpenOptions } from './db.ts';
import { StoreWriter } from './writer.ts';
import { Retention, type RetentionOptions } from './retention.ts';
import type { HelloMessage } from '../protocol/records.ts';
import type { BatchToWrite, WriteRequest, WriteResult } from './write-thread.ts';

const { file, opts, role } = workerData as { file: string; opts: OpenOptions; role: 'writer' | 'checkpointer' };
const port = parentPort!;
const db = openDatabase(file, opts);
if (role === 'checkpointer') runCheckpointer(db);
else runWriter(db);
port.postMessage({ id: 0, result: 'ready' });

function runCheckpointer(db: Database): void {
  const timer = setInterval(() => {
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      /* busy: the next one */
    }
  }, 250);
  port.on('message', (m: { id: number; op: string }) => {
    if (m.op !== 'close') return;
    clearInterval(timer);
    db.close();
    port.postMessage({ id: m.id, result: 'closed' });
    port.close();
  });
}

function runWriter(db: Database): void {
  db.pragma('wal_autocheckpoint = 10000'); // ~40 MiB, as db.ts: a backstop, should the checkpointer fall behind
  const writer = new StoreWriter(db);

  const writeGroup = (batches: BatchToWrite[], now: number): WriteResult[] => {
    const writeOne = (b: BatchToWrite): WriteResult => (writer.writeEncodedBatch(b.agentId, b.epoch, b.node, b.seq, b.batch, b.records, now) ? 'stored' : 'duplicate');
    try {
      return db.transaction(() => batches.map(writeOne))();
    } catch (err) {
      writer.clearCache(); // rolled back: cached ids may not exist
      if (batches.length === 1) return [{ error: (err as Error).message }];
      // Only the bad batch fails: the others again, one transaction each.
      return batches.map((b) => {
        try {
          return db.transaction(() => writeOne(b))();
        } catch (e) {
          writer.clearCache();
          return { error: (e as Error).message };
        }
      });
    }
  };

  port.on('message', async (m: WriteRequest) => {
    try {
      switch (m.op) {
        case 'write': {
          const started = process.hrtime.bigint();
          const results = writeGroup(m.batches, m.now);
          port.postMessage({ id: m.id, results, seconds: Number(process.hrtime.bigint() - started) / 1e9 });
          break;
        }
        case 'agent':
          port.postMessage({ id: m.id, result: writer.recordAgent(m.hello as HelloMessage, m.now) });
          break;
        case 'retention': {
          // Each chunk's rows as it goes: the main thread's count follows a long pass.
          const deleted = await new Retention(db, m.opts as RetentionOptions, (rows) => port.postMessage({ id: m.id, progress: rows })).run(m.now);
          writer.clearCache(); // deleted processes must not be reused from the cache
          port.postMessage({ id: m.id, result: deleted });
          break;
        }
        case 'close':
          db.close();
          port.postMessage({ id: m.id, result: 'closed' });
          port.close();
          break;
      }
    } catch (e) {
      port.postMessage({ id: m.id, error: (e as Error).message });
    }
  });
}
