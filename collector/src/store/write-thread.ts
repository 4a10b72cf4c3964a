// The main thread's side of the store's threads (write-worker.ts): group writes, agent hellos and retention go
// to the writer in order and are answered with promises; a checkpointer copies the WAL into the database beside
// it, told after each write (an idle collector's threads sleep). The main thread keeps its own connection for
// reading (WAL: readers never wait for the writer).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { HelloMessage } from '../protocol/records.ts';
import type { OpenOptions } from './db.ts';
import type { RetentionOptions } from './retention.ts';
import type { EncodedBatch } from './batch-codec.ts';

/** A validated batch, encoded for the trip (batch-codec.ts), and where it is filed. */
export interface BatchToWrite {
  agentId: string;
  epoch: string;
  node: string;
  seq: number;
  /** How many records the batch holds (ingested_batches.records). */
  records: number;
  batch: EncodedBatch;
}

export type WriteResult = 'stored' | 'duplicate' | { error: string };

export type WriteRequest =
  | { op: 'write'; id: number; batches: BatchToWrite[]; now: number }
  | { op: 'agent'; id: number; hello: HelloMessage; now: number }
  | { op: 'retention'; id: number; opts: RetentionOptions; now: number }
  | { op: 'close'; id: number }
  /** To the checkpointer: the writer committed, a checkpoint is due (none is asked for while nothing is written). */
  | { op: 'wrote'; id: number };

type Distribute<T> = T extends unknown ? Omit<T, 'id'> : never;

/** The worker's entry: the TypeScript source, or next to the bundle (scripts/build-js.mjs builds it). */
function workerEntry(): { url: URL; typescript: boolean } {
  const here = import.meta.url;
  if (here.endsWith('.ts')) return { url: new URL('./write-worker.ts', here), typescript: true };
  for (const rel of ['./write-worker.mjs', '../write-worker.mjs']) {
    const url = new URL(rel, here);
    if (existsSync(fileURLToPath(url))) return { url, typescript: false };
  }
  throw new Error(`the store's write worker is not next to ${fileURLToPath(here)} (run npm run build:js)`);
}

// The worker loads the entry; from the sources it first registers tsx's loader (a worker does not inherit one
// registered in code, only those given on the command line).
const BOOT = `
const { workerData } = require('node:worker_threads');
(async () => {
  if (workerData.tsx) (await import(workerData.tsx)).register();
  await import(workerData.entry);
})().catch((e) => { process.nextTick(() => { throw e; }); });`;

/** One store thread, answering requests in order. */
class StoreWorker {
  private readonly worker: Worker;
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void; progress?: (n: number) => void }>();
  failed?: Error;
  readonly ready: Promise<unknown>;

  constructor(file: string, opts: OpenOptions, role: 'writer' | 'checkpointer') {
    const entry = workerEntry();
    this.worker = new Worker(BOOT, {
      eval: true,
      workerData: { entry: entry.url.href, tsx: entry.typescript ? import.meta.resolve('tsx/esm/api') : null, file, opts, role },
    });
    this.ready = new Promise((resolve, reject) => this.waiting.set(0, { resolve, reject }));
    this.worker.on('message', (m: { id: number; error?: string; progress?: number; [k: string]: unknown }) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      if (m.progress !== undefined) { w.progress?.(m.progress); return; } // a step of the call, not its answer
      this.waiting.delete(m.id);
      if (this.waiting.size === 0) this.worker.unref();
      if (m.error !== undefined) w.reject(new Error(m.error));
      else w.resolve(m);
    });
    const fail = (e: Error) => {
      this.failed = e;
      for (const w of this.waiting.values()) w.reject(e);
      this.waiting.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`the store's ${role} thread exited (${code})`)));
  }

  call<T>(req: Distribute<WriteRequest>, transfer: ArrayBuffer[] = [], progress?: (n: number) => void): Promise<T> {
    if (this.failed) return Promise.reject(this.failed);
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject, progress });
      this.worker.ref(); // a call in flight keeps the process; an idle thread does not
      this.worker.postMessage({ ...req, id }, transfer);
    });
  }

  /** Tells the thread something without waiting for an answer. */
  tell(op: 'wrote'): void {
    if (!this.failed) this.worker.postMessage({ op, id: -1 });
  }

  async close(): Promise<void> {
    if (this.failed) return;
    await this.call({ op: 'close' }).catch(() => {});
    await this.worker.terminate();
  }
}

export class WriteThread {
  private constructor(private readonly writer: StoreWorker, private readonly checkpointer: StoreWorker) {}

  /** Starts the writer and checkpointer threads; resolves once both have opened the database. */
  static async start(file: string, opts: OpenOptions = {}): Promise<WriteThread> {
    const writer = new StoreWorker(file, opts, 'writer');
    const checkpointer = new StoreWorker(file, opts, 'checkpointer');
    try {
      await Promise.all([writer.ready, checkpointer.ready]);
    } catch (e) {
      await Promise.allSettled([writer.close(), checkpointer.close()]);
      throw e;
    }
    return new WriteThread(writer, checkpointer);
  }

  /** Told the database's used bytes after each write group (retention's size bound is checked against it). */
  afterWrite?: (usedBytes: number) => void;

  /** Writes the batches in one transaction (a failing one alone, the others again); results in order. */
  async write(batches: BatchToWrite[], now = Date.now()): Promise<{ results: WriteResult[]; seconds: number }> {
    // The numbers are handed over, not copied.
    const r = await this.written(this.writer.call<{ results: WriteResult[]; seconds: number; usedBytes: number }>(
      { op: 'write', batches, now }, batches.map((b) => b.batch.goroutines.buffer as ArrayBuffer)));
    this.afterWrite?.(r.usedBytes);
    return r;
  }

  async recordAgent(hello: HelloMessage, now = Date.now()): Promise<'ok' | 'key-mismatch'> {
    return (await this.written(this.writer.call<{ result: 'ok' | 'key-mismatch' }>({ op: 'agent', hello, now }))).result;
  }

  /** One retention pass; onDeleted hears of each chunk's rows as they go. Resolves to the rows deleted. */
  async retention(opts: RetentionOptions, now = Date.now(), onDeleted?: (rows: number) => void): Promise<number> {
    return (await this.written(this.writer.call<{ result: number }>({ op: 'retention', opts, now }, [], onDeleted))).result;
  }

  /** A writer call's answer, once the checkpointer is told a checkpoint is due. */
  private async written<T>(call: Promise<T>): Promise<T> {
    const r = await call;
    this.checkpointer.tell('wrote');
    return r;
  }

  async close(): Promise<void> {
    await this.writer.close();
    await this.checkpointer.close();
  }
}
