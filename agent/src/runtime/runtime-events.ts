// What the runtime probes' records of one Go process mean: its stop-the-world pauses timed as the runtime
// accounts them, GC cycles assembled from them, and what it said when it died. Fed records (decoded from the
// ring, or built with the generated layout's encoder in tests), it needs no kernel.
//
// A GC cycle is assembled from the pauses: it starts when the world stops for "GC sweep termination" (gcStart
// has won the race to start the cycle) and ends when the world restarts after the mark-termination pause in
// which runtime.gcMarkTermination ran. Its pause total is then what Go stores in MemStats.PauseNs for it.
import { formatPanicValue, GoKind, RtFlag, RuntimeEventKind, RuntimeProbe, type RuntimeEventRecord } from '../events/runtime-event.ts';
import { monoNowNs, monoToWallMs } from '../tracer/clock.ts';
import { SlidingDurations, type DurationSummary } from './pause-stats.ts';

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

export type RuntimeEvent = PauseRecord | CycleRecord | FatalRecord;
export type RuntimeEventVisitor = (e: RuntimeEvent) => void;

export interface RuntimeEventsOptions {
  /** Samples kept for percentiles, and how old a sample may be to count. */
  windowSamples: number;
  windowNs: number;
  /** Recent pauses and cycles kept, as records. */
  lastN: number;
  /** Fatal records kept (a dying process can report several, e.g. racing map writers). */
  maxFatalPerProcess: number;
}

export const defaultRuntimeEventsOptions: RuntimeEventsOptions = { windowSamples: 1024, windowNs: 5 * 60e9, lastN: 32, maxFatalPerProcess: 16 };

/** The pause and cycle figures of one process, JSON-ready. */
export interface RuntimeEventsSummary {
  pauses: DurationSummary;
  gcPauses: DurationSummary;
  pauseReasons: Record<string, number>;
  cycles: DurationSummary;
  lastPauses: PauseRecord[];
  lastCycles: CycleRecord[];
  fatal: FatalRecord[];
}

const GC_REASONS = new Set(['GC sweep termination', 'GC mark termination']);

export class RuntimeEvents {
  readonly pauses: SlidingDurations;
  readonly gcPauses: SlidingDurations;
  readonly cycles: SlidingDurations;
  readonly pauseReasons = new Map<string, number>();
  readonly lastPauses: PauseRecord[] = [];
  readonly lastCycles: CycleRecord[] = [];
  readonly fatal: FatalRecord[] = [];
  /** Records that could not be used (a restart with no stop is counted in BPF). */
  oddRecords = 0;
  private open?: { startNs: number | null; pauseNs: number; pauses: PauseRecord[]; markTerm: boolean; numgc: number | null };
  private cycleSeq = 0;

  /**
   * stwReasonStrings: the runtime's names of stop reasons (Go 1.21+; empty before). startFromArgument: the
   * pause's start comes from startTheWorldWithSema's worldStop argument (Go 1.22+, the 'start' probe placed).
   */
  constructor(
    readonly pid: number,
    private readonly stwReasonStrings: string[],
    private readonly startFromArgument: boolean,
    private readonly opts: RuntimeEventsOptions = defaultRuntimeEventsOptions,
  ) {
    this.pauses = new SlidingDurations(opts.windowSamples, opts.windowNs);
    this.gcPauses = new SlidingDurations(opts.windowSamples, opts.windowNs);
    this.cycles = new SlidingDurations(opts.windowSamples, opts.windowNs);
  }

  /** Applies one record of this process; each pause, cycle or fatal error it completes goes to emit. */
  apply(r: RuntimeEventRecord, emit?: RuntimeEventVisitor): void {
    switch (r.kind) {
      case RuntimeEventKind.stw:
        this.onPause(r, emit);
        break;
      case RuntimeEventKind.gcMarkTermination:
        if (!this.open) this.open = { startNs: null, pauseNs: 0, pauses: [], markTerm: false, numgc: null };
        this.open.markTerm = true;
        this.open.numgc = r.flags & RtFlag.numgc ? r.value + 1 : null;
        break;
      case RuntimeEventKind.throw:
      case RuntimeEventKind.fatalPanic:
        this.onFatal(r, emit);
        break;
      default:
        this.oddRecords++;
    }
  }

  summary(nowNs = monoNowNs()): RuntimeEventsSummary {
    return {
      pauses: this.pauses.summary(nowNs),
      gcPauses: this.gcPauses.summary(nowNs),
      pauseReasons: Object.fromEntries(this.pauseReasons),
      cycles: this.cycles.summary(nowNs),
      lastPauses: [...this.lastPauses],
      lastCycles: [...this.lastCycles],
      fatal: [...this.fatal],
    };
  }

