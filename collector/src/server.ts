// Assembles the collector from its parts: the store, the fastify app (auth on every route, HTTP and WebSocket),
// ingest, the live stream, OpenTelemetry export, retention and Prometheus metrics, all on one HTTP listener.
import Fastify, { type FastifyError, type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { STATUS_CODES } from 'node:http';
import type { Database } from 'better-sqlite3';
import { DEFAULT_LIMITS, DEFAULT_MAX_MESSAGE_BYTES, type CollectorLimits } from './limits.ts';
import { authPlugin, checkAuthConfig, openRoutesOf } from './auth.ts';
import { bindHost, listenFailure, needsIpv4Fallback, parseListenAddress, type ListenAddress } from './net/listen-address.ts';
import { databaseSizeBytes, openDatabase } from './store/db.ts';
import { WriteThread } from './store/write-thread.ts';
import { BadQueryError, StoreReader } from './store/reader.ts';
import { RequestReader } from './store/request-reader.ts';
import { SchedReader } from './store/sched-reader.ts';
import type { RetentionOptions } from './store/retention.ts';
import { createMetrics, type CollectorMetrics } from './metrics.ts';
import { IngestQueue } from './ingest/queue.ts';
import { IngestEndpoint } from './ingest/ws-ingest.ts';
import { ConnectionLimits } from './ingest/limits.ts';
import { StreamHub } from './stream/hub.ts';
import { StreamEndpoint } from './stream/ws-stream.ts';
import { routeUpgrades, webSocketRoutes, type WebSocketRoutesOptions } from './api/websocket.ts';
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
import { requestRoutes } from './api/requests.ts';
import { schedRoutes } from './api/sched.ts';

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
  /** Largest ingest WebSocket message accepted, in bytes (DEFAULT_MAX_MESSAGE_BYTES). */
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

const API = '/api/v1';

/** The store: the main thread's connection (reads), the writer thread (writes), and the metrics about both. */
async function openStore(opts: CollectorOptions) {
  const db = openDatabase(opts.db, { synchronous: opts.synchronous });
  const metrics = createMetrics(() => databaseSizeBytes(db).fileBytes);
  try {
    const thread = await WriteThread.start(opts.db, { synchronous: opts.synchronous });
    return { db, metrics, thread, reader: new StoreReader(db), requests: new RequestReader(db), sched: new SchedReader(db) };
  } catch (e) {
    db.close();
    throw e;
  }
}

/** The fastify instance: TLS, logging, query validation, error answers, OpenAPI and its pages, auth on every route. */
async function createApp(opts: CollectorOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(opts.tls ? { https: { cert: opts.tls.cert, key: opts.tls.key } } : {}),
    logger: opts.logger ?? false,
    bodyLimit: 64 * 1024, // the API takes no bodies
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', useDefaults: true, allErrors: false } },
  });
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
  await app.register(authPlugin, { ingestToken: opts.ingestToken, apiToken: opts.apiToken });
  await app.register(swagger, {
    openapi: {
      info: { title: 'goroscope collector', version: '1' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
  });
  await app.register(async (docs) => {
    openRoutesOf(docs);
    await docs.register(swaggerUi, { routePrefix: `${API}/docs` });
  });
  routeUpgrades(app);
  return app;
}

/** /api/v1: the query API, its description and the WebSocket endpoints. */
const apiRoutes: FastifyPluginAsync<{ ctx: ApiContext; webSockets: WebSocketRoutesOptions }> = async (api, { ctx, webSockets }) => {
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
  for (const routes of [healthRoutes, inventoryRoutes, goroutineRoutes, connectionRoutes, runtimeRoutes, profileRoutes, requestRoutes, schedRoutes]) await api.register(routes, ctx);
  await api.register(webSocketRoutes, webSockets);
  api.get('/openapi.json', { schema: { hide: true, response: { 200: { type: 'object', additionalProperties: true } } }, config: { auth: 'open' } },
    async () => api.swagger());
};

/**
 * Retention passes, one at a time; on a timer when a bound is set, and with a size bound also as soon as a write group
 * leaves the database over it (on the timer alone, 100 agents grew a 20 MB-bound file to 514 MB between passes). A
 * pass goes to the writer thread beside the queued write groups, which it lets through between its chunks: it once
 * waited for the queue to be empty, which under sustained ingest it never is, so the file grew without bound until
 * the agents paused.
 */
function retention(opts: CollectorOptions, thread: WriteThread, metrics: CollectorMetrics, log: FastifyInstance['log']) {
  let running: Promise<number> | undefined;
  const run = async () => {
    if (running) return running;
    // Counted chunk by chunk: a pass under sustained ingest runs for many seconds.
    running = thread.retention(opts.retention ?? {}, Date.now(), (rows) => metrics.retentionDeleted.inc(rows))
      .finally(() => { running = undefined; });
    return running;
  };
  const bounded = opts.retention?.maxAgeMs !== undefined || opts.retention?.maxBytes !== undefined;
  const pass = () => { run().catch((err) => log.error({ err }, 'retention failed')); };
  const timer = bounded ? setInterval(pass, opts.retention?.intervalMs ?? 60_000) : undefined;
  timer?.unref();
  const maxBytes = opts.retention?.maxBytes;
  if (maxBytes !== undefined) thread.afterWrite = (usedBytes) => { if (usedBytes > maxBytes && !running) pass(); };
  return { run, async stop() { clearInterval(timer); await running?.catch(() => 0); } };
}

/** Listens on the address (0.0.0.0 where a host without IPv6 refuses ::); returns the URL it answers at. */
async function listen(app: FastifyInstance, address: ListenAddress, tls: boolean): Promise<{ url: string; port: number }> {
  let host = bindHost(address);
  try {
    try {
      await app.listen({ host, port: address.port });
    } catch (err) {
      if (!needsIpv4Fallback(address, err)) throw err;
      host = '0.0.0.0';
      await app.listen({ host, port: address.port });
    }
  } catch (err) {
    throw listenFailure(address, err);
  }
  const bound = app.server.address();
  const port = typeof bound === 'object' && bound ? bound.port : address.port;
  return { url: `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`, port };
}

export async function startCollector(opts: CollectorOptions): Promise<Collector> {
  const address = parseListenAddress(opts.listen);
  const warn = opts.warn ?? ((m: string) => process.stderr.write(`goroscope collector: warning: ${m}\n`));
  for (const w of checkAuthConfig(address.host, opts)) warn(w);

  const { db, metrics, thread, reader, requests, sched } = await openStore(opts);
  const app = await createApp(opts);
  let shuttingDown = false;

  // Ingest: validated batches queue for the writer thread; once committed they go to the live stream and OTLP.
  const hub = new StreamHub((n) => metrics.streamDropped.inc(n));
  const otlpExport = opts.otlpEndpoint
    ? new OtlpExport(opts.otlpEndpoint, opts.export ?? {}, metrics, processInfoLookup(reader),
      (p) => reader.liveGoroutineCounts(p.node, p.pid, p.startTime),
      (signal, e) => app.log.warn({ err: e, signal }, 'OTLP export failed'))
    : undefined;
  // A live stream shows the batches that arrived after it subscribed.
  const queue = new IngestQueue(thread, metrics, (batches) => {
    for (const b of batches) {
      if (!b.records) continue;
      hub.publish(b.agentId, b.node, b.records);
      otlpExport?.onRecords(b.node, b.records);
    }
  }, () => hub.size > 0 || otlpExport !== undefined);
  const limits = { ...DEFAULT_LIMITS, ...opts.limits };
  const ingest = new IngestEndpoint(queue, (hello) => thread.recordAgent(hello), metrics, {
    maxMessageBytes: opts.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    maxQueuedBatches: 1000,
    maxPendingPerConnection: limits.maxPendingPerConnection,
    maxBufferedBytes: limits.maxBufferedBytes,
    heartbeatMs: limits.heartbeatMs,
  });
  const stream = new StreamEndpoint(hub, metrics);

  const isShuttingDown = () => shuttingDown;
  await app.register(apiRoutes, {
    prefix: API,
    ctx: { db, reader, requests, sched, connectedAgents: () => ingest.agents, isShuttingDown },
    webSockets: {
      ingest, ingestLimits: new ConnectionLimits('ingest', limits, metrics), stream, streamLimits: new ConnectionLimits('stream', limits, metrics), isShuttingDown,
    },
  });
  app.get('/metrics', { schema: { hide: true, response: { 200: { type: 'string' } } } }, async (_req, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()));

  const retentionPasses = retention(opts, thread, metrics, app.log);
  let bound: { url: string; port: number };
  try {
    bound = await listen(app, address, opts.tls !== undefined);
  } catch (err) {
    await retentionPasses.stop();
    await thread.close();
    db.close();
    throw err;
  }

  return {
    ...bound,
    app,
    db,
    metrics,
    idle: () => queue.idle(),
    runRetention: retentionPasses.run,
    flushExport: () => otlpExport?.forceFlush() ?? Promise.resolve(),
    async close() {
      if (shuttingDown) return;
      shuttingDown = true;
      ingest.close();
      stream.close();
      await queue.close();
      await retentionPasses.stop();
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
