// Stop-the-world pauses, GC cycles and fatal errors of Go processes: one BPF object (bpf/runtime.bpf.c) and
// ring buffer for all of them, a layout per Go version, uprobes per process (see runtime-probes.ts). What the
// records mean (pauses as the runtime accounts them, GC cycles, fatal errors) is runtime-events.ts's.
//
// What the process said when it died (fatal error or unrecovered panic) is kept after it exits, until the
// caller forgets the process (or more than maxProcesses have been seen: the oldest detached go first).
import { percpuCounters, u32Key } from '../bpf/bridge.ts';
import { openEventsSource, type EventTransport } from '../bpf/events-source.ts';
import {
  encodeRtLayout,
  encodeRtProc,
  forEachRuntimeEvent,
  RT_PROBE_KINDS,
  RtLayoutReason,
  RUNTIME_MAX_LAYOUTS,
  RuntimeProbe,
  runtimeEventLayout,
  type RuntimeProbeName,
} from '../events/runtime-event.ts';
import type { RuntimeLayout } from '../gobinary/layouts.ts';
import { ProcessError } from '../proc/process.ts';
import { monoNowNs } from '../tracer/clock.ts';
import type { Target } from '../tracer/target.ts';
import { LayoutSlots, Tracer, type ProcessTracer } from '../tracer/tracer.ts';
import { goAbiReg } from '../events/goabi.ts';
import { RuntimeEvents, type CycleRecord, type FatalRecord, type PauseRecord, type RuntimeEventsSummary } from './runtime-events.ts';
import { planRuntimeProbes, runtimeCookie, worldStartRegister, type RuntimeProbeSite } from './runtime-probes.ts';

/** Fatal-error programs that fault pages in (uprobe.s); the perf transport loads their *_nosleep twins. */
const SLEEPABLE = ['rt_throw', 'rt_fatal', 'rt_fatalpanic'];

export interface RuntimeTracerOptions {
  /** Ring buffer (5.8+) or perf event arrays; auto picks what the kernel has (GOROSCOPE_EVENT_TRANSPORT). */
  transport?: EventTransport | 'auto';
  /** Bytes of the ring buffer (a power of two, a multiple of the page size). */
  ringBytes?: number;
  /**
   * The BPF side wakes the reader once this much waits (fatal errors at once). A quarter of the ring: the GC events
   * of a busy server (~90 KB a second from a saturated hello server) leave with the reader's quiet round each
   * second instead of waking it on their own.
   */
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

export type { CycleRecord, FatalRecord, PauseRecord } from './runtime-events.ts';

export interface RuntimeProcess extends Target {
  pid: number;
  layoutId: number;
  sites: RuntimeProbeSite[];
  skipped: Array<{ probe: RuntimeProbeName; reason: string }>;
  links: number[];
  numgcAddr: number;
  attachedAtNs: number;
  detachedAtNs?: number;
  /** Its pauses, GC cycles and fatal errors (the model the records feed). */
  events: RuntimeEvents;
}

export interface RuntimeProcessSummary extends RuntimeEventsSummary {
  pid: number;
  exe: string;
  goVersion: string;
  attached: boolean;
  probes: Array<{ probe: string; symbol: string; site: string; address: string }>;
  skippedProbes: Array<{ probe: string; reason: string }>;
}


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
      wakeupBytes: opts.wakeupBytes ?? 256 << 10,
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
    // The whole plan is the binary's (code decoded once per build); a chosen few are planned for this process.
    const plan = opts.probes
      ? planRuntimeProbes(binary, layout, new Set(opts.probes))
      : binary.analysis('runtime-probes', () => planRuntimeProbes(binary, layout));
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
      events: new RuntimeEvents(pid, layout.stwReasonStrings, plan.sites.some((s) => s.probe === 'start'), this.opts),
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

  protected applyBatch(batch: Buffer): number {
    return forEachRuntimeEvent(batch, (r) => {
      const proc = this.procs.get(r.pid);
      if (!proc) {
        this.strayRecords++;
        return;
      }
      proc.events.apply(r, this.onEvent && ((e) => this.onEvent!(proc, e)));
    });
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
      ...p.events.summary(nowNs),
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
