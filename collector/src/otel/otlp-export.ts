// Every signal over OTLP/HTTP to one endpoint (an OpenTelemetry Collector, Tempo, Jaeger...): traces (exporter.ts,
// the trace model), metrics and logs (signals.ts). The collector feeds it committed records; the agent, with
// `--otlp-endpoint`, what it ships. Profiles stay with the collector's pprof API: OpenTelemetry's JavaScript SDK has
// no profiles exporter, and OTLP profiles are still in development.
import type { AgentRecord } from '../protocol/records.ts';
import { otlpUrl, SpanExport, type ExportCounters, type ExportOptions } from './exporter.ts';
import { OtlpSignals, type GoroutineCounts, type SignalCounters, type SignalOptions } from './signals.ts';
import type { ProcessInfo } from './spans.ts';

export type OtlpOptions = ExportOptions & SignalOptions;
export type OtlpSignal = 'traces' | 'metrics' | 'logs';

export class OtlpExport {
  readonly spans: SpanExport;
  readonly signals: OtlpSignals;

  constructor(
    endpoint: string,
    opts: OtlpOptions,
    counters: ExportCounters & SignalCounters,
    processInfo: (node: string, pid: number) => ProcessInfo | undefined,
    goroutineCounts: GoroutineCounts,
    onError: (signal: OtlpSignal, e: unknown) => void = () => {},
    onSuccess: (signal: OtlpSignal) => void = () => {},
  ) {
    this.spans = new SpanExport(endpoint, opts, counters, processInfo, (e) => onError('traces', e), () => onSuccess('traces'));
    this.signals = new OtlpSignals(
      { metrics: otlpUrl(endpoint, 'metrics'), logs: otlpUrl(endpoint, 'logs') },
      { ...opts, leakIntervalMs: opts.leakIntervalMs ?? this.spans.model.o.leakIntervalMs },
      counters, processInfo, goroutineCounts, onError, onSuccess,
    );
  }

  onRecords(node: string, records: AgentRecord[]): void {
    this.spans.onRecords(node, records);
    this.signals.onRecords(node, records);
  }

  /** Everything queued goes out now (metrics: their current values); failures are counted, not thrown. */
  async forceFlush(): Promise<void> {
    await Promise.all([this.spans.forceFlush(), this.signals.forceFlush()]);
  }

  async shutdown(): Promise<void> {
    await Promise.allSettled([this.spans.shutdown(), this.signals.shutdown()]);
  }
}
