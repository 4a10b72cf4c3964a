// Ships batches of records to the collector over a WebSocket, at least once: every batch is written to a
// bounded spool (spool.ts) before it is sent and removed only when the collector acknowledges it (after its
// commit). A batch re-sent after a reconnect carries the same (agentId, epoch, seq), which the collector stores
// once. Batches are cut to what the collector says it takes (its welcome); a record that alone is larger is
// dropped, counted. Every drop is counted; a collector that stays away is logged, not retried in silence.
// Batches carry their records as rows (protocol 2: collector/src/protocol/row-layout.ts), half the bytes of objects
// and a third of the collector's parsing; a collector older than rows refuses the hello, and gets objects.
import WebSocket from 'ws';
import {
  DEFAULT_MAX_MESSAGE_BYTES, MAX_RECORDS_PER_BATCH, PROTOCOL_VERSION, type AgentRecord, type CollectorMessage, type RowsByKind, type WelcomeMessage,
} from '../../../collector/src/protocol/records.ts';
import { rowLayouts } from '../../../collector/src/protocol/row-layout.ts';
import { toRow } from '../../../collector/src/protocol/rows.gen.ts';
import { recordsOf, rowsOf } from '../../../collector/src/protocol/rows.ts';
import { newEpoch, Spool } from './spool.ts';

export interface ShipperOptions {
  /** ws:// or wss:// host:port (the ingest path is added) or a full URL; http(s):// works too. */
  url: string;
  token?: string;
  /** Default: the spool's identity, or a fresh one without a spool. */
  agentId?: string;
  node: string;
  agentVersion: string;
  /** Where unacknowledged batches wait; in memory only when absent. */
  spoolDir?: string;
  maxSpoolBytes?: number;
  /** Seq numbers reserved per write of the spool's counter (default 1000: one counter fsync per 1000 batches). */
  seqReserve?: number;
  /** Batches sent and not yet acknowledged. */
  maxInFlight?: number;
  /** PEM certificate(s) the collector's TLS certificate must chain to (wss://); the system's CAs when absent. */
  ca?: string | Buffer;
  /** Pings the collector this often; a connection that missed the last pong is dropped. */
  heartbeatMs?: number;
  log?: (msg: string) => void;
}

export interface ShipperStats {
  batches: number;
  acked: number;
  records: number;
  spooledBatches: number;
  spooledBytes: number;
  /** Records dropped: the spool was full, the collector refused their batch, or one alone exceeded its limit. */
  droppedRecords: number;
  droppedByReason: { spoolFull: number; refused: number; tooBig: number };
  /** Spool files that could not be read back (set aside), and counter losses (each started an epoch). */
  corruptSpoolFiles: number;
  counterResets: number;
  /** Batches cut again because the collector takes less than they held. */
  resplits: number;
  reconnects: number;
  connected: boolean;
  lastError: string | null;
}

type Kind = AgentRecord['kind'];

/** A record as a batch carries it: its kind, and its row as JSON. */
interface Part {
  kind: Kind;
  text: string;
}

interface Pending {
  epoch: string;
  seq: number;
  /** As spooled: rows (protocol 2), or objects when an older agent spooled it. */
  body: string;
  bytes: number;
  records: number;
  sent: boolean;
}

/** What a batch may hold until the collector says (its welcome): the collector's defaults. */
const DEFAULT_LIMITS = { maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES, maxRecordsPerBatch: MAX_RECORDS_PER_BATCH };
/** A collector from before welcome messages is taken as ready after this long. */
const WELCOME_WAIT_MS = 5000;
/** While the collector stays away, one line per this long. */
const LOG_EVERY_MS = 60_000;

const key = (epoch: string, seq: number) => `${epoch}/${seq}`;

/** A batch body's records as parts (rows), whether it holds rows or objects. */
function partsOf(body: string): Part[] {
  const msg = JSON.parse(body) as { records?: AgentRecord[]; rows?: RowsByKind };
  const rows = msg.rows ?? rowsOf(msg.records ?? []);
  return rowLayouts.flatMap(({ kind }) => (rows[kind] ?? []).map((row) => ({ kind, text: JSON.stringify(row) })));
}

