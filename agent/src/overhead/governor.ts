// Keeps the probes' cost within a budget of each traced process's CPU.
//
// Every goroutine probe (creation, exit, park, ready) costs a trap per hit, and a server that starts a goroutine
// per request hits creation and exit as often as park and ready. So all of them share one budget and one duty
// cycle: on for a window, off for the rest of a period, whenever hits/s x cost per hit would exceed budget x the
// process's CPU. Every window is recorded with the probes it had, so figures derived from events (park
// durations, wakers, blocked time, short-lived goroutines) are samples over known windows, never silent gaps.
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
  /** Cost of one probe hit, from calibrateHitCost. */
  nsPerHit: number;
  /** One on/off cycle. */
  periodMs?: number;
  /** Shortest on-window worth having. */
  minOnMs?: number;
  /** Windows remembered per process. */
  maxWindows?: number;
  /**
   * The request probes (net/http, grpc-go): their hits so far for a process, in emulated-hit equivalents, and
   * their switch. They are duty-cycled with the goroutine probes: on a cheap handler even one trap per request
   * is several % of its CPU, more than the whole budget.
   */
  requests?: { hits: (pid: number) => number; setProbes: (pid: number, on: boolean) => Promise<void> | void };
  /**
   * What the always-on TCP hooks cost the process per system call, in ns (0 or absent: none). Any syscall
   * tracepoint, classic or raw, puts every syscall of the node on the kernel's slow path (docs/architecture.md:
   * +120-170 ns each, `npm run bench -- --only tcp-attach`); that cost is not duty-cycled, so it comes out of the
   * budget first and the duty-cycled probes share what is left.
   */
  nsPerSyscall?: number;
}

/** The syscall hooks' cost per call the agent charges when TCP tracing is on (tcp-attach bench: 119-168 ns). */
export const TCP_HOOK_NS_PER_SYSCALL = 150;

interface ProcState {
  on: boolean;
  phaseStart: number;
  phaseEnd: number;
  fraction: number;
  cpuAtStart: number;
  countsAtStart: { created: number; parked: number; readied: number; exited: number };
  /** Hits of the scheduler probes at the window's start (from its records: see schedHits). */
  schedAtStart: number;
  windows: WindowRecord[];
  /** Cost of every probe over the last measured window, as a share of the process's CPU (budget terms). */
  estimated: Estimate | undefined;
  requestsAtStart: number;
  /** System calls the process had made at the phase's start (/proc/PID/io: read and write calls). */
  syscallsAtStart: number;
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

/**
 * System calls the process has made: its read and write calls (/proc/PID/io syscr + syscw), which are most of a
 * server's; others (epoll, futex) are not counted there, so this is a floor. Undefined once it is gone.
 */
export function processSyscalls(pid: number): number | undefined {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'utf8');
    const r = /^syscr: (\d+)$/m.exec(io);
    const w = /^syscw: (\d+)$/m.exec(io);
    return r && w ? Number(r[1]) + Number(w[1]) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * CPU time the process has run so far, in ns: the sum of its threads' run time as the scheduler keeps it
 * (/proc/PID/task/N/schedstat, ns). utime + stime (processCpuNs) come in clock ticks (10 ms), too coarse to tell
 * a probe's cost in a short window. Threads that have exited drop out of the sum (a Go process's threads rarely
 * exit; a caller takes a negative difference as unknown). Undefined once the process is gone.
 */
export function processRunNs(pid: number): number | undefined {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return undefined;
  }
  let ns = 0;
  for (const tid of tids) {
    try {
      const s = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8');
      ns += Number(s.slice(0, s.indexOf(' ')));
    } catch {
      /* the thread exited since the listing */
    }
  }
  return ns;
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
 * Scheduler probe hits so far, from their records: each run is execute's hit and the stamp before it (ready,
 * go statement, yield...), a yield is one more, a system call two (enter, exit).
 */
function schedHits(proc: TracedProcess): number {
  const c = proc.sched.counters;
  return 2 * c.runs + c.yields + c.preemptions + 2 * c.syscalls;
}

export class OverheadGovernor {
  private readonly state = new Map<number, ProcState>();
  private timer?: NodeJS.Timeout;
  readonly periodMs: number;
  readonly minOnMs: number;
  private readonly maxWindows: number;

  constructor(private readonly tracer: GoroutineTracer, readonly opts: GovernorOptions) {
    this.periodMs = opts.periodMs ?? 10_000;
    this.minOnMs = opts.minOnMs ?? 200;
    this.maxWindows = opts.maxWindows ?? 1000;
  }

