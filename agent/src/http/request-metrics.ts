// RED metrics of the server requests the agent sees (Prometheus, on the agent's registry): rate, errors and
// duration per process, protocol, method, route and status class, and where requests spend their time (their serving
// goroutine's parked time by wait reason, its running and runnable time). Cardinality stays bounded: a route is the
// ServeMux pattern or the gRPC method (never the raw path), past maxRoutes per process new ones count under
// route="other"; methods outside HTTP's own are "_OTHER" (as OpenTelemetry's semantic conventions say); a status is
// its class (2xx) or the gRPC code.
//
// A request costs a lookup and a few additions: each series is counted here, and the Prometheus metrics read the
// counts when scraped (a prom-client call per request and series hashed its labels each time: most of the
// agent's CPU per request at saturation).
import { Counter, type Registry } from 'prom-client';
import { isServerErrorStatus } from '../../../collector/src/protocol/records.ts';
import { histogramMetric, type HistogramSeries } from '../metrics/histogram-metric.ts';
import type { HttpProcess, HttpTracer, ServerRequest } from './http-tracer.ts';

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);
const GRPC_CODES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
  'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL',
  'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

/** "2xx" for HTTP; the code's name for gRPC (17 of them). */
export function statusClass(r: { kind: 'http' | 'grpc'; status: number }): string {
  if (r.kind === 'grpc') return GRPC_CODES[r.status] ?? 'UNKNOWN';
  return r.status >= 100 && r.status < 600 ? `${Math.floor(r.status / 100)}xx` : 'other';
}

/** Server errors: 5xx, and the gRPC codes OpenTelemetry counts as server faults. */
export function isServerError(r: { kind: 'http' | 'grpc'; status: number }): boolean {
  return isServerErrorStatus(r.kind === 'grpc', r.status);
}

export interface RequestMetricsOptions {
  maxRoutes?: number;
}

const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Labels = Record<string, string>;

/** One label set of the request metrics (a process, protocol, method, route and status class), counted. */
interface Series {
  labels: Labels;
  /** Requests whose duration fell at or below DURATION_BUCKETS[i] and above the bound before (not cumulative). */
  buckets: Float64Array;
  count: number;
  durationSum: number;
  /** Parked seconds by wait reason, running and runnable seconds. */
  parked: Map<string, number>;
  /** Scheduler figures were seen (with the running and runnable seconds). */
  scheduled: boolean;
  running: number;
  runnable: number;
}

/** A traced process's routes seen (bounded) and series. */
interface ProcessSeries {
  pid: string;
  exe: string;
  routes: Set<string>;
  series: Map<string, Series>;
  /** The series of the last request: the next is most often of the same (no key string made for it). */
  last: Series | undefined;
}

export class RequestMetrics {
  private readonly procs = new Map<number, ProcessSeries>();
  private readonly maxRoutes: number;