/** A batch body with its records as objects, for a collector that speaks protocol 1 only. */
function objectBody(body: string): string {
  const { rows, ...envelope } = JSON.parse(body) as { rows?: RowsByKind };
  return rows ? JSON.stringify({ ...envelope, records: recordsOf(rows) }) : body;
}

export class Shipper {
  private ws?: WebSocket;
  private ready = false;
  private closed = false;
  private backoffMs = 250;
  private readonly spool?: Spool;
  readonly agentId: string;
  private readonly agentKey?: string;
  /** In memory only (no spool): one epoch per run. */
  private memoryEpoch = newEpoch();
  private memorySeq = 1;
  private readonly pending = new Map<string, Pending>();
  private spoolBytes = 0;
  private retry?: NodeJS.Timeout;
  private limits = { ...DEFAULT_LIMITS };
  /** What the collector speaks: PROTOCOL_VERSION until one refuses it. */
  private protocol = PROTOCOL_VERSION;
  private failingSince?: number;
  private lastLog = 0;
  readonly stats: ShipperStats = {
    batches: 0, acked: 0, records: 0, spooledBatches: 0, spooledBytes: 0, droppedRecords: 0,
    droppedByReason: { spoolFull: 0, refused: 0, tooBig: 0 }, corruptSpoolFiles: 0, counterResets: 0, resplits: 0,
    reconnects: 0, connected: false, lastError: null,
  };
  private readonly maxSpoolBytes: number;
  private readonly maxInFlight: number;
  private ackWaiters: Array<() => void> = [];
  private readonly log: (msg: string) => void;

  constructor(private readonly opts: ShipperOptions) {
    this.maxSpoolBytes = opts.maxSpoolBytes ?? 256 << 20;
    this.maxInFlight = opts.maxInFlight ?? 16;
    this.log = opts.log ?? (() => {});
    if (opts.spoolDir) {
      this.spool = new Spool(opts.spoolDir, this.log, opts.seqReserve);
      const id = this.spool.identity(opts.node);
      this.agentId = opts.agentId ?? id.agentId;
      this.agentKey = id.agentKey;
      for (const b of this.spool.load(this.agentId)) this.add({ ...b, bytes: Buffer.byteLength(b.body), sent: false });
      this.stats.corruptSpoolFiles = this.spool.corruptFiles;
      this.stats.counterResets = this.spool.counterResets;
    } else {
      this.agentId = opts.agentId ?? `${opts.node.replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 80)}.${newEpoch()}`;
    }
    this.updateSpoolStats();
  }

