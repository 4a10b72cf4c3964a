// `goroscope agent`: watches the node's Go processes (all, or those named), keeps each within the overhead
// budget, and ships what it sees to the collector.
//
// Degrade, never die: the goroutine probes, the runtime probes, TCP, pod metadata and the metrics listener each
// start on their own (agent/src/health/parts.ts). A part that cannot start is reported once, in one line with
// its fix, in the log, in /metrics and in what is shipped; the rest runs.
import { hostname } from 'node:os';
import { MAX_RECORDS_PER_BATCH, type AgentRecord, type ProcessRecord } from '../../../collector/src/protocol/records.ts';
import { GoProcessWatcher } from '../discover/go-processes.ts';
import { calibrateHitCost } from '../overhead/calibrate.ts';
import { OverheadGovernor } from '../overhead/governor.ts';
import { Shipper } from '../ship/shipper.ts';
import { GoroutineTracer, type Target } from '../tracer/goroutine-tracer.ts';
import { RuntimeEventsTracer, type CycleRecord, type FatalRecord as RuntimeFatalRecord, type PauseRecord as RuntimePauseRecord } from '../runtime/runtime-tracer.ts';
import { describeAttachMode, TcpTracer, tcpLayoutOf } from '../tcp/tcp-tracer.ts';
import { inspectProcess } from '../proc/process.ts';
import { ConnectionChanges } from './connection-changes.ts';
import { monoNowNs, monoToWallMs } from '../tracer/clock.ts';
import { RecordBuilder, defaultPolicy } from './record-builder.ts';
import { podMetadataFromEnvironment, type PodMetadataProvider, type ProcessMetadataSource } from '../k8s/pod-metadata.ts';
import { AgentProfiles } from '../profiles/agent-profiles.ts';
import { StackTable } from '../stacks/stack-table.ts';
import { LeakDetector, type LeakOptions } from '../analysis/leaks.ts';
import { AgentMetrics } from '../metrics/agent-metrics.ts';
import { Parts } from '../health/parts.ts';
import { defaultTraceOptions, type TraceOptions } from '../model/goroutine-table.ts';
import type { OtlpOptions } from '../../../collector/src/otel/otlp-export.ts';
import type { AgentOtlp } from './otlp.ts';
import { firstLine } from '../health/explain.ts';
import { HttpTracer } from '../http/http-tracer.ts';
import { RequestMetrics } from '../http/request-metrics.ts';
import { RequestSampler } from '../http/request-records.ts';

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

/** A process record for a process the goroutine tracer does not hold (not Go, or its probes are down). */
function processRecordOf(pid: number, goVersion: string | null = null): ProcessRecord | undefined {
  try {
    const info = inspectProcess(pid);
    return { kind: 'process', pid, startTime: info.startTime, exe: info.exe, goVersion, containerId: null, pod: null, seenAt: Date.now(), exitedAt: null };
  } catch {
    return undefined;
  }
}

/** Pod metadata as a part: the API server's list and watch in a cluster, cgroups only elsewhere. */
function startMetadata(opts: AgentOptions, node: string, parts: Parts, log: (m: string) => void): { source: ProcessMetadataSource; own?: PodMetadataProvider } {
  if (opts.metadata) return { source: opts.metadata };
  const own = podMetadataFromEnvironment(node, log, process.env, (e) => (e ? parts.fail('pod-metadata', e) : parts.up('pod-metadata')));
  if (own.hasApiServer) void own.start().catch((e: unknown) => parts.fail('pod-metadata', e));
  else if (!parts.state('pod-metadata')) parts.off('pod-metadata', 'not in a Kubernetes pod and no GOROSCOPE_KUBECONFIG: container ids from cgroups, no pod names');
  return { source: own, own };
}