  /** Starts governing a traced process: a first on-window measures its rate. */
  add(proc: TracedProcess): void {
    const now = monoNowNs();
    const st: ProcState = {
      on: true,
      phaseStart: now,
      phaseEnd: now + Math.min(1000, this.periodMs / 2) * 1e6,
      fraction: 1,
      cpuAtStart: processCpuNs(proc.info.pid) ?? 0,
      countsAtStart: counts(proc),
      schedAtStart: schedHits(proc),
      windows: [],
      estimated: undefined,
      requestsAtStart: this.opts.requests?.hits(proc.info.pid) ?? 0,
      syscallsAtStart: this.opts.nsPerSyscall ? processSyscalls(proc.info.pid) ?? 0 : 0,
    };
    this.state.set(proc.info.pid, st);
    this.timer ??= setInterval(() => this.tick(), 50);
    this.timer.unref();
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

  private switchProbes(pid: number, on: boolean): void {
    for (const p of BUDGETED_PROBES) void this.tracer.setProbes(pid, p, on);
    void this.opts.requests?.setProbes(pid, on);
  }

  /** Ends phases that are due: measures the on-window, sets the fraction, switches the probes. */
  tick(now = monoNowNs()): void {
    for (const [pid, st] of this.state) {
      if (now < st.phaseEnd) continue;
      const proc = this.tracer.process(pid);
      if (!proc) {
        this.state.delete(pid);
        continue;
      }
      const cpu = processCpuNs(pid);
      // From off: always back on.
      const next = st.on ? undefined : true;
      if (next) this.switchProbes(pid, true);
      const w = this.window(proc, st, now);
      st.windows.push(w);
      if (st.windows.length > this.maxWindows) st.windows.shift();
      const seconds = (now - st.phaseStart) / 1e9;
      const cpuPerSecond = cpu !== undefined && seconds > 0 ? (cpu - st.cpuAtStart) / seconds : 0;
      const requestHits = this.opts.requests?.hits(pid) ?? 0;
      const syscalls = this.opts.nsPerSyscall ? processSyscalls(pid) : undefined;
      // The always-on hooks' cost, in on and off phases alike.
      const alwaysOnCost = syscalls !== undefined && seconds > 0 ? (Math.max(0, syscalls - st.syscallsAtStart) / seconds) * this.opts.nsPerSyscall! : 0;
      if (st.on && cpuPerSecond > 0) {
        const requestCost = ((requestHits - st.requestsAtStart) / seconds) * this.opts.nsPerHit;
        // Park records undercount hits when sampling keeps a fraction of goroutines; scale back to hits.
        const schedCost = ((schedHits(proc) - st.schedAtStart) / seconds) * this.opts.nsPerHit;
        const parkCost = ((w.parked + w.readied) / this.tracer.parkSampleRate / seconds) * this.opts.nsPerHit + schedCost;
        const createExitCost = ((w.created + w.exited) / seconds) * this.opts.nsPerHit;
        const cost = parkCost + createExitCost + requestCost;
        // The always-on hooks take their share of the budget first.
        const left = Math.max(0, this.opts.budget * cpuPerSecond - alwaysOnCost);
        st.fraction = cost <= 0 ? 1 : Math.min(1, Math.max(0.001, left / cost));
        // The process's CPU includes the probes' own cost: the share is of what it would use without them (an
        // estimate above the whole CPU means the cost per hit is overestimated: the share is then of a tenth).
        const base = Math.max(0.1 * cpuPerSecond, cpuPerSecond - cost - alwaysOnCost);
        const parts = {
          createExit: (createExitCost * st.fraction) / base,
          parkReady: (parkCost * st.fraction) / base,
          requests: (requestCost * st.fraction) / base,
          alwaysOn: alwaysOnCost / base,
        };
        st.estimated = { ...parts, total: parts.createExit + parts.parkReady + parts.requests + parts.alwaysOn };
      }
      st.requestsAtStart = requestHits;
      st.syscallsAtStart = syscalls ?? st.syscallsAtStart;
      const onMs = Math.max(this.minOnMs, st.fraction * this.periodMs);
      const offMs = st.fraction >= 1 ? 0 : (onMs * (1 - st.fraction)) / st.fraction;
      // From on: go off only when the budget asks for it. From off: always back on (switched above).
      const on = next ?? offMs === 0;
      if (!on && st.on) {
        proc.table.suspendParkTracking(now);
        this.switchProbes(pid, false);
      }
      st.on = on;
      st.phaseStart = now;
      st.phaseEnd = now + (on ? onMs : offMs) * 1e6;
      st.cpuAtStart = cpu ?? st.cpuAtStart;
      st.countsAtStart = counts(proc);
      st.schedAtStart = schedHits(proc);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