  constructor(registry: Registry, tracer: HttpTracer | undefined, opts: RequestMetricsOptions = {}) {
    this.maxRoutes = opts.maxRoutes ?? 64;
    const labelNames = ['pid', 'exe', 'protocol', 'method', 'route', 'status_class'];
    const procs = this.procs;
    new Counter({
      name: 'goroscope_http_server_requests_total',
      help: 'Server requests (net/http HTTP/1 and HTTP/2, grpc-go calls) seen by the request probes, by route and status class. ' +
        'Under the overhead budget the probes are on for a share of the time (goroscope_probe_coverage_ratio): these count that sample; --full counts every request.',
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const p of procs.values()) for (const s of p.series.values()) this.inc(s.labels, s.count);
      },
    });
    registry.registerMetric(histogramMetric(
      'goroscope_http_server_request_duration_seconds',
      "Server requests' duration, handler entry to return (the probes' clock, in the traced process).",
      DURATION_BUCKETS,
      () => durationSeries(procs),
    ) as never);
    new Counter({
      name: 'goroscope_http_server_request_parked_seconds_total',
      help: "Time the goroutine serving a request spent parked inside it, by wait reason (the runtime's own strings).",
      labelNames: ['pid', 'exe', 'protocol', 'route', 'wait_reason'],
      registers: [registry],
      collect() {
        this.reset();
        for (const p of procs.values()) {
          for (const s of p.series.values()) {
            const { pid, exe, protocol, route } = s.labels;
            for (const [reason, seconds] of s.parked) this.inc({ pid, exe, protocol, route, wait_reason: reason }, seconds);
          }
        }
      },
    });
    new Counter({
      name: 'goroscope_http_server_request_scheduled_seconds_total',
      help: 'Time the goroutine serving a request spent running (on a thread, system calls included) and runnable (waiting in a run queue for a P) inside it.',
      labelNames: ['pid', 'exe', 'protocol', 'route', 'state'],
      registers: [registry],
      collect() {
        this.reset();
        for (const p of procs.values()) {
          for (const s of p.series.values()) {
            if (!s.scheduled) continue;
            const { pid, exe, protocol, route } = s.labels;
            this.inc({ pid, exe, protocol, route, state: 'running' }, s.running);
            this.inc({ pid, exe, protocol, route, state: 'runnable' }, s.runnable);
          }
        }
      },
    });
    new Counter({
      name: 'goroscope_http_records_lost_total',
      help: 'Request records the BPF side could not write (ring buffer full), or ends seen without a start (attached mid-request), by probe.',
      labelNames: ['probe'],
      registers: [registry],
      collect() {
        this.reset();
        if (!tracer) return;
        for (const [probe, n] of Object.entries(tracer.lost())) this.inc({ probe }, n);
      },
    });
  }

  private route(p: ProcessSeries, r: ServerRequest): string {
    if (p.routes.has(r.routeLabel)) return r.routeLabel;
    if (p.routes.size >= this.maxRoutes) return 'other';
    p.routes.add(r.routeLabel);
    return r.routeLabel;
  }

  onRequest(proc: HttpProcess, r: ServerRequest): void {
    let p = this.procs.get(proc.pid);
    if (!p) this.procs.set(proc.pid, (p = { pid: String(proc.pid), exe: proc.info.exe, routes: new Set(), series: new Map(), last: undefined }));
    const route = this.route(p, r);
    const protocol = r.kind === 'grpc' ? 'grpc' : r.protoMajor === 2 ? 'http/2' : r.protoMinor === 1 ? 'http/1.1' : `http/1.${r.protoMinor}`;
    const method = METHODS.has(r.method) ? r.method : '_OTHER';
    const status = statusClass(r);
    let s = p.last;
    const l = s?.labels;
    if (!s || l!.protocol !== protocol || l!.method !== method || l!.status_class !== status || l!.route !== route) {
      const key = `${protocol} ${method} ${status} ${route}`;
      s = p.series.get(key);
      if (!s) {
        const labels = { pid: p.pid, exe: p.exe, protocol, method, route, status_class: status };
        p.series.set(key, (s = { labels, buckets: new Float64Array(DURATION_BUCKETS.length), count: 0, durationSum: 0, parked: new Map(), scheduled: false, running: 0, runnable: 0 }));
      }
      p.last = s;
    }
    const seconds = r.durationNs / 1e9;
    s.count++;
    s.durationSum += seconds;
    for (let i = 0; i < DURATION_BUCKETS.length; i++) {
      if (seconds <= DURATION_BUCKETS[i]) {
        s.buckets[i]++;
        break;
      }
    }
    if (r.parked) for (const reason in r.parked.byReason) s.parked.set(reason, (s.parked.get(reason) ?? 0) + r.parked.byReason[reason] / 1e9);
    if (r.sched) {
      s.scheduled = true;
      s.running += r.sched.runningNs / 1e9;
      s.runnable += r.sched.runnableNs / 1e9;
    }
  }

  /** A process is gone: its series go with it (they would otherwise pile up as processes come and go). */
  forget(pid: number): void {
    this.procs.delete(pid);
  }
}

/** Each series' durations, cumulative at DURATION_BUCKETS. */
function* durationSeries(procs: Map<number, ProcessSeries>): IterableIterator<HistogramSeries> {
  for (const p of procs.values()) {
    for (const s of p.series.values()) {
      const cumulative = new Float64Array(DURATION_BUCKETS.length);
      let acc = 0;
      for (let i = 0; i < DURATION_BUCKETS.length; i++) cumulative[i] = acc += s.buckets[i];
      yield { labels: s.labels, cumulative, count: s.count, sum: s.durationSum };
    }
  }
}
