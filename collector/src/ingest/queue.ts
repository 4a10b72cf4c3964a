// Serialises batch writes and commits several waiting batches in one transaction
// (group commit): many agents sending small batches cost one fsync, not many.
// A batch is acknowledged only after the transaction holding it has committed.
import type { Database } from 'better-sqlite3';
import type { AgentRecord } from '../protocol/records.ts';
import type { StoreWriter } from '../store/writer.ts';
import type { CollectorMetrics } from '../metrics.ts';

export type BatchResult = 'stored' | 'duplicate' | Error;

export interface PendingBatch {
  agentId: string;
  /** "" for batches without an epoch. */
  epoch: string;
  node: string;
  seq: number;
  records: AgentRecord[];
  done(result: BatchResult): void;
}

const MAX_GROUP_BATCHES = 256;
const MAX_GROUP_RECORDS = 50_000;

export class IngestQueue {
  private readonly queue: PendingBatch[] = [];
  private scheduled = false;
  private closed = false;
  private readonly idleWaiters: (() => void)[] = [];

  constructor(
    private readonly db: Database,
    private readonly writer: StoreWriter,
    private readonly metrics: CollectorMetrics,
    /** Runs after commit, with the batches that were newly stored. */
    private readonly onCommitted: (batches: PendingBatch[]) => void,
  ) {}

  get depth(): number {
    return this.queue.length;
  }

  enqueue(batch: PendingBatch): void {
    if (this.closed) {
      batch.done(new Error('collector is shutting down'));
      return;
    }
    this.queue.push(batch);
    this.metrics.ingestQueueDepth.set(this.queue.length);
    this.schedule();
  }

  /** Resolves when everything queued so far is committed. */
  idle(): Promise<void> {
    if (this.queue.length === 0 && !this.scheduled) return Promise.resolve();
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
    const group: PendingBatch[] = [];
    let records = 0;
    while (this.queue.length && group.length < MAX_GROUP_BATCHES && records < MAX_GROUP_RECORDS) {
      const b = this.queue.shift()!;
      group.push(b);
      records += b.records.length;
    }
    this.metrics.ingestQueueDepth.set(this.queue.length);
    this.metrics.ingestInFlight.set(group.length);
    const results = this.write(group);
    this.metrics.ingestInFlight.set(0);

    const stored: PendingBatch[] = [];
    const kinds = new Map<AgentRecord['kind'], number>();
    group.forEach((b, i) => {
      const r = results[i];
      if (r === 'stored') {
        stored.push(b);
        for (const rec of b.records) kinds.set(rec.kind, (kinds.get(rec.kind) ?? 0) + 1);
      }
      this.metrics.ingestBatches.inc({ result: r instanceof Error ? 'failed' : r });
      b.done(r);
    });
    for (const [kind, n] of kinds) this.metrics.ingestRecords.inc({ kind }, n);
    if (stored.length) this.onCommitted(stored);

    if (this.queue.length) this.schedule();
    else this.idleWaiters.splice(0).forEach((f) => f());
  }

  /** One transaction for the group; if it fails, retry one batch at a time so only the bad batch fails. */
  private write(group: PendingBatch[]): BatchResult[] {
    const started = process.hrtime.bigint();
    const now = Date.now();
    const writeOne = (b: PendingBatch): BatchResult => (this.writer.writeBatch(b.agentId, b.epoch, b.node, b.seq, b.records, now) ? 'stored' : 'duplicate');
    try {
      return this.db.transaction(() => group.map(writeOne))();
    } catch (err) {
      this.writer.clearCache(); // rolled back: cached process ids may not exist
      if (group.length === 1) return [err as Error];
      return group.map((b) => {
        try {
          return this.db.transaction(() => writeOne(b))();
        } catch (e) {
          this.writer.clearCache();
          return e as Error;
        }
      });
    } finally {
      this.metrics.ingestCommitSeconds.inc(Number(process.hrtime.bigint() - started) / 1e9);
    }
  }
}
