// Keeps the probes' cost within a budget of each traced process's CPU.
//
// Every goroutine probe (creation, exit, park, ready) costs a trap per hit, and a server that starts a goroutine
// per request hits creation and exit as often as park and ready. So all of them share one budget and one duty
// cycle: on for a window, off for the rest of a cycle, whenever their cost would exceed budget x the process's
// CPU. That cost is measured in the process itself, on-windows beside off-windows (HitCost), never less than the
// calibration's cost per hit times the hits counted. Every window is recorded with the probes it had, so figures
// derived from events (park durations, wakers, blocked time, short-lived goroutines) are samples over known
// windows, never silent gaps.
// Counts and states are not sampled: they come from the runtime's own memory (inventory/scanner.ts: allgs and the
// goroutine-id generator), which costs the process nothing, so each window's creations and exits are whole.
import { readdirSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { WindowRecord } from '../../../collector/src/protocol/records.ts';
import type { GoroutineTracer, TracedProcess } from '../tracer/goroutine-tracer.ts';
import { monoNowNs, monoToWallMs } from '../tracer/clock.ts';


export interface GovernorOptions {
  /** Fraction of the traced process's CPU the probes may cost (0.02 = 2%). */
  budget: number;
  /**
   * Cost of one probe hit, from calibrateHitCost: where each process starts, and the least it is charged. The
   * governor then measures what a hit costs that process itself (see HitCost).
   */
  nsPerHit: number;
  /** How long a window lasts while the probes stay on (10 s). */
  periodMs?: number;
  /**
   * One on/off cycle while the budget asks for less than all the time (2 s, at most periodMs): short, so that
   * any few seconds of the process's life hold whole cycles and pay the budget, not all or nothing of it.
   */
  cycleMs?: number;
  /** Shortest on-window worth having (50 ms). */
  minOnMs?: number;
  /** Windows remembered per process. */
  maxWindows?: number;
  /**
   * The request probes (net/http, grpc-go): their hits so far for a process, in emulated-hit equivalents, as
   * their BPF programs counted them (HttpTracer.probeHits: not their records, which lag), and their switch. They
   * are duty-cycled with the goroutine probes: on a cheap handler even one trap per request is several % of its
   * CPU, more than the whole budget.
   */
  requests?: { hits: (pid: number) => number; setProbes: (pid: number, on: boolean) => Promise<void> | void };
  /**
   * What the always-on TCP hooks cost the process per system call, in ns (0 or absent: none). Any syscall
   * tracepoint, classic or raw, puts every syscall of the node on the kernel's slow path (docs/architecture.md:
   * +120-170 ns each, `npm run bench -- --only tcp-attach`); that cost is not duty-cycled, so it comes out of the
   * budget first and the duty-cycled probes share what is left.
   */
  nsPerSyscall?: number;
  /**
   * Hits so far of uprobes in a process that stay on (TCP's accept probe: one per accepted connection): charged
   * at the process's cost per hit, out of the budget first with the syscall hooks.
   */
  alwaysOnHits?: (pid: number) => number;
}

/** The syscall hooks' cost per call the agent charges when TCP tracing is on (tcp-attach bench: 119-168 ns). */
export const TCP_HOOK_NS_PER_SYSCALL = 150;

/**
 * What the probes cost one process, measured in the process itself. A calibration ping-pong pays a hit less than a
 * busy server does (its code and data come back into the caches; the server's own are evicted; the request,
 * scheduler and TCP probes hit too): the hello server at saturation paid ~2.4 us a hit where the calibration said
 * ~1.1. So each on-window is set beside the off-window next to it: the process's run time per unit of work (the
 * bytes it read and wrote, /proc/PID/io rchar + wchar, which the probes do not move) off tells what the on-window's
 * work would have cost without the probes; the rest is what they cost, every probe the window switched, counted or
 * not, with what it does to the caches. The unit is bytes, not read and write calls: a server's calls per request
 * move with load (an empty read, EAGAIN, when the next request is not there yet; none at saturation, where it
 * is), and the probes' slowdown and the agent's own CPU beside the client move it too, so calls made an on-window
 * look cheap. As a share of the process's CPU it needs no hit counts (records the agent has not read yet would make
 * a window look cheap); per hit counted it is shown beside the calibration. The last samples taken at about the
 * present load (SIMILAR_LOAD) are pooled (their extra run time over the run time their work would have taken: one
 * window of a few dozen ms moves by the noise of the off-window's rate, and a median of such ratios was off by
 * several times), never less than the
 * calibration's cost of the hits counted. The on-window is measured from its switch on (attaching, the probes
 * coming on one by one, is part of what a window costs) until its switch off is done and the process has settled
 * (SETTLE_MS: the last hits during the detach, and what the window leaves behind), the off-window from then: no
 * stretch of the process's time is left out, and the off-window's rate is a clean one. (One window's settling is
 * lost in the noise of its off-window, halves of a second differing by +-20% in rate on a loaded machine; folded
 * over many windows it is 1/3 of what a window costs.)
 */
export interface HitCost {
  /** Charged per hit: the pooled samples' extra run time over their hits, or the calibration where that is more. */
  nsPerHit: number;
  source: 'measured' | 'calibrated';
  /** The probes' share of the process's CPU while on, pooled over the samples (what the budget is held with), and
   * how many samples it pools. */
  share: number | undefined;
  /** The share's upper one-sided 95% confidence bound over the pooled samples (what the duty cycle is set by, so
   * that the probes' true cost is under the budget in 19 of 20 estimates, not in half of them), and how many
   * samples it pools. */
  shareHigh: number | undefined;
  /** The same per hit counted (pooled over the samples with MIN_PHASE_HITS or more), and its upper bound: a hit
   * costs about the same at any load, where the share grows with the load (the hello server's ~30 us of probes a
   * request are ~75% of its CPU at 10k/s, ~200% at saturation), so a share pooled over a change of load falls
   * short of the new one until new samples replace the old. */
  measuredNsPerHit: number | undefined;
  measuredNsPerHitHigh: number | undefined;
  /** What the duty cycle is set by: the samples' extra run time (tail and settling included) per ns the process ran
   * in their on-windows, pooled, and its upper bound. Not the share: a window's extra is also paid after it (the
   * tail, the settling), and while on the process may run less than its off rate (waiting on its load), so the
   * share of the on-window's run time (share / (1 + share)) fell short by 1.3-1.5x on the hello server. */
  perRun: number | undefined;
  perRunHigh: number | undefined;
  pooled: number;
  /** The in-process samples, oldest first: ns per hit counted in the on-window, and the probes' share of the
   * process's CPU while on. */
  samples: number[];
  shares: number[];
}

/** In-process samples shown per process (HitCost.samples), and pooled for the charged cost: one a cycle (2 s), a
 * minute's worth. A window of 50 ms moves with the process's rate from one moment to the next (how its requests
 * bunch, what else runs on its CPU: +-100% of the probes' share in one window at load 10), so the cost rests on
 * many; it moves slowly (the machine, the process's code), so a minute is not stale. */
const HIT_COST_SAMPLES = 9;
const POOLED_SAMPLES = 30;
/**
 * The samples pooled are those taken at about the load now: their off-window's run time per second within this
 * factor of the last off-window's (all of them when none is). What a window costs follows the load beyond its hits:
 * the settling after it slows whatever the process runs then. Pooled from the bench's 10k/s phase, the hello server's
 * saturation was charged 0.5-0.8 us a hit where it paid ~2.9 (its windows' extra, the settling included, over their
 * hits), and its probes cost twice what the governor estimated.
 */
const SIMILAR_LOAD = 1.5;
/** One-sided 95% quantiles of Student's t, by degrees of freedom (1-30; beyond, 1.7). */
const T95_ONE_SIDED = [6.31, 2.92, 2.35, 2.13, 2.02, 1.94, 1.89, 1.86, 1.83, 1.81, 1.8, 1.78, 1.77, 1.76, 1.75, 1.75, 1.74, 1.73, 1.73, 1.72, 1.72, 1.72, 1.71, 1.71, 1.71, 1.71, 1.7, 1.7, 1.7, 1.7];

/**
 * A pooled ratio (the samples' extra run time summed over the sum of what it is taken of: the run time their work
 * takes without the probes, or the hits counted; a ratio estimator) and its upper one-sided 95% bound, from the
 * ratio's standard error over the samples' residuals about it, at most the value again: one sample has no spread,
 * and two or three far apart (t = 6.3 for two) would have put the fraction near nothing, the off-windows minutes
 * long, and so no new sample to narrow it (the real cost ran 0.74-1.85x the budget when aimed at it: twice covers
 * that).
 */
export function pooledRatio(samples: readonly { extra: number; of: number }[]): { value: number; high: number } | undefined {
  const n = samples.length;
  const of = samples.reduce((a, p) => a + p.of, 0);
  if (!(of > 0)) return undefined;
  const value = samples.reduce((a, p) => a + p.extra, 0) / of;
  if (n < 2) return { value, high: value + Math.abs(value) };
  const ss = samples.reduce((a, p) => a + (p.extra - value * p.of) ** 2, 0);
  const se = Math.sqrt(ss / (n - 1) / n) / (of / n);
  return { value, high: value + Math.min(Math.abs(value), (T95_ONE_SIDED[n - 2] ?? 1.7) * se) };
}

/** Least work (bytes read and written) in both windows of a pair, and hits in the on one, for a sample. */
const MIN_PHASE_WORK = 4096;
const MIN_PHASE_HITS = 100;
/** Shortest off-window (ms, from its detach done) whose run time per second the budget is taken of. */
const MIN_CLEAN_MS = 200;
/** Span over which utime + stime are set beside run time (ProcState.cpuRatio). */
const RATIO_SPAN_MS = 5000;
/**
 * The first on-window (ms), which measures the process's rate before any fraction is known: at full cost, and paid
 * for by the off-window after it like any overrun. It was 1 s, ~6% of the http bench's 17 s run at several times
 * the budget, and then not paid for; 200 ms holds thousands of hits at any rate worth duty-cycling.
 */
const FIRST_WINDOW_MS = 200;
/** What switching the probes off is taken to take until measured (ms). */
const INITIAL_DETACH_MS = 150;
/**
 * How long after its switch off an on-window still costs the process (ms): its tail (Phase.tail) lasts until then
 * or until the detach is done, whichever is later, and the off-window's rate is measured from there. The hello
 * server at saturation ran 13% more run time per byte 50-100 ms after the switch off, 10% at 100-150, 4% at
 * 150-200, within 1% from 200 ms on (the detach done at 80-110 ms; folded over the windows of a 30 s run, its
 * run time and bytes sampled every 5 ms from outside): an off-window measured from the detach took that in as
 * the clean rate, and the windows' cost was charged at 2/3 of what it was.
 */
const SETTLE_MS = 250;
/** An always-on process is measured in the process once in this many periods (when its cost is near the budget). */
const MEASURE_EVERY_PERIODS = 10;
/**
 * How often an on-window longer than a duty cycle is looked at (ms). A process idle when its window began keeps its
 * probes on for up to a period (10 s, its cost then nothing); load that arrives meanwhile paid them in full until
 * the window's end: ~2.7 s at ~60% of the hello server's CPU in a run that started saturating mid-window.
 */
const WATCH_MS = 500;

/** One measured phase (from its probes' switch done to its end), for the in-process samples. */
interface Phase {
  on: boolean;
  runNs: number;
  /** How long it was measured (s). */
  seconds: number;
  work: number;
  hits: number;
  /** An on-phase's run time and work from its end until its probes' detach was done and the process settled (endTail). */
  tail?: { runNs: number; work: number };
}

interface ProcState {
  on: boolean;
  phaseStart: number;
  phaseEnd: number;
  fraction: number;
  /**
   * The process's run time (processRunNs) and its reads and writes (processIo) when the phase's measurement
   * started: once its probes' switch was done (attaching takes the agent a while; NaN until then).
   */
  cpuAtStart: number;
  ioAtStart: Io;
  measureFrom: number;
  /** Counts the switches, so a late one does not start a newer phase's measurement. */
  switches: number;
  /** Where an on-phase ended (its run time and bytes), until its detach is done and its tail measured. */
  tailFrom: { run: number; bytes: number } | undefined;
  /**
   * utime + stime over schedstat run time, measured over spans of RATIO_SPAN_MS (1 until then). The budget is a
   * share of the process's CPU as utime + stime count it; run time can also hold softirq work done while its
   * threads are current (ticks in softirq are not the task's stime), which would loosen the budget. Windows are
   * timed by run time (ns, where ticks are too coarse for 50 ms) and scaled by this; for a CPU-bound loop it is 1.
   */
  cpuRatio: number;
  ratioFrom: { at: number; run: number; cpu: number };
  /**
   * How long switching the probes off takes until the kernel is done (ms, a running average: a grace period,
   * 85-280 ms here). Their breakpoints are gone at once (no hit 10 ms after the request), but the off-window's
   * measurement starts after it, so an off-window is at least this long and some.
   */
  detachMs: number;
  countsAtStart: { created: number; parked: number; readied: number; exited: number };
  /** The goroutine probes' hits at the window's start, as BPF counted them (GoroutineTracer.probeHits). */
  hitsAtStart: { createExit: number; parkReady: number };
  windows: WindowRecord[];
  /** Cost of every probe over the last measured window, as a share of the process's CPU (budget terms). */
  estimated: Estimate | undefined;
  requestsAtStart: number;
  alwaysOnHitsAtStart: number;
  /** The phase before this one, and the in-process samples (the last taken at sampledAt, monotonic ns). */
  lastPhase: Phase | undefined;
  costSamples: number[];
  shareSamples: number[];
  /** The same samples whole, pooled for the charged cost (HitCost): the on-window's run time beyond its work's at
   * the off-window's rate (its tail's included), that rate's run time, the on-window's own run time, the hits
   * counted, and the load they were taken at (the off-window's run time per second). */
  pairs: { extra: number; without: number; run: number; hits: number; load: number }[];
  /** The process's run time per second in the last off-window measured (ns/s): the load now (SIMILAR_LOAD). */
  load: number;
  sampledAt: number;
  /**
   * How long an always-on decision not yet checked in the process (no sample: the calibration alone made it) lasts
   * before a short off-window checks it: a cycle at first, doubled each time no sample could be taken (too little
   * I/O to measure), up to MEASURE_EVERY_PERIODS periods, the interval once measured. Not a period at once: a
   * first window that undercounted its hits left the hello server's probes on for 10 s of the bench's 14.
   */
  uncheckedOnMs: number;
  /** Hits counted in the on-windows so far, by probes: how the estimate is split (one short window may hold
   * none of a kind that the agent had not read yet). */
  mix: { requests: number; parkReady: number; createExit: number };
  /** Whether the first on-window has started (one attached off waits for the first tick). */
  firstDone: boolean;
  /** When a long on-window is next looked at for hits over the budget (WATCH_MS; monotonic ns). */
  watchAt: number;
}

/** The probes' cost as shares of the process's CPU: the duty-cycled ones at their on-fraction, and the always-on
 * syscall hooks (alwaysOn); total is their sum. */
export interface Estimate {
  total: number;
  createExit: number;
  parkReady: number;
  requests: number;
  alwaysOn: number;
}

let ticksPerSecond = 0;
function clockTicks(): number {
  if (!ticksPerSecond) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** A process's reads and writes so far (/proc/PID/io): its read and write calls (syscr + syscw), which are most
 * of a server's system calls (others, epoll and futex, are not counted there, so this is a floor), and the bytes
 * they moved (rchar + wchar: an empty read adds none). */
export interface Io {
  calls: number;
  bytes: number;
}

const NO_IO: Io = { calls: NaN, bytes: NaN };

/** The process's reads and writes so far (Io); undefined once it is gone. */
export function processIo(pid: number): Io | undefined {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? NaN);
    const r = { calls: field('syscr') + field('syscw'), bytes: field('rchar') + field('wchar') };
    return Number.isFinite(r.calls) && Number.isFinite(r.bytes) ? r : undefined;
  } catch {
    return undefined;
  }
}

