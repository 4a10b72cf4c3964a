// The request records the agent ships (collector/src/protocol/records.ts RequestRecord): what the probes saw of
// each request, with its goroutine's parks. Requests are many (every one of a busy server), so each process has
// a budget of records per second (a token bucket); past it requests are counted into the weight of the next
// record kept, and server errors and slow requests draw on a budget of their own so that a flood of fast 200s
// never hides them. RED metrics stay exact: they come from every request (request-metrics.ts).
import { MAX_REQUEST_PARKS, type RequestRecord } from '../../../collector/src/protocol/records.ts';
import { monoToWallMs } from '../tracer/clock.ts';
import type { ServerRequest } from './http-tracer.ts';
import { isServerError } from './request-metrics.ts';

export interface RequestSamplingOptions {
  /** Records per second per process (bucket size the same). */
  perSecond?: number;
  /** Records per second per process for server errors and requests over slowMs. */
  notablePerSecond?: number;
  slowMs?: number;
}

class Bucket {
  private tokens: number;
  private at = 0;
  constructor(private readonly rate: number) {
    this.tokens = rate;
  }
  take(nowMs: number): boolean {
    this.tokens = Math.min(this.rate, this.tokens + ((nowMs - this.at) / 1000) * this.rate);
    this.at = nowMs;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

export function requestRecord(r: ServerRequest, weight = 1): RequestRecord {
  const parks = r.parked
    ? [...r.parked.parks]
        .sort((a, b) => b.durationNs - a.durationNs)
        .slice(0, MAX_REQUEST_PARKS)
        .sort((a, b) => a.startNs - b.startNs)
        .map((p) => ({ waitReason: p.reason || null, from: monoToWallMs(p.startNs), durationNs: p.durationNs, resumedUnseen: p.resumedUnseen, wakerGoid: p.wakerGoid }))
    : [];
  const grpc = r.kind === 'grpc';
  return {
    kind: 'request',
    pid: r.pid,
    goid: r.goid,
    protocol: grpc ? 'grpc' : r.protoMajor === 2 ? 'http/2' : r.protoMinor === 0 ? 'http/1.0' : 'http/1.1',
    method: r.method.slice(0, 16),
    route: grpc ? r.path : r.route,
    path: r.path,
    status: Math.min(r.status, 999),
    startedAt: monoToWallMs(r.startNs),
    durationNs: r.durationNs,
    requestBytes: grpc ? null : r.requestBytes,
    responseBytes: grpc ? null : Math.max(0, r.responseBytes),
    parkedNs: r.parked ? r.parked.totalNs : null,
    parkedByReason: r.parked ? Object.fromEntries(Object.entries(r.parked.byReason).slice(0, 64)) : {},
    parks,
    traceParent: r.traceParent,
    weight,
    sched: r.sched,
  };
}

export class RequestSampler {
  private readonly procs = new Map<number, { plain: Bucket; notable: Bucket; skipped: number }>();
  private readonly perSecond: number;
  private readonly notablePerSecond: number;
  private readonly slowNs: number;
  /** Requests not shipped as records of their own (counted in a kept record's weight). */
  skipped = 0;

  constructor(opts: RequestSamplingOptions = {}) {
    this.perSecond = opts.perSecond ?? 100;
    this.notablePerSecond = opts.notablePerSecond ?? 100;
    this.slowNs = (opts.slowMs ?? 1000) * 1e6;
  }

  /** The record to ship for this request, or undefined when the process's budget is spent. */
  take(r: ServerRequest, nowMs = Date.now()): RequestRecord | undefined {
    let p = this.procs.get(r.pid);
    if (!p) this.procs.set(r.pid, (p = { plain: new Bucket(this.perSecond), notable: new Bucket(this.notablePerSecond), skipped: 0 }));
    const notable = isServerError(r) || r.durationNs >= this.slowNs;
    if (!(notable ? p.notable : p.plain).take(nowMs)) {
      p.skipped++;
      this.skipped++;
      return undefined;
    }
    const weight = 1 + p.skipped;
    p.skipped = 0;
    return requestRecord(r, weight);
  }

  forget(pid: number): void {
    this.procs.delete(pid);
  }
}
