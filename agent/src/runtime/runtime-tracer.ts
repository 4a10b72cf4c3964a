// Stop-the-world pauses, GC cycles and fatal errors of Go processes: one BPF object (bpf/runtime.bpf.c) and
// ring buffer for all of them, a layout per Go version, uprobes per process (see runtime-probes.ts).
//
// A GC cycle is assembled from the pauses: it starts when the world stops for "GC sweep termination" (gcStart
// has won the race to start the cycle) and ends when the world restarts after the mark-termination pause in
// which runtime.gcMarkTermination ran. Its pause total is then what Go stores in MemStats.PauseNs for it.
//
// What the process said when it died (fatal error or unrecovered panic) is kept after it exits, until the
// caller forgets the process (or more than maxProcesses have been seen: the oldest detached go first).
import { percpuCounters, u32Key } from '../bpf/bridge.ts';
import { openEventsSource, type EventTransport } from '../bpf/events-source.ts';
import {
  encodeRtLayout,
  encodeRtProc,
  forEachRuntimeEvent,
  formatPanicValue,
  GoKind,
  RT_PROBE_KINDS,
  RtFlag,
  RtLayoutReason,
  RUNTIME_MAX_LAYOUTS,
  RuntimeEventKind,
  RuntimeProbe,
  runtimeEventLayout,
  type RuntimeEventRecord,
  type RuntimeProbeName,
} from '../events/runtime-event.ts';
import type { RuntimeLayout } from '../gobinary/layouts.ts';
import { ProcessError } from '../proc/process.ts';
import { monoNowNs, monoToWallMs } from '../tracer/clock.ts';
import type { Target } from '../tracer/target.ts';
import { LayoutSlots, Tracer, type ProcessTracer } from '../tracer/tracer.ts';
import { SlidingDurations, type DurationSummary } from './pause-stats.ts';
import { goAbiReg } from '../events/goabi.ts';
import { planRuntimeProbes, runtimeCookie, worldStartRegister, type RuntimeProbeSite } from './runtime-probes.ts';

/** Fatal-error programs that fault pages in (uprobe.s); the perf transport loads their *_nosleep twins. */
const SLEEPABLE = ['rt_throw', 'rt_fatal', 'rt_fatalpanic'];

export interface RuntimeTracerOptions {
  /** Ring buffer (5.8+) or perf event arrays; auto picks what the kernel has (GOROSCOPE_EVENT_TRANSPORT). */
  transport?: EventTransport | 'auto';
  /** Bytes of the ring buffer (a power of two, a multiple of the page size). */
  ringBytes?: number;
  wakeupBytes?: number;
  pollMs?: number;
  /** Samples kept per process for percentiles, and how old a sample may be to count. */
  windowSamples?: number;
  windowNs?: number;
  /** Recent pauses and cycles kept per process, as records. */
  lastN?: number;
  /** Fatal records kept per process (a dying process can report several, e.g. racing map writers). */
  maxFatalPerProcess?: number;
  /** Processes whose stats are kept, live or gone. */
  maxProcesses?: number;
  /** Processes traced at once: the bound of the per-process BPF maps (default RUNTIME_MAX_PROCS, 4096). */
  maxTracedProcesses?: number;
}

export interface PauseRecord {
  pid: number;
  /**
   * CLOCK_MONOTONIC ns (Go's nanotime is CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns), the pause as the
   * runtime itself accounts it (MemStats.PauseNs, /sched/pauses/total/gc:seconds). startNs: Go 1.22+, the
   * start stopTheWorldWithSema took once it held sched.lock (startTheWorldWithSema's worldStop argument);
   * before 1.22, when stopTheWorldWithSema was entered (the runtime's work.pauseStart is taken just before the
   * call). endNs: startTheWorldWithSema's result, the `now` the runtime records.
   */
  startNs: number;
  endNs: number;
  /** When stopTheWorldWithSema was entered (the stop probe's time): before startNs by the wait for sched.lock. */
  stopEnteredNs: number;
  /** endNs - startNs: the pause. */
  durationNs: number;
  /**
   * Until the restarting thread reached startTheWorldWithSema's RET. Longer than the pause: it adds the
   * thread's own wait for a CPU once the Ps it woke run (hundreds of us to ms on a busy 2-core machine), and
   * since Go 1.22 mark termination's bookkeeping after its `now`. The other goroutines already run then.
   */
  untilReturnNs: number;
  /** "GC sweep termination", "GC mark termination", "ReadMemStats", ... (Go < 1.21: stopTheWorld's string). */
  reason: string;
  gc: boolean;
  /** The goroutine that stopped the world. */
  goid: number;
  wallMs: number;
  /** Set once the pause is part of a GC cycle. */
  cycle?: number;
}