/** The process's read and write calls so far (Io.calls); undefined once it is gone. */
export function processSyscalls(pid: number): number | undefined {
  return processIo(pid)?.calls;
}

/**
 * parse(text) of a file of each of the process's threads (/proc/PID/task/TID/FILE), summed. Threads that exit
 * meanwhile drop out of the sum (a Go process's threads rarely exit; a caller takes a negative difference as
 * unknown). Undefined once the process is gone.
 */
export function sumOverThreads(pid: number, file: string, parse: (text: string) => number): number | undefined {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let sum = 0;
  for (const tid of tids) {
    try {
      sum += parse(readFileSync(`/proc/${pid}/task/${tid}/${file}`, 'utf8'));
    } catch {
      /* the thread exited since the listing */
    }
  }
  return sum;
}

/**
 * CPU time the process has run so far, in ns: the sum of its threads' run time as the scheduler keeps it
 * (/proc/PID/task/N/schedstat, ns). utime + stime (processCpuNs) come in clock ticks (10 ms), too coarse to tell
 * a probe's cost in a short window. Undefined once the process is gone.
 */
export function processRunNs(pid: number): number | undefined {
  return sumOverThreads(pid, 'schedstat', (s) => Number(s.slice(0, s.indexOf(' '))));
}

/** CPU time the process has used (user + system), in ns, counted in clock ticks; undefined once it is gone. */
export function processCpuNs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) / clockTicks()) * 1e9;
  } catch {
    return undefined;
  }
}

