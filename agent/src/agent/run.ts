// `goroscope agent`: watches the node's Go processes (all, or those named), keeps each within the overhead
// budget, and ships what it sees to the collector.
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_RECORDS_PER_BATCH } from '../../../collector/src/protocol/schema.ts';
import type { AgentRecord } from '../../../collector/src/protocol/records.ts';
import { GoProcessWatcher } from '../discover/go-processes.ts';
import { calibrateHitCost } from '../overhead/calibrate.ts';
import { OverheadGovernor } from '../overhead/governor.ts';
import { Shipper } from '../ship/shipper.ts';
import { GoroutineTracer } from '../tracer/goroutine-tracer.ts';
import { RuntimeEventsTracer, type CycleRecord, type FatalRecord as RuntimeFatalRecord, type PauseRecord as RuntimePauseRecord } from '../runtime/runtime-tracer.ts';
import { TcpTracer } from '../tcp/tcp-tracer.ts';
import { inspectProcess } from '../proc/process.ts';
import type { ProcessRecord } from '../../../collector/src/protocol/records.ts';
import { ConnectionChanges } from './connection-changes.ts';
import { monoNowNs, monoToWallMs } from '../tracer/clock.ts';
import { RecordBuilder, defaultPolicy } from './record-builder.ts';
import { podMetadataFromEnvironment, type ProcessMetadataSource } from '../k8s/pod-metadata.ts';
import { LeakDetector, type LeakOptions } from '../analysis/leaks.ts';
import { AgentMetrics } from '../metrics/agent-metrics.ts';

export interface AgentOptions {
  collector: string;
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
  leaks?: Partial<LeakOptions>;
  log?: (msg: string) => void;
  /** Names each process's container and pod. Default: its cgroup, and this node's pods from the API server in a cluster. */
  metadata?: ProcessMetadataSource;
}

export interface RunningAgent {
  tracer: GoroutineTracer;
  runtime: RuntimeEventsTracer;
  tcp?: TcpTracer;
  shipper: Shipper;
  leaks: LeakDetector;
  metrics: AgentMetrics;
  metricsPort?: number;
  /** Ships what is pending and waits for the acknowledgements. */
  flush(): Promise<boolean>;
  stop(): Promise<void>;
}

