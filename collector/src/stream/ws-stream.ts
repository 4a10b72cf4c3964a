// Live stream: GET /api/v1/stream?kind=goroutine,connection&pid=123&node=n as a WebSocket.
// Each message is a JSON array of StreamEvents, sent after the records are committed.
import { WebSocketServer, type WebSocket } from 'ws';
import type { CollectorMetrics } from '../metrics.ts';
import type { RecordKind, StreamFilter, StreamHub } from './hub.ts';
import { recordKinds } from '../protocol/records.ts';

const KINDS = recordKinds as RecordKind[];
/** Drop events for a subscriber with this much unsent data: a slow reader must not grow our memory. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/** Parse the stream query string; returns an error text for a 400. */
export function parseStreamQuery(params: URLSearchParams): StreamFilter | string {
  const filter: StreamFilter = { kinds: new Set(KINDS) };
  for (const [key, value] of params) {
    if (key === 'kind') {
      const kinds = value.split(',').map((k) => k.trim()).filter(Boolean);
      const bad = kinds.find((k) => !KINDS.includes(k as RecordKind));
      if (bad !== undefined || kinds.length === 0) return `querystring/kind must be a comma-separated list of ${KINDS.join(', ')}`;
      filter.kinds = new Set(kinds as RecordKind[]);
    } else if (key === 'pid') {
      if (!/^[1-9][0-9]{0,9}$/.test(value) || Number(value) > 2 ** 31 - 1) return 'querystring/pid must be a positive integer';
      filter.pid = Number(value);
    } else if (key === 'node') {
      if (value.length === 0 || value.length > 253) return 'querystring/node must be 1 to 253 characters';
      filter.node = value;
    } else {
      return `querystring must NOT have additional properties: '${key.slice(0, 64)}'`;
    }
  }
  return filter;
}

export class StreamEndpoint {
  readonly wss = new WebSocketServer({ noServer: true, maxPayload: 4096, perMessageDeflate: false });

  constructor(private readonly hub: StreamHub, private readonly metrics: CollectorMetrics) {}

  accept(ws: WebSocket, filter: StreamFilter): void {
    const unsubscribe = this.hub.subscribe({
      filter,
      send: (events) => {
        if (ws.bufferedAmount > MAX_BUFFERED_BYTES) return false;
        ws.send(JSON.stringify(events));
        return true;
      },
    });
    this.metrics.streamSubscribers.set(this.hub.size);
    ws.on('error', () => ws.terminate());
    ws.on('close', () => {
      unsubscribe();
      this.metrics.streamSubscribers.set(this.hub.size);
    });
    // Subscribers only listen; anything they send is ignored.
    ws.on('message', () => {});
  }

  close(): void {
    for (const ws of this.wss.clients) ws.close(1001, 'collector shutting down');
    this.wss.close();
  }
}