/** Every goroutine probe the budget covers, duty-cycled together: creation (`creator`, Go < 1.21, follows
 * `create` in the tracer), exit, park/ready and the scheduler's (run: execute and its stamps; syscall). */
export const BUDGETED_PROBES = ['create', 'exit', 'park', 'ready', 'run', 'syscall'] as const;

/**
 * What a window counts: creations and exits whole, from the runtime's memory as of its last scan or from the
 * probes' records when those are ahead (both only grow and neither overcounts); parks and readies as recorded.
 */
function counts(proc: TracedProcess): { created: number; parked: number; readied: number; exited: number } {
  const c = proc.table.counters;
  const m = proc.scan.counts.sinceAttach();
  return { created: Math.max(m?.created ?? 0, c.created), exited: Math.max(m?.exited ?? 0, c.exited), parked: c.parked, readied: c.readied };
}

/**
 * The goroutine probes' hits so far, as the BPF programs counted them: every trap, whether or not the agent has
 * read its record yet. Counted from the records instead, an agent that falls behind finds the on-window cheap,
 * turns the probes on for longer, and falls further behind (a hello server's probes were on 74% of the time at a
 * 2% budget).
 */
function probeHits(tracer: GoroutineTracer, pid: number): { createExit: number; parkReady: number } {
  return tracer.probeHits(pid) ?? { createExit: 0, parkReady: 0 };
}

