// The processes the agent traces: each Go process the watcher finds is handed to every tracer that is up, and when
// it exits its last records go out and its probes and per-process state go with it. Processes whose records come
// without a goroutine tracer holding them (TCP of a non-Go process, Go while the goroutine probes are down) get a
// process record of their own, once.
import type { AgentRecord } from '../../../collector/src/protocol/records.ts';
import type { LeakDetector } from '../analysis/leaks.ts';
import { GoProcessWatcher } from '../discover/go-processes.ts';
import { firstLine } from '../health/explain.ts';
import type { ProcessMetadataSource } from '../k8s/pod-metadata.ts';
import type { OverheadGovernor } from '../overhead/governor.ts';
import { inspectProcess } from '../proc/process.ts';
import type { AgentProfiles } from '../profiles/agent-profiles.ts';
import type { RequestMetrics } from '../http/request-metrics.ts';
import type { RequestSampler } from '../http/request-records.ts';
import { monoNowNs, monoToWallMs } from '../tracer/clock.ts';
import { releaseTarget, type Target } from '../tracer/target.ts';
import { TrimAfterQuiet } from './heap-trim.ts';
import type { RecordBuilder } from './record-builder.ts';
import type { Tracers } from './tracers.ts';

/** Quiet time after the last attach or exit before the heaps are collected and trimmed (trimSoon). */
const TRIM_AFTER_EXITS_MS = 3000;

export interface TracedProcessesOptions extends Tracers {
  governor?: OverheadGovernor;
  builder: RecordBuilder;
  metadata: ProcessMetadataSource;
  leaks: LeakDetector;
  profiles?: AgentProfiles;
  requestMetrics: RequestMetrics;
  requestSampler: RequestSampler;
  /** Where records go out (the agent's queue). */
  queue: AgentRecord[];
  /** Only these processes (default: every Go process on the node). */
  pids?: number[];
  log: (m: string) => void;
}

export class TracedProcesses {
  private readonly watcher: GoProcessWatcher;
  /** Processes the goroutine tracer does not hold, and whether a process record was sent for them. */
  private readonly others = new Map<number, boolean>();
  /** Every Go process taken (by any part): its share of its binary's analysis is given back when it exits. */
  private readonly targets = new Map<number, Target>();
  /** Processes in a pod the API server had not told us about yet: their record is sent again once it has. */
  private readonly unnamed = new Set<number>();

  constructor(private readonly o: TracedProcessesOptions) {
    this.watcher = new GoProcessWatcher({ pids: o.pids });
  }

  /** Whether the goroutine tracer holds pid. */
  traced(pid: number): boolean {
    return this.o.tracer?.process(pid) !== undefined;
  }

  /** Whether records of pid may go out: its process is traced, or has had its own process record. */
  known(pid: number): boolean {
    return this.traced(pid) || this.others.get(pid) === true;
  }

  /** A process record for a pid the goroutine tracer does not hold, sent once (the collector files records under it). */
  announce(pid: number): void {
    if (this.traced(pid) || this.others.has(pid)) return;
    const goVersion = this.targets.get(pid)?.binary.goVersion ?? null;
    let sent = false;
    try {
      const info = inspectProcess(pid);
      this.o.queue.push({ kind: 'process', pid, startTime: info.startTime, exe: info.exe, goVersion, containerId: null, pod: null, seenAt: Date.now(), exitedAt: null });
      sent = true;
    } catch {
      /* gone already */
    }
    this.others.set(pid, sent);
  }

  /** The full /proc scan: new processes attached, gone ones retired, late pod names sent. */
  scan(): void {
    const { tracer, builder, metadata, queue, log } = this.o;
    for (const pid of this.unnamed) {
      const proc = tracer?.process(pid);
      if (!proc) this.unnamed.delete(pid);
      else if (metadata.lookup(pid, proc.info.startTime)?.pod) {
        queue.push(builder.processRecord(proc, null, metadata));
        this.unnamed.delete(pid);
      }
    }
    const r = this.watcher.scan();
    for (const target of r.appeared) this.attach(target);
    for (const s of r.skipped) log(`not tracing pid ${s.pid}: ${s.reason}`);
    for (const pid of r.exited) this.retire(pid);
  }

