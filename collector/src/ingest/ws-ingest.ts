// The agent ingest endpoint: a WebSocket speaking the messages in protocol/records.ts.
// hello first (answered by a welcome that states the limits), then batches; each batch is acked after it is
// committed. An agent id has one live connection at a time, and only the agent holding its key may use it.
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { MAX_RECORDS_PER_BATCH, type CollectorMessage, type HelloMessage } from '../protocol/records.ts';
import { parseAgentMessage } from '../protocol/validate.ts';
import type { CollectorMetrics } from '../metrics.ts';
import type { IngestQueue } from './queue.ts';
import { closeReason } from '../net/text.ts';

/** Close codes (RFC 6455): protocol and policy violations, and a message over the size limit. */
export const POLICY_VIOLATION = 1008;
export const MESSAGE_TOO_BIG = 1009;

export interface IngestOptions {
  maxMessageBytes: number;
  /** Pause reading from every agent while more batches than this wait for the database. */
  maxQueuedBatches: number;
  /** Pause reading from one connection while this many of its batches wait for the database. */
  maxPendingPerConnection: number;
  /** Bytes of unfinished messages held for all connections together; past it the connection sending more closes. */
  maxBufferedBytes: number;
  /** A connection that answers no ping within this time is closed. */
  heartbeatMs: number;
}

interface Connection {
  ws: WebSocket;
  hello?: HelloMessage;
  /** Bytes received since its last whole message. */
  partial: number;
  /** Its hello is being recorded. */
  greeting?: boolean;
  /** The agent id its hello claimed. */
  agentId?: string;
  pending: number;
  pausedForPending: boolean;
  alive: boolean;
}

export class IngestEndpoint {
  readonly wss: WebSocketServer;
  private readonly conns = new Set<Connection>();
  private readonly paused = new Set<Connection>();
  /** The live connection of each agent id (also what the API calls connected). */
  private readonly live = new Map<string, Connection>();
  private buffered = 0;
  private readonly heartbeat: NodeJS.Timeout;

