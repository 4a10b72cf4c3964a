// What one client, and all of them, may hold of a WebSocket endpoint: connections in all and per address.
// A socket counts from its upgrade request until it closes; every refusal is counted by the limit that made it.
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { CollectorMetrics } from '../metrics.ts';

export interface ConnectionLimitOptions {
  maxConnections: number;
  maxConnectionsPerClient: number;
}

export interface Refusal {
  status: 429 | 503;
  message: string;
}

export class ConnectionLimits {
  private total = 0;
  private readonly byClient = new Map<string, number>();

  constructor(
    private readonly endpoint: 'ingest' | 'stream',
    private readonly opts: ConnectionLimitOptions,
    private readonly metrics: CollectorMetrics,
  ) {}

  /** Counts the socket in while it is open, or says why it may not open. */
  admit(socket: Duplex): Refusal | undefined {
    const client = clientOf(socket);
    if (this.total >= this.opts.maxConnections) {
      this.metrics.wsRefused.inc({ endpoint: this.endpoint, reason: 'connections' });
      return { status: 503, message: `too many ${this.endpoint} connections (limit ${this.opts.maxConnections}); retry later` };
    }
    const mine = this.byClient.get(client) ?? 0;
    if (mine >= this.opts.maxConnectionsPerClient) {
      this.metrics.wsRefused.inc({ endpoint: this.endpoint, reason: 'client_connections' });
      return { status: 429, message: `too many ${this.endpoint} connections from ${client} (limit ${this.opts.maxConnectionsPerClient})` };
    }
    this.total++;
    this.byClient.set(client, mine + 1);
    this.metrics.wsConnections.set({ endpoint: this.endpoint }, this.total);
    socket.once('close', () => {
      this.total--;
      const n = (this.byClient.get(client) ?? 1) - 1;
      if (n > 0) this.byClient.set(client, n);
      else this.byClient.delete(client);
      this.metrics.wsConnections.set({ endpoint: this.endpoint }, this.total);
    });
    return undefined;
  }
}

/** The peer's address, IPv4-mapped IPv6 written as IPv4 (one client, one key). */
function clientOf(socket: Duplex): string {
  const a = (socket as Socket).remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice(7) : a;
}