export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`goroscope agent: ${m}\n`));
  const parts = new Parts(log);
  const node = opts.node ?? process.env.NODE_NAME ?? hostname();
  if (!opts.collector && !opts.otlpEndpoint) throw new Error('the agent needs somewhere to send: --collector, --otlp-endpoint, or both');
  // First: a spool that cannot be had (a file where the directory should be...) fails the start before any
  // probe or thread exists to outlive the failure.
  const shipper = opts.collector === undefined ? undefined : new Shipper({
    url: opts.collector,
    token: opts.token,
    node,
    agentVersion: '0.1.0',
    spoolDir: opts.spoolDir,
    maxSpoolBytes: opts.maxSpoolBytes,
    ca: opts.ca,
    log,
  });
  const { source: metadata, own: ownMetadata } = startMetadata(opts, node, parts, log);

  // Stacks: each process's goroutine and blocking profiles, stacks sent once through a bounded table.
  const stackTable = new StackTable();
  const profiles =
    opts.profileIntervalMs === 0
      ? undefined
      : new AgentProfiles({
          intervalMs: opts.profileIntervalMs ?? 60_000,
          stacks: stackTable,
          parkSampling: opts.parkSampling,
          parkCoverage: (pid) => governor?.coverage(pid) ?? 1,
        });
  const requests = parts.start('requests', () => new HttpTracer());
  const tracer = parts.start('goroutines', () => {
    const t = new GoroutineTracer({ trace: opts.trace });
    t.start((p, kind, v, at) => {
      profiles?.onRecord(p, kind, v, at);
      requests?.onGoroutineRecord(p.info.pid, kind, v, at); // the parks inside each request
    });
    return t;
  });
  const runtime = parts.start('runtime', () => new RuntimeEventsTracer());
  // TCP is node-wide: every process's connections, Go or not; Go processes also get their goroutines.
  const tcp =
    opts.tcp === false
      ? (parts.off('tcp', '--no-tcp'), undefined)
      : parts.start('tcp', () => {
          const t = new TcpTracer({ seedPids: opts.pids, retransmitSampling: opts.retransmitSampling });
          try {
            t.start();
          } catch (e) {
            void t.close();
            throw e;
          }
          return t;
        });
  // Which TCP programs run (BTF or classic tracepoints, raw or per-syscall hooks): in the log, /metrics, the snapshot.
  if (tcp) parts.up('tcp', describeAttachMode(tcp.attachMode));
  const connections = new ConnectionChanges();
  /** Processes the goroutine tracer does not hold, and whether a process record was sent for them. */
  const otherProcesses = new Map<number, boolean>();
  if (tracer && opts.parkSampling !== undefined) tracer.setParkSampling(opts.parkSampling);
  const calibration = tracer && !opts.full ? await calibrateHitCost(tracer) : undefined;
  if (calibration) log(`a probe hit costs ${Math.round(calibration.nsPerHit)} ns here (${calibration.source})`);
  const intervalMs = opts.intervalMs ?? 2000;
  // In --full mode the governor never turns probes off; it still cuts time into windows for the records.
  const governor = tracer
    ? new OverheadGovernor(tracer, {
        budget: opts.full ? Infinity : opts.overheadBudget,
        nsPerHit: calibration?.nsPerHit ?? 1,
        periodMs: opts.full ? intervalMs : 10_000,
      })
    : undefined;
  shipper?.start();
  const segmentMs = opts.trace?.segmentMs ?? defaultTraceOptions.segmentMs;
  const builder = new RecordBuilder(
    { ...defaultPolicy, segmentMs, shortLivedSample: opts.traceSample ?? defaultPolicy.shortLivedSample },
    (pid, from, to) => (opts.full ? 1 : governor?.coverageBetween(pid, from, to) ?? 1),
  );
  let connectionsShippedAt = Date.now();
  const watcher = new GoProcessWatcher({ pids: opts.pids });
  const queue: AgentRecord[] = [];
  // Processes in a pod the API server had not told us about yet: their record is sent again once it has.
  const unnamed = new Set<number>();
  const noteUnnamed = (pid: number) => {
    const m = metadata.lookup(pid);
    if (m?.podUid && !m.pod) unnamed.add(pid);
    else unnamed.delete(pid);
  };
  /** Go processes seen while the goroutine probes are down (TCP and runtime probes may still hold them). */
  const untracedGo = new Map<number, Target>();

  /** A process record for a pid the goroutine tracer does not hold, sent once. */
  const noteOther = (pid: number, goVersion: string | null = null) => {
    if (otherProcesses.has(pid)) return;
    const rec = processRecordOf(pid, goVersion);
    otherProcesses.set(pid, rec !== undefined);
    if (rec) queue.push(rec);
  };

  const ship = () => {
    const now = monoNowNs();
    if (tracer && governor) for (const proc of tracer.processes()) queue.push(...builder.build(proc, governor.closedWindows(proc.info.pid), now));
    if (tcp) {
      const traced = (pid: number) => tracer?.process(pid) !== undefined;
      const wanted = tcp.connections().filter((c) => !opts.pids || opts.pids.includes(c.pid));
      for (const c of connections.take(wanted)) {
        // The collector files a connection under its process: an untraced process gets a process record first.
        if (!traced(c.pid)) noteOther(c.pid, untracedGo.get(c.pid)?.binary.goVersion ?? null);
        if (traced(c.pid) || otherProcesses.get(c.pid)) queue.push(builder.connection(tracer?.process(c.pid), c, connections.start(c), now, queue));
      }
      // Connections open across a report interval's end: their span of that interval.
      const wallNow = Date.now();
      for (const seg of connections.segmentsEnded(connectionsShippedAt, wallNow, segmentMs)) {
        const c = seg.record;
        if (traced(c.pid) || otherProcesses.get(c.pid)) queue.push(builder.connection(tracer?.process(c.pid), c, connections.start(c), now, queue, seg));
      }
      connectionsShippedAt = wallNow;
    }
    while (queue.length) {
      const batch = queue.splice(0, MAX_RECORDS_PER_BATCH);
      otlp?.onRecords(batch);
      shipper?.send(batch);
    }
  };

  /**
   * Every part that is up takes the new process; each failure is one line for this pid, and is not retried
   * (the parts that did take it keep it).
   */
  const attach = (target: Target) => {
    const pid = target.info.pid;
    let traced = false;
    if (tracer && governor) {
      try {
        const proc = tracer.attach(pid, { target });
        governor.add(proc);
        queue.push(builder.processRecord(proc, null, metadata));
        noteUnnamed(pid);
        traced = true;
      } catch (e) {
        log(`cannot trace the goroutines of pid ${pid}: ${firstLine(e)}`);
      }
    }
    if (!traced) untracedGo.set(pid, target);
    if (tcp) {
      try {
        tcp.registerGoProcess(pid, tcpLayoutOf(target.binary));
      } catch (e) {
        log(`TCP connections of pid ${pid} carry no goroutine ids: ${firstLine(e)}`);
      }
    }
    if (runtime) {
      try {
        runtime.attach(pid, { target });
      } catch (e) {
        log(`no GC/fatal-error probes for pid ${pid}: ${firstLine(e)}`);
      }
    }
    if (requests) {
      try {
        const r = requests.attach(pid, { target, waits: traced });
        for (const why of r.skipped) if (!why.endsWith('no server in this binary')) log(`requests of pid ${pid} not traced: ${why}`);
      } catch (e) {
        log(`no request probes for pid ${pid}: ${firstLine(e)}`);
      }
    }
    log(`tracing pid ${pid} ${target.info.exe} (${target.binary.goVersion})${traced ? '' : ' without goroutine probes'}`);
  };

  const scan = () => {
    for (const pid of unnamed) {
      const proc = tracer?.process(pid);
      if (!proc) unnamed.delete(pid);
      else if (metadata.lookup(pid, proc.info.startTime)?.pod) {
        queue.push(builder.processRecord(proc, null, metadata));
        unnamed.delete(pid);
      }
    }
    const r = watcher.scan();
    for (const target of r.appeared) attach(target);
    for (const s of r.skipped) log(`not tracing pid ${s.pid}: ${s.reason}`);
    for (const pid of r.exited) retire(pid);
  };

  /** A traced process exited: its last records go out and its probes and BPF map entries go (off this thread). */
  const retire = (pid: number) => {
    const proc = tracer?.process(pid);
    if (proc && governor) {
      queue.push(...builder.build(proc, governor.windows(pid), monoNowNs()));
      queue.push(builder.processRecord(proc, monoToWallMs(monoNowNs()), metadata));
      governor.remove(pid);
      builder.forget(pid);
      leaks.forget(pid);
      profiles?.forget(pid);
      void tracer!.detach(pid);
    }
    untracedGo.delete(pid);
    unnamed.delete(pid);
    metadata.forget?.(pid);
    void runtime?.detach(pid); // its GC figures and fatal errors stay readable after the process is gone
    requests?.forget(pid);
    requestSampler.forget(pid);
    void requestMetrics.forget(pid);
    tcp?.unregisterGoProcess(pid);
  };
  /** Between scans: probes go within ~0.25 s of their process (the full /proc scan runs every scanMs). */
  const retireExited = () => {
    for (const pid of watcher.exited()) retire(pid);
  };

  const leaks = new LeakDetector(opts.leaks, (pid, from, to) => (opts.full ? 1 : governor?.coverageBetween(pid, from, to) ?? 1));
  const sampleLeaks = () => {
    if (!tracer) return;
    const now = monoNowNs();
    for (const proc of tracer.processes()) {
      leaks.sample(proc, now);
      for (const s of leaks.suspects(proc)) {
        queue.push({
          kind: 'leak',
          pid: s.pid,
          suspect: s.kind,
          createdBy: s.createdBy,
          startFunction: s.startFunction,
          waitReason: s.waitReason,
          count: s.count,
          growthPerMinute: s.growthPerMinute,
          oldestAgeMs: s.oldestAgeMs,
          since: s.since,
          observedAt: monoToWallMs(now),
          stack: s.stack,
          goroutine: s.stackGoid !== null ? proc.table.placeAt(s.stackGoid, now) : null,
        });
      }
    }
  };
  const metrics = new AgentMetrics({
    tracer, leaks, shipper, runtime, parts, governor: opts.full ? undefined : governor, tcpTotals: connections.totals,
    stacks: profiles && { table: stackTable, profiles }, segmentReportsDropped: () => builder.segmentReportsDropped,
  });
  const requestMetrics = new RequestMetrics(metrics.registry, requests);
  // Every request counts in the metrics; records (spans) within each process's budget, weighted by what they stand for.
  const requestSampler = new RequestSampler();
  if (requests) {
    try {
      requests.start((p, r) => {
        requestMetrics.onRequest(p, r);
        const rec = requestSampler.take(r);
        if (rec) queue.push(rec);
      });
    } catch (e) {
      parts.fail('requests', e);
    }
  }
  // The OpenTelemetry SDK loads only when it exports: an agent that ships to a collector never pays for it.
  const otlpModule = opts.otlpEndpoint === undefined ? undefined : await import('./otlp.ts');
  const otlp = otlpModule === undefined
    ? (parts.off('otlp', 'no --otlp-endpoint'), undefined)
    : parts.start('otlp', () => new otlpModule.AgentOtlp(opts.otlpEndpoint!, { leakIntervalMs: segmentMs, ...opts.otlp }, node, tracer, parts, metrics));
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

  if (ownMetadata?.hasApiServer && !(await ownMetadata.ready(5000))) log('pod metadata: no pod list from the API server after 5 s; names follow when it comes');
  scan();
  ship();
  const scanTimer = setInterval(scan, opts.scanMs ?? 2000);
  const exitTimer = setInterval(retireExited, 250);
  const shipTimer = setInterval(ship, intervalMs);
  const leakTimer = setInterval(sampleLeaks, opts.leakSampleMs ?? 10_000);
  const collectProfiles = () => {
    if (profiles && tracer) queue.push(...profiles.collect(tracer.processes()));
  };
  collectProfiles();
  const profileTimer = profiles ? setInterval(collectProfiles, opts.profileIntervalMs ?? 60_000) : undefined;

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
      ship();
      await otlp?.flush();
      return shipper ? shipper.flush() : true;
    },
    async stop() {
      clearInterval(scanTimer);
      clearInterval(exitTimer);
      clearInterval(shipTimer);
      clearInterval(leakTimer);
      clearInterval(profileTimer);
      metrics.close();
      governor?.stop();
      await tracer?.drain();
      collectProfiles(); // the last blocking window, up to now
      ship();
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