export class OverheadGovernor {
  private readonly state = new Map<number, ProcState>();
  /** Between the first add and stop: each tick sets a timer at the soonest phase end. */
  private running = false;
  /** One timer, at the end of the soonest phase (endAt, monotonic ns), not a tick every 50 ms: a 50 ms tick ended a
   * 50 ms on-window up to 50 ms late, and woke the agent 20 times a second, each wake-up a cost to the node beside
   * its CPU time (agent/native/reader.c). */
  private endTimer?: NodeJS.Timeout;
  private endAt = Infinity;
  readonly periodMs: number;
  readonly cycleMs: number;
  readonly minOnMs: number;
  private readonly maxWindows: number;
  private get firstWindowMs(): number {
    return Math.min(FIRST_WINDOW_MS, this.periodMs / 2);
  }

  constructor(private readonly tracer: GoroutineTracer, readonly opts: GovernorOptions) {
    this.periodMs = opts.periodMs ?? 10_000;
    // GOROSCOPE_OVERHEAD_CYCLE_MS: the http bench's comparison of cycle lengths (switching costs the process too).
    this.cycleMs = Math.min(this.periodMs, opts.cycleMs ?? (Number(process.env.GOROSCOPE_OVERHEAD_CYCLE_MS) || 2_000));
    this.minOnMs = opts.minOnMs ?? 50;
    this.maxWindows = opts.maxWindows ?? 1000;
  }

