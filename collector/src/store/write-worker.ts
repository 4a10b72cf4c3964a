// The collector's store threads (write-thread.ts starts them), each with its own SQLite connection:
//  - the writer: owns every write. Writing is most of ingest's cost; here it runs beside the main thread, which
//    takes WebSocket frames, parses and validates them and answers the API. Batches arrive encoded (batch-codec.ts).
//  - the checkpointer: copies the WAL into the database file with passive checkpoints, which never block the
//    writer, so the writer does not stop for that I/O (its own autocheckpoint stays as a backstop); one a quarter
//    second after the writer was busy, none while it is idle.
import { parentPort, workerData } from 'node:worker_threads';
import type { Database } from 'better-sqlite3';
import { databaseSizeBytes, openDatabase, type OpenOptions } from './db.ts';
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

/** A checkpoint at most this often while writes come; none while the collector is idle (each wake-up costs the node). */
const CHECKPOINT_EVERY_MS = 250;

function runCheckpointer(db: Database): void {
  let timer: NodeJS.Timeout | undefined;
  const checkpoint = () => {
    timer = undefined;
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      /* busy: the writer says when it wrote again, and the backstop autocheckpoint holds the WAL meanwhile */
    }
  };
  port.on('message', (m: { id: number; op: string }) => {
    if (m.op === 'wrote') {
      timer ??= setTimeout(checkpoint, CHECKPOINT_EVERY_MS);
      return;
    }
    if (m.op !== 'close') return;
    clearTimeout(timer);
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

  /**
   * Requests that came during a retention pass, run between its chunks (two at most each time) and after it. They
   * once ran as they came and the pass only between them: under sustained ingest the next write group was always
   * there before the pass's turn, so a pass waited until the agents stopped (100 agents, a 20 MB bound: 29 s for
   * its first chunk, the file at 541 MB).
   */
  const waiting: WriteRequest[] = [];
  let passing = false;
  const runWaiting = (max: number) => {
    // A close waits for the pass's end.
    for (let i = 0; i < max && waiting.length && (max === Infinity || waiting[0].op !== 'close'); i++) void handle(waiting.shift()!);
  };

  const handle = async (m: WriteRequest): Promise<void> => {
    try {
      switch (m.op) {
        case 'write': {
          const started = process.hrtime.bigint();
          const results = writeGroup(m.batches, m.now);
          // The used size with each answer (three pragmas): the main thread starts a size pass as soon as it is over.
          port.postMessage({ id: m.id, results, seconds: Number(process.hrtime.bigint() - started) / 1e9, usedBytes: databaseSizeBytes(db).usedBytes });
          break;
        }
        case 'agent':
          port.postMessage({ id: m.id, result: writer.recordAgent(m.hello as HelloMessage, m.now) });
          break;
        case 'retention': {
          passing = true;
          let deleted: number;
          try {
            // Each chunk's rows as it goes: the main thread's count follows a long pass.
            // Chunks delete no process (that comes last, with no chunk after it), so the writer's caches hold between them.
            deleted = await new Retention(db, m.opts as RetentionOptions, (rows) => port.postMessage({ id: m.id, progress: rows }), () => runWaiting(2)).run(m.now);
          } finally {
            passing = false;
          }
          writer.clearCache(); // deleted processes must not be reused from the cache
          port.postMessage({ id: m.id, result: deleted });
          runWaiting(Infinity);
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
  };

  // An agent's hello is answered at once, even during a pass (it is one row); the rest waits its turn.
  port.on('message', (m: WriteRequest) => {
    if (passing && m.op !== 'agent') waiting.push(m);
    else void handle(m);
  });
}