/** A stable agent id per spool directory, so seq numbers continue across restarts. */
function agentIdFor(node: string, spoolDir?: string): string {
  const fresh = () => `${node.replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 80)}.${randomUUID()}`;
  if (!spoolDir) return fresh();
  mkdirSync(spoolDir, { recursive: true });
  const f = join(spoolDir, 'agent-id');
  if (existsSync(f)) return readFileSync(f, 'utf8').trim();
  const id = fresh();
  writeFileSync(f, id);
  return id;
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

/** A process record for a non-Go process (a connection's owner), if it is still there to be read. */
function processRecordOf(pid: number): ProcessRecord | undefined {
  try {
    const info = inspectProcess(pid);
    return { kind: 'process', pid, startTime: info.startTime, exe: info.exe, goVersion: null, containerId: null, pod: null, seenAt: Date.now(), exitedAt: null };
  } catch {
    return undefined;
  }
}

export async function startAgent(opts: AgentOptions): Promise<RunningAgent> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`goroscope agent: ${m}\n`));
  const node = opts.node ?? process.env.NODE_NAME ?? hostname();
  const ownMetadata = opts.metadata ? null : podMetadataFromEnvironment(node, log);
  const metadata: ProcessMetadataSource = opts.metadata ?? ownMetadata!;
  void ownMetadata?.start().catch((e: Error) => log(`pod metadata: ${e.message}`));
  const tracer = new GoroutineTracer();
  tracer.start();
  const runtime = new RuntimeEventsTracer();
  // TCP is node-wide: every process's connections, Go or not; Go processes also get their goroutines.
  const tcp = opts.tcp === false ? undefined : new TcpTracer({ seedPids: opts.pids, retransmitSampling: opts.retransmitSampling });
  tcp?.start();
  const connections = new ConnectionChanges();
  /** Non-Go processes with connections, and whether a process record was sent for them. */
  const otherProcesses = new Map<number, boolean>();
  if (opts.parkSampling !== undefined) tracer.setParkSampling(opts.parkSampling);
  const calibration = opts.full ? undefined : await calibrateHitCost(tracer);
  if (calibration) log(`a probe hit costs ${Math.round(calibration.nsPerHit)} ns here (${calibration.source})`);
  const intervalMs = opts.intervalMs ?? 2000;
  // In --full mode the governor never turns probes off; it still cuts time into windows for the records.
  const governor = new OverheadGovernor(tracer, {
    budget: opts.full ? Infinity : opts.overheadBudget,
    nsPerHit: calibration?.nsPerHit ?? 1,
    periodMs: opts.full ? intervalMs : 10_000,
  });
  const shipper = new Shipper({
    url: opts.collector,
    token: opts.token,
    agentId: agentIdFor(node, opts.spoolDir),
    node,
    agentVersion: '0.1.0',
    spoolDir: opts.spoolDir,
    maxSpoolBytes: opts.maxSpoolBytes,
    log,
  });
  shipper.start();
  const builder = new RecordBuilder({ ...defaultPolicy });
  const watcher = new GoProcessWatcher({ pids: opts.pids });
  const queue: AgentRecord[] = [];
  // Processes in a pod the API server had not told us about yet: their record is sent again once it has.
  const unnamed = new Set<number>();
  const noteUnnamed = (pid: number) => {
    const m = metadata.lookup(pid);
    if (m?.podUid && !m.pod) unnamed.add(pid);
    else unnamed.delete(pid);
  };

  const ship = () => {
    const now = monoNowNs();
    for (const proc of tracer.processes()) queue.push(...builder.build(proc, governor.closedWindows(proc.info.pid), now));
    if (tcp) {
      const traced = (pid: number) => tracer.process(pid) !== undefined;
      const wanted = tcp.connections().filter((c) => !opts.pids || opts.pids.includes(c.pid));
      for (const c of connections.take(wanted)) {
        // The collector files a connection under its process: a non-Go process gets a process record first.
        if (!traced(c.pid) && !otherProcesses.has(c.pid)) {
          const rec = processRecordOf(c.pid);
          otherProcesses.set(c.pid, rec !== undefined);
          if (rec) queue.push(rec);
        }
        if (traced(c.pid) || otherProcesses.get(c.pid)) queue.push(c);
      }
    }
    while (queue.length) shipper.send(queue.splice(0, MAX_RECORDS_PER_BATCH));
  };

  const scan = () => {
    for (const pid of unnamed) {
      const proc = tracer.process(pid);
      if (!proc) unnamed.delete(pid);
      else if (metadata.lookup(pid, proc.info.startTime)?.pod) {
        queue.push(builder.processRecord(proc, null, metadata));
        unnamed.delete(pid);
      }
    }
    const r = watcher.scan();
    for (const target of r.appeared) {
      try {
        const proc = tracer.attach(target.info.pid, { target });
        governor.add(proc);
        tcp?.registerGoPid(target.info.pid);
        try {
          runtime.attach(target.info.pid, { target });
        } catch (e) {
          log(`no GC/fatal-error probes for pid ${target.info.pid}: ${(e as Error).message.split('\n')[0]}`);
        }
        queue.push(builder.processRecord(proc, null, metadata));
        noteUnnamed(target.info.pid);
        log(`tracing pid ${target.info.pid} ${target.info.exe} (${target.binary.goVersion})`);
      } catch (e) {
        watcher.forget(target.info.pid);
        log(`cannot trace pid ${target.info.pid}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    for (const s of r.skipped) log(`skipping pid ${s.pid}: ${s.reason}`);
    for (const pid of r.exited) {
      const proc = tracer.process(pid);
      if (!proc) continue;
      queue.push(...builder.build(proc, governor.windows(pid), monoNowNs()));
      queue.push(builder.processRecord(proc, monoToWallMs(monoNowNs()), metadata));
      unnamed.delete(pid);
      metadata.forget?.(pid);
      governor.remove(pid);
      builder.forget(pid);
      leaks.forget(pid);
      runtime.detach(pid); // its GC figures and fatal errors stay readable after the process is gone
      tcp?.unregisterGoProcess(pid);
      tracer.detach(pid);
    }
  };

  const leaks = new LeakDetector(opts.leaks);
  const sampleLeaks = () => {
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
        });
      }
    }
  };
  const metrics = new AgentMetrics({ tracer, leaks, shipper, runtime, governor: opts.full ? undefined : governor, tcpTotals: connections.totals });
  runtime.start((p, e) => {
    metrics.onRuntimeEvent(p, e);
    const rec = runtimeRecord(e);
    if (rec) queue.push(rec);
  });
  const metricsPort = opts.metricsListen ? await metrics.listen(opts.metricsListen) : undefined;
  if (metricsPort) log(`metrics on http://${opts.metricsListen!.replace(/:\d+$/, '')}:${metricsPort}/metrics`);

  if (ownMetadata && !(await ownMetadata.ready(5000))) log('pod metadata: no pod list from the API server after 5 s; names follow when it comes');
  scan();
  ship();
  const scanTimer = setInterval(scan, opts.scanMs ?? 2000);
  const shipTimer = setInterval(ship, intervalMs);
  const leakTimer = setInterval(sampleLeaks, opts.leakSampleMs ?? 10_000);

  return {
    tracer,
    runtime,
    tcp,
    shipper,
    leaks,
    metrics,
    metricsPort,
    async flush() {
      ship();
      return shipper.flush();
    },
    async stop() {
      clearInterval(scanTimer);
      clearInterval(shipTimer);
      clearInterval(leakTimer);
      metrics.close();
      governor.stop();
      await tracer.drain();
      ship();
      await shipper.flush(5000);
      shipper.close();
      await runtime.close();
      await tcp?.close();
      await tracer.close();
      await ownMetadata?.stop();
    },
  };
}