  constructor(
    private readonly queue: IngestQueue,
    /** Records an agent's hello (its key binds its id): in the store's writer thread. */
    private readonly recordAgent: (hello: HelloMessage) => Promise<'ok' | 'key-mismatch'>,
    private readonly metrics: CollectorMetrics,
    private readonly opts: IngestOptions,
  ) {
    // ws enforces maxPayload itself and closes with 1009 (message too big).
    this.wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxMessageBytes, perMessageDeflate: false });
    this.heartbeat = setInterval(() => this.checkAlive(), opts.heartbeatMs);
    this.heartbeat.unref();
  }

  /** Agents with a live connection. */
  get agents(): ReadonlyMap<string, unknown> {
    return this.live;
  }

  /** Takes over an upgraded socket (server.ts has counted it against the connection limits). */
  accept(ws: WebSocket, _req: IncomingMessage, socket: Duplex): void {
    const c: Connection = { ws, partial: 0, pending: 0, pausedForPending: false, alive: true };
    this.conns.add(c);
    // Before ws reads it: every byte counts until a message completes (a chunk's start of the next message
    // is counted with the next chunk).
    socket.prependListener('data', (chunk: Buffer) => this.onBytes(c, chunk.length));
    const send = (m: CollectorMessage) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m));
    };
    const violation = (error: string) => {
      this.metrics.ingestBatches.inc({ result: 'rejected' });
      this.metrics.ingestClosed.inc({ reason: 'policy' });
      this.release(c);
      send({ type: 'error', seq: null, error });
      ws.close(POLICY_VIOLATION, closeReason(error));
    };

    ws.on('error', () => ws.terminate());
    ws.on('pong', () => { c.alive = true; });
    ws.on('close', (code) => {
      if (code === MESSAGE_TOO_BIG) this.metrics.ingestClosed.inc({ reason: 'too_big' });
      this.conns.delete(c);
      this.paused.delete(c);
      this.setBuffered(this.buffered - c.partial);
      c.partial = 0;
      this.release(c);
    });

    ws.on('message', (data: RawData) => {
      c.alive = true;
      this.setBuffered(this.buffered - c.partial);
      c.partial = 0;
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      const text = buf.toString('utf8');
      const parsed = parseAgentMessage(text);
      if (!parsed.ok) {
        if (!c.hello) return violation(`${parsed.error} (the first message must be a valid hello)`);
        this.metrics.ingestBatches.inc({ result: 'rejected' });
        return send({ type: 'error', seq: parsed.seq, ...(parsed.epoch !== undefined ? { epoch: parsed.epoch } : {}), error: parsed.error });
      }
      if (parsed.kind === 'hello') {
        if (c.hello || c.greeting) return violation('hello sent twice on one connection');
        const hello = parsed.message;
        const other = this.live.get(hello.agentId);
        if (other && other !== c && other.ws.readyState === other.ws.OPEN) {
          this.metrics.wsRefused.inc({ endpoint: 'ingest', reason: 'agent_busy' });
          return violation(`agent id '${hello.agentId}' already has a live connection`);
        }
        // The id is this connection's while the writer thread checks its key; nothing more is read meanwhile.
        c.greeting = true;
        c.agentId = hello.agentId;
        this.live.set(hello.agentId, c);
        ws.pause();
        this.recordAgent(hello).then((result) => {
          if (ws.readyState !== ws.OPEN) return;
          if (result === 'key-mismatch') {
            this.metrics.wsRefused.inc({ endpoint: 'ingest', reason: 'agent_key' });
            this.release(c, hello.agentId);
            return violation(`agent id '${hello.agentId}' belongs to another agent (its key differs)`);
          }
          c.hello = hello;
          this.metrics.connectedAgents.set(this.live.size);
          send({ type: 'welcome', maxMessageBytes: this.opts.maxMessageBytes, maxRecordsPerBatch: MAX_RECORDS_PER_BATCH });
          if (!this.paused.has(c)) ws.resume();
        }, (e: Error) => {
          this.release(c, hello.agentId);
          violation(`collector could not record the hello: ${e.message}`);
        });
        return;
      }
      const batch = parsed.message;
      const hello = c.hello;
      if (!hello) return violation('batch before hello: the first message must be a hello');
      if (batch.agentId !== hello.agentId) {
        return violation(`batch agentId '${batch.agentId}' differs from this connection's hello agentId '${hello.agentId}'`);
      }
      // Answers name the batch's epoch when it had one.
      const named = batch.epoch !== undefined ? { epoch: batch.epoch } : {};
      c.pending++;
      this.queue.enqueue({
        agentId: batch.agentId, epoch: batch.epoch ?? '', node: hello.node, seq: batch.seq,
        ...('rows' in batch ? { rows: batch.rows } : { records: batch.records }),
        done: (result) => {
          c.pending--;
          if (result instanceof Error) send({ type: 'error', seq: batch.seq, ...named, error: `batch not stored: ${result.message}` });
          else send({ type: 'ack', seq: batch.seq, ...named });
          this.resumeIfDrained();
        },
      });
      if (c.pending >= this.opts.maxPendingPerConnection) this.pause(c, 'connection_pending');
      else if (this.queue.depth > this.opts.maxQueuedBatches) this.pause(c, 'queue');
    });
  }

  private onBytes(c: Connection, n: number): void {
    if (c.ws.readyState !== c.ws.OPEN) return; // closing: what it still sends is read and dropped
    c.partial += n;
    this.setBuffered(this.buffered + n);
    if (this.buffered > this.opts.maxBufferedBytes) {
      // The connection that brought the total over closes: what it sent is dropped, and memory is returned.
      this.metrics.ingestClosed.inc({ reason: 'buffered_bytes' });
      this.release(c);
      this.setBuffered(this.buffered - c.partial);
      c.partial = 0;
      c.ws.close(POLICY_VIOLATION, closeReason(`the collector holds too many unfinished messages (limit ${this.opts.maxBufferedBytes} bytes); retry`));
      setTimeout(() => c.ws.terminate(), 1000).unref();
    }
  }

  private setBuffered(n: number): void {
    this.buffered = n;
    this.metrics.ingestBufferedBytes.set(n);
  }

  /** The connection no longer speaks for its agent id (it is closing). */
  private release(c: Connection, agentId = c.agentId): void {
    if (agentId !== undefined && this.live.get(agentId) === c) {
      this.live.delete(agentId);
      this.metrics.connectedAgents.set(this.live.size);
    }
  }

  private pause(c: Connection, reason: 'connection_pending' | 'queue'): void {
    if (this.paused.has(c)) return;
    c.ws.pause();
    c.pausedForPending = reason === 'connection_pending';
    this.paused.add(c);
    this.metrics.ingestPaused.inc({ reason });
  }

  private resumeIfDrained(): void {
    if (this.paused.size === 0 || this.queue.depth > this.opts.maxQueuedBatches / 2) return;
    for (const c of this.paused) {
      if (c.pausedForPending && c.pending > this.opts.maxPendingPerConnection / 2) continue;
      c.ws.resume();
      this.paused.delete(c);
    }
  }

  /** Pings every connection; one that did not answer the last ping is closed. A paused one cannot answer. */
  private checkAlive(): void {
    for (const c of this.conns) {
      if (this.paused.has(c)) continue;
      if (!c.alive) {
        this.metrics.ingestClosed.inc({ reason: 'heartbeat' });
        this.release(c);
        c.ws.terminate();
        continue;
      }
      c.alive = false;
      c.ws.ping();
    }
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const ws of this.wss.clients) ws.close(1001, 'collector shutting down');
    this.wss.close();
  }
}
