// Ships batches of records to the collector over a WebSocket, at least once: every batch is written to a
// bounded spool before it is sent and removed only when the collector acknowledges it (after its commit).
// A batch re-sent after a reconnect carries the same (agentId, seq), which the collector stores once.
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import WebSocket from 'ws';
import { PROTOCOL_VERSION, type AgentRecord, type BatchMessage, type CollectorMessage } from '../../../collector/src/protocol/records.ts';

export interface ShipperOptions {
  /** ws://host:port (the ingest path is added) or a full ws:// URL. */
  url: string;
  token?: string;
  agentId: string;
  node: string;
  agentVersion: string;
  /** Where unacknowledged batches wait; in memory only when absent. */
  spoolDir?: string;
  maxSpoolBytes?: number;
  /** Batches sent and not yet acknowledged. */
  maxInFlight?: number;
  log?: (msg: string) => void;
}

export interface ShipperStats {
  batches: number;
  acked: number;
  records: number;
  spooledBatches: number;
  spooledBytes: number;
  /** Records dropped because the spool was full: counted, never silent. */
  droppedRecords: number;
  reconnects: number;
  connected: boolean;
  lastError: string | null;
}

interface Pending {
  seq: number;
  body: string;
  records: number;
  sent: boolean;
}

export class Shipper {
  private ws?: WebSocket;
  private ready = false;
  private closed = false;
  private backoffMs = 250;
  private nextSeq = 1;
  private readonly pending = new Map<number, Pending>();
  private spoolBytes = 0;
  private retry?: NodeJS.Timeout;
  readonly stats: ShipperStats = { batches: 0, acked: 0, records: 0, spooledBatches: 0, spooledBytes: 0, droppedRecords: 0, reconnects: 0, connected: false, lastError: null };
  private readonly maxSpoolBytes: number;
  private readonly maxInFlight: number;
  private ackWaiters: Array<() => void> = [];

  constructor(private readonly opts: ShipperOptions) {
    this.maxSpoolBytes = opts.maxSpoolBytes ?? 256 << 20;
    this.maxInFlight = opts.maxInFlight ?? 16;
    if (opts.spoolDir) this.loadSpool(opts.spoolDir);
  }

  private get ingestUrl(): string {
    const u = new URL(this.opts.url.replace(/^http/, 'ws'));
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/api/v1/ingest';
    return u.toString();
  }

  /** Resumes from a previous run: unacknowledged batches go first, and seq continues past them. */
  private loadSpool(dir: string): void {
    mkdirSync(dir, { recursive: true });
    const seqFile = join(dir, 'next-seq');
    if (existsSync(seqFile)) this.nextSeq = Number(readFileSync(seqFile, 'utf8')) || 1;
    for (const f of readdirSync(dir).filter((n) => /^\d+\.json$/.test(n)).sort((a, b) => parseInt(a) - parseInt(b))) {
      const body = readFileSync(join(dir, f), 'utf8');
      const seq = parseInt(f);
      const msg = JSON.parse(body) as BatchMessage;
      this.pending.set(seq, { seq, body, records: msg.records.length, sent: false });
      this.spoolBytes += body.length;
      this.nextSeq = Math.max(this.nextSeq, seq + 1);
    }
    this.updateSpoolStats();
  }

  private updateSpoolStats(): void {
    this.stats.spooledBatches = this.pending.size;
    this.stats.spooledBytes = this.spoolBytes;
  }

  start(): void {
    this.connect();
  }

