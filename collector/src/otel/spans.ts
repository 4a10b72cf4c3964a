// Builds finished OpenTelemetry spans straight from stored records. The records
// already hold wall-clock start and end times, so no live Span objects are needed.
import { basename } from 'node:path';
import { SpanKind, SpanStatusCode, TraceFlags, type Attributes, type HrTime, type SpanContext } from '@opentelemetry/api';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import type { ConnectionRecord, FatalRecord, GoroutineRecord, LeakRecord, PauseRecord } from '../protocol/records.ts';
import { connectionSpanId, fatalSpanId, goroutineSpanId, leakSpanId, pauseSpanId, processTraceId } from './ids.ts';

/** What the store knows about the process a record belongs to. */
export interface ProcessInfo {
  node: string;
  pid: number;
  startTime: number;
  exe: string;
  goVersion: string | null;
  containerId: string | null;
  podName: string | null;
  podNamespace: string | null;
  podUid: string | null;
  podContainer: string | null;
  seenAt: number;
}

export const SCOPE = { name: 'goroscope', version: '0.1.0' };

export function msToHrTime(ms: number): HrTime {
  // Split before scaling: ms * 1e6 exceeds 2^53 and would lose the nanoseconds.
  let secs = Math.floor(ms / 1000);
  let nanos = Math.round((ms - secs * 1000) * 1e6);
  if (nanos >= 1e9) { secs += 1; nanos -= 1e9; }
  return [secs, nanos];
}

export function processResource(p: ProcessInfo): Resource {
  const attrs: Attributes = {
    'service.name': p.podContainer ?? (basename(p.exe) || 'unknown_service'),
    'process.pid': p.pid,
    'process.executable.path': p.exe,
    'process.runtime.name': 'go',
    'k8s.node.name': p.node,
    'host.name': p.node,
  };
  if (p.goVersion) attrs['process.runtime.version'] = p.goVersion;
  if (p.containerId) attrs['container.id'] = p.containerId;
  if (p.podName) attrs['k8s.pod.name'] = p.podName;
  if (p.podNamespace) attrs['k8s.namespace.name'] = p.podNamespace;
  if (p.podUid) attrs['k8s.pod.uid'] = p.podUid;
  if (p.podContainer) attrs['k8s.container.name'] = p.podContainer;
  return resourceFromAttributes(attrs);
}