  private get ingestUrl(): string {
    const u = new URL(this.opts.url.replace(/^http/, 'ws'));
    if (u.pathname === '/' || u.pathname === '') u.pathname = '/api/v1/ingest';
    return u.toString();
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
    const ws = new WebSocket(this.ingestUrl, { headers, maxPayload: 1 << 20, ...(this.opts.ca ? { ca: this.opts.ca } : {}) });
    this.ws = ws;
    let welcomeTimer: NodeJS.Timeout | undefined;
    let heartbeat: NodeJS.Timeout | undefined;
    let alive = true;
    /** The collector refused this hello's protocol: the next connection, at once, speaks 1. */
    let downgraded = false;
    const becomeReady = (welcome?: WelcomeMessage) => {
      clearTimeout(welcomeTimer);
      if (welcome) this.setLimits(welcome);
      if (this.ready) return;
      this.ready = true;
      this.stats.connected = true;
      this.backoffMs = 250;
      if (this.failingSince !== undefined) this.log(`collector reachable again after ${Math.round((Date.now() - this.failingSince) / 1000)} s; ${this.pending.size} batches to send`);
      this.failingSince = undefined;
      this.pump();
    };
    ws.on('open', () => {
      ws.send(JSON.stringify({
        type: 'hello', protocol: this.protocol, agentId: this.agentId, node: this.opts.node, agentVersion: this.opts.agentVersion,
        ...(this.agentKey ? { agentKey: this.agentKey } : {}),
      }));
      for (const p of this.pending.values()) p.sent = false;
      welcomeTimer = setTimeout(() => becomeReady(), WELCOME_WAIT_MS);
      heartbeat = setInterval(() => {
        if (!alive) return ws.terminate();
        alive = false;
        ws.ping();
      }, this.opts.heartbeatMs ?? 30_000);
    });
    ws.on('pong', () => { alive = true; });
    ws.on('message', (data) => {
      alive = true;
      let msg: CollectorMessage;
      try {
        msg = JSON.parse(String(data)) as CollectorMessage;
      } catch {
        return;
      }
      if (msg.type === 'welcome') becomeReady(msg);
      else if (msg.type === 'ack') this.onAck(msg.epoch, msg.seq);
      else if (msg.type === 'error') {
        this.stats.lastError = msg.error;
        if (msg.seq === null && !this.ready && this.protocol > 1 && /unsupported protocol version/.test(msg.error)) {
          // A collector from before rows: objects it is, from the next connection on.
          this.protocol = 1;
          downgraded = true;
          this.log(`collector speaks protocol 1 only (${msg.error}): batches go to it as objects`);
          return;
        }
        this.log(`collector refused ${msg.seq === null ? 'the connection' : `batch ${msg.seq}`}: ${msg.error}`);
        // A batch the collector cannot take will never be taken: drop it, counted, rather than block the rest.
        if (msg.seq !== null) this.drop(this.find(msg.epoch, msg.seq), 'refused');
      }
    });
    const lost = (why: string, tooBig = false) => {
      if (this.ws !== ws) return;
      clearTimeout(welcomeTimer);
      clearInterval(heartbeat);
      this.ready = false;
      this.stats.connected = false;
      this.stats.lastError = why;
      this.ws = undefined;
      if (tooBig) this.shrinkAfterTooBig();
      if (this.closed) return;
      this.stats.reconnects++;
      if (downgraded) {
        this.retry = setTimeout(() => this.connect(), 0);
        return;
      }
      const now = Date.now();
      if (this.failingSince === undefined) this.failingSince = now;
      if (now - this.lastLog >= LOG_EVERY_MS || this.stats.reconnects === 1) {
        this.lastLog = now;
        this.log(`collector ${this.ingestUrl} unreachable (${why}); ${this.pending.size} batches (${this.spoolBytes} bytes) wait in the spool; retrying`);
      }
      const delay = this.backoffMs * (0.5 + Math.random());
      this.backoffMs = Math.min(this.backoffMs * 2, 30_000);
      this.retry = setTimeout(() => this.connect(), delay);
    };
    ws.on('close', (code, reason) => lost(`connection closed (${code}${reason.length ? `: ${reason}` : ''})`, code === 1009));
    ws.on('error', (e) => lost(e.message));
  }

  private setLimits(w: WelcomeMessage): void {
    const next = {
      maxMessageBytes: Number.isSafeInteger(w.maxMessageBytes) && w.maxMessageBytes > 1024 ? w.maxMessageBytes : DEFAULT_LIMITS.maxMessageBytes,
      maxRecordsPerBatch: Number.isSafeInteger(w.maxRecordsPerBatch) && w.maxRecordsPerBatch > 0 ? w.maxRecordsPerBatch : DEFAULT_LIMITS.maxRecordsPerBatch,
    };
    this.limits = next;
    this.resplitOversized();
  }

  /** A collector closed with 1009 (message too big) without having said its limit: assume half the largest sent. */
  private shrinkAfterTooBig(): void {
    const largest = Math.max(0, ...[...this.pending.values()].filter((p) => p.sent).map((p) => p.bytes));
    if (largest === 0) return;
    this.limits.maxMessageBytes = Math.max(64 * 1024, Math.min(this.limits.maxMessageBytes, Math.floor(largest / 2)));
    this.log(`collector closed on a batch of ${largest} bytes as too big: batches now hold at most ${this.limits.maxMessageBytes} bytes`);
    this.resplitOversized();
  }

  /** Room for the records in a batch message of this limit: the limit less the envelope around them. */
  private get recordBudget(): number {
    // The envelope, and a key and brackets for each kind of rows.
    return this.limits.maxMessageBytes - 256 - 16 * rowLayouts.length - Buffer.byteLength(this.agentId);
  }

  /** Queues records as batches that fit the collector's limits. */
  send(records: AgentRecord[]): void {
    this.enqueueSerialized(records.map((r) => ({ kind: r.kind, text: JSON.stringify((toRow[r.kind] as (r: AgentRecord) => unknown[])(r)) })));
  }