export interface CycleRecord {
  pid: number;
  /** memstats.numgc after the cycle (MemStats.NumGC); null when runtime.memstats is not known (stripped). */
  numgc: number | null;
  /** Cycles seen by this tracer for the process, from 1. */
  seq: number;
  /** From the sweep-termination stop to the restart after mark termination; null if the start was not seen. */
  startNs: number | null;
  endNs: number;
  durationNs: number | null;
  /** Sum of the cycle's GC pauses (Go's MemStats.PauseNs for the cycle). */
  pauseNs: number;
  pauses: number;
  wallMs: number;
}

export interface FatalRecord {
  pid: number;
  kind: 'fatal error' | 'panic';
  /** runtime.throw, runtime.fatal or runtime.fatalpanic. */
  function: string;
  /** throw/fatal's argument, or the panic value (an error's text; a number printed as Go prints it). */
  message: string;
  /** What the runtime printed on stderr as the first line: "fatal error: <message>" or "panic: <message>". */
  text: string;
  truncated: boolean;
  /** The goroutine that died: the g running, or the thread's user goroutine when that was g0 (system stack). */
  goid: number;
  onSystemStack: boolean;
  tid: number;
  monoNs: number;
  wallMs: number;
  /** Go kind of a non-string panic value (24 = string). */
  valueKind?: number;
}

export interface RuntimeProcess extends Target {
  pid: number;
  layoutId: number;
  sites: RuntimeProbeSite[];
  skipped: Array<{ probe: RuntimeProbeName; reason: string }>;
  links: number[];
  numgcAddr: number;
  attachedAtNs: number;
  detachedAtNs?: number;
  pauses: SlidingDurations;
  gcPauses: SlidingDurations;
  cycles: SlidingDurations;
  pauseReasons: Map<string, number>;
  lastPauses: PauseRecord[];
  lastCycles: CycleRecord[];
  fatal: FatalRecord[];
  /** Records that arrived for this process that could not be used (a restart with no stop is counted in BPF). */
  oddRecords: number;
  open?: { startNs: number | null; pauseNs: number; pauses: PauseRecord[]; markTerm: boolean; numgc: number | null };
  cycleSeq: number;
}

export interface RuntimeProcessSummary {
  pid: number;
  exe: string;
  goVersion: string;
  attached: boolean;
  probes: Array<{ probe: string; symbol: string; site: string; address: string }>;
  skippedProbes: Array<{ probe: string; reason: string }>;
  pauses: DurationSummary;
  gcPauses: DurationSummary;
  pauseReasons: Record<string, number>;
  cycles: DurationSummary;
  lastPauses: PauseRecord[];
  lastCycles: CycleRecord[];
  fatal: FatalRecord[];
}

const GC_REASONS = new Set(['GC sweep termination', 'GC mark termination']);

export interface RuntimeAttachOptions {
  probes?: RuntimeProbeName[];
}

type RuntimeVisitor = (p: RuntimeProcess, e: PauseRecord | CycleRecord | FatalRecord) => void;

export class RuntimeEventsTracer extends Tracer<RuntimeProcess> implements ProcessTracer<RuntimeProcess, RuntimeAttachOptions> {
  private readonly opts: Required<Omit<RuntimeTracerOptions, 'transport'>>;
  private readonly layouts: LayoutSlots;
  private onEvent?: RuntimeVisitor;

  constructor(opts: RuntimeTracerOptions = {}) {
    const o = {
      ringBytes: opts.ringBytes ?? 1 << 20,
      wakeupBytes: opts.wakeupBytes ?? 64 << 10,
      pollMs: opts.pollMs ?? 10,
      windowSamples: opts.windowSamples ?? 1024,
      windowNs: opts.windowNs ?? 5 * 60e9,
      lastN: opts.lastN ?? 32,
      maxFatalPerProcess: opts.maxFatalPerProcess ?? 16,
      maxProcesses: opts.maxProcesses ?? 1024,
      maxTracedProcesses: opts.maxTracedProcesses ?? 4096,
    };
    const source = openEventsSource({
      object: 'runtime',
      map: 'runtime_events',
      recordSize: runtimeEventLayout.size,
      ringBytes: o.ringBytes,
      perfWakeupBytes: 1, // rare records, and a fatal one must leave before its process is gone: wake at once
      ringWakeupBytes: o.wakeupBytes,
      transport: opts.transport,
      programsFor: { ringbuf: SLEEPABLE, perf: SLEEPABLE.map((p) => `${p}_nosleep`) },
      sizes: { rt_procs: o.maxTracedProcesses, stw_pending: o.maxTracedProcesses },
      perProcessMaps: ['rt_procs', 'stw_pending'],
    });
    super(source, o.pollMs);
    this.opts = o;
    this.layouts = new LayoutSlots(this.bpf, 'rt_layouts', RUNTIME_MAX_LAYOUTS);
  }

