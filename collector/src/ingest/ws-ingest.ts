// The agent ingest endpoint: a WebSocket speaking the messages in protocol/records.ts.
// hello first, then batches; each batch is acked after it is committed.
import { WebSocketServer, type WebSocket, type RawData } from 'ws';
import type { IncomingMessage } from 'node:http';
import type { CollectorMessage, HelloMessage } from '../protocol/records.ts';
import { parseAgentMessage } from '../protocol/validate.ts';
import type { StoreWriter } from '../store/writer.ts';
import type { CollectorMetrics } from '../metrics.ts';
import type { IngestQueue } from './queue.ts';
import { closeReason } from '../net/text.ts';

/** Close code for protocol and policy violations (RFC 6455). */
export const POLICY_VIOLATION = 1008;

export interface IngestOptions {
  maxMessageBytes: number;
  /** Pause reading from agents while more batches than this wait for the database. */
  maxQueuedBatches: number;
}

export class IngestEndpoint {
  readonly wss: WebSocketServer;
  private readonly paused = new Set<WebSocket>();

  constructor(
    private readonly queue: IngestQueue,
    private readonly writer: StoreWriter,
    private readonly metrics: CollectorMetrics,
    private readonly opts: IngestOptions,
  ) {
    // ws enforces maxPayload itself and closes with 1009 (message too big).
    this.wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxMessageBytes, perMessageDeflate: false });
    this.wss.on('connection', (ws: WebSocket, req: IncomingMessage) => this.onConnection(ws, req));
  }

  /** Agents currently connected, by agent id. */
  readonly agents = new Map<string, number>();

  private onConnection(ws: WebSocket, _req: IncomingMessage): void {
    let hello: HelloMessage | undefined;
    const send = (m: CollectorMessage) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(m));
    };
    const violation = (error: string) => {
      this.metrics.ingestBatches.inc({ result: 'rejected' });
      send({ type: 'error', seq: null, error });
      ws.close(POLICY_VIOLATION, closeReason(error));
    };

    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      this.paused.delete(ws);
      if (hello) {
        const n = (this.agents.get(hello.agentId) ?? 1) - 1;
        if (n > 0) this.agents.set(hello.agentId, n);
        else this.agents.delete(hello.agentId);
        this.metrics.connectedAgents.set(this.agents.size);
      }
    });

    ws.on('message', (data: RawData) => {
      const buf = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      const text = buf.toString('utf8');
      const parsed = parseAgentMessage(text);
      if (!parsed.ok) {
        if (!hello) return violation(`${parsed.error} (the first message must be a valid hello)`);
        this.metrics.ingestBatches.inc({ result: 'rejected' });
        return send({ type: 'error', seq: parsed.seq, error: parsed.error });
      }
      if (parsed.kind === 'hello') {
        if (hello) return violation('hello sent twice on one connection');
        hello = parsed.message;
        this.writer.recordAgent(hello);
        this.agents.set(hello.agentId, (this.agents.get(hello.agentId) ?? 0) + 1);
        this.metrics.connectedAgents.set(this.agents.size);
        return;
      }
      const batch = parsed.message;
      if (!hello) return violation('batch before hello: the first message must be a hello');
      if (batch.agentId !== hello.agentId) {
        return violation(`batch agentId '${batch.agentId}' differs from this connection's hello agentId '${hello.agentId}'`);
      }
      this.queue.enqueue({
        agentId: batch.agentId, node: hello.node, seq: batch.seq, records: batch.records,
        done: (result) => {
          if (result instanceof Error) send({ type: 'error', seq: batch.seq, error: `batch not stored: ${result.message}` });
          else send({ type: 'ack', seq: batch.seq });
          this.resumeIfDrained();
        },
      });
      if (this.queue.depth > this.opts.maxQueuedBatches) {
        ws.pause();
        this.paused.add(ws);
      }
    });
  }

  private resumeIfDrained(): void {
    if (this.paused.size === 0 || this.queue.depth > this.opts.maxQueuedBatches / 2) return;
    for (const ws of this.paused) ws.resume();
    this.paused.clear();
  }

  close(): void {
    for (const ws of this.wss.clients) ws.close(1001, 'collector shutting down');
    this.wss.close();
  }
}
