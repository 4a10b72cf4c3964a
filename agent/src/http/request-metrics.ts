// RED metrics of the server requests the agent sees (Prometheus, on the agent's registry): rate, errors and
// duration per process, protocol, method, route and status class, and where requests spend their time (their serving
// goroutine's parked time by wait reason, its running and runnable time). Cardinality stays bounded: a route is the
// ServeMux pattern or the gRPC method (never the raw path), past maxRoutes per process new ones count under
// route="other"; methods outside HTTP's own are "_OTHER" (as OpenTelemetry's semantic conventions say); a status is
// its class (2xx) or the gRPC code.
import { Counter, Histogram, type Registry } from 'prom-client';
import { isServerErrorStatus } from '../../../collector/src/protocol/records.ts';
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

export class RequestMetrics {
  private readonly routes = new Map<number, Set<string>>();
  private readonly maxRoutes: number;

  private readonly requests: Counter;
  private readonly duration: Histogram;
  private readonly parked: Counter;
  private readonly scheduled: Counter;

  constructor(registry: Registry, tracer: HttpTracer | undefined, opts: RequestMetricsOptions = {}) {
    this.maxRoutes = opts.maxRoutes ?? 64;
    const labelNames = ['pid', 'exe', 'protocol', 'method', 'route', 'status_class'];
    this.requests = new Counter({
      name: 'goroscope_http_server_requests_total',
      help: 'Server requests (net/http HTTP/1 and HTTP/2, grpc-go calls) seen by the request probes, by route and status class. ' +
        'Under the overhead budget the probes are on for a share of the time (goroscope_probe_coverage_ratio): these count that sample; --full counts every request.',
      labelNames,
      registers: [registry],
    });
    this.duration = new Histogram({
      name: 'goroscope_http_server_request_duration_seconds',
      help: "Server requests' duration, handler entry to return (the probes' clock, in the traced process).",
      labelNames,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.parked = new Counter({
      name: 'goroscope_http_server_request_parked_seconds_total',
      help: "Time the goroutine serving a request spent parked inside it, by wait reason (the runtime's own strings).",
      labelNames: ['pid', 'exe', 'protocol', 'route', 'wait_reason'],
      registers: [registry],
    });
    this.scheduled = new Counter({
      name: 'goroscope_http_server_request_scheduled_seconds_total',
      help: 'Time the goroutine serving a request spent running (on a thread, system calls included) and runnable (waiting in a run queue for a P) inside it.',
      labelNames: ['pid', 'exe', 'protocol', 'route', 'state'],
      registers: [registry],
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

  private route(pid: number, r: ServerRequest): string {
    let seen = this.routes.get(pid);
    if (!seen) this.routes.set(pid, (seen = new Set()));
    if (seen.has(r.routeLabel)) return r.routeLabel;
    if (seen.size >= this.maxRoutes) return 'other';
    seen.add(r.routeLabel);
    return r.routeLabel;
  }

  onRequest(p: HttpProcess, r: ServerRequest): void {
    const route = this.route(p.pid, r);
    const labels = {
      pid: String(p.pid),
      exe: p.info.exe,
      protocol: r.kind === 'grpc' ? 'grpc' : `http/${r.protoMajor === 2 ? '2' : `1.${r.protoMinor}`}`,
      method: METHODS.has(r.method) ? r.method : '_OTHER',
      route,
      status_class: statusClass(r),
    };
    this.requests.inc(labels);
    this.duration.observe(labels, r.durationNs / 1e9);
    if (r.parked) {
      for (const [reason, ns] of Object.entries(r.parked.byReason)) {
        this.parked.inc({ pid: labels.pid, exe: labels.exe, protocol: labels.protocol, route, wait_reason: reason }, ns / 1e9);
      }
    }
    if (r.sched) {
      const base = { pid: labels.pid, exe: labels.exe, protocol: labels.protocol, route };
      this.scheduled.inc({ ...base, state: 'running' }, r.sched.runningNs / 1e9);
      this.scheduled.inc({ ...base, state: 'runnable' }, r.sched.runnableNs / 1e9);
    }
  }

  /** A process is gone: its series go with it (they would otherwise pile up as processes come and go). */
  async forget(pid: number): Promise<void> {
    this.routes.delete(pid);
    const want = String(pid);
    for (const m of [this.requests, this.duration, this.parked, this.scheduled] as Array<Counter | Histogram>) {
      const { values } = await m.get();
      const gone = new Map<string, Record<string, string | number>>();
      for (const v of values) {
        if (v.labels.pid !== want) continue;
        const labels: Record<string, string | number> = {};
        for (const [k, x] of Object.entries(v.labels)) if (k !== 'le' && x !== undefined) labels[k] = x;
        gone.set(JSON.stringify(labels), labels);
      }
      for (const labels of gone.values()) m.remove(labels);
    }
  }
}
