// Serialises batch writes and commits several waiting batches in one transaction
// (group commit): many agents sending small batches cost one fsync, not many.
// A batch is acknowledged only after the transaction holding it has committed.
// The writing happens in the store's writer thread (store/write-thread.ts): while it commits one group, the main
// thread takes in the next, which then goes as one bigger group.
import type { AgentRecord, RowsByKind } from '../protocol/records.ts';
import { recordsOf, rowCount, rowsOf } from '../protocol/rows.ts';
import type { BatchToWrite, WriteThread } from '../store/write-thread.ts';
import { encodeRows } from '../store/batch-codec.ts';
import type { CollectorMetrics } from '../metrics.ts';

export type BatchResult = 'stored' | 'duplicate' | Error;

export interface PendingBatch {
  agentId: string;
  /** "" for batches without an epoch. */
  epoch: string;
  node: string;
  seq: number;
  /** The batch as parsed and validated here: its records as rows (protocol 2), or as objects (1). */
  rows?: RowsByKind;
  records?: AgentRecord[];
  done(result: BatchResult): void;
}

/** A stored batch, handed to onCommitted: its records only when something wanted them (see keepRecords). */
export interface CommittedBatch {
  agentId: string;
  node: string;
  records?: AgentRecord[];
}

/** A batch waiting for the writer: encoded as it arrives (store/batch-codec.ts). */
interface QueuedBatch extends CommittedBatch {
  write: BatchToWrite;
  kinds: Map<AgentRecord['kind'], number>;
  done(result: BatchResult): void;
}

const MAX_GROUP_BATCHES = 256;
const MAX_GROUP_RECORDS = 50_000;

export class IngestQueue {
  private readonly queue: QueuedBatch[] = [];
  private scheduled = false;
  /** Groups with the writer thread. Two may be: it starts on the next as soon as it has answered the last,
   * without waiting for this thread (busy parsing the next batches) to read the answer and send more. */
  private writing = 0;
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(
    private readonly thread: WriteThread,
    private readonly metrics: CollectorMetrics,
    /** Runs after commit, with the batches that were newly stored. */
    private readonly onCommitted: (batches: CommittedBatch[]) => void,
    /**
     * Whether onCommitted needs the records (live-stream subscribers, OTLP export), asked as a batch arrives. Else
     * only the encoded batch waits for the commit: the parsed records die young instead of being carried into V8's
     * old generation (a fifth of the main thread's time went to its GC) and held by the thousand.
     */
    private readonly keepRecords: () => boolean = () => true,
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  enqueue(batch: PendingBatch): void {
    if (this.closed) {
      batch.done(new Error('collector is shutting down'));
      return;
    }
    // Rows go to the writer as they are; objects are made only when something wants them after the commit.
    const rows = batch.rows ?? rowsOf(batch.records ?? []);
    const kinds = new Map<AgentRecord['kind'], number>();
    for (const kind in rows) kinds.set(kind as AgentRecord['kind'], rows[kind as AgentRecord['kind']]!.length);
    const records = this.keepRecords() ? batch.records ?? recordsOf(rows) : undefined;
    this.queue.push({
      agentId: batch.agentId, node: batch.node, records, kinds, done: batch.done,
      write: { agentId: batch.agentId, epoch: batch.epoch, node: batch.node, seq: batch.seq, records: rowCount(rows), batch: encodeRows(rows) },
    });
    this.metrics.ingestQueueDepth.set(this.queue.length);
    this.schedule();
  }

  /** Resolves when everything queued so far is committed. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && !this.scheduled && this.writing === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    await this.idle();
    this.closed = true;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // setImmediate lets the batches already received on all sockets join this group.
    setImmediate(() => this.drain());
  }

  private drain(): void {
    this.scheduled = false;
    // A second group only when enough waits to make it worth a transaction; the answer to the first sends it else.
    if (this.writing >= 2 || (this.writing === 1 && this.queue.length < 16)) return;
    const group: QueuedBatch[] = [];
    let records = 0;
    while (this.queue.length && group.length < MAX_GROUP_BATCHES && records < MAX_GROUP_RECORDS) {
      const b = this.queue.shift()!;
      group.push(b);
      records += b.write.records;
    }
    this.metrics.ingestQueueDepth.set(this.queue.length);
    if (!group.length) {
      if (this.writing === 0) this.idleWaiters.splice(0).forEach((f) => f());
      return;
    }
    this.metrics.ingestInFlight.set(group.length);
    this.writing++;
    this.thread.write(group.map((b) => b.write)).then(
      ({ results, seconds }) => {
        this.metrics.ingestCommitSeconds.inc(seconds);
        this.finish(group, results.map((r) => (typeof r === 'string' ? r : new Error(r.error))));
      },
      (e: Error) => this.finish(group, group.map(() => e)),
    );
  }

  private finish(group: QueuedBatch[], results: BatchResult[]): void {
    this.writing--;
    if (this.writing === 0) this.metrics.ingestInFlight.set(0);
    const stored: CommittedBatch[] = [];
    const kinds = new Map<AgentRecord['kind'], number>();
    group.forEach((b, i) => {
      const r = results[i];
      if (r === 'stored') {
        stored.push({ agentId: b.agentId, node: b.node, records: b.records });
        for (const [kind, n] of b.kinds) kinds.set(kind, (kinds.get(kind) ?? 0) + n);
      }
      this.metrics.ingestBatches.inc({ result: r instanceof Error ? 'failed' : r });
      b.done(r);
    });
    for (const [kind, n] of kinds) this.metrics.ingestRecords.inc({ kind }, n);
    if (stored.length) this.onCommitted(stored);
    if (this.queue.length) this.schedule();
    else if (this.writing === 0) this.idleWaiters.splice(0).forEach((f) => f());
  }
}