  private reasonOf(r: RuntimeEventRecord): string {
    const names = this.stwReasonStrings;
    if (names.length) return names[r.stwReason] ?? `stwReason(${r.stwReason})`;
    // Go < 1.21: gcStart stops the world with m.preemptoff empty, gcMarkDone with "gcing"; every other
    // stopTheWorld(reason) leaves its reason there.
    if (r.reason === '') return 'GC sweep termination';
    if (r.reason === 'gcing') return 'GC mark termination';
    return r.reason;
  }

  private static push<T>(list: T[], x: T, max: number): void {
    list.push(x);
    if (list.length > max) list.splice(0, list.length - max);
  }

  private onPause(r: RuntimeEventRecord, emit?: RuntimeEventVisitor): void {
    if (r.startNs === 0 || r.tsNs < r.startNs) {
      this.oddRecords++;
      return;
    }
    const reason = this.reasonOf(r);
    const gc = GC_REASONS.has(reason);
    // Go's restart time, unless it is not plausible (then the RET's time); Go's own start likewise (then the
    // stop probe's). Before Go 1.22, gcMarkTermination accounts its pause to a `now` it took before
    // restarting the world (and stored in memstats.last_gc_nanotime), a few microseconds before the restart's.
    let endNs = r.goNowNs > r.startNs && r.goNowNs <= r.tsNs ? r.goNowNs : r.tsNs;
    if (r.flags & RtFlag.lastGc && reason === 'GC mark termination' && this.open?.markTerm && r.value > r.startNs && r.value <= endNs) {
      endNs = r.value;
    }
    // Go 1.22+ took it after the stop was entered; before, a GC stop's work.pauseStart was set just before the
    // call (other stops leave it stale: they are not the runtime's to account).
    const fromArg = this.startFromArgument;
    const goStart = fromArg
      ? r.goStartNs >= r.startNs && r.goStartNs < endNs
      : gc && r.goStartNs > 0 && r.goStartNs <= r.startNs && r.startNs - r.goStartNs < 1e9;
    const startNs = goStart ? r.goStartNs : r.startNs;
    const pause: PauseRecord = {
      pid: this.pid,
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
    this.pauses.add(endNs, pause.durationNs);
    if (gc) this.gcPauses.add(endNs, pause.durationNs);
    this.pauseReasons.set(reason, (this.pauseReasons.get(reason) ?? 0) + 1);
    RuntimeEvents.push(this.lastPauses, pause, this.opts.lastN);
    emit?.(pause);
    if (!gc) return;
    if (reason === 'GC sweep termination') {
      // A cycle left open means its end was missed (a probe detached, or a record dropped): drop it.
      if (this.open) this.oddRecords++;
      this.open = { startNs, pauseNs: 0, pauses: [], markTerm: false, numgc: null };
    }
    if (!this.open) this.open = { startNs: null, pauseNs: 0, pauses: [], markTerm: false, numgc: null };
    const open = this.open;
    open.pauseNs += pause.durationNs;
    open.pauses.push(pause);
    if (!open.markTerm) return; // gcMarkDone may stop the world, find more work and restart: not the end
    this.open = undefined;
    const cycle: CycleRecord = {
      pid: this.pid,
      numgc: open.numgc,
      seq: ++this.cycleSeq,
      startNs: open.startNs,
      endNs,
      durationNs: open.startNs === null ? null : endNs - open.startNs,
      pauseNs: open.pauseNs,
      pauses: open.pauses.length,
      wallMs: monoToWallMs(endNs),
    };
    for (const p of open.pauses) p.cycle = cycle.numgc ?? cycle.seq;
    if (cycle.durationNs !== null) this.cycles.add(endNs, cycle.durationNs);
    RuntimeEvents.push(this.lastCycles, cycle, this.opts.lastN);
    emit?.(cycle);
  }

  private onFatal(r: RuntimeEventRecord, emit?: RuntimeEventVisitor): void {
    const panic = r.kind === RuntimeEventKind.fatalPanic;
    const onSystemStack = r.goid === 0;
    let message: string;
    if (!panic || r.flags & RtFlag.panicString) message = r.msg;
    else if (r.flags & RtFlag.panicNil) message = 'nil';
    else message = formatPanicValue(r.valueKind, r.valueBig) ?? `(kind ${r.valueKind}) 0x${r.valueBig.toString(16)}`;
    const fatal: FatalRecord = {
      pid: this.pid,
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
    RuntimeEvents.push(this.fatal, fatal, this.opts.maxFatalPerProcess);
    emit?.(fatal);
  }
}
