// `goroscope agent`: watches the node's Go processes (all, or those named), keeps each within the overhead
// budget, and ships what it sees to the collector.
//
// Degrade, never die: the goroutine probes, the runtime probes, TCP, pod metadata and the metrics listener each
// start on their own (agent/src/health/parts.ts). A part that cannot start is reported once, in one line with
// its fix, in the log, in /metrics and in what is shipped; the rest runs. startAgent puts the parts together:
// the shipper, pod metadata, the tracers and the governor (tracers.ts), the processes they trace (processes.ts),
// what goes out each interval (outbox.ts), leak suspects, profiles, metrics and OTLP.
import { hostname } from 'node:os';
import type { AgentRecord } from '../../../collector/src/protocol/records.ts';
import type { OtlpOptions } from '../../../collector/src/otel/otlp-export.ts';
import { LeakDetector, type LeakOptions, type LeakSuspect } from '../analysis/leaks.ts';
import { Parts } from '../health/parts.ts';
import { podMetadataFromEnvironment, type PodMetadataProvider, type ProcessMetadataSource } from '../k8s/pod-metadata.ts';
import { AgentMetrics } from '../metrics/agent-metrics.ts';
import { defaultTraceOptions, type TraceOptions } from '../model/goroutine-table.ts';
import { AgentProfiles } from '../profiles/agent-profiles.ts';
import type { CycleRecord, FatalRecord as RuntimeFatalRecord, PauseRecord as RuntimePauseRecord, RuntimeEventsTracer } from '../runtime/runtime-tracer.ts';
import { Shipper } from '../ship/shipper.ts';
import { StackTable } from '../stacks/stack-table.ts';
import type { TcpTracer } from '../tcp/tcp-tracer.ts';
import { everyOnGrid, monoNowNs, monoToWallMs } from '../tracer/clock.ts';
import type { GoroutineTracer, TracedProcess } from '../tracer/goroutine-tracer.ts';
import type { HttpTracer } from '../http/http-tracer.ts';
import { RequestMetrics } from '../http/request-metrics.ts';
import { RequestSampler } from '../http/request-records.ts';
import { ConnectionChanges } from './connection-changes.ts';
import type { AgentOtlp } from './otlp.ts';
import { Outbox } from './outbox.ts';
import { TracedProcesses } from './processes.ts';
import { RecordBuilder, defaultPolicy } from './record-builder.ts';
import { startGovernor, startTracers } from './tracers.ts';

export interface AgentOptions {
  /** The goroscope collector (ws:// or wss://); none: export over OTLP only. */
  collector?: string;
  /** Export traces, metrics and logs to this OTLP/HTTP endpoint (agent/src/agent/otlp.ts). */
  otlpEndpoint?: string;
  otlp?: OtlpOptions;
  token?: string;
  pids?: number[];
  node?: string;
  overheadBudget: number;
  full?: boolean;
  parkSampling?: number;
  /** Share of TCP retransmits recorded in detail (counts per connection stay exact). */
  retransmitSampling?: number;
  spoolDir?: string;
  maxSpoolBytes?: number;
  /** PEM certificates the collector's TLS certificate must chain to (wss://). */
  ca?: string | Buffer;
  /** How often records are shipped. */
  intervalMs?: number;
  /** How often /proc is scanned for new and gone Go processes. */
  scanMs?: number;
  /** host:port for Prometheus /metrics; none when absent. */
  metricsListen?: string;
  /** Trace TCP connections (default true). */
  tcp?: boolean;
  /** Hook connect/accept exits (accept owners of non-Go processes, connect failures before a SYN): a cost to every syscall on the node. */
  tcpSyscallHooks?: boolean;
  /** Trace HTTP and gRPC server requests (default true). */
  requests?: boolean;
  /** Leak detection: how often to sample, and what counts. */
  leakSampleMs?: number;
  /** How often each process's goroutine and blocking profiles are read and shipped (0: never). */
  profileIntervalMs?: number;
  leaks?: Partial<LeakOptions>;
  /** How goroutines are cut into traces and spans (units of work, long parks, report intervals). */
  trace?: Partial<TraceOptions>;
  /** Share of short-lived units of work (whole traces) shipped; goroutines living 1 s or more always are. */
  traceSample?: number;
  log?: (msg: string) => void;
  /** Names each process's container and pod. Default: its cgroup, and this node's pods from the API server in a cluster. */
  metadata?: ProcessMetadataSource;
}

export interface RunningAgent {
  /** Each part is absent when it could not start (parts says why). */
  tracer?: GoroutineTracer;
  runtime?: RuntimeEventsTracer;
  /** Server requests (net/http, grpc-go). */
  requests?: HttpTracer;
  tcp?: TcpTracer;
  /** Absent without --collector. */
  shipper?: Shipper;
  /** Absent without --otlp-endpoint. */
  otlp?: AgentOtlp;
  leaks: LeakDetector;
  metrics: AgentMetrics;
  metricsPort?: number;
  parts: Parts;
  /** Ships what is pending and waits for the acknowledgements. */
  flush(): Promise<boolean>;
  stop(): Promise<void>;
}

