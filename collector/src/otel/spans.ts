// Finished OpenTelemetry spans and the resource of a traced process, built straight from records: the records
// already hold wall-clock start and end times, so no live Span objects are needed.
import { basename } from 'node:path';
import { SpanKind, SpanStatusCode, TraceFlags, type Attributes, type HrTime, type Link, type SpanContext } from '@opentelemetry/api';
import { resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace-base';
import { processInstanceId, type SpanIds } from './ids.ts';

/** What the store (or the agent) knows about the process a record belongs to. */
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
  /** The build's version (module version, VCS revision or Go build ID). */
  serviceVersion: string | null;
}

export const SCOPE = { name: 'goroscope', version: '0.1.0' };

export function msToHrTime(ms: number): HrTime {
  // Split before scaling: ms * 1e6 exceeds 2^53 and would lose the nanoseconds.
  let secs = Math.floor(ms / 1000);
  let nanos = Math.round((ms - secs * 1000) * 1e6);
  if (nanos >= 1e9) { secs += 1; nanos -= 1e9; }
  return [secs, nanos];
}

/**
 * The resource of a traced process, per OpenTelemetry's semantic conventions: service.name is the pod's container
 * (else the executable's name), service.instance.id the container instance on Kubernetes (namespace.pod.container)
 * or a UUID of the process instance elsewhere; k8s.* attributes only on Kubernetes.
 */
export function processResource(p: ProcessInfo): Resource {
  const onK8s = p.podName !== null && p.podNamespace !== null;
  const attrs: Attributes = {
    'service.name': p.podContainer ?? (basename(p.exe) || 'unknown_service'),
    'service.instance.id': onK8s && p.podContainer ? `${p.podNamespace}.${p.podName}.${p.podContainer}` : processInstanceId(p),
    'process.pid': p.pid,
    'process.executable.path': p.exe,
    'process.executable.name': basename(p.exe),
    'process.runtime.name': 'go',
    'host.name': p.node,
  };
  if (p.serviceVersion) attrs['service.version'] = p.serviceVersion;
  if (p.goVersion) attrs['process.runtime.version'] = p.goVersion;
  if (p.containerId) attrs['container.id'] = p.containerId;
  if (onK8s) {
    attrs['k8s.node.name'] = p.node;
    attrs['k8s.pod.name'] = p.podName!;
    attrs['k8s.namespace.name'] = p.podNamespace!;
    if (p.podUid) attrs['k8s.pod.uid'] = p.podUid;
    if (p.podContainer) attrs['k8s.container.name'] = p.podContainer;
  }
  return resourceFromAttributes(attrs);
}

export const spanContext = (ids: SpanIds): SpanContext => ({ traceId: ids.traceId, spanId: ids.spanId, traceFlags: TraceFlags.SAMPLED, isRemote: false });

export interface SpanSpec {
  name: string;
  kind: SpanKind;
  ids: SpanIds;
  /** The parent's span id, in the same trace. */
  parentSpanId?: string;
  start: number;
  end: number;
  attributes: Attributes;
  links?: Link[];
  events?: TimedEvent[];
  status?: { code: SpanStatusCode; message?: string };
  resource: Resource;
}

export function finishedSpan(s: SpanSpec): ReadableSpan {
  const end = Math.max(s.end, s.start);
  const durNs = Math.round((end - s.start) * 1e6);
  return {
    name: s.name,
    kind: s.kind,
    spanContext: () => spanContext(s.ids),
    parentSpanContext: s.parentSpanId ? spanContext({ traceId: s.ids.traceId, spanId: s.parentSpanId }) : undefined,
    startTime: msToHrTime(s.start),
    endTime: msToHrTime(end),
    duration: [Math.floor(durNs / 1e9), durNs % 1e9],
    status: s.status ?? { code: SpanStatusCode.UNSET },
    attributes: s.attributes,
    links: s.links ?? [],
    events: s.events ?? [],
    ended: true,
    resource: s.resource,
    instrumentationScope: SCOPE,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

export const link = (ids: SpanIds, kind: string): Link => ({ context: spanContext(ids), attributes: { 'goroscope.link.kind': kind } });