  override start(onEvent?: RuntimeVisitor): void {
    if (this.reading) return;
    this.onEvent = onEvent;
    super.start();
  }

  /** One BPF layout slot per distinct set of values (a DWARF layout of an experiment build gets its own). */
  private layoutId(layout: RuntimeLayout): number {
    const g = layout.g.fields;
    const stop = layout.functions.stopTheWorldWithSema;
    const reasonInRax = layout.stwReasonStrings.length > 0 && stop?.params[0]?.name === 'reason' && stop.params[0].register === 'RAX';
    return this.layouts.idOf(encodeRtLayout({
      g_goid: g.goid.offset,
      g_m: g.m.offset,
      m_curg: layout.m.fields.curg.offset,
      m_preemptoff: layout.m.fields.preemptoff.offset,
      panic_arg: layout.panic.fields.arg.offset,
      flags: reasonInRax ? RtLayoutReason.inRax : RtLayoutReason.preemptoff,
      start_arg_reg: goAbiReg(worldStartRegister(layout)),
    }));
  }

  /** Attaches the runtime probes to a running Go process. Throws a ProcessError an SRE can act on. */
  attach(target: Target, opts: RuntimeAttachOptions = {}): RuntimeProcess {
    const { info, binary, layout, bias } = target;
    const pid = info.pid;
    const old = this.procs.get(pid);
    if (old && old.detachedAtNs === undefined) throw new ProcessError(`pid ${pid} is already traced`);
    if (!layout.functions.stopTheWorldWithSema || !layout.panic || !layout.mstats) {
      throw new ProcessError(`pid ${pid}: the runtime layout of Go ${layout.goVersion} lacks the runtime-event fields (regenerate runtime-layouts.json)`);
    }
    const layoutId = this.layoutId(layout);
    const plan = planRuntimeProbes(binary, layout, opts.probes && new Set(opts.probes));
    const memstats = binary.elf.symbol('runtime.memstats');
    const numgcAddr = memstats ? memstats.value + layout.mstats.fields.numgc.offset + bias : 0;
    // Before Go 1.22 the runtime accounts a GC pause from work.pauseStart (a global; not in stripped binaries).
    const work = binary.elf.symbol('runtime.work');
    const pauseStart = layout.work?.fields.pauseStart;
    const pauseStartAddr = work && pauseStart ? work.value + pauseStart.offset + bias : 0;
    const lastGc = layout.mstats.fields.last_gc_nanotime;
    const lastGcAddr = memstats && lastGc && !worldStartRegister(layout) ? memstats.value + lastGc.offset + bias : 0;
    const proc: RuntimeProcess = {
      ...target,
      pid,
      layoutId,
      sites: plan.sites,
      skipped: plan.skipped,
      links: [],
      numgcAddr,
      attachedAtNs: monoNowNs(),
      pauses: new SlidingDurations(this.opts.windowSamples, this.opts.windowNs),
      gcPauses: new SlidingDurations(this.opts.windowSamples, this.opts.windowNs),
      cycles: new SlidingDurations(this.opts.windowSamples, this.opts.windowNs),
      pauseReasons: new Map(),
      lastPauses: [],
      lastCycles: [],
      fatal: [],
      oddRecords: 0,
      cycleSeq: 0,
    };
    this.procs.delete(pid);
    this.procs.set(pid, proc);
    this.evict();
    try {
      this.bpf.updateElem('rt_procs', u32Key(pid), encodeRtProc(numgcAddr, pauseStartAddr, lastGcAddr));
      for (const s of plan.sites) {
        const program = this.transport === 'perf' && SLEEPABLE.includes(s.program) ? `${s.program}_nosleep` : s.program;
        proc.links.push(this.bpf.attachUprobe(program, info.exeLink, s.fileOffset, pid, runtimeCookie(s, layoutId)));
      }
    } catch (e) {
      void this.detach(pid);
      throw e;
    }
    return proc;
  }

