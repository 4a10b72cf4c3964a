// Ships the spans of the trace model (trace-model.ts) over OTLP/HTTP with the OpenTelemetry SDK's exporter. The
// collector feeds it committed records; the agent (`goroscope agent --otlp-endpoint`) feeds it what it ships.
import type { Resource } from '@opentelemetry/resources';
import { BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import type { AgentRecord } from '../protocol/records.ts';
import { processResource, type ProcessInfo } from './spans.ts';
import { TraceModel, type TraceModelOptions } from './trace-model.ts';

export interface ExportOptions extends TraceModelOptions {
  /** Extra HTTP headers for the OTLP endpoint, e.g. authorization. */
  headers?: Record<string, string>;
  /** Spans held for export at most; more are dropped (counted). Default 8192. */
  maxQueueSize?: number;
  /** Delay between export requests in ms. Default 1000. */
  scheduledDelayMs?: number;
  /** Per-request timeout in ms. Default 10000. */
  timeoutMs?: number;
}

/** What the exporter counts (the collector's and the agent's Prometheus counters). */
export interface ExportCounters {
  exportedSpans: { inc(n?: number): void };
  exportErrors: { inc(n?: number): void };
  exportErrorSpans: { inc(n?: number): void };
  /** Spans dropped because the export queue was full (the endpoint too slow or away). */
  exportDroppedSpans: { inc(n?: number): void };
}

/** Accepts "http://host:4318" (adds /v1/<signal>) or a full URL for one signal. */
export function otlpUrl(endpoint: string, signal: 'traces' | 'metrics' | 'logs'): string {
  const u = new URL(endpoint);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`OTLP endpoint must be http(s): '${endpoint}'`);
  if (u.pathname === '/' || u.pathname === '') u.pathname = `/v1/${signal}`;
  return u.toString();
}

export const tracesUrl = (endpoint: string) => otlpUrl(endpoint, 'traces');

type ExportDone = Parameters<SpanExporter['export']>[1];
/** ExportResultCode.SUCCESS in @opentelemetry/core, which is not a direct dependency. */
const SUCCESS = 0;

/** Counts what the wrapped exporter did. */
class CountingExporter implements SpanExporter {
  private inFlight = 0;
  /** Spans handed to export() and not yet answered. */
  settled = 0;
  private idleWaiters: (() => void)[] = [];
  constructor(private readonly inner: SpanExporter, private readonly counters: ExportCounters, private readonly onError: (e: unknown) => void,
    private readonly onSuccess: () => void) {}
  export(spans: ReadableSpan[], done: ExportDone): void {
    this.inFlight++;
    this.inner.export(spans, (r) => {
      this.settled += spans.length;
      if (--this.inFlight === 0) this.idleWaiters.splice(0).forEach((f) => f());
      if (r.code === SUCCESS) {
        this.counters.exportedSpans.inc(spans.length);
        this.onSuccess();
      } else {
        this.counters.exportErrors.inc();
        this.counters.exportErrorSpans.inc(spans.length);
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
  readonly model: TraceModel;
  private readonly counters: ExportCounters;
  private readonly processor: BatchSpanProcessor;
  private readonly exporter: CountingExporter;
  /** Span ids already exported: a record may be re-sent (spool replay, a duplicate batch). Bounded, oldest forgotten. */
  private readonly exported = new Set<string>();
  private readonly resources = new Map<string, Resource>();
  private readonly maxQueueSize: number;
  /** Spans given to the batch processor; minus those the exporter settled, what waits in its queue. */
  private handed = 0;

  constructor(
    endpoint: string,
    opts: ExportOptions,
    counters: ExportCounters,
    private readonly processInfo: (node: string, pid: number) => ProcessInfo | undefined,
    onError: (e: unknown) => void = () => {},
    onSuccess: () => void = () => {},
  ) {
    this.model = new TraceModel(opts);
    this.counters = counters;
    const timeoutMs = opts.timeoutMs ?? 10_000;
    const maxQueueSize = (this.maxQueueSize = opts.maxQueueSize ?? 8192);
    const otlp = new OTLPTraceExporter({ url: tracesUrl(endpoint), headers: opts.headers, timeoutMillis: timeoutMs });
    this.exporter = new CountingExporter(otlp, counters, onError, onSuccess);
    this.processor = new BatchSpanProcessor(this.exporter, {
      maxQueueSize,
      maxExportBatchSize: Math.min(512, maxQueueSize),
      scheduledDelayMillis: opts.scheduledDelayMs ?? 1000,
      exportTimeoutMillis: timeoutMs,
    });
  }

  /** Called with each committed (collector) or shipped (agent) batch's records. */
  onRecords(node: string, records: AgentRecord[]): void {
    for (const r of records) {
      if (!TraceModel.mayMakeSpans(r)) continue;
      if (r.kind === 'goroutine' && !r.trace) continue;
      if (r.kind === 'connection' && !r.trace) continue;
      const p = this.processInfo(node, r.pid);
      if (!p) continue;
      for (const span of this.model.spans(r, p, this.resource(p))) {
        const id = span.spanContext().spanId;
        if (this.exported.has(id)) continue;
        // The batch processor drops silently when its queue is full: count it here instead.
        if (this.handed - this.exporter.settled >= this.maxQueueSize) {
          this.counters.exportDroppedSpans.inc();
          continue;
        }
        this.exported.add(id);
        if (this.exported.size > 200_000) this.exported.delete(this.exported.values().next().value as string);
        this.handed++;
        this.processor.onEnd(span);
      }
    }
  }

  private resource(p: ProcessInfo): Resource {
    const key = `${p.node}\u0000${p.pid}\u0000${p.startTime}\u0000${p.exe}\u0000${p.podName}\u0000${p.serviceVersion}`;
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
