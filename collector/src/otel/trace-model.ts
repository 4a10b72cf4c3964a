// goroscope's trace model: records become spans that read well in Jaeger and Tempo.
//
// - One trace per unit of work: a goroutine started by an established one (main, an accept loop, a worker)
//   roots a trace; the goroutines it starts while young join it as its children (the agent decides, at
//   creation: agent/src/model/goroutine-table.ts). A root links to the span of the goroutine that created it.
// - Traces stay bounded: a goroutine's first span runs from its start to its exit or to the end of its first
//   report interval; each later interval of a long-lived goroutine is a span in a trace of its own, linked to the
//   previous one. So a leaked or long-blocked goroutine is exported while alive, once per interval.
// - Parks at least the agent's threshold long are child spans of the goroutine's span they ended in, with the
//   goroutine that readied them as a link; a park still going on at an interval's end is a span in progress.
// - A TCP connection is a CLIENT (connect) or SERVER (accept) span, child of the goroutine that used it (for an
//   accepted one, the goroutine its acceptor started for it, with a link to the acceptor), one span per interval
//   while it stays open.
// - Leak suspects, long stop-the-world pauses and fatal errors are spans of their own (error status for leaks and
//   fatal errors, so `error=true` finds them), a leak suspect once per report interval while it holds.
// Every id is a hash of facts the records carry (ids.ts): re-sent records make the same spans, which are dropped.
// The same model runs in the collector (from committed records) and in the agent (`--otlp-endpoint`).
import { SpanKind, SpanStatusCode, type Attributes, type Link } from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { isServerErrorStatus, type ConnectionRecord, type FatalRecord, type GoroutineRecord, type LeakRecord, type PauseRecord, type RequestRecord, type SpanPlace } from '../protocol/records.ts';
import {
  connectionSpanId, connectionTraceId, fatalSpanIds, goroutineSpanIds, leakSpanIds, parkSpanId, pauseSpanIds, requestParkSpanId, requestSpanIds, sampleFraction,
  type ConnectionKey, type ProcessKey, type SpanIds,
} from './ids.ts';
import { finishedSpan, link, msToHrTime } from './spans.ts';

export interface TraceModelOptions {
  /** Export runtime-internal goroutines. Default false. */
  includeSystem?: boolean;
  /** Share of traces exported (whole traces, by trace id), on top of what the agent selected. Default 1. */
  sampleRatio?: number;
  /** Stop-the-world pauses longer than this are spans. Default 10 ms. */
  longPauseMs?: number;
  /** A leak suspect is a span once per this interval while it holds. Default 60 s. */
  leakIntervalMs?: number;
}

export const defaultTraceModelOptions: Required<TraceModelOptions> = { includeSystem: false, sampleRatio: 1, longPauseMs: 10, leakIntervalMs: 60_000 };

/** A leak suspect group of a process, as the agent keys it: kind, creation site, start function. */
export function leakKey(r: LeakRecord): string {
  const site = r.createdBy ? `${r.createdBy.function} ${r.createdBy.file}:${r.createdBy.line}` : '';
  return `${r.suspect}|${site}|${r.startFunction ?? ''}`;
}

type Spannable = GoroutineRecord | ConnectionRecord | LeakRecord | PauseRecord | FatalRecord | RequestRecord;

export class TraceModel {
  readonly o: Required<TraceModelOptions>;

