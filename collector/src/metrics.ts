// Prometheus metrics about the collector itself, in a registry of its own so
// several collectors (tests) can live in one process.
import { Counter, Gauge, Registry } from 'prom-client';
import { recordKinds } from './protocol/records.ts';

export type CollectorMetrics = ReturnType<typeof createMetrics>;

export function createMetrics(dbSizeBytes: () => number) {
  const registry = new Registry();
  const m = {
    registry,
    ingestRecords: new Counter({ name: 'goroscope_collector_ingest_records_total', help: 'Records stored, by kind.', labelNames: ['kind'], registers: [registry] }),
    ingestBatches: new Counter({
      name: 'goroscope_collector_ingest_batches_total',
      help: 'Batches received, by result: stored, duplicate (re-sent, acked again) or rejected.',
      labelNames: ['result'], registers: [registry],
    }),
    ingestQueueDepth: new Gauge({ name: 'goroscope_collector_ingest_queue_depth', help: 'Validated batches waiting for the database.', registers: [registry] }),
    ingestInFlight: new Gauge({ name: 'goroscope_collector_ingest_in_flight', help: 'Batches in the transaction being committed.', registers: [registry] }),
    ingestCommitSeconds: new Counter({ name: 'goroscope_collector_ingest_commit_seconds_total', help: 'Time spent writing ingest transactions.', registers: [registry] }),
    connectedAgents: new Gauge({ name: 'goroscope_collector_connected_agents', help: 'Agents with an open ingest connection.', registers: [registry] }),
    // Limits (ingest/limits.ts): every refusal, forced close and pause is counted by the limit that made it.
    wsConnections: new Gauge({
      name: 'goroscope_collector_websocket_connections', help: 'Open WebSocket connections, by endpoint.', labelNames: ['endpoint'], registers: [registry],
    }),
    wsRefused: new Counter({
      name: 'goroscope_collector_websocket_refused_total',
      help: 'WebSocket connections refused, by endpoint and limit: connections (in all), client_connections (from one address), agent_busy (its id has a live connection), agent_key (its id is bound to another key).',
      labelNames: ['endpoint', 'reason'], registers: [registry],
    }),
    ingestClosed: new Counter({
      name: 'goroscope_collector_ingest_closed_total',
      help: 'Ingest connections the collector closed, by reason: buffered_bytes (unfinished messages over the limit), heartbeat (no pong), policy (protocol violation), too_big (a message over the limit).',
      labelNames: ['reason'], registers: [registry],
    }),
    ingestBufferedBytes: new Gauge({ name: 'goroscope_collector_ingest_buffered_bytes', help: 'Bytes of unfinished ingest messages held for all connections.', registers: [registry] }),
    ingestPaused: new Counter({
      name: 'goroscope_collector_ingest_paused_total',
      help: 'Times reading from an agent paused, by limit: connection_pending (its batches waiting for the database), queue (all batches waiting).',
      labelNames: ['reason'], registers: [registry],
    }),
    dbSize: new Gauge({
      name: 'goroscope_collector_database_size_bytes', help: 'Size of the SQLite database file.', registers: [registry],
      collect() { this.set(dbSizeBytes()); },
    }),
    exportedSpans: new Counter({ name: 'goroscope_collector_export_spans_total', help: 'Spans sent to the OTLP endpoint.', registers: [registry] }),
    exportErrors: new Counter({ name: 'goroscope_collector_export_errors_total', help: 'Failed OTLP export requests (traces, metrics and logs).', registers: [registry] }),
    exportErrorSpans: new Counter({ name: 'goroscope_collector_export_failed_spans_total', help: 'Spans in failed OTLP export requests.', registers: [registry] }),
    exportedMetricPoints: new Counter({ name: 'goroscope_collector_export_metric_points_total', help: 'Metric data points sent to the OTLP endpoint.', registers: [registry] }),
    exportedLogRecords: new Counter({ name: 'goroscope_collector_export_log_records_total', help: 'Log records sent to the OTLP endpoint.', registers: [registry] }),
    exportDroppedSpans: new Counter({ name: 'goroscope_collector_export_dropped_spans_total', help: 'Spans dropped because the OTLP export queue was full.', registers: [registry] }),
    streamSubscribers: new Gauge({ name: 'goroscope_collector_stream_subscribers', help: 'Open live-stream connections.', registers: [registry] }),
    streamDropped: new Counter({ name: 'goroscope_collector_stream_dropped_total', help: 'Live-stream records dropped for slow subscribers.', registers: [registry] }),
    retentionDeleted: new Counter({ name: 'goroscope_collector_retention_deleted_rows_total', help: 'Rows deleted by retention.', registers: [registry] }),
  };
  // Every kind shows up from the start, so rate() over a kind not yet seen is 0, not absent.
  for (const kind of recordKinds) m.ingestRecords.inc({ kind }, 0);
  for (const endpoint of ['ingest', 'stream']) {
    m.wsConnections.set({ endpoint }, 0);
    for (const reason of ['connections', 'client_connections']) m.wsRefused.inc({ endpoint, reason }, 0);
  }
  for (const reason of ['agent_busy', 'agent_key']) m.wsRefused.inc({ endpoint: 'ingest', reason }, 0);
  for (const reason of ['buffered_bytes', 'heartbeat', 'policy', 'too_big']) m.ingestClosed.inc({ reason }, 0);
  for (const reason of ['connection_pending', 'queue']) m.ingestPaused.inc({ reason }, 0);
  return m;
}
