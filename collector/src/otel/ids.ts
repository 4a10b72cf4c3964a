// Deterministic trace and span ids. A span can name its parent, or link to a span in another trace, without
// anyone remembering ids: both are hashes of the same facts (the process, the goroutine, which of its spans).
// Re-sent records make the same ids, so an exporter drops what it already sent, on any collector replica.
import { createHash } from 'node:crypto';
import type { SpanPlace } from '../protocol/records.ts';

function hex(bytes: number, ...parts: (string | number)[]): string {
  const h = createHash('sha256').update(parts.join('\u0000')).digest();
  // All-zero ids are invalid in OpenTelemetry; a zero hash prefix is astronomically unlikely, but be exact.
  if (h.subarray(0, bytes).every((x) => x === 0)) h[0] = 1;
  return h.subarray(0, bytes).toString('hex');
}

/** A process instance: (node, pid, process start time). */
export interface ProcessKey {
  node: string;
  pid: number;
  startTime: number;
}

export interface SpanIds {
  traceId: string;
  spanId: string;
}

/**
 * A goroutine's span: its first (segment 0) is in the trace of its unit of work (named by the root goroutine);
 * each later one (a report interval of a long-lived goroutine) starts a trace of its own, so traces stay bounded.
 */
export function goroutineSpanIds(p: ProcessKey, place: SpanPlace): SpanIds {
  if (place.segment === 0) {
    return { traceId: hex(16, 'unit', p.node, p.pid, p.startTime, place.root), spanId: hex(8, 'g', p.node, p.pid, p.startTime, place.goid) };
  }
  return {
    traceId: hex(16, 'gseg', p.node, p.pid, p.startTime, place.goid, place.segment),
    spanId: hex(8, 'g', p.node, p.pid, p.startTime, place.goid, place.segment),
  };
}

/** A piece of a park inside one goroutine span (a park longer than a report interval has one per interval). */
export const parkSpanId = (p: ProcessKey, goid: number, parkFrom: number, segment: number) =>
  hex(8, 'park', p.node, p.pid, p.startTime, goid, parkFrom, segment);

/** A TCP connection of a process: its 4-tuple and when its spans start. */
export interface ConnectionKey {
  local: string;
  localPort: number;
  peer: string;
  peerPort: number;
  start: number;
}

export const connectionSpanId = (p: ProcessKey, c: ConnectionKey, segment: number) =>
  hex(8, 'conn', p.node, p.pid, p.startTime, c.local, c.localPort, c.peer, c.peerPort, c.start, segment);

/** The trace of a connection span that has no goroutine parent (or of a later report interval). */
export const connectionTraceId = (p: ProcessKey, c: ConnectionKey, segment: number) =>
  hex(16, 'conn', p.node, p.pid, p.startTime, c.local, c.localPort, c.peer, c.peerPort, c.start, segment);

/** A leak suspect's span of one report interval, in a trace of its own. */
export const leakSpanIds = (p: ProcessKey, key: string, interval: number): SpanIds => ({
  traceId: hex(16, 'leak', p.node, p.pid, p.startTime, key, interval),
  spanId: hex(8, 'leak', p.node, p.pid, p.startTime, key, interval),
});

export const pauseSpanIds = (p: ProcessKey, startedAt: number): SpanIds => ({
  traceId: hex(16, 'pause', p.node, p.pid, p.startTime, startedAt),
  spanId: hex(8, 'pause', p.node, p.pid, p.startTime, startedAt),
});

/** A request's span: in the caller's trace when it sent a traceparent, else in a trace of its own. */
export const requestSpanIds = (p: ProcessKey, goid: number, startedAt: number, traceId?: string): SpanIds => ({
  traceId: traceId ?? hex(16, 'req', p.node, p.pid, p.startTime, goid, startedAt),
  spanId: hex(8, 'req', p.node, p.pid, p.startTime, goid, startedAt),
});

export const requestParkSpanId = (p: ProcessKey, goid: number, startedAt: number, parkFrom: number) =>
  hex(8, 'reqpark', p.node, p.pid, p.startTime, goid, startedAt, parkFrom);

export const fatalSpanIds = (p: ProcessKey, goid: number, at: number): SpanIds => ({
  traceId: hex(16, 'fatal', p.node, p.pid, p.startTime, goid, at),
  spanId: hex(8, 'fatal', p.node, p.pid, p.startTime, goid, at),
});

/** A stable service.instance.id off Kubernetes: a UUID (v5 layout) of the process instance. */
export function processInstanceId(p: ProcessKey): string {
  const h = createHash('sha1').update(`goroscope\u0000${p.node}\u0000${p.pid}\u0000${p.startTime}`).digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

/** A fraction in [0, 1) from a trace id, so sampling keeps or drops whole traces, the same on every replica. */
export const sampleFraction = (traceId: string) => parseInt(traceId.slice(0, 8), 16) / 2 ** 32;
