// What clients may hold of a collector, and the defaults: one place for the server and the CLI's --help (this
// module loads nothing, so `goroscope collector --help` does not load the server to show them).
import { DEFAULT_MAX_MESSAGE_BYTES } from './protocol/wire-limits.ts';

export interface CollectorLimits {
  /** WebSocket connections per endpoint (ingest, stream), in all and from one address. */
  maxConnections: number;
  maxConnectionsPerClient: number;
  /** Bytes of unfinished ingest messages held for all connections together. */
  maxBufferedBytes: number;
  /** Batches of one ingest connection waiting for the database before reading from it pauses. */
  maxPendingPerConnection: number;
  /** Ingest connections are pinged this often; one that missed the last ping is closed. */
  heartbeatMs: number;
}

export const DEFAULT_LIMITS: CollectorLimits = {
  maxConnections: 1024,
  maxConnectionsPerClient: 64,
  maxBufferedBytes: 256 * 1024 * 1024,
  maxPendingPerConnection: 64,
  heartbeatMs: 30_000,
};

export { DEFAULT_MAX_MESSAGE_BYTES };