  private connect(): void {
    if (this.closed) return;
    const headers: Record<string, string> = this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {};
    const ws = new WebSocket(this.ingestUrl, { headers, maxPayload: 1 << 20 });
    this.ws = ws;
    ws.on('open', () => {
      ws.send(JSON.stringify({ type: 'hello', protocol: PROTOCOL_VERSION, agentId: this.opts.agentId, node: this.opts.node, agentVersion: this.opts.agentVersion }));
      this.ready = true;
      this.stats.connected = true;
      this.backoffMs = 250;
      for (const p of this.pending.values()) p.sent = false;
      this.pump();
    });
    ws.on('message', (data) => {
      let msg: CollectorMessage;
      try {
        msg = JSON.parse(String(data)) as CollectorMessage;
      } catch {
        return;
      }
      if (msg.type === 'ack') this.onAck(msg.seq);
      else if (msg.type === 'error') {
        this.stats.lastError = msg.error;
        this.opts.log?.(`collector refused batch ${msg.seq}: ${msg.error}`);
        // A batch the collector cannot take will never be taken: drop it, counted, rather than block the rest.
        if (msg.seq !== null) this.drop(msg.seq);
      }
    });
    const lost = (why: string) => {
      if (this.ws !== ws) return;
      this.ready = false;
      this.stats.connected = false;
      this.stats.lastError = why;
      this.ws = undefined;
      if (this.closed) return;
      this.stats.reconnects++;
      const delay = this.backoffMs * (0.5 + Math.random());
      this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
      this.retry = setTimeout(() => this.connect(), delay);
    };
    ws.on('close', (code, reason) => lost(`connection closed (${code}${reason.length ? `: ${reason}` : ''})`));
    ws.on('error', (e) => lost(e.message));
  }

  /** Queues records as one batch. Returns its seq. */
  send(records: AgentRecord[]): number {
    const seq = this.nextSeq++;
    const body = JSON.stringify({ type: 'batch', agentId: this.opts.agentId, seq, records } satisfies BatchMessage);
    while (this.spoolBytes + body.length > this.maxSpoolBytes && this.pending.size) this.drop(Math.min(...this.pending.keys()));
    this.pending.set(seq, { seq, body, records: records.length, sent: false });
    this.spoolBytes += body.length;
    this.stats.batches++;
    this.stats.records += records.length;
    if (this.opts.spoolDir) {
      writeFileSync(join(this.opts.spoolDir, `${seq}.json`), body);
      writeFileSync(join(this.opts.spoolDir, 'next-seq'), String(this.nextSeq));
    }
    this.updateSpoolStats();
    this.pump();
    return seq;
  }

  private pump(): void {
    if (!this.ready || !this.ws) return;
    let inFlight = [...this.pending.values()].filter((p) => p.sent).length;
    for (const p of this.pending.values()) {
      if (inFlight >= this.maxInFlight) break;
      if (p.sent) continue;
      this.ws.send(p.body);
      p.sent = true;
      inFlight++;
    }
  }

  private forget(seq: number): Pending | undefined {
    const p = this.pending.get(seq);
    if (!p) return undefined;
    this.pending.delete(seq);
    this.spoolBytes -= p.body.length;
    if (this.opts.spoolDir) {
      try {
        unlinkSync(join(this.opts.spoolDir, `${seq}.json`));
      } catch {
        /* already gone */
      }
    }
    this.updateSpoolStats();
    return p;
  }

  private drop(seq: number): void {
    const p = this.forget(seq);
    if (p) this.stats.droppedRecords += p.records;
    this.pump();
  }

  private onAck(seq: number): void {
    if (this.forget(seq)) this.stats.acked++;
    this.pump();
    if (!this.pending.size) for (const w of this.ackWaiters.splice(0)) w();
  }

  /** Resolves once everything queued so far is acknowledged (or the timeout passes). */
  async flush(timeoutMs = 10_000): Promise<boolean> {
    if (!this.pending.size) return true;
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.ackWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  close(): void {
    this.closed = true;
    if (this.retry) clearTimeout(this.retry);
    this.ws?.close();
  }
}

/** The spool's size on disk, for tests and metrics. */
export function spoolFiles(dir: string): number {
  return readdirSync(dir).filter((n) => /^\d+\.json$/.test(n) && statSync(join(dir, n)).size > 0).length;
}