  /**
   * Starts governing a traced process: a first on-window (FIRST_WINDOW_MS) measures its rate. A process attached
   * with its probes off (AttachOptions.off) gets it at the first tick, when the agent is free to end it on time;
   * until then an off-window.
   */
  add(proc: TracedProcess): void {
    const now = monoNowNs();
    const on = proc.links.size > 0;
    const st: ProcState = {
      on,
      phaseStart: now,
      phaseEnd: on ? now + this.firstWindowMs * 1e6 : now,
      fraction: 1,
      cpuAtStart: processRunNs(proc.info.pid) ?? NaN,
      ioAtStart: processIo(proc.info.pid) ?? NO_IO,
      measureFrom: now,
      switches: 0,
      tailFrom: undefined,
      cpuRatio: 1,
      ratioFrom: { at: now, run: processRunNs(proc.info.pid) ?? NaN, cpu: processCpuNs(proc.info.pid) ?? NaN },
      detachMs: INITIAL_DETACH_MS,
      countsAtStart: counts(proc),
      hitsAtStart: probeHits(this.tracer, proc.info.pid),
      windows: [],
      estimated: undefined,
      requestsAtStart: this.opts.requests?.hits(proc.info.pid) ?? 0,
      alwaysOnHitsAtStart: this.opts.alwaysOnHits?.(proc.info.pid) ?? 0,
      lastPhase: undefined,
      costSamples: [],
      shareSamples: [],
      pairs: [],
      load: 0,
      sampledAt: now,
      uncheckedOnMs: this.cycleMs,
      mix: { requests: 0, parkReady: 0, createExit: 0 },
      firstDone: on,
      watchAt: Infinity,
    };
    this.state.set(proc.info.pid, st);
    this.running = true;
    this.tickAt(st.phaseEnd);
  }

  remove(pid: number): void {
    this.state.delete(pid);
  }

  /** The windows recorded so far for a process, the current one closed at now. */
  windows(pid: number): WindowRecord[] {
    const st = this.state.get(pid);
    const proc = this.tracer.process(pid);
    if (!st || !proc) return [];
    return [...st.windows, this.window(proc, st, monoNowNs())];
  }

  /** Only the windows that have ended (what a shipper sends once). */
  closedWindows(pid: number): WindowRecord[] {
    return this.state.get(pid)?.windows ?? [];
  }

  /** The share of the observed time during which the probes were on: what event-derived figures are a sample of. */
  coverage(pid: number): number {
    const ws = this.windows(pid);
    const total = ws.reduce((n, w) => n + (w.to - w.from), 0);
    const on = ws.filter((w) => w.probes.includes('park')).reduce((n, w) => n + (w.to - w.from), 0);
    return total > 0 ? on / total : 1;
  }

  /**
   * The share of [fromMs, toMs] (wall ms) during which the probes were on: what a goroutine's park counts and
   * blocked times over that stretch are a sample of. 1 when the stretch is not covered by any window.
   */
  coverageBetween(pid: number, fromMs: number, toMs: number): number {
    const st = this.state.get(pid);
    const proc = this.tracer.process(pid);
    if (!st || !proc || !(toMs > fromMs)) return 1;
    let total = 0;
    let on = 0;
    const add = (w: WindowRecord) => {
      const d = Math.min(w.to, toMs) - Math.max(w.from, fromMs);
      if (d <= 0) return;
      total += d;
      if (w.probes.includes('park')) on += d;
    };
    add(this.window(proc, st, monoNowNs()));
    for (let i = st.windows.length - 1; i >= 0 && st.windows[i].to > fromMs; i--) add(st.windows[i]);
    return total > 0 ? on / total : 1;
  }

  /**
   * The probes' estimated cost as a share of the process's CPU (what it would use without them), at the current
   * on-fraction: in total, and split into creation + exit and park + ready. Undefined until measured.
   */
  estimatedOverhead(pid: number): Estimate | undefined {
    return this.state.get(pid)?.estimated;
  }

  fraction(pid: number): number {
    return this.state.get(pid)?.fraction ?? 1;
  }

  /** What a probe hit is charged for a process now, and the in-process samples behind it. */
  hitCost(pid: number): HitCost | undefined {
    const st = this.state.get(pid);
    if (!st) return undefined;
    const near = st.pairs.filter((p) => p.load > 0 && st.load > 0 && Math.max(p.load / st.load, st.load / p.load) <= SIMILAR_LOAD);
    const pairs = near.length ? near : st.pairs;
    const counted = pairs.filter((p) => p.hits >= MIN_PHASE_HITS);
    const share = pooledRatio(pairs.map((p) => ({ extra: p.extra, of: p.without })));
    const perHit = pooledRatio(counted.map((p) => ({ extra: p.extra, of: p.hits })));
    const perRun = pooledRatio(pairs.map((p) => ({ extra: p.extra, of: p.run })));
    const measured = perHit?.value ?? 0;
    const samples = {
      samples: [...st.costSamples], shares: [...st.shareSamples], share: share?.value, shareHigh: share?.high,
      measuredNsPerHit: perHit && Math.max(0, perHit.value), measuredNsPerHitHigh: perHit && Math.max(0, perHit.high),
      perRun: perRun?.value, perRunHigh: perRun?.high, pooled: st.pairs.length,
    };
    return measured > this.opts.nsPerHit ? { nsPerHit: measured, source: 'measured', ...samples } : { nsPerHit: this.opts.nsPerHit, source: 'calibrated', ...samples };
  }