/** A runtime event as the collector takes it: every stop-the-world pause, and fatal errors. */
function runtimeRecord(e: RuntimePauseRecord | CycleRecord | RuntimeFatalRecord): AgentRecord | undefined {
  if ('reason' in e && 'durationNs' in e) {
    return { kind: 'pause', pid: e.pid, reason: e.reason, gc: e.gc, startedAt: monoToWallMs(e.startNs), durationNs: e.durationNs, goid: e.goid, cycle: e.cycle ?? null };
  }
  if ('text' in e) {
    return { kind: 'fatal', pid: e.pid, errorKind: e.kind, message: e.message, text: e.text, goid: e.goid, at: e.wallMs };
  }
  return undefined;
}

/** A leak suspect as the collector takes it, with where the goroutine its stack is of is in the trace model now. */
function leakRecord(s: LeakSuspect, proc: TracedProcess, now: number): AgentRecord {
  return {
    kind: 'leak', pid: s.pid, suspect: s.kind, createdBy: s.createdBy, startFunction: s.startFunction, waitReason: s.waitReason,
    count: s.count, growthPerMinute: s.growthPerMinute, oldestAgeMs: s.oldestAgeMs, since: s.since, observedAt: monoToWallMs(now),
    stack: s.stack, goroutine: s.stackGoid !== null ? proc.table.placeAt(s.stackGoid, now) : null,
  };
}

/** Pod metadata as a part: the API server's list and watch in a cluster, cgroups only elsewhere. */
async function startMetadata(opts: AgentOptions, node: string, parts: Parts, log: (m: string) => void): Promise<{ source: ProcessMetadataSource; own?: PodMetadataProvider }> {
  if (opts.metadata) return { source: opts.metadata };
  const own = await podMetadataFromEnvironment(node, log, process.env, (e) => (e ? parts.fail('pod-metadata', e) : parts.up('pod-metadata')));
  if (own.hasApiServer) void own.start().catch((e: unknown) => parts.fail('pod-metadata', e));
  else if (!parts.state('pod-metadata')) parts.off('pod-metadata', 'not in a Kubernetes pod and no GOROSCOPE_KUBECONFIG: container ids from cgroups, no pod names');
  return { source: own, own };
}

/** The collector's shipper, made first: a spool that cannot be had fails the start before any probe or thread exists. */
function makeShipper(opts: AgentOptions, node: string, log: (m: string) => void): Shipper | undefined {
  if (opts.collector === undefined) return undefined;
  return new Shipper({
    url: opts.collector, token: opts.token, node, agentVersion: '0.1.0', spoolDir: opts.spoolDir, maxSpoolBytes: opts.maxSpoolBytes, ca: opts.ca, log,
  });
}

/** OTLP export as a part; the OpenTelemetry SDK loads only when it exports, so an agent that ships to a collector never pays for it. */
async function startOtlp(opts: AgentOptions, node: string, tracer: GoroutineTracer | undefined, parts: Parts, metrics: AgentMetrics, leakIntervalMs: number) {
  if (opts.otlpEndpoint === undefined) {
    parts.off('otlp', 'no --otlp-endpoint');
    return undefined;
  }
  const { AgentOtlp } = await import('./otlp.ts');
  return parts.start('otlp', () => new AgentOtlp(opts.otlpEndpoint!, { leakIntervalMs, ...opts.otlp }, node, tracer, parts, metrics));
}

/** Timers that run a step every so often, on the agent's one grid (tracer/clock.ts), stopped together. */
class Timers {
  private readonly all: { stop(): void }[] = [];
  every(ms: number, step: () => void): void {
    this.all.push(everyOnGrid(ms, step));
  }
  stop(): void {
    for (const t of this.all) t.stop();
  }
}