  private enqueueSerialized(records: Part[]): void {
    const budget = this.recordBudget;
    let part: Part[] = [];
    let bytes = 0;
    for (const r of records) {
      const n = Buffer.byteLength(r.text) + 1;
      if (n > budget) {
        this.stats.droppedRecords++;
        this.stats.droppedByReason.tooBig++;
        this.log(`dropped a record of ${n} bytes: larger than the collector takes in a batch (${this.limits.maxMessageBytes} bytes)`);
        continue;
      }
      if (part.length && (bytes + n > budget || part.length >= this.limits.maxRecordsPerBatch)) {
        this.enqueueBatch(part);
        part = [];
        bytes = 0;
      }
      part.push(r);
      bytes += n;
    }
    if (part.length) this.enqueueBatch(part);
  }

  private enqueueBatch(records: Part[]): void {
    const { epoch, seq } = this.spool ? this.spool.take() : { epoch: this.memoryEpoch, seq: this.memorySeq++ };
    const byKind = new Map<Kind, string[]>();
    for (const r of records) {
      const these = byKind.get(r.kind);
      if (these) these.push(r.text);
      else byKind.set(r.kind, [r.text]);
    }
    const rows = [...byKind].map(([kind, these]) => `"${kind}":[${these.join(',')}]`).join(',');
    const body = `{"type":"batch","agentId":${JSON.stringify(this.agentId)},"epoch":${JSON.stringify(epoch)},"seq":${seq},"rows":{${rows}}}`;
    const p: Pending = { epoch, seq, body, bytes: Buffer.byteLength(body), records: records.length, sent: false };
    while (this.spoolBytes + p.bytes > this.maxSpoolBytes && this.pending.size) this.drop(this.pending.values().next().value, 'spoolFull');
    this.spool?.write(p);
    this.add(p);
    this.stats.batches++;
    this.stats.records += records.length;
    this.updateSpoolStats();
    this.pump();
  }

  private add(p: Pending): void {
    this.pending.set(key(p.epoch, p.seq), p);
    this.spoolBytes += p.bytes;
  }

  /** Batches larger than the collector now takes are cut again: new ones written first, then the old removed. */
  private resplitOversized(): void {
    const over = [...this.pending.values()].filter((p) => p.bytes > this.limits.maxMessageBytes || p.records > this.limits.maxRecordsPerBatch);
    for (const p of over) {
      const records = partsOf(p.body);
      this.stats.resplits++;
      this.forget(p);
      this.enqueueSerialized(records);
    }
  }

  private pump(): void {
    if (!this.ready || !this.ws) return;
    let inFlight = 0;
    for (const p of this.pending.values()) if (p.sent) inFlight++;
    for (const p of this.pending.values()) {
      if (inFlight >= this.maxInFlight) break;
      if (p.sent) continue;
      this.ws.send(this.protocol === 1 ? objectBody(p.body) : p.body);
      p.sent = true;
      inFlight++;
    }
  }

  /** The pending batch an answer names; a collector before epochs names only the seq. */
  private find(epoch: string | undefined, seq: number): Pending | undefined {
    if (epoch !== undefined) return this.pending.get(key(epoch, seq));
    for (const p of this.pending.values()) if (p.sent && p.seq === seq) return p;
    return undefined;
  }

  private forget(p: Pending | undefined): Pending | undefined {
    if (!p || !this.pending.delete(key(p.epoch, p.seq))) return undefined;
    this.spoolBytes -= p.bytes;
    this.spool?.remove(p.epoch, p.seq);
    this.updateSpoolStats();
    return p;
  }

  private drop(p: Pending | undefined, reason: 'spoolFull' | 'refused'): void {
    if (!this.forget(p)) return;
    this.stats.droppedRecords += p!.records;
    this.stats.droppedByReason[reason] += p!.records;
    if (reason === 'spoolFull') this.log(`spool full (${this.maxSpoolBytes} bytes): dropped the oldest batch, ${p!.records} records`);
    this.pump();
    this.notifyIfEmpty();
  }

  private onAck(epoch: string | undefined, seq: number): void {
    if (this.forget(this.find(epoch, seq))) this.stats.acked++;
    this.pump();
    this.notifyIfEmpty();
  }

  private notifyIfEmpty(): void {
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