  constructor(opts: TraceModelOptions = {}) {
    this.o = { ...defaultTraceModelOptions, ...Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) };
  }

  /** The spans a record makes (none for most: only ends of spans, parks, findings). */
  spans(r: Spannable, p: ProcessKey, resource: Resource): ReadableSpan[] {
    const out =
      r.kind === 'goroutine' ? this.goroutineSpans(r, p, resource)
        : r.kind === 'connection' ? this.connectionSpans(r, p, resource)
          : r.kind === 'leak' ? [this.leakSpan(r, p, resource)]
            : r.kind === 'pause' ? (r.durationNs > this.o.longPauseMs * 1e6 ? [pauseSpan(r, p, resource)] : [])
              : r.kind === 'request' ? requestSpans(r, p, resource)
                : [fatalSpan(r, p, resource)];
    return this.o.sampleRatio >= 1 ? out : out.filter((s) => sampleFraction(s.spanContext().traceId) < this.o.sampleRatio);
  }

  /** Whether a record can make spans at all: the cheap test before the process is looked up. */
  static mayMakeSpans(r: { kind: string }): r is Spannable {
    return r.kind === 'goroutine' || r.kind === 'connection' || r.kind === 'leak' || r.kind === 'pause' || r.kind === 'fatal' || r.kind === 'request';
  }

  goroutineSpans(g: GoroutineRecord, p: ProcessKey, resource: Resource): ReadableSpan[] {
    const t = g.trace;
    if (!t || (g.system && !this.o.includeSystem)) return [];
    const out: ReadableSpan[] = [];
    const place: SpanPlace = { goid: g.goid, root: t.root, segment: t.segment };
    const ids = goroutineSpanIds(p, place);
    const end = g.exitedAt ?? t.to;
    if (end !== undefined && end !== null) out.push(goroutineSpan(g, p, ids, end, resource));
    for (const lp of g.longParks ?? []) {
      const seg = goroutineSpanIds(p, { goid: g.goid, root: t.root, segment: lp.segment });
      const links: Link[] = lp.waker ? [link(goroutineSpanIds(p, lp.waker), 'woken_by')] : [];
      out.push(parkSpan(g, seg, parkSpanId(p, g.goid, lp.from, lp.segment), lp.waitReason, lp.from, Math.max(lp.from, lp.segmentFrom), lp.to, false, lp.waker?.goid ?? null, links, resource));
    }
    if (t.to !== undefined && t.parked) {
      out.push(parkSpan(g, ids, parkSpanId(p, g.goid, t.parked.from, t.segment), t.parked.waitReason, t.parked.from, Math.max(t.parked.from, t.from), t.to, true, null, [], resource));
    }
    return out;
  }

  connectionSpans(c: ConnectionRecord, p: ProcessKey, resource: Resource): ReadableSpan[] {
    const t = c.trace;
    const end = c.closedAt ?? t?.to;
    if (!t || end === undefined || end === null) return [];
    const key: ConnectionKey = { local: c.localAddress, localPort: c.localPort, peer: c.peerAddress, peerPort: c.peerPort, start: c.openedAt ?? 0 };
    const first = (): SpanIds => ({
      traceId: t.parent ? goroutineSpanIds(p, t.parent).traceId : connectionTraceId(p, key, 0),
      spanId: connectionSpanId(p, key, 0),
    });
    let ids: SpanIds;
    let parentSpanId: string | undefined;
    const links: Link[] = t.links.map((l) => link(goroutineSpanIds(p, l), 'accepted_by'));
    if (t.segment === 0) {
      ids = first();
      parentSpanId = t.parent ? goroutineSpanIds(p, t.parent).spanId : undefined;
    } else {
      ids = { traceId: connectionTraceId(p, key, t.segment), spanId: connectionSpanId(p, key, t.segment) };
      const prev = t.segment === 1 ? first() : { traceId: connectionTraceId(p, key, t.segment - 1), spanId: connectionSpanId(p, key, t.segment - 1) };
      links.push(link(prev, 'previous'));
      if (t.parent) links.push(link(goroutineSpanIds(p, t.parent), 'used_by'));
    }
    const [server, client] = c.role === 'client'
      ? [[c.peerAddress, c.peerPort], [c.localAddress, c.localPort]] as const
      : [[c.localAddress, c.localPort], [c.peerAddress, c.peerPort]] as const;
    const attributes: Attributes = {
      'network.transport': 'tcp',
      'network.type': c.family === 'inet6' ? 'ipv6' : 'ipv4',
      'network.peer.address': c.peerAddress,
      'network.peer.port': c.peerPort,
      'network.local.address': c.localAddress,
      'network.local.port': c.localPort,
      'server.address': server[0],
      'server.port': server[1],
      'client.address': client[0],
      'client.port': client[1],
      'goroscope.tcp.state': c.state,
      'goroscope.tcp.bytes_sent': c.bytesSent,
      'goroscope.tcp.bytes_received': c.bytesReceived,
      'goroscope.tcp.retransmits': c.retransmits,
      'goroscope.tcp.resets': c.resets,
      'goroscope.tcp.preexisting': c.preexisting,
    };
    if (c.srttUs !== null) attributes['goroscope.tcp.srtt_us'] = c.srttUs;
    const user = c.role === 'server' ? c.servedBy ?? c.goid : c.goid;
    if (user !== null && user !== undefined) attributes['goroscope.goroutine.id'] = user;
    if (c.role === 'server' && c.goid !== null) attributes['goroscope.tcp.accepted_by'] = c.goid;
    if (t.segment > 0) attributes['goroscope.tcp.segment'] = t.segment;
    if (c.closedAt === null) attributes['goroscope.tcp.open'] = true;
    if (c.error !== null) attributes['error.type'] = c.error;
    return [finishedSpan({
      // Low-cardinality names, as span naming conventions ask; the peer is in the attributes.
      name: c.role === 'client' ? 'tcp connect' : 'tcp accept',
      kind: c.role === 'client' ? SpanKind.CLIENT : SpanKind.SERVER,
      ids,
      parentSpanId,
      start: t.from,
      end,
      attributes,
      links,
      status: c.error !== null ? { code: SpanStatusCode.ERROR, message: c.error } : undefined,
      resource,
    })];
  }

  /**
   * A leak suspect as a span per report interval while the agent reports it: from when the group was first seen
   * (or the interval's start) to the report, with where its goroutines are parked: the stack as a goroutine dump
   * prints it (code.stacktrace) and its top frame outside the runtime as code.*.
   */
  leakSpan(r: LeakRecord, p: ProcessKey, resource: Resource): ReadableSpan {
    const site = r.createdBy ? `${r.createdBy.function} ${r.createdBy.file}:${r.createdBy.line}` : '';
    const interval = Math.floor(r.observedAt / this.o.leakIntervalMs);
    const attributes: Attributes = {
      'goroscope.leak.suspect': r.suspect,
      'goroscope.leak.count': r.count,
      'goroscope.leak.growth_per_minute': r.growthPerMinute,
      'goroscope.leak.oldest_age_ms': r.oldestAgeMs,
      'goroscope.leak.since': new Date(r.since).toISOString(),
    };
    if (site) attributes['goroscope.leak.created_by'] = site;
    if (r.startFunction) attributes['goroscope.leak.start_function'] = r.startFunction;
    if (r.waitReason) attributes['goroscope.leak.wait_reason'] = r.waitReason;
    const top = r.stack?.find((f) => !f.function.startsWith('runtime.')) ?? r.stack?.[0];
    if (r.stack?.length && top) {
      attributes['code.stacktrace'] = r.stack.map((f) => `${f.function}\n\t${f.file}:${f.line}`).join('\n');
      attributes['code.function.name'] = top.function;
      attributes['code.file.path'] = top.file;
      attributes['code.line.number'] = top.line;
    }
    const links: Link[] = r.goroutine ? [link(goroutineSpanIds(p, r.goroutine), 'leaked_goroutine')] : [];
    const what = r.suspect === 'growing-live'
      ? `${Math.round(r.count)} goroutines${r.waitReason ? ` parked in ${r.waitReason}` : ''}, growing ${r.growthPerMinute.toFixed(1)}/min`
      : `${r.count.toFixed(1)} creations/min, growing ${r.growthPerMinute.toFixed(1)}/min`;
    return finishedSpan({
      name: `goroutine leak: ${r.startFunction ?? r.createdBy?.function ?? 'unknown'}`,
      kind: SpanKind.INTERNAL,
      ids: leakSpanIds(p, leakKey(r), interval),
      start: Math.min(Math.max(r.since, interval * this.o.leakIntervalMs), r.observedAt),
      end: r.observedAt,
      attributes,
      links,
      status: { code: SpanStatusCode.ERROR, message: what },
      resource,
    });
  }
}

