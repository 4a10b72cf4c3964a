// Assembles the collector: SQLite store, WebSocket ingest, HTTP API, live stream,
// OpenTelemetry export and Prometheus metrics, all on one HTTP listener.
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Database } from 'better-sqlite3';
import { checkAuthConfig, tokenMatches } from './auth.ts';
import { bindHost, listenFailure, needsIpv4Fallback, parseListenAddress } from './net/listen-address.ts';
import { databaseSizeBytes, openDatabase } from './store/db.ts';
import { WriteThread } from './store/write-thread.ts';
import { BadQueryError, StoreReader } from './store/reader.ts';
import type { RetentionOptions } from './store/retention.ts';
import { createMetrics, type CollectorMetrics } from './metrics.ts';
import { IngestQueue } from './ingest/queue.ts';
import { IngestEndpoint } from './ingest/ws-ingest.ts';
import { ConnectionLimits } from './ingest/limits.ts';
import { StreamHub } from './stream/hub.ts';
import { parseStreamQuery, StreamEndpoint } from './stream/ws-stream.ts';
import { OtlpExport, type OtlpOptions } from './otel/otlp-export.ts';
import type { ProcessInfo } from './otel/spans.ts';
import { errorSchema } from './api/schemas.ts';
import type { ApiContext } from './api/context.ts';
import { healthRoutes } from './api/health.ts';
import { inventoryRoutes } from './api/inventory.ts';
import { goroutineRoutes } from './api/goroutines.ts';
import { connectionRoutes } from './api/connections.ts';
import { runtimeRoutes } from './api/runtime.ts';
import { profileRoutes } from './api/profiles.ts';

export interface CollectorOptions {
  /** host:port; port 0 picks a free port. */
  listen: string;
  /** SQLite database file, created if missing. */
  db: string;
  ingestToken?: string;
  apiToken?: string;
  /** Run without tokens; only allowed on a loopback address. */
  noAuth?: boolean;
  /** OTLP/HTTP endpoint, e.g. http://otel-collector:4318: traces, metrics and logs go there; no export without it. */
  otlpEndpoint?: string;
  export?: OtlpOptions;
  retention?: RetentionOptions & { intervalMs?: number };
  /** Largest ingest WebSocket message accepted, in bytes. Default 16 MiB. */
  maxMessageBytes?: number;
  /** What clients may hold (defaults in DEFAULT_LIMITS); every refusal and forced close is counted in /metrics. */
  limits?: Partial<CollectorLimits>;
  /** 'full' fsyncs each commit: acked batches survive power loss, not only a crash. Default 'normal'. */
  synchronous?: 'normal' | 'full';
  /** Serve HTTPS and wss:// with this certificate chain and key (PEM). */
  tls?: { cert: string | Buffer; key: string | Buffer };
  logger?: boolean;
  /** Warnings at start (an endpoint without a token); default: one line each on stderr. */
  warn?: (msg: string) => void;
}

export interface Collector {
  /** http(s)://host:port of the listener. */
  url: string;
  port: number;
  app: FastifyInstance;
  db: Database;
  metrics: CollectorMetrics;
  /** Resolves when every batch received so far is committed. */
  idle(): Promise<void>;
  /** Run one retention pass now. */
  runRetention(): Promise<number>;
  /** Export queued spans and logs, and the metrics' current values, now. */
  flushExport(): Promise<void>;
  close(): Promise<void>;
}

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

// collector/src/cli.ts repeats the first three for its --help.
export const DEFAULT_LIMITS: CollectorLimits = {
  maxConnections: 1024,
  maxConnectionsPerClient: 64,
  maxBufferedBytes: 256 * 1024 * 1024,
  maxPendingPerConnection: 64,
  heartbeatMs: 30_000,
};

const API = '/api/v1';
/** Routes that answer without an API token: probes and the API description. */
const OPEN_PATHS = [`${API}/healthz`, `${API}/readyz`, `${API}/openapi.json`];

