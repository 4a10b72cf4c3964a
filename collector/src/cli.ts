// `goroscope collector`: its options. The server itself (collector/src/run.ts) loads only when the collector
// runs, so other goroscope commands never load fastify, SQLite or OpenTelemetry.
import { readFileSync } from 'node:fs';
import { Command, InvalidArgumentError } from 'commander';
import type { Collector, CollectorOptions } from './server.ts';
import { listenAddressOption } from './net/listen-address.ts';
import { DEFAULT_LIMITS, DEFAULT_MAX_MESSAGE_BYTES } from './limits.ts';

function positiveNumber(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError(`${name} must be a non-negative number`);
    return n;
  };
}

function positiveInteger(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${name} must be a whole number of at least 1`);
    return n;
  };
}

function ratio(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError('must be a number from 0 to 1');
  return n;
}

/** Declares the collector's options on a commander command; the CLI and `goroscope collector` share it. */
export function defineCollectorOptions(cmd: Command): Command {
  return cmd
    .description('Receive agent records, store them in SQLite, serve the API and export OpenTelemetry spans.\n' +
      'Tokens come from GOROSCOPE_INGEST_TOKEN and GOROSCOPE_API_TOKEN.')
    .requiredOption('--listen <host:port>', 'address to listen on: HOST:PORT, [IPv6]:PORT, or :PORT / PORT for every interface', listenAddressOption)
    .requiredOption('--db <file>', 'SQLite database file (created if missing)')
    .option('--otlp-endpoint <url>', 'export traces, metrics and logs to this OTLP/HTTP endpoint, e.g. http://otel-collector:4318')
    .option('--no-auth', 'run without tokens (only on a loopback address)')
    .option('--retention-max-age <hours>', 'delete records older than this', positiveNumber('--retention-max-age'))
    .option('--retention-max-bytes <bytes>', 'delete the oldest records while the database is larger', positiveNumber('--retention-max-bytes'))
    .option('--retention-interval <seconds>', 'how often retention runs', positiveNumber('--retention-interval'), 60)
    .option('--export-sample <ratio>', 'share of traces to export, whole traces by trace id. The agents already choose: every goroutine ' +
      'that lives 1 s or more, every long park, connection and finding, and whole units of work among the short-lived at ' +
      "their --trace-sample (1%); this ratio samples what they send again", ratio, 1)
    .option('--export-long-pause <ms>', 'export stop-the-world pauses longer than this', positiveNumber('--export-long-pause'), 10)
    .option('--export-leak-interval <ms>', 'export a leak suspect as a span and a log once per this interval while it holds', positiveNumber('--export-leak-interval'), 60_000)
    .option('--export-metric-interval <ms>', 'export metrics this often', positiveNumber('--export-metric-interval'), 60_000)
    .option('--sync-full', 'fsync every commit, so acked batches survive power loss')
    .option('--tls-cert <file>', 'serve HTTPS and wss:// with this certificate chain (PEM); needs --tls-key')
    .option('--tls-key <file>', "the certificate's private key (PEM)")
    .option('--max-connections <n>', 'WebSocket connections per endpoint (ingest, stream) in all', positiveInteger('--max-connections'), DEFAULT_LIMITS.maxConnections)
    .option('--max-connections-per-client <n>', 'WebSocket connections per endpoint from one address', positiveInteger('--max-connections-per-client'), DEFAULT_LIMITS.maxConnectionsPerClient)
    .option('--max-buffered-bytes <bytes>', 'bytes of unfinished ingest messages held for all agents together', positiveInteger('--max-buffered-bytes'), DEFAULT_LIMITS.maxBufferedBytes)
    .option('--max-message-bytes <bytes>', 'largest ingest message (batch) taken; agents cut their batches to it', positiveInteger('--max-message-bytes'), DEFAULT_MAX_MESSAGE_BYTES)
    .option('--log', 'log requests and errors as JSON to stdout');
}

interface ParsedOptions {
  listen: string; db: string; otlpEndpoint?: string; auth: boolean; retentionMaxAge?: number; retentionMaxBytes?: number; retentionInterval: number;
  exportSample: number; exportLongPause: number; exportLeakInterval: number; exportMetricInterval: number; syncFull?: boolean; log?: boolean;
  tlsCert?: string; tlsKey?: string; maxConnections: number; maxConnectionsPerClient: number; maxBufferedBytes: number; maxMessageBytes: number;
}

/** The certificate and key, read now: a missing or unreadable file is one clear line at start. */
function readTls(o: ParsedOptions): CollectorOptions['tls'] {
  if (o.tlsCert === undefined && o.tlsKey === undefined) return undefined;
  if (o.tlsCert === undefined || o.tlsKey === undefined) throw new Error('--tls-cert and --tls-key go together');
  const read = (flag: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new Error(`${flag} ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
  };
  return { cert: read('--tls-cert', o.tlsCert), key: read('--tls-key', o.tlsKey) };
}

export function collectorOptionsFrom(o: ParsedOptions, env: NodeJS.ProcessEnv = process.env): CollectorOptions {
  return {
    listen: o.listen,
    db: o.db,
    ingestToken: env.GOROSCOPE_INGEST_TOKEN || undefined,
    apiToken: env.GOROSCOPE_API_TOKEN || undefined,
    noAuth: o.auth === false,
    otlpEndpoint: o.otlpEndpoint,
    export: { sampleRatio: o.exportSample, longPauseMs: o.exportLongPause, leakIntervalMs: o.exportLeakInterval, metricIntervalMs: o.exportMetricInterval },
    retention: {
      maxAgeMs: o.retentionMaxAge !== undefined ? o.retentionMaxAge * 3_600_000 : undefined,
      maxBytes: o.retentionMaxBytes,
      intervalMs: o.retentionInterval * 1000,
    },
    synchronous: o.syncFull ? 'full' : 'normal',
    tls: readTls(o),
    maxMessageBytes: o.maxMessageBytes,
    limits: { maxConnections: o.maxConnections, maxConnectionsPerClient: o.maxConnectionsPerClient, maxBufferedBytes: o.maxBufferedBytes },
    logger: o.log ?? false,
  };
}

/** Runs the collector until SIGINT/SIGTERM. argv excludes node and script, e.g. ['--listen', '127.0.0.1:7070', ...]. */
export async function collectorCommand(argv: string[]): Promise<Collector> {
  const cmd = defineCollectorOptions(new Command('collector')).exitOverride();
  cmd.parse(argv, { from: 'user' });
  const { runCollector } = await import('./run.ts');
  return runCollector(collectorOptionsFrom(cmd.opts<ParsedOptions>()));
}