function goroutineSpan(g: GoroutineRecord, p: ProcessKey, ids: SpanIds, end: number, resource: Resource): ReadableSpan {
  const t = g.trace!;
  const attributes: Attributes = {
    'goroscope.goroutine.id': g.goid,
    'goroscope.goroutine.root_id': t.root,
    'goroscope.goroutine.state': g.state,
    'goroscope.goroutine.park_count': g.parkCount,
    'goroscope.goroutine.ready_count': g.readyCount,
    'goroscope.goroutine.blocked_ns': g.blockedNs,
  };
  if (g.parentGoid !== null) attributes['goroscope.goroutine.parent_id'] = g.parentGoid;
  // The scheduler: how long it waited runnable, how often it was preempted, its system calls, threads and Ps.
  if (g.sched) {
    const s = g.sched;
    attributes['goroscope.goroutine.sched.runs'] = s.runs;
    attributes['goroscope.goroutine.sched.runnable_ns'] = s.runnableNs;
    attributes['goroscope.goroutine.sched.max_runnable_ns'] = s.maxRunnableNs;
    attributes['goroscope.goroutine.sched.yields'] = s.yields;
    attributes['goroscope.goroutine.sched.preemptions'] = s.preemptions;
    attributes['goroscope.goroutine.sched.syscalls'] = s.syscalls;
    attributes['goroscope.goroutine.sched.syscall_ns'] = s.syscallNs;
    attributes['goroscope.goroutine.sched.thread_switches'] = s.threadSwitches;
    attributes['goroscope.goroutine.sched.p_switches'] = s.pSwitches;
    if (s.tid !== null) attributes['thread.id'] = s.tid;
    if (s.p !== null) attributes['goroscope.goroutine.sched.p'] = s.p;
  }
  if (g.waitReason) attributes['goroscope.goroutine.wait_reason'] = g.waitReason;
  if (g.preexisting) attributes['goroscope.goroutine.preexisting'] = true;
  if (g.system) attributes['goroscope.goroutine.system'] = true;
  if (g.createdAt === null) attributes['goroscope.goroutine.start_unknown'] = true;
  if (t.segment > 0) attributes['goroscope.goroutine.segment'] = t.segment;
  if (g.exitedAt === null) attributes['goroscope.goroutine.alive'] = true;
  // The park and ready probes may have been on for part of the time only (the overhead budget): say so.
  if (g.parkCoverage !== undefined) {
    attributes['goroscope.goroutine.parks.coverage'] = g.parkCoverage;
    if (g.parkCoverage < 1) attributes['goroscope.goroutine.parks.sampled'] = true;
  }
  // code.*: the function the go statement started (not a compiler wrapper) and where it is defined.
  if (g.startFunction) attributes['code.function.name'] = g.startFunction;
  if (g.startLocation) {
    attributes['code.file.path'] = g.startLocation.file;
    attributes['code.line.number'] = g.startLocation.line;
  }
  // Where the go statement is: the creating goroutine's code.
  if (g.createdBy) {
    attributes['goroscope.goroutine.created_by.function'] = g.createdBy.function;
    attributes['goroscope.goroutine.created_by.file'] = g.createdBy.file;
    attributes['goroscope.goroutine.created_by.line'] = g.createdBy.line;
  }
  // Blocked time per wait reason, so far: one event each at the span's end.
  const events: TimedEvent[] = Object.entries(g.blockedByReason).map(([reason, ns]) => ({
    name: 'goroscope.goroutine.blocked',
    time: msToHrTime(end),
    attributes: { 'goroscope.goroutine.wait_reason': reason, 'goroscope.goroutine.blocked_ns': ns },
  }));
  const links: Link[] = [];
  let parentSpanId: string | undefined;
  if (t.segment === 0 && t.root !== g.goid && g.parentGoid) {
    parentSpanId = goroutineSpanIds(p, { goid: g.parentGoid, root: t.root, segment: 0 }).spanId;
  } else if (t.segment === 0 && t.creator) {
    links.push(link(goroutineSpanIds(p, t.creator), 'created_by'));
  } else if (t.segment > 0) {
    links.push(link(goroutineSpanIds(p, { goid: g.goid, root: t.root, segment: t.segment - 1 }), 'previous'));
  }
  return finishedSpan({
    name: g.startFunction ?? 'goroutine',
    kind: SpanKind.INTERNAL,
    ids,
    parentSpanId,
    start: t.from,
    end,
    attributes,
    events,
    links,
    resource,
  });
}