  /**
   * Removes the probes; what was learnt about the process stays (see forget). Resolves when the kernel has let
   * go of them and no BPF map holds an entry of the process.
   */
  detach(pid: number): Promise<void> {
    const proc = this.procs.get(pid);
    if (!proc || proc.detachedAtNs !== undefined) return Promise.resolve();
    const links = proc.links;
    proc.links = [];
    proc.detachedAtNs = monoNowNs();
    return this.detacher.detach(links).then(() => {
      if (this.closed) return;
      this.bpf.deleteElem('rt_procs', u32Key(pid));
      this.bpf.deleteElem('stw_pending', u32Key(pid)); // a process that died in a pause
    });
  }

  forget(pid: number): void {
    void this.detach(pid);
    this.procs.delete(pid);
  }

  private evict(): void {
    if (this.procs.size <= this.opts.maxProcesses) return;
    for (const [pid, p] of this.procs) {
      if (this.procs.size <= this.opts.maxProcesses) break;
      if (p.detachedAtNs !== undefined) this.procs.delete(pid);
    }
  }

  private reasonOf(proc: RuntimeProcess, r: RuntimeEventRecord): string {
    const names = proc.layout.stwReasonStrings;
    if (names.length) return names[r.stwReason] ?? `stwReason(${r.stwReason})`;
    // Go < 1.21: gcStart stops the world with m.preemptoff empty, gcMarkDone with "gcing"; every other
    // stopTheWorld(reason) leaves its reason there.
    if (r.reason === '') return 'GC sweep termination';
    if (r.reason === 'gcing') return 'GC mark termination';
    return r.reason;
  }

  protected applyBatch(batch: Buffer): number {
    return forEachRuntimeEvent(batch, (r) => {
      const proc = this.procs.get(r.pid);
      if (!proc) {
        this.strayRecords++;
        return;
      }
      switch (r.kind) {
        case RuntimeEventKind.stw:
          this.onPause(proc, r);
          break;
        case RuntimeEventKind.gcMarkTermination:
          if (!proc.open) proc.open = { startNs: null, pauseNs: 0, pauses: [], markTerm: false, numgc: null };
          proc.open.markTerm = true;
          proc.open.numgc = r.flags & RtFlag.numgc ? r.value + 1 : null;
          break;
        case RuntimeEventKind.throw:
        case RuntimeEventKind.fatalPanic:
          this.onFatal(proc, r);
          break;
        default:
          proc.oddRecords++;
      }
    });
  }

  private push<T>(list: T[], x: T, max: number): void {
    list.push(x);
    if (list.length > max) list.splice(0, list.length - max);
  }

  private onPause(proc: RuntimeProcess, r: RuntimeEventRecord): void {
    if (r.startNs === 0 || r.tsNs < r.startNs) {
      proc.oddRecords++;
      return;
    }
    const reason = this.reasonOf(proc, r);
    const gc = GC_REASONS.has(reason);
    // Go's restart time, unless it is not plausible (then the RET's time); Go's own start likewise (then the
    // stop probe's). Before Go 1.22, gcMarkTermination accounts its pause to a `now` it took before
    // restarting the world (and stored in memstats.last_gc_nanotime), a few microseconds before the restart's.
    let endNs = r.goNowNs > r.startNs && r.goNowNs <= r.tsNs ? r.goNowNs : r.tsNs;
    if (r.flags & RtFlag.lastGc && reason === 'GC mark termination' && proc.open?.markTerm && r.value > r.startNs && r.value <= endNs) {
      endNs = r.value;
    }
    // Go 1.22+ took it after the stop was entered; before, a GC stop's work.pauseStart was set just before the
    // call (other stops leave it stale: they are not the runtime's to account).
    const fromArg = proc.sites.some((s) => s.probe === 'start');
    const goStart = fromArg
      ? r.goStartNs >= r.startNs && r.goStartNs < endNs
      : gc && r.goStartNs > 0 && r.goStartNs <= r.startNs && r.startNs - r.goStartNs < 1e9;
    const startNs = goStart ? r.goStartNs : r.startNs;
    const pause: PauseRecord = {
      pid: proc.pid,
      startNs,
      endNs,
      stopEnteredNs: r.startNs,
      durationNs: endNs - startNs,
      untilReturnNs: r.tsNs - startNs,
      reason,
      gc,
      goid: r.goid,
      wallMs: monoToWallMs(endNs),
    };
    proc.pauses.add(endNs, pause.durationNs);
    if (gc) proc.gcPauses.add(endNs, pause.durationNs);
    proc.pauseReasons.set(reason, (proc.pauseReasons.get(reason) ?? 0) + 1);
    this.push(proc.lastPauses, pause, this.opts.lastN);
    this.onEvent?.(proc, pause);
    if (!gc) return;
    if (reason === 'GC sweep termination') {
      // A cycle left open means its end was missed (a probe detached, or a record dropped): drop it.
      if (proc.open) proc.oddRecords++;
      proc.open = { startNs, pauseNs: 0, pauses: [], markTerm: false, numgc: null };
    }
    if (!proc.open) proc.open = { startNs: null, pauseNs: 0, pauses: [], markTerm: false, numgc: null };
    const open = proc.open;
    open.pauseNs += pause.durationNs;
    open.pauses.push(pause);
    if (!open.markTerm) return; // gcMarkDone may stop the world, find more work and restart: not the end
    proc.open = undefined;
    const cycle: CycleRecord = {
      pid: proc.pid,
      numgc: open.numgc,
      seq: ++proc.cycleSeq,
      startNs: open.startNs,
      endNs,
      durationNs: open.startNs === null ? null : endNs - open.startNs,
      pauseNs: open.pauseNs,
      pauses: open.pauses.length,
      wallMs: monoToWallMs(endNs),
    };
    for (const p of open.pauses) p.cycle = cycle.numgc ?? cycle.seq;
    if (cycle.durationNs !== null) proc.cycles.add(endNs, cycle.durationNs);
    this.push(proc.lastCycles, cycle, this.opts.lastN);
    this.onEvent?.(proc, cycle);
  }

