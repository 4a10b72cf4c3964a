// Metrics and logs over OTLP/HTTP, with the OpenTelemetry SDK's providers and exporters, for each traced process:
// its resource is the process (spans.ts processResource), so every metric and log names the service, pod and
// instance it is about. Fed the same records as the trace model (the collector's committed ones, or what the agent
// ships), plus a live count of goroutines by state and wait reason from whoever holds it (the agent's tables, the
// collector's store).
//
// Metrics (cumulative, every intervalMs):
//   go.goroutine.count              {goroutine}  live goroutines, by goroscope.goroutine.state and .wait_reason
//   goroscope.goroutine.created     {goroutine}  creations (exact: window records count the off windows from memory)
//   goroscope.goroutine.exited      {goroutine}  exits seen (exact)
//   goroscope.stw.duration          s            stop-the-world pauses, histogram, by goroscope.pause.gc and .reason
//   goroscope.tcp.io                By           TCP bytes, by network.io.direction (transmit, receive)
//   goroscope.tcp.connections       {connection} connections opened, by goroscope.tcp.role
//   goroscope.tcp.errors            {connection} connections that failed (refused, reset, timed out), by error.type
//   goroscope.tcp.retransmits       {segment}    TCP segments retransmitted
//   goroscope.tcp.resets            {reset}      resets sent or received
//   goroscope.tcp.rtt               s            smoothed RTT of each connection at its close, histogram
//   goroscope.leak.goroutines       {goroutine}  goroutines in each leak-suspect group (per minute for creation-rate ones)
//   goroscope.fatal_errors          {error}      fatal errors and fatal panics, by error.type
// Logs: a WARN per leak suspect and report interval, a FATAL per fatal error; each carries the trace and span id of
// the span the trace model makes of it, so a log line leads to its trace.
import { ROOT_CONTEXT, trace, ValueType, type Attributes } from '@opentelemetry/api';
import { SeverityNumber } from '@opentelemetry/api-logs';
import { OTLPLogExporter } from '@opentelemetry/exporter-logs-otlp-http';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { BatchLogRecordProcessor, LoggerProvider } from '@opentelemetry/sdk-logs';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import type { AgentRecord, ConnectionRecord, FatalRecord, LeakRecord } from '../protocol/records.ts';
import { fatalSpanIds, leakSpanIds } from './ids.ts';
import { msToHrTime, processResource, SCOPE, spanContext, type ProcessInfo } from './spans.ts';
import { leakKey } from './trace-model.ts';

export interface GoroutineCount {
  state: string;
  waitReason: string | null;
  count: number;
}

/** Live goroutines of a process by state and wait reason; undefined when unknown (gone, not traced). */
export type GoroutineCounts = (p: ProcessInfo) => GoroutineCount[] | undefined;

export interface SignalOptions {
  headers?: Record<string, string>;
  /** How often metrics are exported. Default 60 s. */
  metricIntervalMs?: number;
  /** Leak suspects are logged once per this interval while they hold (the trace model's leakIntervalMs). */
  leakIntervalMs?: number;
  timeoutMs?: number;
  /** Processes with their own providers at most; the least recently active is let go past it. Default 5000. */
  maxProcesses?: number;
}

/** What the exporters did, for the collector's and the agent's own metrics. */
export interface SignalCounters {
  exportedMetricPoints: { inc(n?: number): void };
  exportedLogRecords: { inc(n?: number): void };
  exportErrors: { inc(n?: number): void };
}

const SUCCESS = 0; // ExportResultCode.SUCCESS

const PAUSE_BUCKETS = [1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.5, 1];
const RTT_BUCKETS = [5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];

const processKey = (p: { node: string; pid: number; startTime: number }) => `${p.node}\u0000${p.pid}\u0000${p.startTime}`;

/** The providers and instruments of one process instance. */
class ProcessSignals {
  readonly meters: MeterProvider;
  readonly logs: LoggerProvider;
  readonly created;
  readonly exited;
  readonly stw;
  readonly tcpIo;
  readonly tcpConnections;
  readonly tcpErrors;
  readonly tcpRetransmits;
  readonly tcpResets;
  readonly tcpRtt;
  readonly fatalErrors;
  readonly logger;
  /** The latest judgement of each leak suspect group, for the gauge. */
  readonly leaks = new Map<string, LeakRecord>();
  lastActive = Date.now();