function parkSpan(g: GoroutineRecord, parent: SpanIds, spanId: string, reason: string | null, from: number, start: number, end: number,
  inProgress: boolean, waker: number | null, links: Link[], resource: Resource): ReadableSpan {
  const attributes: Attributes = {
    'goroscope.goroutine.id': g.goid,
    'goroscope.goroutine.wait_reason': reason ?? 'unknown',
    'goroscope.park.duration_ns': Math.round((end - from) * 1e6),
  };
  if (start > from) attributes['goroscope.park.started_at'] = new Date(from).toISOString();
  if (inProgress) attributes['goroscope.park.in_progress'] = true;
  if (waker !== null) attributes['goroscope.park.waker_id'] = waker;
  return finishedSpan({
    name: `park ${reason ?? 'unknown'}`,
    kind: SpanKind.INTERNAL,
    ids: { traceId: parent.traceId, spanId },
    parentSpanId: parent.spanId,
    start,
    end,
    attributes,
    links,
    resource,
  });
}

/** A long stop-the-world pause, a span over the pause in a trace of its own. */
function pauseSpan(r: PauseRecord, p: ProcessKey, resource: Resource): ReadableSpan {
  const attributes: Attributes = {
    'goroscope.pause.reason': r.reason,
    'goroscope.pause.gc': r.gc,
    'goroscope.pause.duration_ns': r.durationNs,
    'goroscope.goroutine.id': r.goid,
  };
  if (r.cycle !== null) attributes['goroscope.gc.cycle'] = r.cycle;
  return finishedSpan({
    name: r.gc ? 'gc stop-the-world' : 'stop-the-world',
    kind: SpanKind.INTERNAL,
    ids: pauseSpanIds(p, r.startedAt),
    start: r.startedAt,
    end: r.startedAt + r.durationNs / 1e6,
    attributes,
    resource,
  });
}