  private onFatal(proc: RuntimeProcess, r: RuntimeEventRecord): void {
    const panic = r.kind === RuntimeEventKind.fatalPanic;
    const onSystemStack = r.goid === 0;
    let message: string;
    if (!panic || r.flags & RtFlag.panicString) message = r.msg;
    else if (r.flags & RtFlag.panicNil) message = 'nil';
    else message = formatPanicValue(r.valueKind, r.valueBig) ?? `(kind ${r.valueKind}) 0x${r.valueBig.toString(16)}`;
    const fatal: FatalRecord = {
      pid: proc.pid,
      kind: panic ? 'panic' : 'fatal error',
      function: panic ? 'runtime.fatalpanic' : r.value === RuntimeProbe.fatal ? 'runtime.fatal' : 'runtime.throw',
      message,
      text: `${panic ? 'panic' : 'fatal error'}: ${message}`,
      truncated: r.msgFullLen > r.msg.length || (r.flags & RtFlag.msgUnreadable) !== 0,
      goid: onSystemStack ? r.curgGoid : r.goid,
      onSystemStack,
      tid: r.tid,
      monoNs: r.tsNs,
      wallMs: monoToWallMs(r.tsNs),
    };
    if (panic && !(r.flags & RtFlag.panicString)) fatal.valueKind = r.valueKind;
    if (panic && r.valueKind === GoKind.string) fatal.valueKind = GoKind.string;
    this.push(proc.fatal, fatal, this.opts.maxFatalPerProcess);
    this.onEvent?.(proc, fatal);
  }

  /** A JSON-ready view of one process (live or gone). */
  summary(pid: number, nowNs = monoNowNs()): RuntimeProcessSummary | undefined {
    const p = this.procs.get(pid);
    if (!p) return undefined;
    return {
      pid,
      exe: p.info.exe,
      goVersion: p.binary.goVersion,
      attached: p.detachedAtNs === undefined,
      probes: p.sites.map((s) => ({ probe: s.probe, symbol: s.symbol, site: s.kind, address: `0x${s.vaddr.toString(16)}` })),
      skippedProbes: p.skipped,
      pauses: p.pauses.summary(nowNs),
      gcPauses: p.gcPauses.summary(nowNs),
      pauseReasons: Object.fromEntries(p.pauseReasons),
      cycles: p.cycles.summary(nowNs),
      lastPauses: [...p.lastPauses],
      lastCycles: [...p.lastCycles],
      fatal: [...p.fatal],
    };
  }

  /** Records lost in BPF, by probe: ring buffer full, pending-stop map full, or a restart with no stop seen. */
  lost(): Record<string, number> {
    return percpuCounters(this.bpf, 'rt_drop_counts', RuntimeProbe);
  }

  hits(layoutId: number): Record<string, number> {
    return percpuCounters(this.bpf, 'rt_hit_counts', RuntimeProbe, layoutId * RT_PROBE_KINDS);
  }
}
