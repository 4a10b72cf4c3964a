// Chooses which committed records become spans and ships them over OTLP/HTTP.
// A busy service creates 1e5 goroutines/s, so only the interesting ones are
// exported: long-lived, long-blocked, failed connections, and a sampled fraction.
import type { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import type { AgentRecord, ConnectionRecord, GoroutineRecord } from '../protocol/records.ts';
import type { CollectorMetrics } from '../metrics.ts';
import { sampleFraction } from './ids.ts';
import { connectionSpan, fatalSpan, goroutineSpan, leakSpan, pauseSpan, processResource, type ProcessInfo } from './spans.ts';

export interface ExportOptions {
  /** Export goroutines and connections that lived at least this long. Default 10 s. */
  longLivedMs?: number;
  /** Export goroutines blocked at least this long in total. Default 1 s. */
  longBlockedMs?: number;
  /** Export connections with an error or a reset. Default true. */
  failedConnections?: boolean;
  /** Fraction of all other finished goroutines and connections to export. Default 0.001. */
  sampleRatio?: number;
  /** Export stop-the-world pauses longer than this; shorter ones are too many to be worth a span. Default 10 ms. */
  longPauseMs?: number;
  /** Include runtime-internal goroutines. Default false. */
  includeSystem?: boolean;
  /** Extra HTTP headers for the OTLP endpoint, e.g. authorization. */
  headers?: Record<string, string>;
  /** Spans held for export at most; more are dropped. Default 8192. */
  maxQueueSize?: number;
  /** Delay between export requests in ms. Default 1000. */
  scheduledDelayMs?: number;
  /** Per-request timeout in ms. Default 10000. */
  timeoutMs?: number;
}

/** Accepts "http://host:4318" (adds /v1/traces) or a full traces URL. */
export function tracesUrl(endpoint: string): string {
  const u = new URL(endpoint);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`OTLP endpoint must be http(s): '${endpoint}'`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/traces';
  return u.toString();
}

type ExportDone = Parameters<SpanExporter['export']>[1];
/** ExportResultCode.SUCCESS in @opentelemetry/core, which is not a direct dependency. */
const SUCCESS = 0;

/** Counts what the wrapped exporter did. */
class CountingExporter implements SpanExporter {
  private inFlight = 0;
  private idleWaiters: (() => void)[] = [];
  constructor(private readonly inner: SpanExporter, private readonly metrics: CollectorMetrics, private readonly onError: (e: unknown) => void) {}
  export(spans: ReadableSpan[], done: ExportDone): void {
    this.inFlight++;
    this.inner.export(spans, (r) => {
      if (--this.inFlight === 0) this.idleWaiters.splice(0).forEach((f) => f());
      if (r.code === SUCCESS) this.metrics.exportedSpans.inc(spans.length);
      else {
        this.metrics.exportErrors.inc();
        this.metrics.exportErrorSpans.inc(spans.length);
        this.onError(r.error);
      }
      done(r);
    });
  }
  /** Resolves when no export request is in flight. */
  idle(): Promise<void> {
    return this.inFlight === 0 ? Promise.resolve() : new Promise((resolve) => this.idleWaiters.push(resolve));
  }
  shutdown(): Promise<void> { return this.inner.shutdown(); }
  forceFlush(): Promise<void> { return this.inner.forceFlush?.() ?? Promise.resolve(); }
}

export class SpanExport {
  private readonly processor: BatchSpanProcessor;
  private readonly exporter: CountingExporter;
  private readonly o: Required<Omit<ExportOptions, 'headers'>>;
  /** Span ids already exported: an exit may be re-sent in a later record. Bounded, oldest forgotten. */
  private readonly exported = new Map<string, true>();
  private readonly resources = new Map<string, Resource>();

  constructor(
    endpoint: string,
    opts: ExportOptions,
    private readonly metrics: CollectorMetrics,
    private readonly processInfo: (node: string, pid: number) => ProcessInfo | undefined,
    onError: (e: unknown) => void = () => {},
  ) {
    this.o = {
      longLivedMs: opts.longLivedMs ?? 10_000,
      longBlockedMs: opts.longBlockedMs ?? 1_000,
      failedConnections: opts.failedConnections ?? true,
      sampleRatio: opts.sampleRatio ?? 0.001,
      longPauseMs: opts.longPauseMs ?? 10,
      includeSystem: opts.includeSystem ?? false,
      maxQueueSize: opts.maxQueueSize ?? 8192,
      scheduledDelayMs: opts.scheduledDelayMs ?? 1000,
      timeoutMs: opts.timeoutMs ?? 10_000,
    };
    const otlp = new OTLPTraceExporter({ url: tracesUrl(endpoint), headers: opts.headers, timeoutMillis: this.o.timeoutMs });
    this.exporter = new CountingExporter(otlp, metrics, onError);
    this.processor = new BatchSpanProcessor(this.exporter, {
      maxQueueSize: this.o.maxQueueSize,
      maxExportBatchSize: Math.min(512, this.o.maxQueueSize),
      scheduledDelayMillis: this.o.scheduledDelayMs,
      exportTimeoutMillis: this.o.timeoutMs,
    });
  }

  wantGoroutine(g: GoroutineRecord, spanId: string): boolean {
    if (g.exitedAt === null || (g.system && !this.o.includeSystem)) return false;
    const lived = g.createdAt === null ? Infinity : g.exitedAt - g.createdAt;
    return lived >= this.o.longLivedMs || g.blockedNs >= this.o.longBlockedMs * 1e6 || sampleFraction(spanId) < this.o.sampleRatio;
  }

  wantConnection(c: ConnectionRecord, spanId: string): boolean {
    const failed = c.error !== null || c.resets > 0;
    if (failed && this.o.failedConnections) return true;
    if (c.closedAt === null) return false;
    const lived = c.openedAt === null ? Infinity : c.closedAt - c.openedAt;
    return lived >= this.o.longLivedMs || sampleFraction(spanId) < this.o.sampleRatio;
  }

  /** Called with each committed batch's records. */
  onRecords(node: string, records: AgentRecord[]): void {
    for (const r of records) {
      if (r.kind === 'fatal' || r.kind === 'leak' || (r.kind === 'pause' && r.durationNs > this.o.longPauseMs * 1e6)) {
        const p = this.processInfo(node, r.pid);
        if (!p) continue;
        const span = r.kind === 'fatal' ? fatalSpan(r, p, this.resource(p)) : r.kind === 'leak' ? leakSpan(r, p, this.resource(p)) : pauseSpan(r, p, this.resource(p));
        const id = span.spanContext().spanId;
        if (this.exported.has(id)) continue;
        this.remember(id);
        this.processor.onEnd(span);
        continue;
      }
      if (r.kind !== 'goroutine' && r.kind !== 'connection') continue;
      // Cheap pre-check before looking up the process.
      if (r.kind === 'goroutine' && r.exitedAt === null) continue;
      if (r.kind === 'connection' && r.closedAt === null && r.error === null && r.resets === 0) continue;
      const p = this.processInfo(node, r.pid);
      if (!p) continue;
      const span = r.kind === 'goroutine' ? goroutineSpan(r, p, this.resource(p)) : connectionSpan(r, p, this.resource(p));
      const id = span.spanContext().spanId;
      if (this.exported.has(id)) continue;
      const want = r.kind === 'goroutine' ? this.wantGoroutine(r, id) : this.wantConnection(r, id);
      if (!want) continue;
      this.remember(id);
      this.processor.onEnd(span);
    }
  }

  private remember(id: string): void {
    this.exported.set(id, true);
    if (this.exported.size > 200_000) this.exported.delete(this.exported.keys().next().value as string);
  }

  private resource(p: ProcessInfo): Resource {
    const key = `${p.node}\u0000${p.pid}\u0000${p.startTime}\u0000${p.exe}\u0000${p.podName}`;
    let r = this.resources.get(key);
    if (!r) {
      r = processResource(p);
      if (this.resources.size > 10_000) this.resources.clear();
      this.resources.set(key, r);
    }
    return r;
  }

  /** Export everything queued and wait for requests in flight; failures are counted, not thrown. */
  async forceFlush(): Promise<void> {
    await this.processor.forceFlush().catch(() => {});
    await this.exporter.idle();
  }

  shutdown(): Promise<void> {
    return this.processor.shutdown();
  }
}
