// Keeps the probes' cost within a budget of each traced process's CPU.
//
// Creation and exit probes stay on (counts must be whole). The park and ready probes fire on every blocking
// operation, so they are duty-cycled: on for a window, off for the rest of a period. The creation and exit
// hits are charged to the budget first; park/ready get the rest, so hits/s x cost per hit of all probes stays
// under budget x the process's CPU whenever creation and exit alone allow it (a server that starts a goroutine
// per request may not: then park/ready stay off but for a minimal window, and estimatedOverhead says by how
// much the budget is exceeded). Every window is recorded with the probes it had, so blocking figures are
// samples over known windows, never silent gaps.
import { readFileSync } from 'node:fs';
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
}

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
  estimated: { total: number; createExit: number; parkReady: number } | undefined;
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

/** CPU time the process has used (user + system), in ns; undefined once it is gone. */
export function processCpuNs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) / clockTicks()) * 1e9;
  } catch {
    return undefined;
  }
}

/** Duty-cycled together: park/ready and the scheduler's (run: execute and its stamps; syscall). */
const PARK_PROBES = ['park', 'ready', 'run', 'syscall'] as const;

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
      countsAtStart: { ...proc.table.counters },
      schedAtStart: schedHits(proc),
      windows: [],
      estimated: undefined,
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

  /** The share of the observed time during which park and ready probes were on. */
  parkCoverage(pid: number): number {
    const ws = this.windows(pid);
    const total = ws.reduce((n, w) => n + (w.to - w.from), 0);
    const on = ws.filter((w) => w.probes.includes('park')).reduce((n, w) => n + (w.to - w.from), 0);
    return total > 0 ? on / total : 1;
  }

  /**
   * The share of [fromMs, toMs] (wall ms) during which the park and ready probes were on: what a goroutine's park
   * counts and blocked times over that stretch are a sample of. 1 when the stretch is not covered by any window.
   */
  parkCoverageBetween(pid: number, fromMs: number, toMs: number): number {
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
   * The probes' estimated cost as a share of the process's CPU, from the last window measured: in total,
   * for creation + exit (always on), and for park + ready at the current on-fraction. Undefined until measured.
   */
  estimatedOverhead(pid: number): { total: number; createExit: number; parkReady: number } | undefined {
    return this.state.get(pid)?.estimated;
  }

  fraction(pid: number): number {
    return this.state.get(pid)?.fraction ?? 1;
  }

  private window(proc: TracedProcess, st: ProcState, now: number): WindowRecord {
    const c = proc.table.counters;
    return {
      kind: 'window',
      pid: proc.info.pid,
      from: monoToWallMs(st.phaseStart),
      to: monoToWallMs(now),
      probes: st.on ? ['create', 'exit', ...PARK_PROBES] : ['create', 'exit'],
      created: c.created - st.countsAtStart.created,
      parked: c.parked - st.countsAtStart.parked,
      readied: c.readied - st.countsAtStart.readied,
      exited: c.exited - st.countsAtStart.exited,
      lost: 0,
    };
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
      const w = this.window(proc, st, now);
      st.windows.push(w);
      if (st.windows.length > this.maxWindows) st.windows.shift();
      const seconds = (now - st.phaseStart) / 1e9;
      const cpuPerSecond = cpu !== undefined && seconds > 0 ? (cpu - st.cpuAtStart) / seconds : 0;
      if (st.on && cpuPerSecond > 0) {
        // Records undercount hits when sampling keeps a fraction of goroutines; scale back to hits.
        const schedCost = ((schedHits(proc) - st.schedAtStart) / seconds) * this.opts.nsPerHit;
        const parkCost = ((w.parked + w.readied) / this.tracer.parkSampleRate / seconds) * this.opts.nsPerHit + schedCost;
        const createExitCost = ((w.created + w.exited) / seconds) * this.opts.nsPerHit;
        const room = this.opts.budget * cpuPerSecond - createExitCost;
        st.fraction = parkCost <= 0 ? 1 : Math.min(1, Math.max(0.001, room / parkCost));
        // The process's CPU includes the probes' own cost: the share is of what it would use without them.
        const base = Math.max(1, cpuPerSecond - createExitCost - parkCost);
        st.estimated = {
          createExit: createExitCost / base,
          parkReady: (parkCost * st.fraction) / base,
          total: (createExitCost + parkCost * st.fraction) / base,
        };
      }
      const onMs = Math.max(this.minOnMs, st.fraction * this.periodMs);
      const offMs = st.fraction >= 1 ? 0 : (onMs * (1 - st.fraction)) / st.fraction;
      // From on: go off only when the budget asks for it. From off: always back on.
      const next = st.on ? offMs === 0 : true;
      if (next !== st.on) {
        if (!next) proc.table.suspendParkTracking(now);
        for (const p of PARK_PROBES) this.tracer.setProbes(pid, p, next);
      }
      st.on = next;
      st.phaseStart = now;
      st.phaseEnd = now + (next ? onMs : offMs) * 1e6;
      st.cpuAtStart = cpu ?? st.cpuAtStart;
      st.countsAtStart = { ...proc.table.counters };
      st.schedAtStart = schedHits(proc);
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