function finishedSpan(s: {
  name: string; kind: SpanKind; context: SpanContext; parent?: SpanContext; start: number; end: number;
  attributes: Attributes; events?: TimedEvent[]; status?: { code: SpanStatusCode; message?: string }; resource: Resource;
}): ReadableSpan {
  const startTime = msToHrTime(s.start);
  const endTime = msToHrTime(Math.max(s.end, s.start));
  const durNs = Math.round((Math.max(s.end, s.start) - s.start) * 1e6);
  return {
    name: s.name,
    kind: s.kind,
    spanContext: () => s.context,
    parentSpanContext: s.parent,
    startTime,
    endTime,
    duration: [Math.floor(durNs / 1e9), durNs % 1e9],
    status: s.status ?? { code: SpanStatusCode.UNSET },
    attributes: s.attributes,
    links: [],
    events: s.events ?? [],
    ended: true,
    resource: s.resource,
    instrumentationScope: SCOPE,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

const ctx = (traceId: string, spanId: string): SpanContext => ({ traceId, spanId, traceFlags: TraceFlags.SAMPLED, isRemote: false });

/** A goroutine as a span from creation to exit, child of its creator's span. */
export function goroutineSpan(g: GoroutineRecord, p: ProcessInfo, resource: Resource): ReadableSpan {
  const traceId = processTraceId(p.node, p.pid, p.startTime);
  const spanId = goroutineSpanId(p.node, p.pid, p.startTime, g.goid);
  const start = g.createdAt ?? p.seenAt; // a pre-existing goroutine lived at least since the agent saw its process
  const end = g.exitedAt ?? g.observedAt;
  const attributes: Attributes = {
    'goroscope.goid': g.goid,
    'goroscope.state': g.state,
    'goroscope.park_count': g.parkCount,
    'goroscope.ready_count': g.readyCount,
    'goroscope.blocked_ns': g.blockedNs,
    'goroscope.preexisting': g.preexisting,
    'goroscope.system': g.system,
  };
  if (g.parentGoid !== null) attributes['goroscope.parent_goid'] = g.parentGoid;
  if (g.createdAt === null) attributes['goroscope.start_unknown'] = true;
  if (g.startFunction) attributes['code.function.name'] = g.startFunction;
  if (g.createdBy) {
    attributes['goroscope.created_by.function'] = g.createdBy.function;
    attributes['code.file.path'] = g.createdBy.file;
    attributes['code.line.number'] = g.createdBy.line;
  }
  // The agent keeps blocked time per wait reason, not each park; report the totals at the end,
  // and the last park as its own event.
  const events: TimedEvent[] = Object.entries(g.blockedByReason).map(([reason, ns]) => ({
    name: 'goroutine.blocked',
    time: msToHrTime(end),
    attributes: { 'goroscope.wait_reason': reason, 'goroscope.blocked_ns': ns, 'goroscope.aggregate': true },
  }));
  if (g.lastParkAt !== null) {
    events.push({
      name: 'goroutine.park',
      time: msToHrTime(Math.min(Math.max(g.lastParkAt, start), end)),
      attributes: g.waitReason ? { 'goroscope.wait_reason': g.waitReason } : {},
    });
  }
  return finishedSpan({
    name: g.startFunction ?? 'goroutine',
    kind: SpanKind.INTERNAL,
    context: ctx(traceId, spanId),
    parent: g.parentGoid !== null && g.parentGoid > 0
      ? ctx(traceId, goroutineSpanId(p.node, p.pid, p.startTime, g.parentGoid)) : undefined,
    start, end, attributes, events, resource,
  });
}

/** A TCP connection as a CLIENT or SERVER span, child of the goroutine that owns it. */
export function connectionSpan(c: ConnectionRecord, p: ProcessInfo, resource: Resource): ReadableSpan {
  const traceId = processTraceId(p.node, p.pid, p.startTime);
  const spanId = connectionSpanId(p.node, p.pid, p.startTime, c.localAddress, c.localPort, c.peerAddress, c.peerPort, c.openedAt);
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
    'goroscope.bytes_sent': c.bytesSent,
    'goroscope.bytes_received': c.bytesReceived,
    'goroscope.tcp.retransmits': c.retransmits,
    'goroscope.tcp.resets': c.resets,
    'goroscope.preexisting': c.preexisting,
  };
  if (c.srttUs !== null) attributes['goroscope.tcp.srtt_us'] = c.srttUs;
  if (c.goid !== null) attributes['goroscope.goid'] = c.goid;
  if (c.error !== null) attributes['error.type'] = c.error;
  const start = c.openedAt ?? p.seenAt;
  return finishedSpan({
    // Low-cardinality names, as span naming conventions ask; the peer is in the attributes.
    name: c.role === 'client' ? 'tcp connect' : 'tcp accept',
    kind: c.role === 'client' ? SpanKind.CLIENT : SpanKind.SERVER,
    context: ctx(traceId, spanId),
    parent: c.goid !== null && c.goid > 0 ? ctx(traceId, goroutineSpanId(p.node, p.pid, p.startTime, c.goid)) : undefined,
    start,
    end: c.closedAt ?? c.observedAt,
    attributes,
    status: c.error !== null ? { code: SpanStatusCode.ERROR, message: c.error } : undefined,
    resource,
  });
}

/**
 * A fatal error or fatal panic as a zero-length span with error status and an `exception` event,
 * child of the goroutine that died, in the process's trace.
 */
export function fatalSpan(f: FatalRecord, p: ProcessInfo, resource: Resource): ReadableSpan {
  const traceId = processTraceId(p.node, p.pid, p.startTime);
  const attributes: Attributes = {
    'goroscope.goid': f.goid,
    'error.type': f.errorKind,
    'exception.type': f.errorKind,
    'exception.message': f.message,
  };
  return finishedSpan({
    name: f.errorKind === 'panic' ? 'go panic' : 'go fatal error',
    kind: SpanKind.INTERNAL,
    context: ctx(traceId, fatalSpanId(p.node, p.pid, p.startTime, f.goid, f.at)),
    parent: f.goid > 0 ? ctx(traceId, goroutineSpanId(p.node, p.pid, p.startTime, f.goid)) : undefined,
    start: f.at,
    end: f.at,
    attributes,
    events: [{
      name: 'exception',
      time: msToHrTime(f.at),
      attributes: { 'exception.type': f.errorKind, 'exception.message': f.message, 'goroscope.runtime_text': f.text },
    }],
    status: { code: SpanStatusCode.ERROR, message: f.text || f.message },
    resource,
  });
}

/**
 * A leak suspect as a span from when the agent first saw the group to when it reported it, with where its
 * goroutines are parked: the stack as a goroutine dump prints it (goroscope.leak.stack), its top frame as
 * code.function/code.filepath/code.lineno.
 */
export function leakSpan(r: LeakRecord, p: ProcessInfo, resource: Resource): ReadableSpan {
  const traceId = processTraceId(p.node, p.pid, p.startTime);
  const site = r.createdBy ? `${r.createdBy.function} ${r.createdBy.file}:${r.createdBy.line}` : '';
  const attributes: Attributes = {
    'goroscope.leak.suspect': r.suspect,
    'goroscope.leak.count': r.count,
    'goroscope.leak.growth_per_minute': r.growthPerMinute,
    'goroscope.leak.oldest_age_ms': r.oldestAgeMs,
  };
  if (site) attributes['goroscope.leak.created_by'] = site;
  if (r.startFunction) attributes['goroscope.leak.start_function'] = r.startFunction;
  if (r.waitReason) attributes['goroscope.leak.wait_reason'] = r.waitReason;
  const top = r.stack?.find((f) => !f.function.startsWith('runtime.')) ?? r.stack?.[0];
  if (r.stack?.length && top) {
    attributes['goroscope.leak.stack'] = r.stack.map((f) => `${f.function}\n\t${f.file}:${f.line}`).join('\n');
    attributes['code.function'] = top.function;
    attributes['code.filepath'] = top.file;
    attributes['code.lineno'] = top.line;
  }
  return finishedSpan({
    name: `goroutine leak suspect ${r.startFunction ?? r.createdBy?.function ?? ''}`.trim(),
    kind: SpanKind.INTERNAL,
    context: ctx(traceId, leakSpanId(p.node, p.pid, p.startTime, r.suspect, `${site}|${r.startFunction ?? ''}`)),
    start: Math.min(r.since, r.observedAt),
    end: r.observedAt,
    attributes,
    status: { code: SpanStatusCode.ERROR, message: `${Math.round(r.count)} goroutines ${r.waitReason ? `parked in ${r.waitReason}` : ''}, growing ${r.growthPerMinute.toFixed(1)}/min` },
    resource,
  });
}

/** A long stop-the-world pause as a span over the pause, a root span in the process's trace. */
export function pauseSpan(r: PauseRecord, p: ProcessInfo, resource: Resource): ReadableSpan {
  const traceId = processTraceId(p.node, p.pid, p.startTime);
  const attributes: Attributes = {
    'goroscope.pause.reason': r.reason,
    'goroscope.pause.gc': r.gc,
    'goroscope.pause.duration_ns': r.durationNs,
    'goroscope.goid': r.goid,
  };
  if (r.cycle !== null) attributes['goroscope.gc.cycle'] = r.cycle;
  return finishedSpan({
    name: r.gc ? 'gc stop-the-world' : 'stop-the-world',
    kind: SpanKind.INTERNAL,
    context: ctx(traceId, pauseSpanId(p.node, p.pid, p.startTime, r.startedAt)),
    start: r.startedAt,
    end: r.startedAt + r.durationNs / 1e6,
    attributes,
    resource,
  });
}
