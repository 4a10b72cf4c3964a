// Deterministic trace and span ids. A child goroutine's span can name its parent's
// span id without the collector remembering it: both are hashes of the same facts.
import { createHash } from 'node:crypto';

function hex(bytes: number, ...parts: (string | number)[]): string {
  const h = createHash('sha256').update(parts.join('\u0000')).digest();
  // All-zero ids are invalid in OpenTelemetry; a zero hash prefix is astronomically unlikely, but be exact.
  if (h.subarray(0, bytes).every((x) => x === 0)) h[0] = 1;
  return h.subarray(0, bytes).toString('hex');
}

/** One trace per process instance: (node, pid, process start time). */
export const processTraceId = (node: string, pid: number, startTime: number) => hex(16, 'trace', node, pid, startTime);

export const goroutineSpanId = (node: string, pid: number, startTime: number, goid: number) =>
  hex(8, 'goroutine', node, pid, startTime, goid);

export const connectionSpanId = (node: string, pid: number, startTime: number, local: string, localPort: number, peer: string, peerPort: number, openedAt: number | null) =>
  hex(8, 'connection', node, pid, startTime, local, localPort, peer, peerPort, openedAt ?? 0);

export const fatalSpanId = (node: string, pid: number, startTime: number, goid: number, at: number) =>
  hex(8, 'fatal', node, pid, startTime, goid, at);

export const pauseSpanId = (node: string, pid: number, startTime: number, startedAt: number) =>
  hex(8, 'pause', node, pid, startTime, startedAt);

/** One span per leak suspect (process, kind, creation site, start function), however often it is re-sent. */
export const leakSpanId = (node: string, pid: number, startTime: number, suspect: string, site: string) =>
  hex(8, 'leak', node, pid, startTime, suspect, site);

/** A fraction in [0, 1) from a span id, so sampling is the same on every collector replica and re-send. */
export const sampleFraction = (spanId: string) => parseInt(spanId.slice(0, 8), 16) / 2 ** 32;