export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`goroscope agent: ${m}\n`));
  const parts = new Parts(log);
  const node = opts.node ?? process.env.NODE_NAME ?? hostname();
  if (!opts.collector && !opts.otlpEndpoint) throw new Error('the agent needs somewhere to send: --collector, --otlp-endpoint, or both');
  const shipper = makeShipper(opts, node, log);
  const { source: metadata, own: ownMetadata } = await startMetadata(opts, node, parts, log);

  // Stacks: each process's goroutine and blocking profiles, stacks sent once through a bounded table.
  const stackTable = new StackTable();
  const profiles = opts.profileIntervalMs === 0 ? undefined : new AgentProfiles({
    intervalMs: opts.profileIntervalMs ?? 60_000,
    stacks: stackTable,
    parkSampling: opts.parkSampling,
    parkCoverage: (pid) => governor?.coverage(pid) ?? 1,
  });
  const tracers = startTracers(opts, parts, profiles);
  const { tracer, runtime, requests, tcp } = tracers;
  const intervalMs = opts.intervalMs ?? 2000;
  const governor = await startGovernor(tracer, opts, intervalMs, log, requests, tcp);
  shipper?.start();

  const segmentMs = opts.trace?.segmentMs ?? defaultTraceOptions.segmentMs;
  /** Share of [from, to] during which a process's duty-cycled probes were on (1 with --full). */
  const coverageBetween = (pid: number, from: number, to: number) => (opts.full ? 1 : governor?.coverageBetween(pid, from, to) ?? 1);
  const builder = new RecordBuilder({ ...defaultPolicy, segmentMs, shortLivedSample: opts.traceSample ?? defaultPolicy.shortLivedSample }, coverageBetween);
  const connections = new ConnectionChanges();
  const leaks = new LeakDetector(opts.leaks, coverageBetween);
  const metrics = new AgentMetrics({
    tracer, tcp, requests, leaks, shipper, runtime, parts, governor: opts.full ? undefined : governor, tcpTotals: connections.totals,
    stacks: profiles && { table: stackTable, profiles }, segmentReportsDropped: () => builder.segmentReportsDropped,
  });
  const requestMetrics = new RequestMetrics(metrics.registry, requests);
  // Every request counts in the metrics; records (spans) within each process's budget, weighted by what they stand for.
  const requestSampler = new RequestSampler();
  const queue: AgentRecord[] = [];
  const processes = new TracedProcesses({ ...tracers, governor, builder, metadata, leaks, profiles, requestMetrics, requestSampler, queue, pids: opts.pids, log });
  const otlp = await startOtlp(opts, node, tracer, parts, metrics, segmentMs);
  const outbox = new Outbox({
    ...tracers, governor, builder, connections, processes, queue, pids: opts.pids, segmentMs,
    send: (batch) => {
      otlp?.onRecords(batch);
      shipper?.send(batch);
    },
  });

  if (requests) {
    try {
      requests.start((p, r) => {
        // Parks and scheduling inside a request are known only when the goroutine probes were on for all of it.
        if (r.parked && !opts.full && (governor?.coverageBetween(p.pid, monoToWallMs(r.startNs), monoToWallMs(r.endNs)) ?? 1) < 1) {
          r.parked = null;
          r.sched = null;
        }
        requestMetrics.onRequest(p, r);
        const rec = requestSampler.take(r);
        if (rec) queue.push(rec);
      });
    } catch (e) {
      parts.fail('requests', e);
    }
  }
  if (runtime) {
    try {
      runtime.start((p, e) => {
        metrics.onRuntimeEvent(p, e);
        const rec = runtimeRecord(e);
        if (rec) queue.push(rec);
      });
    } catch (e) {
      parts.fail('runtime', e);
    }
  }
  let metricsPort: number | undefined;
  if (opts.metricsListen) {
    metricsPort = await parts.startAsync('metrics', () => metrics.listen(opts.metricsListen!));
    if (metricsPort !== undefined) log(`metrics on ${metrics.url}`);
  } else {
    parts.off('metrics', 'no --metrics-listen');
  }

  const sampleLeaks = () => {
    if (!tracer) return;
    const now = monoNowNs();
    for (const proc of tracer.processes()) {
      leaks.sample(proc, now);
      for (const s of leaks.suspects(proc)) queue.push(leakRecord(s, proc, now));
    }
  };
  const collectProfiles = () => {
    if (profiles && tracer) queue.push(...profiles.collect(tracer.processes()));
  };

  if (ownMetadata?.hasApiServer && !(await ownMetadata.ready(5000))) log('pod metadata: no pod list from the API server after 5 s; names follow when it comes');
  processes.scan();
  outbox.ship();
  collectProfiles();
  const timers = new Timers();
  timers.every(opts.scanMs ?? 2000, () => processes.scan());
  timers.every(1000, () => processes.retireExited());
  timers.every(intervalMs, () => outbox.ship());
  timers.every(opts.leakSampleMs ?? 10_000, sampleLeaks);
  if (profiles) timers.every(opts.profileIntervalMs ?? 60_000, collectProfiles);

  return {
    tracer,
    runtime,
    requests,
    tcp,
    shipper,
    otlp,
    leaks,
    metrics,
    metricsPort,
    parts,
    async flush() {
      outbox.ship();
      await otlp?.flush();
      return shipper ? shipper.flush() : true;
    },
    async stop() {
      timers.stop();
      metrics.close();
      governor?.stop();
      await tracer?.drain();
      collectProfiles(); // the last blocking window, up to now
      outbox.ship();
      await shipper?.flush(5000);
      shipper?.close();
      await otlp?.stop();
      await runtime?.close();
      await requests?.close();
      await tcp?.close();
      await tracer?.close();
      await ownMetadata?.stop();
    },
  };
}