  constructor(readonly info: ProcessInfo, parent: OtlpSignals) {
    const resource = processResource(info);
    const o = parent.opts;
    this.meters = new MeterProvider({
      resource,
      readers: [new PeriodicExportingMetricReader({ exporter: parent.metricExporter(), exportIntervalMillis: o.metricIntervalMs, exportTimeoutMillis: Math.min(o.timeoutMs, o.metricIntervalMs) })],
    });
    this.logs = new LoggerProvider({ resource, processors: [new BatchLogRecordProcessor({ exporter: parent.logExporter(), scheduledDelayMillis: 1000, exportTimeoutMillis: o.timeoutMs })] });
    this.logger = this.logs.getLogger(SCOPE.name, SCOPE.version);
    const m = this.meters.getMeter(SCOPE.name, SCOPE.version);
    m.createObservableUpDownCounter('go.goroutine.count', { unit: '{goroutine}', valueType: ValueType.INT, description: 'Live goroutines, by state and wait reason.' })
      .addCallback((r) => {
        for (const c of parent.goroutineCounts(info) ?? []) {
          const a: Attributes = { 'goroscope.goroutine.state': c.state };
          if (c.waitReason) a['goroscope.goroutine.wait_reason'] = c.waitReason;
          r.observe(c.count, a);
        }
      });
    m.createObservableGauge('goroscope.leak.goroutines', { unit: '{goroutine}', description: 'Goroutines in each leak-suspect group (creations per minute for growing-creation-rate suspects).' })
      .addCallback((r) => {
        const stale = Date.now() - 3 * o.leakIntervalMs;
        for (const [key, l] of this.leaks) {
          if (l.observedAt < stale) this.leaks.delete(key);
          else r.observe(l.count, { 'goroscope.leak.suspect': l.suspect, 'goroscope.leak.start_function': l.startFunction ?? '', 'goroscope.leak.created_by': l.createdBy?.function ?? '' });
        }
      });
    this.created = m.createCounter('goroscope.goroutine.created', { unit: '{goroutine}', valueType: ValueType.INT, description: 'Goroutines created while observed (exact, never sampled: each window record counts its off time from the runtime memory).' });
    this.exited = m.createCounter('goroscope.goroutine.exited', { unit: '{goroutine}', valueType: ValueType.INT, description: 'Goroutines that exited while observed (exact).' });
    this.stw = m.createHistogram('goroscope.stw.duration', { unit: 's', description: 'Stop-the-world pauses (GC sweep and mark termination, and others), by reason.', advice: { explicitBucketBoundaries: PAUSE_BUCKETS } });
    this.tcpIo = m.createCounter('goroscope.tcp.io', { unit: 'By', valueType: ValueType.INT, description: 'Bytes over TCP connections, by direction.' });
    this.tcpConnections = m.createCounter('goroscope.tcp.connections', { unit: '{connection}', valueType: ValueType.INT, description: 'TCP connections opened (connect or accept), by role.' });
    this.tcpErrors = m.createCounter('goroscope.tcp.errors', { unit: '{connection}', valueType: ValueType.INT, description: 'TCP connections that failed (refused, reset, timed out), by error.type.' });
    this.tcpRetransmits = m.createCounter('goroscope.tcp.retransmits', { unit: '{segment}', valueType: ValueType.INT, description: 'TCP segments retransmitted.' });
    this.tcpResets = m.createCounter('goroscope.tcp.resets', { unit: '{reset}', valueType: ValueType.INT, description: 'TCP resets sent or received.' });
    this.tcpRtt = m.createHistogram('goroscope.tcp.rtt', { unit: 's', description: "Each TCP connection's smoothed round-trip time at its close.", advice: { explicitBucketBoundaries: RTT_BUCKETS } });
    this.fatalErrors = m.createCounter('goroscope.fatal_errors', { unit: '{error}', valueType: ValueType.INT, description: 'Fatal errors and fatal panics.' });
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.meters.shutdown(), this.logs.shutdown()]);
  }

  async flush(): Promise<void> {
    await Promise.allSettled([this.meters.forceFlush(), this.logs.forceFlush()]);
  }
}

interface ConnectionFigures { sent: number; received: number; retransmits: number; resets: number; failed: boolean }

export class OtlpSignals {
  readonly opts: Required<Omit<SignalOptions, 'headers'>>;
  private readonly processes = new Map<string, ProcessSignals>();
  /** Each open connection's figures at its last record: metrics add what changed. */
  private readonly connections = new Map<string, ConnectionFigures>();
  /** Connections already counted closed: a re-sent record of one adds nothing. */
  private readonly closedConnections = new Set<string>();
  /** Leak suspects logged, by (process, group, interval). */
  private readonly logged = new Set<string>();