export async function startCollector(opts: CollectorOptions): Promise<Collector> {
  const address = parseListenAddress(opts.listen);
  const { host, port } = address;
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`goroscope collector: warning: ${m}\n`));
  for (const w of checkAuthConfig(host, opts)) warn(w);
  const { ingestToken, apiToken } = opts;

  const db = openDatabase(opts.db, { synchronous: opts.synchronous });
  let shuttingDown = false;
  const metrics = createMetrics(() => databaseSizeBytes(db).fileBytes);
  // Writes go to the store's writer thread (its own connection); this thread reads.
  let thread: WriteThread;
  try {
    thread = await WriteThread.start(opts.db, { synchronous: opts.synchronous });
  } catch (e) {
    db.close();
    throw e;
  }
  const reader = new StoreReader(db);
  const hub = new StreamHub((n) => metrics.streamDropped.inc(n));

  const app = Fastify({
    ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    logger: opts.logger ?? false,
    bodyLimit: 64 * 1024, // the API takes no bodies
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
  });

  const otlpExport = opts.otlpEndpoint
    ? new OtlpExport(opts.otlpEndpoint, opts.export ?? {}, metrics, processInfoLookup(reader),
      (p) => reader.liveGoroutineCounts(p.node, p.pid, p.startTime),
      (signal, e) => app.log.warn({ err: e, signal }, 'OTLP export failed'))
    : undefined;

  const queue = new IngestQueue(thread, metrics, (batches) => {
    for (const b of batches) {
      hub.publish(b.agentId, b.node, b.records);
      otlpExport?.onRecords(b.node, b.records);
    }
  });
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const ingest = new IngestEndpoint(queue, (hello) => thread.recordAgent(hello), metrics, {
    maxMessageBytes: opts.maxMessageBytes ?? 16 * 1024 * 1024,
    maxQueuedBatches: 1000,
    maxPendingPerConnection: limits.maxPendingPerConnection,
    maxBufferedBytes: limits.maxBufferedBytes,
    heartbeatMs: limits.heartbeatMs,
  });
  const stream = new StreamEndpoint(hub, metrics);
  const ingestLimits = new ConnectionLimits('ingest', limits, metrics);
  const streamLimits = new ConnectionLimits('stream', limits, metrics);

  app.addSchema(errorSchema);
  app.setErrorHandler((err: FastifyError, _req, reply) => {
    if (err instanceof BadQueryError) return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: err.message });
    const code = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (code === 500) app.log.error({ err }, 'request failed');
    return reply.code(code).send({
      statusCode: code,
      error: STATUS_CODES[code] ?? 'Error',
      message: code === 500 ? 'internal error' : describeValidation(err) ?? err.message,
    });
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send({ statusCode: 404, error: 'Not Found', message: `no route ${req.method} ${req.url.split('?')[0].slice(0, 200)}` });
  });

  await app.register(swagger, {
    openapi: {
      info: { title: 'goroscope collector', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(swaggerUi, { routePrefix: `${API}/docs` });

  // The API token guards everything but probes and the API description.
  app.addHook('onRequest', async (req, reply) => {
    if (!apiToken) return;
    const path = req.url.split('?')[0];
    if (OPEN_PATHS.includes(path) || path.startsWith(`${API}/docs`)) return;
    if (!tokenMatches(apiToken, req.headers.authorization)) {
      return reply.code(401).header('www-authenticate', 'Bearer').send({ statusCode: 401, error: 'Unauthorized', message: 'missing or wrong API token (Authorization: Bearer <token>)' });
    }
  });

  const ctx: ApiContext = { db, reader, connectedAgents: () => ingest.agents, isShuttingDown: () => shuttingDown };
  await app.register(async (api) => {
    // ajv's type coercion turns "Infinity" and "1e400" into Infinity and lets it past minimum/maximum.
    api.addHook('preHandler', async (req) => {
      const q = req.query as Record<string, unknown> | undefined;
      if (!q || typeof q !== 'object') return;
      for (const [key, v] of Object.entries(q)) {
        if (typeof v === 'number' && !Number.isFinite(v)) {
          throw Object.assign(new Error(`querystring/${key.slice(0, 64)} must be a finite number`), { statusCode: 400 });
        }
      }
    });
    await api.register(healthRoutes, ctx);
    await api.register(inventoryRoutes, ctx);
    await api.register(goroutineRoutes, ctx);
    await api.register(connectionRoutes, ctx);
    await api.register(runtimeRoutes, ctx);
    await api.register(profileRoutes, ctx);
    api.get('/openapi.json', { schema: { hide: true, response: { 200: { type: 'object', additionalProperties: true } } } }, async () => app.swagger());
    // Plain GETs on the WebSocket paths get a hint instead of a 404.
    for (const path of ['/ingest', '/stream']) {
      api.get(path, { schema: { hide: true, response: { 426: { $ref: 'Error#' } } } }, async (_req, reply) =>
        reply.code(426).header('upgrade', 'websocket').send({ statusCode: 426, error: 'Upgrade Required', message: 'this endpoint is a WebSocket' }));
    }
  }, { prefix: API });

  app.get('/metrics', { schema: { hide: true, response: { 200: { type: 'string' } } } }, async (_req, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://collector');
    if (shuttingDown) return rejectUpgrade(socket, 503, 'collector shutting down');
    if (url.pathname === `${API}/ingest`) {
      if (ingestToken && !tokenMatches(ingestToken, req.headers.authorization)) {
        return rejectUpgrade(socket, 401, 'missing or wrong ingest token (Authorization: Bearer <token>)');
      }
      const refused = ingestLimits.admit(socket);
      if (refused) return rejectUpgrade(socket, refused.status, refused.message);
      return ingest.wss.handleUpgrade(req, socket, head, (ws) => ingest.accept(ws, req, socket));
    }
    if (url.pathname === `${API}/stream`) {
      if (apiToken && !tokenMatches(apiToken, req.headers.authorization)) {
        return rejectUpgrade(socket, 401, 'missing or wrong API token (Authorization: Bearer <token>)');
      }
      const filter = parseStreamQuery(url.searchParams);
      if (typeof filter === 'string') return rejectUpgrade(socket, 400, filter);
      const refused = streamLimits.admit(socket);
      if (refused) return rejectUpgrade(socket, refused.status, refused.message);
      return stream.wss.handleUpgrade(req, socket, head, (ws) => stream.accept(ws, filter));
    }
    rejectUpgrade(socket, 404, `no WebSocket endpoint at ${url.pathname.slice(0, 200)}`);
  });

  let retentionRunning: Promise<number> | undefined;
  const runRetention = async () => {
    if (retentionRunning) return retentionRunning;
    retentionRunning = (async () => {
      await queue.idle();
      const n = await thread.retention(opts.retention ?? {});
      metrics.retentionDeleted.inc(n);
      return n;
    })().finally(() => { retentionRunning = undefined; });
    return retentionRunning;
  };
  const hasRetention = opts.retention?.maxAgeMs !== undefined || opts.retention?.maxBytes !== undefined;
  const retentionTimer = hasRetention
    ? setInterval(() => { runRetention().catch((err) => app.log.error({ err }, 'retention failed')); }, opts.retention?.intervalMs ?? 60_000)
    : undefined;
  retentionTimer?.unref();

  let boundHost = bindHost(address);
  try {
    try {
      await app.listen({ host: boundHost, port });
    } catch (err) {
      if (!needsIpv4Fallback(address, err)) throw err;
      boundHost = '0.0.0.0';
      await app.listen({ host: boundHost, port });
    }
  } catch (err) {
    await thread.close();
    db.close();
    throw listenFailure(address, err);
  }
  const bound = app.server.address();
  const actualPort = typeof bound === 'object' && bound ? bound.port : port;
  const urlHost = boundHost.includes(':') ? `[${boundHost}]` : boundHost;

  return {
    url: `${opts.tls ? 'https' : 'http'}://${urlHost}:${actualPort}`,
    port: actualPort,
    app,
    db,
    metrics,
    idle: () => queue.idle(),
    runRetention,
    flushExport: () => otlpExport?.forceFlush() ?? Promise.resolve(),
    async close() {
      if (shuttingDown) return;
      shuttingDown = true;
      if (retentionTimer) clearInterval(retentionTimer);
      ingest.close();
      stream.close();
      await queue.close();
      await retentionRunning?.catch(() => 0);
      await otlpExport?.shutdown().catch(() => {});
      await app.close();
      await thread.close();
      db.close();
    },
  };
}

/** Name the offending parameter: ajv's own text for unknown properties does not. */
function describeValidation(err: FastifyError): string | undefined {
  const v = err.validation?.[0];
  if (!v) return undefined;
  const where = `${err.validationContext ?? 'request'}${v.instancePath}`;
  const p = v.params as Record<string, unknown>;
  if (v.keyword === 'additionalProperties') return `${where}: unknown parameter '${String(p.additionalProperty).slice(0, 64)}'`;
  if (v.keyword === 'enum') return `${where} must be one of ${JSON.stringify(p.allowedValues)}`;
  return undefined;
}

function rejectUpgrade(socket: Duplex, status: number, message: string): void {
  const reason = { 400: 'Bad Request', 401: 'Unauthorized', 404: 'Not Found', 429: 'Too Many Requests', 503: 'Service Unavailable' }[status] ?? 'Error';
  const body = JSON.stringify({ statusCode: status, error: reason, message });
  socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
    `${status === 401 ? 'WWW-Authenticate: Bearer\r\n' : ''}Connection: close\r\n\r\n${body}`);
}

/** Process facts for span resources, cached briefly: exited goroutines arrive in bursts. */
function processInfoLookup(reader: StoreReader): (node: string, pid: number) => ProcessInfo | undefined {
  const cache = new Map<string, { at: number; info: ProcessInfo | undefined }>();
  return (node, pid) => {
    const key = `${node}\u0000${pid}`;
    const now = Date.now();
    const hit = cache.get(key);
    if (hit && now - hit.at < 5_000) return hit.info;
    // A placeholder (records came before their process's record: start_time -1) names no service: nothing is
    // exported for it until the process record arrives.
    const found = reader.latestProcess(node, pid);
    const r = found && found.start_time !== -1 ? found : undefined;
    const info: ProcessInfo | undefined = r && {
      node, pid, startTime: r.start_time, exe: r.exe, goVersion: r.go_version, containerId: r.container_id,
      podName: r.pod_name, podNamespace: r.pod_namespace, podUid: r.pod_uid, podContainer: r.pod_container, seenAt: r.seen_at,
      serviceVersion: r.service_version ?? null,
    };
    if (cache.size > 10_000) cache.clear();
    cache.set(key, { at: now, info });
    return info;
  };
}