  /**
   * An in-process sample from an on-phase (its tail included) and the off-phase after it: the on-phase's run time
   * beyond what its work costs at the off-phase's rate, as a share of what the window's work takes at that rate,
   * and per hit counted in it.
   */
  private sample(st: ProcState, on: Phase, off: Phase): boolean {
    if (!on.on || off.on || on.work < MIN_PHASE_WORK || off.work < MIN_PHASE_WORK || !(off.runNs > 0)) return false;
    const rate = off.runNs / off.work;
    const without = on.work * rate;
    const extra = on.runNs + (on.tail?.runNs ?? 0) - (on.work + (on.tail?.work ?? 0)) * rate;
    st.shareSamples.push(extra / without);
    if (st.shareSamples.length > HIT_COST_SAMPLES) st.shareSamples.shift();
    if (on.hits >= MIN_PHASE_HITS) {
      st.costSamples.push(extra / on.hits);
      if (st.costSamples.length > HIT_COST_SAMPLES) st.costSamples.shift();
    }
    st.pairs.push({ extra, without, run: on.runNs, hits: on.hits, load: off.runNs / off.seconds });
    if (st.pairs.length > POOLED_SAMPLES) st.pairs.shift();
    return true;
  }

  private window(proc: TracedProcess, st: ProcState, now: number): WindowRecord {
    const c = counts(proc);
    return {
      kind: 'window',
      pid: proc.info.pid,
      from: monoToWallMs(st.phaseStart),
      to: monoToWallMs(now),
      probes: st.on ? [...BUDGETED_PROBES, ...(this.opts.requests ? ['requests'] : [])] : [],
      created: c.created - st.countsAtStart.created,
      parked: c.parked - st.countsAtStart.parked,
      readied: c.readied - st.countsAtStart.readied,
      exited: c.exited - st.countsAtStart.exited,
      lost: 0,
    };
  }

  /**
   * Switches every budgeted probe. An on-phase is measured from the switch: attaching (the probes coming on one by
   * one, what it does to the process) is part of what an on-window costs, and leaving it out charged a window of
   * 50 ms for what it cost after a 10-140 ms attach. An off-phase is measured once the detach is done and the
   * process has settled (SETTLE_MS: its clean rate); until then the on-phase's tail (Phase.tail, endTail).
   */
  private switchProbes(pid: number, st: ProcState, on: boolean): void {
    const t0 = monoNowNs();
    if (on) [st.cpuAtStart, st.ioAtStart] = [processRunNs(pid) ?? NaN, processIo(pid) ?? NO_IO];
    const done = Promise.all([this.tracer.setProbes(pid, BUDGETED_PROBES, on), this.opts.requests?.setProbes(pid, on)]);
    const switches = ++st.switches;
    st.measureFrom = on ? t0 : NaN;
    const settleAt = t0 + SETTLE_MS * 1e6; // only an off switch waits for it
    done.then(
      () => {
        const at = monoNowNs();
        if (!on) st.detachMs = (st.detachMs + (at - t0) / 1e6) / 2;
        if (st.switches !== switches || on) return;
        if (at < settleAt) {
          setTimeout(() => this.endTail(pid, st, switches), Math.ceil((settleAt - at) / 1e6)).unref();
          return;
        }
        this.endTail(pid, st, switches);
      },
      () => {},
    );
  }

  /** Ends an on-phase's tail (Phase.tail): its detach done and the process settled; the off-phase measured from now. */
  private endTail(pid: number, st: ProcState, switches: number): void {
    if (st.switches !== switches || this.state.get(pid) !== st) return;
    const at = monoNowNs();
    st.cpuAtStart = processRunNs(pid) ?? NaN;
    st.ioAtStart = processIo(pid) ?? NO_IO;
    st.measureFrom = at;
    const tail = st.tailFrom && { runNs: st.cpuAtStart - st.tailFrom.run, work: st.ioAtStart.bytes - st.tailFrom.bytes };
    // A thread gone makes the tail unknown (negative), and the on-phase with it.
    if (st.lastPhase?.on && tail && tail.runNs >= 0 && tail.work >= 0) st.lastPhase.tail = tail;
    else st.lastPhase = undefined;
    st.tailFrom = undefined;
  }