  /** Between scans: probes go within ~0.25 s of their process (the full /proc scan runs every scanMs). */
  retireExited(): void {
    for (const pid of this.watcher.exited()) this.retire(pid);
  }

  /**
   * Every part that is up takes the new process; each failure is one line for this pid, and is not retried
   * (the parts that did take it keep it).
   */
  private attach(target: Target): void {
    const { tracer, runtime, requests, tcp, governor, builder, metadata, queue, log } = this.o;
    const pid = target.info.pid;
    let traced = false;
    this.targets.set(pid, target);
    if (tracer && governor) {
      try {
        // The probes come on with the governor's first window, at its first tick: once this attach (and the other
        // tracers' analyses after it) has let the event loop go, so that window ends on time.
        const proc = tracer.attach(target, { off: true });
        governor.add(proc);
        queue.push(builder.processRecord(proc, null, metadata));
        this.noteUnnamed(pid);
        traced = true;
      } catch (e) {
        log(`cannot trace the goroutines of pid ${pid}: ${firstLine(e)}`);
      }
    }
    if (tcp) {
      try {
        tcp.attach(target);
      } catch (e) {
        log(`TCP connections of pid ${pid} carry no goroutine ids: ${firstLine(e)}`);
      }
    }
    if (runtime) {
      try {
        runtime.attach(target);
      } catch (e) {
        log(`no GC/fatal-error probes for pid ${pid}: ${firstLine(e)}`);
      }
    }
    if (requests) {
      try {
        // Duty-cycled with the goroutine probes where the governor has the process: on with its first window.
        const r = requests.attach(target, { waits: traced, off: traced });
        for (const why of r.skipped) if (!why.endsWith('no server in this binary')) log(`requests of pid ${pid} not traced: ${why}`);
      } catch (e) {
        log(`no request probes for pid ${pid}: ${firstLine(e)}`);
      }
    }
    log(`tracing pid ${pid} ${target.info.exe} (${target.binary.goVersion})${traced ? '' : ' without goroutine probes'}`);
    this.trimSoon(); // an analysis read and decompressed tens of MiB that are garbage now
  }

  /** A traced process exited: its last records go out and its probes and BPF map entries go (off this thread). */
  private retire(pid: number): void {
    const { tracer, runtime, requests, requestMetrics, requestSampler, tcp, governor, builder, metadata, leaks, profiles, queue } = this.o;
    const proc = tracer?.process(pid);
    /** Detaches still under way (the kernel lets go of probes after a grace period, off this thread). */
    const detaching: Array<Promise<void> | undefined> = [];
    if (proc && governor) {
      queue.push(...builder.build(proc, governor.windows(pid), monoNowNs()));
      queue.push(builder.processRecord(proc, monoToWallMs(monoNowNs()), metadata));
      governor.remove(pid);
      builder.forget(pid);
      leaks.forget(pid);
      profiles?.forget(pid);
      detaching.push(tracer!.detach(pid));
    }
    this.unnamed.delete(pid);
    this.others.delete(pid);
    metadata.forget?.(pid);
    detaching.push(runtime?.detach(pid)); // its GC figures and fatal errors stay readable after the process is gone
    requests?.forget(pid);
    requestSampler.forget(pid);
    requestMetrics.forget(pid);
    detaching.push(tcp?.detach(pid));
    // Last: the records above were built with its binary (symbols, start functions).
    const target = this.targets.get(pid);
    this.targets.delete(pid);
    if (target) releaseTarget(target);
    this.trimSoon();
    // Once the detaches are done, what they held (links, the records they flushed) is garbage too: the trim is put
    // off until then (after 60 exits, a trim 3 s after the last exit came before much of that and left ~4 MiB).
    void Promise.allSettled(detaching).then(() => this.trimSoon());
  }

  /**
   * Once attaches and exits have stopped for a few seconds, what an analysis read and what exited processes held
   * goes back to the kernel (heap-trim.ts).
   */
  private readonly trimmer = new TrimAfterQuiet(TRIM_AFTER_EXITS_MS);

  private trimSoon(): void {
    this.trimmer.poke();
  }

  private noteUnnamed(pid: number): void {
    const m = this.o.metadata.lookup(pid);
    if (m?.podUid && !m.pod) this.unnamed.add(pid);
    else this.unnamed.delete(pid);
  }
}