  constructor(
    private readonly endpoint: { metrics: string; logs: string },
    opts: SignalOptions,
    private readonly counters: SignalCounters,
    private readonly processInfo: (node: string, pid: number) => ProcessInfo | undefined,
    readonly goroutineCounts: GoroutineCounts,
    private readonly onError: (signal: 'metrics' | 'logs', e: unknown) => void,
    private readonly onSuccess: (signal: 'metrics' | 'logs') => void = () => {},
  ) {
    this.opts = {
      metricIntervalMs: opts.metricIntervalMs ?? 60_000,
      leakIntervalMs: opts.leakIntervalMs ?? 60_000,
      timeoutMs: opts.timeoutMs ?? 10_000,
      maxProcesses: opts.maxProcesses ?? 5000,
    };
    this.headers = opts.headers;
  }

  private readonly headers?: Record<string, string>;

  /** An OTLP metric exporter whose results are counted (one per process: each has its own resource). */
  metricExporter(): OTLPMetricExporter {
    const e = new OTLPMetricExporter({ url: this.endpoint.metrics, headers: this.headers, timeoutMillis: this.opts.timeoutMs });
    const inner = e.export.bind(e);
    e.export = (metrics, done) => inner(metrics, (r) => {
      if (r.code === SUCCESS) {
        this.counters.exportedMetricPoints.inc(metrics.scopeMetrics.reduce((n, s) => n + s.metrics.reduce((k, x) => k + x.dataPoints.length, 0), 0));
        this.onSuccess('metrics');
      } else {
        this.counters.exportErrors.inc();
        this.onError('metrics', r.error);
      }
      done(r);
    });
    return e;
  }

  logExporter(): OTLPLogExporter {
    const e = new OTLPLogExporter({ url: this.endpoint.logs, headers: this.headers, timeoutMillis: this.opts.timeoutMs });
    const inner = e.export.bind(e);
    e.export = (logs, done) => inner(logs, (r) => {
      if (r.code === SUCCESS) {
        this.counters.exportedLogRecords.inc(logs.length);
        this.onSuccess('logs');
      } else {
        this.counters.exportErrors.inc();
        this.onError('logs', r.error);
      }
      done(r);
    });
    return e;
  }

  private signalsOf(node: string, pid: number): ProcessSignals | undefined {
    const info = this.processInfo(node, pid);
    if (!info) return undefined;
    const key = processKey(info);
    let s = this.processes.get(key);
    if (!s) {
      if (this.processes.size >= this.opts.maxProcesses) {
        const idle = [...this.processes.entries()].sort((a, b) => a[1].lastActive - b[1].lastActive)[0];
        this.processes.delete(idle[0]);
        void idle[1].close();
      }
      this.processes.set(key, (s = new ProcessSignals(info, this)));
    }
    s.lastActive = Date.now();
    return s;
  }

  onRecords(node: string, records: AgentRecord[]): void {
    for (const r of records) {
      switch (r.kind) {
        case 'window': {
          const s = this.signalsOf(node, r.pid);
          s?.created.add(r.created);
          s?.exited.add(r.exited);
          break;
        }
        case 'pause':
          this.signalsOf(node, r.pid)?.stw.record(r.durationNs / 1e9, { 'goroscope.pause.gc': r.gc, 'goroscope.pause.reason': r.reason });
          break;
        case 'connection':
          this.connection(node, r);
          break;
        case 'leak':
          this.leak(node, r);
          break;
        case 'fatal':
          this.fatal(node, r);
          break;
        case 'process':
          if (r.exitedAt !== null) this.retire(node, r.pid, r.startTime);
          break;
        default:
          break;
      }
    }
  }