  /** Ends phases that are due: measures the on-window, sets the fraction, switches the probes. */
  tick(now = monoNowNs()): void {
    for (const [pid, st] of this.state) {
      if (now < st.phaseEnd) {
        if (now < st.watchAt || !this.overBudgetNow(pid, st, now)) {
          if (now >= st.watchAt) st.watchAt = now + WATCH_MS * 1e6;
          continue;
        }
      }
      const proc = this.tracer.process(pid);
      if (!proc) {
        this.state.delete(pid);
        continue;
      }
      const cpu = processRunNs(pid) ?? NaN;
      const io = processIo(pid) ?? NO_IO;
      if (now - st.ratioFrom.at >= RATIO_SPAN_MS * 1e6) {
        const ticked = processCpuNs(pid) ?? NaN;
        const run = cpu - st.ratioFrom.run;
        const used = ticked - st.ratioFrom.cpu;
        // Enough run time for the ticks to mean something (100 ticks at 100/s); a thread gone makes it unknown.
        if (run >= 1e9 && used >= 0) st.cpuRatio = Math.min(1, Math.max(0.05, used / run));
        st.ratioFrom = { at: now, run: cpu, cpu: ticked };
      }
      const w = this.window(proc, st, now);
      st.windows.push(w);
      if (st.windows.length > this.maxWindows) st.windows.shift();
      // Measured from when the phase's switch was done (NaN while it was not); a thread that exited takes its run
      // time out of the sum, which makes the phase's CPU unknown.
      const seconds = (now - st.measureFrom) / 1e9;
      const runNs = cpu - st.cpuAtStart;
      const work = io.bytes - st.ioAtStart.bytes;
      const calls = io.calls - st.ioAtStart.calls;
      const measured = seconds > 0 && runNs >= 0 && work >= 0;
      const runPerSecond = measured ? runNs / seconds : NaN;
      // The process's CPU per second as utime + stime count it (the budget's terms), from its run time.
      const cpuPerSecond = runPerSecond * st.cpuRatio;
      // The always-on hooks' and uprobes' cost, in on and off phases alike (the uprobes' hits over the whole phase).
      const alwaysOnHits = this.opts.alwaysOnHits?.(pid) ?? 0;
      const phaseSeconds = (now - st.phaseStart) / 1e9;
      const alwaysOnCost =
        (this.opts.nsPerSyscall && measured ? (calls / seconds) * this.opts.nsPerSyscall : 0) +
        (phaseSeconds > 0 ? (Math.max(0, alwaysOnHits - st.alwaysOnHitsAtStart) / phaseSeconds) * this.hitCost(pid)!.nsPerHit : 0);
      // Hits in the phase, in emulated-hit equivalents, from the BPF counters (sampled-out parks included).
      const requestHits = this.opts.requests?.hits(pid) ?? 0;
      const goHits = probeHits(this.tracer, pid);
      const hits = {
        requests: requestHits - st.requestsAtStart,
        parkReady: goHits.parkReady - st.hitsAtStart.parkReady,
        createExit: goHits.createExit - st.hitsAtStart.createExit,
      };
      const hitsTotal = hits.requests + hits.parkReady + hits.createExit;
      const phase: Phase = { on: st.on, runNs, seconds, work, hits: hitsTotal };
      const before = st.lastPhase;
      if (measured) {
        // One sample a cycle, at the off-phase's end: the on-phase before it, whose tail is measured by now.
        if (st.lastPhase && !st.on && this.sample(st, st.lastPhase, phase)) st.sampledAt = now;
        st.lastPhase = phase;
        if (!st.on && seconds * 1e3 >= MIN_CLEAN_MS) st.load = runPerSecond;
      } else {
        st.lastPhase = undefined;
      }
      if (st.on) {
        st.mix.requests += hits.requests;
        st.mix.parkReady += hits.parkReady;
        st.mix.createExit += hits.createExit;
      }
      if (st.on && cpuPerSecond > 0) {
        // What the probes cost per second while on: their measured share of the process's CPU, never less than
        // the calibration's cost of the hits counted.
        const calibrated = (hitsTotal / phaseSeconds) * this.opts.nsPerHit;
        const hc = this.hitCost(pid)!;
        // The cost per ns the process runs while on (HitCost.perRun) times what it runs now: ns of CPU, all of it
        // utime + stime (a trap runs in the task), so taken of the run time, not scaled. The cost per hit measured,
        // times the hits counted now, follows a change of load at once (HitCost.measuredNsPerHit); the greater of
        // the two is charged.
        const costAt = (perRun: number | undefined, nsPerHit: number | undefined) =>
          Math.max(calibrated, (perRun ?? 0) * runPerSecond, ((nsPerHit ?? 0) * hitsTotal) / phaseSeconds);
        // The expected cost (what the estimate says), and its upper bound, which the on-fraction is set by: aimed
        // at the budget, a noisy estimate put the hello server's probes over it in half the bench's rounds (the
        // real cost 0.74-1.85x the budget while the estimate said 2.0%).
        const cost = costAt(hc.perRun, hc.measuredNsPerHit);
        const costHigh = costAt(hc.perRunHigh, hc.measuredNsPerHitHigh);
        // The budget is a share of what the process uses without the probes: the on-window's CPU less the probes',
        // or what it ran per second in the off-window before this one where that is more (at saturation, where
        // the probes took CPU from its work). Not the on-window's CPU: below saturation that holds the probes' cost
        // too, and a budget of it let the probes take (1 + share) times their share (~2x on the hello server, whose
        // requests cost about what their ~15 hits do). An off-window measured for less than MIN_CLEAN_MS is not
        // taken: a loaded machine can keep the process off its CPU for that long, and a budget of nothing turned
        // the probes off for minutes.
        const off = before && !before.on && before.seconds * 1e3 >= MIN_CLEAN_MS ? before.runNs / before.seconds : 0;
        const clean = Math.max(0.1 * runPerSecond, runPerSecond - cost, off) * st.cpuRatio;
        // The always-on hooks take their share of the budget first (they run in the off-windows too).
        const left = Math.max(0, this.opts.budget * clean - alwaysOnCost);
        st.fraction = costHigh <= 0 ? 1 : Math.min(1, Math.max(0.001, left / costHigh));
        // The share is of what it would use without them (an estimate above the whole CPU means the cost is
        // overestimated: the share is then of a tenth).
        const base = Math.max(0.1 * cpuPerSecond, clean - alwaysOnCost);
        // Split by the hits counted in the on-windows so far (all to park and ready while there were none).
        const mixTotal = st.mix.requests + st.mix.parkReady + st.mix.createExit;
        const part = (n: number, all: boolean) => (cost * st.fraction * (mixTotal > 0 ? n / mixTotal : all ? 1 : 0)) / base;
        const parts = {
          createExit: part(st.mix.createExit, false),
          parkReady: part(st.mix.parkReady, true),
          requests: part(st.mix.requests, false),
          alwaysOn: alwaysOnCost / base,
        };
        st.estimated = { ...parts, total: parts.createExit + parts.parkReady + parts.requests + parts.alwaysOn };
      }
      st.requestsAtStart = requestHits;
      st.alwaysOnHitsAtStart = alwaysOnHits;
      const checkEveryMs = st.pairs.length ? MEASURE_EVERY_PERIODS * this.periodMs : st.uncheckedOnMs;
      const onMs = !st.firstDone ? this.firstWindowMs : st.fraction >= 1 ? Math.min(this.periodMs, checkEveryMs) : Math.max(this.minOnMs, st.fraction * this.cycleMs);
      st.firstDone = true;
      // The off-window pays for the on-window that ran, not for the one now due: whatever it ran beyond onMs is an
      // overrun. A busy agent (its event loop behind on records, or starved of CPU on a crowded node) ends an
      // on-window late, and the probes' share would go over the budget by as much (the http bench's vegeta at
      // real-time priority beside the agent: probes on 20-70% of the time at a 2% budget); the first window (on,
      // to measure) and an always-on stretch whose cost has just been found over the budget are paid the same way.
      // At most a period of off time for it, so one long stall cannot blind the agent for long.
      const overrunMs = st.on ? Math.max(0, (now - st.phaseStart) / 1e6 - onMs) : 0;
      const payFor = onMs + Math.min(overrunMs, (this.periodMs * st.fraction) / (1 - st.fraction));
      // The shortest off-window leaves a clean stretch after the detach and the settling.
      const settledMs = Math.max(st.detachMs, SETTLE_MS);
      let offMs = st.fraction >= 1 ? 0 : Math.max(settledMs + this.minOnMs, (payFor * (1 - st.fraction)) / st.fraction);
      // Always on, but at a quarter of the budget or more by the charged cost: now and then a short off-window, so
      // the cost is measured in the process (a true cost 4x the charged one would be over the budget).
      const duty = st.estimated ? st.estimated.total - st.estimated.alwaysOn : 0;
      if (st.on && offMs === 0 && Number.isFinite(this.opts.budget) && duty >= this.opts.budget / 4 && now - st.sampledAt >= checkEveryMs * 1e6) {
        offMs = settledMs + Math.max(this.minOnMs, this.cycleMs / 10);
        st.sampledAt = now;
        if (!st.pairs.length) st.uncheckedOnMs = Math.min(2 * st.uncheckedOnMs, MEASURE_EVERY_PERIODS * this.periodMs);
      }
      // From on: go off only when the budget asks for it (or to measure). From off: always back on.
      const on = !st.on || offMs === 0;
      // An on-phase's tail starts at its switch off (Phase.tail).
      st.tailFrom = !on && st.on ? { run: cpu, bytes: io.bytes } : undefined;
      if (on !== st.on) {
        if (!on) proc.table.suspendParkTracking(now);
        this.switchProbes(pid, st, on);
      } else {
        st.cpuAtStart = cpu;
        st.ioAtStart = io;
        st.measureFrom = now;
      }
      st.on = on;
      st.phaseStart = now;
      st.phaseEnd = now + (on ? onMs : offMs) * 1e6;
      st.watchAt = on && onMs >= this.cycleMs && Number.isFinite(this.opts.budget) ? now + WATCH_MS * 1e6 : Infinity;
      st.countsAtStart = counts(proc);
      st.hitsAtStart = goHits;
    }
    let next = Infinity;
    for (const st of this.state.values()) next = Math.min(next, st.phaseEnd, st.watchAt);
    if (next < Infinity) this.tickAt(next);
  }