/**
 * A server request: a SERVER span over the handler (in the caller's trace when it sent a traceparent), named as
 * OpenTelemetry's HTTP and RPC conventions say ("GET /items/{id}", "grpc.health.v1.Health/Check"), with its serving
 * goroutine's parks inside it as child spans ("park sync.Mutex.Lock").
 */
function requestSpans(r: RequestRecord, p: ProcessKey, resource: Resource): ReadableSpan[] {
  const ids = requestSpanIds(p, r.goid, r.startedAt, r.traceParent?.traceId);
  const grpc = r.protocol === 'grpc';
  const end = r.startedAt + r.durationNs / 1e6;
  const attributes: Attributes = { 'goroscope.goroutine.id': r.goid };
  let status: { code: SpanStatusCode; message?: string } | undefined;
  let name: string;
  if (grpc) {
    const [service, method] = r.path.replace(/^\//, '').split('/');
    name = r.path.replace(/^\//, '');
    Object.assign(attributes, { 'rpc.system': 'grpc', 'rpc.service': service ?? '', 'rpc.method': method ?? '', 'rpc.grpc.status_code': r.status });
    // Server spans: the codes OpenTelemetry's gRPC conventions count as the server's fault.
    if (isServerErrorStatus(true, r.status)) status = { code: SpanStatusCode.ERROR };
  } else {
    name = r.route || r.method;
    Object.assign(attributes, {
      'http.request.method': r.method,
      'http.response.status_code': r.status,
      'url.path': r.path,
      'network.protocol.name': 'http',
      'network.protocol.version': r.protocol.replace('http/', ''),
    });
    if (r.route) attributes['http.route'] = r.route.replace(/^[A-Z]+ /, '');
    if (r.requestBytes !== null && r.requestBytes >= 0) attributes['http.request.body.size'] = r.requestBytes;
    if (r.responseBytes !== null) attributes['http.response.body.size'] = r.responseBytes;
    if (r.status >= 500) status = { code: SpanStatusCode.ERROR };
    if (r.status >= 500) attributes['error.type'] = String(r.status);
  }
  if (r.parkedNs !== null) attributes['goroscope.request.parked_ns'] = r.parkedNs;
  if (r.sched) {
    attributes['goroscope.request.running_ns'] = r.sched.runningNs;
    attributes['goroscope.request.runnable_ns'] = r.sched.runnableNs;
    attributes['goroscope.request.syscall_ns'] = r.sched.syscallNs;
    attributes['goroscope.request.runs'] = r.sched.runs;
    attributes['goroscope.request.preemptions'] = r.sched.preemptions;
  }
  if (r.weight > 1) attributes['goroscope.request.weight'] = r.weight;
  const events: TimedEvent[] = Object.entries(r.parkedByReason).map(([reason, ns]) => ({
    name: 'goroscope.request.parked',
    time: msToHrTime(end),
    attributes: { 'goroscope.goroutine.wait_reason': reason, 'goroscope.request.parked_ns': ns },
  }));
  const span = finishedSpan({
    name,
    kind: SpanKind.SERVER,
    ids,
    parentSpanId: r.traceParent?.spanId,
    start: r.startedAt,
    end,
    attributes,
    events,
    status,
    resource,
  });
  const parks = r.parks.map((k) => {
    const pa: Attributes = {
      'goroscope.goroutine.id': r.goid,
      'goroscope.goroutine.wait_reason': k.waitReason ?? 'unknown',
      'goroscope.park.duration_ns': k.durationNs,
    };
    if (k.wakerGoid) pa['goroscope.park.waker_id'] = k.wakerGoid;
    if (k.resumedUnseen) pa['goroscope.park.resumed_unseen'] = true;
    return finishedSpan({
      name: `park ${k.waitReason ?? 'unknown'}`,
      kind: SpanKind.INTERNAL,
      ids: { traceId: ids.traceId, spanId: requestParkSpanId(p, r.goid, r.startedAt, k.from) },
      parentSpanId: ids.spanId,
      start: k.from,
      end: k.from + k.durationNs / 1e6,
      attributes: pa,
      resource,
    });
  });
  return [span, ...parks];
}

/** A fatal error or fatal panic: a zero-length span with error status and an `exception` event. */
function fatalSpan(f: FatalRecord, p: ProcessKey, resource: Resource): ReadableSpan {
  return finishedSpan({
    name: f.errorKind === 'panic' ? 'go panic' : 'go fatal error',
    kind: SpanKind.INTERNAL,
    ids: fatalSpanIds(p, f.goid, f.at),
    start: f.at,
    end: f.at,
    attributes: { 'goroscope.goroutine.id': f.goid, 'error.type': f.errorKind, 'exception.type': f.errorKind, 'exception.message': f.message },
    events: [{
      name: 'exception',
      time: msToHrTime(f.at),
      attributes: { 'exception.type': f.errorKind, 'exception.message': f.message, 'goroscope.runtime_text': f.text },
    }],
    status: { code: SpanStatusCode.ERROR, message: f.text || f.message },
    resource,
  });
}