  private connection(node: string, c: ConnectionRecord): void {
    const s = this.signalsOf(node, c.pid);
    if (!s) return;
    const key = `${node}|${c.pid}|${c.localAddress}|${c.localPort}|${c.peerAddress}|${c.peerPort}|${c.openedAt ?? 0}`;
    if (this.closedConnections.has(key)) return;
    let was = this.connections.get(key);
    if (!was) {
      if (!c.preexisting) s.tcpConnections.add(1, { 'goroscope.tcp.role': c.role });
      // A connection open before the agent counts from when it was first seen.
      was = c.preexisting ? { sent: c.bytesSent, received: c.bytesReceived, retransmits: c.retransmits, resets: c.resets, failed: false } : { sent: 0, received: 0, retransmits: 0, resets: 0, failed: false };
    }
    const add = (n: number, counter: { add(v: number, a?: Attributes): void }, a?: Attributes) => { if (n > 0) counter.add(n, a); };
    add(c.bytesSent - was.sent, s.tcpIo, { 'network.io.direction': 'transmit' });
    add(c.bytesReceived - was.received, s.tcpIo, { 'network.io.direction': 'receive' });
    add(c.retransmits - was.retransmits, s.tcpRetransmits);
    add(c.resets - was.resets, s.tcpResets);
    const failed = was.failed || c.error !== null;
    if (c.error !== null && !was.failed) s.tcpErrors.add(1, { 'error.type': c.error });
    if (c.closedAt !== null) {
      this.connections.delete(key);
      this.closedConnections.add(key);
      if (this.closedConnections.size > 200_000) this.closedConnections.delete(this.closedConnections.values().next().value!);
      if (c.srttUs !== null) s.tcpRtt.record(c.srttUs / 1e6);
      return;
    }
    this.connections.set(key, { sent: Math.max(was.sent, c.bytesSent), received: Math.max(was.received, c.bytesReceived), retransmits: Math.max(was.retransmits, c.retransmits), resets: Math.max(was.resets, c.resets), failed });
    if (this.connections.size > 200_000) this.connections.delete(this.connections.keys().next().value!);
  }

  private leak(node: string, r: LeakRecord): void {
    const s = this.signalsOf(node, r.pid);
    if (!s) return;
    const key = leakKey(r);
    s.leaks.set(key, r);
    const interval = Math.floor(r.observedAt / this.opts.leakIntervalMs);
    const once = `${processKey(s.info)}\u0000${key}\u0000${interval}`;
    if (this.logged.has(once)) return;
    this.logged.add(once);
    if (this.logged.size > 100_000) this.logged.delete(this.logged.values().next().value!);
    const site = r.createdBy ? ` created at ${r.createdBy.function} (${r.createdBy.file}:${r.createdBy.line})` : '';
    const what = r.suspect === 'growing-live'
      ? `${Math.round(r.count)} goroutines of ${r.startFunction ?? 'unknown'}${site}${r.waitReason ? `, parked in ${r.waitReason}` : ''}, growing ${r.growthPerMinute.toFixed(1)}/min`
      : `${r.startFunction ?? 'unknown'}${site} started ${r.count.toFixed(1)} times a minute, growing ${r.growthPerMinute.toFixed(1)}/min`;
    const top = r.stack?.find((f) => !f.function.startsWith('runtime.')) ?? r.stack?.[0];
    const attributes: Attributes = {
      'goroscope.leak.suspect': r.suspect,
      'goroscope.leak.count': r.count,
      'goroscope.leak.growth_per_minute': r.growthPerMinute,
    };
    if (r.startFunction) attributes['goroscope.leak.start_function'] = r.startFunction;
    if (r.waitReason) attributes['goroscope.leak.wait_reason'] = r.waitReason;
    if (top) Object.assign(attributes, { 'code.function.name': top.function, 'code.file.path': top.file, 'code.line.number': top.line });
    s.logger.emit({
      eventName: 'goroscope.leak.suspect',
      timestamp: msToHrTime(r.observedAt),
      severityNumber: SeverityNumber.WARN,
      severityText: 'WARN',
      body: `goroutine leak suspect: ${what}`,
      attributes,
      context: trace.setSpanContext(ROOT_CONTEXT, spanContext(leakSpanIds(s.info, key, interval))),
    });
  }

  private fatal(node: string, r: FatalRecord): void {
    const s = this.signalsOf(node, r.pid);
    if (!s) return;
    s.fatalErrors.add(1, { 'error.type': r.errorKind });
    s.logger.emit({
      eventName: 'goroscope.fatal_error',
      timestamp: msToHrTime(r.at),
      severityNumber: SeverityNumber.FATAL,
      severityText: 'FATAL',
      body: r.text || `${r.errorKind}: ${r.message}`,
      attributes: { 'exception.type': r.errorKind, 'exception.message': r.message, 'goroscope.goroutine.id': r.goid },
      context: trace.setSpanContext(ROOT_CONTEXT, spanContext(fatalSpanIds(s.info, r.goid, r.at))),
    });
  }

  /** A process that exited: its last figures go out, then its providers stop. */
  private retire(node: string, pid: number, startTime: number): void {
    const key = processKey({ node, pid, startTime });
    const s = this.processes.get(key);
    if (!s) return;
    this.processes.delete(key);
    void s.flush().then(() => s.close());
  }

  async forceFlush(): Promise<void> {
    await Promise.allSettled([...this.processes.values()].map((s) => s.flush()));
  }

  async shutdown(): Promise<void> {
    await Promise.allSettled([...this.processes.values()].map((s) => s.close()));
    this.processes.clear();
  }
}