  /**
   * Whether the hits counted since a long on-window began already cost more than the budget (at the charged cost
   * per hit, against the process's run time over the window less that cost): the load changed since the window was
   * set, so it ends now and is measured like any other.
   */
  private overBudgetNow(pid: number, st: ProcState, now: number): boolean {
    const seconds = (now - st.measureFrom) / 1e9;
    const runNs = (processRunNs(pid) ?? NaN) - st.cpuAtStart;
    if (!(seconds > 0 && runNs >= 0)) return false;
    const goHits = probeHits(this.tracer, pid);
    const hits = (this.opts.requests?.hits(pid) ?? 0) - st.requestsAtStart + goHits.parkReady - st.hitsAtStart.parkReady + goHits.createExit - st.hitsAtStart.createExit;
    if (hits < MIN_PHASE_HITS) return false;
    const costPerSecond = (hits * this.hitCost(pid)!.nsPerHit) / ((now - st.phaseStart) / 1e9);
    return costPerSecond > this.opts.budget * Math.max(0, runNs / seconds - costPerSecond) * st.cpuRatio;
  }

  stop(): void {
    this.running = false;
    if (this.endTimer) clearTimeout(this.endTimer);
    this.endTimer = undefined;
    this.endAt = Infinity;
  }

  /** Ticks at `at` (monotonic ns) unless an earlier end is already set. */
  private tickAt(at: number): void {
    if (!this.running || (this.endTimer && this.endAt <= at)) return;
    if (this.endTimer) clearTimeout(this.endTimer);
    this.endAt = at;
    this.endTimer = setTimeout(() => {
      this.endTimer = undefined;
      this.endAt = Infinity;
      this.tick();
    }, Math.max(0, Math.ceil((at - monoNowNs()) / 1e6)) + 1); // never before the end: timers round to 1 ms
    this.endTimer.unref();
  }
}
