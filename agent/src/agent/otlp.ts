// `goroscope agent --otlp-endpoint URL`: the agent exports traces, metrics and logs itself, with no goroscope
// collector (the mode for clusters past one collector: agents feed the OpenTelemetry Collector SREs already run).
// It runs the collector's exporters (collector/src/otel/otlp-export.ts) over the records it ships, and counts live
// goroutines from its own tables, so the count is every goroutine, not only the shipped ones.
//
// A part that degrades, never dies: an endpoint that refuses or is away marks the part down with the reason (once,
// in the log, /metrics and the snapshot); the exporters retry and drop what they cannot hold, counted.
import { waitReasonString } from '../gobinary/layouts.ts';
import type { AgentRecord, ProcessRecord } from '../../../collector/src/protocol/records.ts';
import { OtlpExport, type OtlpOptions } from '../../../collector/src/otel/otlp-export.ts';
import type { GoroutineCount } from '../../../collector/src/otel/signals.ts';
import type { ProcessInfo } from '../../../collector/src/otel/spans.ts';
import { monoNowNs } from '../tracer/clock.ts';
import type { GoroutineTracer } from '../tracer/goroutine-tracer.ts';
import type { Parts } from '../health/parts.ts';
import type { AgentMetrics } from '../metrics/agent-metrics.ts';

export function processInfoOf(node: string, r: ProcessRecord): ProcessInfo {
  return {
    node, pid: r.pid, startTime: r.startTime, exe: r.exe, goVersion: r.goVersion, containerId: r.containerId,
    podName: r.pod?.name ?? null, podNamespace: r.pod?.namespace ?? null, podUid: r.pod?.uid ?? null, podContainer: r.pod?.container ?? null,
    seenAt: r.seenAt, serviceVersion: r.serviceVersion ?? null,
  };
}

/** Live goroutines of a traced process by state and wait reason, from its table (runtime-internal ones included). */
export function goroutineCounts(tracer: GoroutineTracer | undefined, p: ProcessInfo): GoroutineCount[] | undefined {
  const proc = tracer?.process(p.pid);
  if (!proc || proc.info.startTime !== p.startTime) return undefined;
  const counts = new Map<string, GoroutineCount>();
  for (const row of proc.table.rows(monoNowNs())) {
    const waitReason = row.waitReason === null ? null : waitReasonString(proc.layout, row.waitReason);
    const key = `${row.state}\u0000${waitReason}`;
    const c = counts.get(key);
    if (c) c.count++;
    else counts.set(key, { state: row.state, waitReason, count: 1 });
  }
  return [...counts.values()];
}

export class AgentOtlp {
  private readonly export: OtlpExport;
  /** The traced processes, from the process records the agent ships: each one's resource. */
  private readonly processes = new Map<number, ProcessInfo>();

  constructor(endpoint: string, opts: OtlpOptions, private readonly node: string, tracer: GoroutineTracer | undefined, parts: Parts, metrics: AgentMetrics) {
    this.export = new OtlpExport(
      endpoint, opts, metrics.otlpCounters,
      (_node, pid) => this.processes.get(pid),
      (p) => goroutineCounts(tracer, p),
      (signal, e) => parts.fail('otlp', new Error(`${signal} to ${endpoint}: ${e instanceof Error ? e.message : String(e)}`)),
      () => { if (!parts.state('otlp')?.up) parts.up('otlp'); },
    );
  }

  /** The records the agent ships, as they go out. */
  onRecords(records: AgentRecord[]): void {
    const gone: number[] = [];
    for (const r of records) {
      if (r.kind !== 'process') continue;
      this.processes.set(r.pid, processInfoOf(this.node, r));
      if (r.exitedAt !== null) gone.push(r.pid);
    }
    this.export.onRecords(this.node, records);
    for (const pid of gone) this.processes.delete(pid);
  }

  flush(): Promise<void> {
    return this.export.forceFlush();
  }

  async stop(): Promise<void> {
    await this.export.forceFlush();
    await this.export.shutdown();
  }
}
