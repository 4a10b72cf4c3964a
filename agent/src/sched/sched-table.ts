// What the scheduler did with one process's goroutines, from the scheduler probes' records (bpf/goroutines.h:
// RUN, YIELD, SYSCALL): run-queue latency (runnable -> running) per process, per creation site and per
// goroutine; yields and preemptions; system call time; the thread (M) and P each goroutine ran on, and how
// often it changed them. Per-goroutine figures are cumulative while the goroutine lives, so a reader can take
// differences over any stretch (a request's run-queue time, say); they go with the goroutine's exit.
import { RunnableCause } from '../events/goroutines.bpf.ts';
import { LatencyHistogram, type LatencySummary } from './latency-histogram.ts';
import { GoidMap } from '../model/goid-map.ts';

/** enum runnable_cause (bpf/goroutines.h), generated. */
export { RunnableCause };

export type RunnableCauseName = keyof typeof RunnableCause;
const causeNames = Object.keys(RunnableCause) as RunnableCauseName[];
export const runnableCauseName = (c: number): RunnableCauseName => causeNames[c] ?? 'unknown';

/** One goroutine's scheduling, cumulative while it lives. */
export interface GoroutineSched {
  /** Times it started running (runtime.execute). */
  runs: number;
  /** Runs whose run-queue time is known (the probe saw it become runnable), and their total and longest. */
  runsTimed: number;
  runnableNs: number;
  maxRunnableNs: number;
  /** runtime.Gosched (and runtime-internal yields through goschedImpl). */
  yields: number;
  /** Preempted by the scheduler (time slice, GC request) or suspended in place for the GC (preemptPark). */
  preemptions: number;
  syscalls: number;
  syscallNs: number;
  /** The thread (tid: one M) and P it last ran on; 0 / -1 before its first run was seen. */
  tid: number;
  p: number;
  /** Runs on another thread, or another P, than the run before. */
  threadSwitches: number;
  pSwitches: number;
}

export interface SchedCounters {
  runs: number;
  runsTimed: number;
  yields: number;
  preemptions: number;
  preemptParks: number;
  syscalls: number;
  syscallNs: number;
  threadSwitches: number;
  pSwitches: number;
  /** Runs by what made the goroutine runnable. */
  byCause: Record<RunnableCauseName, number>;
  /** Goroutines not kept because maxGoroutines were (their runs still count in the process figures). */
  untracked: number;
}

export interface SchedSummary {
  counters: SchedCounters;
  /** Run-queue latency of every timed run. */
  runQueue: LatencySummary;
  /** System call durations. */
  syscalls: LatencySummary;
  /** Threads and Ps seen running goroutines. */
  threads: number;
  ps: number;
}

/** The counters, byCause made from the runs by cause number when read (a Record of every cause name, as before). */
function makeCounters(runsByCause: Float64Array): SchedCounters {
  return {
    runs: 0, runsTimed: 0, yields: 0, preemptions: 0, preemptParks: 0, syscalls: 0, syscallNs: 0, threadSwitches: 0, pSwitches: 0,
    get byCause(): Record<RunnableCauseName, number> {
      return Object.fromEntries(causeNames.map((n, i) => [n, runsByCause[i]])) as Record<RunnableCauseName, number>;
    },
    untracked: 0,
  };
}

export class SchedTable {
  /**
   * Runs by cause, by the cause's number: a store into a typed array per run, where a property named by the cause
   * (a keyed store with a name that changes run to run) was the largest cost of a run record. counters.byCause
   * names them when read.
   */
  private readonly runsByCause = new Float64Array(causeNames.length + 1);
  readonly counters: SchedCounters = makeCounters(this.runsByCause);
  readonly runQueue = new LatencyHistogram();
  readonly syscallTime = new LatencyHistogram();
  /** Run-queue latency by creation site (the go statement's pc, g.gopc); 0 for goroutines of unknown site. */
  readonly runQueueBySite = new Map<number, LatencyHistogram>();
  private readonly goroutines = new GoidMap<GoroutineSched>();
  /**
   * Exited goroutines' figures for the records built after their exit, the newest exitedRetention kept, in a ring
   * (two stores per exit: an LRU cache, then a Map by goid with its set and delete, cost more than the rest of an exit).
   */
  private readonly exited: GoroutineSched[] = [];
  /** Their goids at the same places: looked up by a scan, newest first (rare: a shipped exited goroutine's record). */
  private readonly exitedGoids: Float64Array;
  private exitedHead = 0;
  /** Figures of exits pushed out of the ring, for reuse. */
  private readonly spare: GoroutineSched[] = [];
  /** Threads (tids) and Ps seen running goroutines. */
  readonly threads = new Set<number>();
  readonly ps = new Set<number>();

  constructor(private readonly maxGoroutines = 1_000_000, private readonly maxSites = 10_000, private readonly exitedRetention = 10_000) {
    this.exitedGoids = new Float64Array(Math.max(0, exitedRetention));
  }

  private entry(goid: number): GoroutineSched | undefined {
    let g = this.goroutines.get(goid);
    if (!g) {
      if (this.goroutines.size >= this.maxGoroutines) {
        this.counters.untracked++;
        return undefined;
      }
      g = this.spare.pop();
      if (g) {
        g.runs = g.runsTimed = g.runnableNs = g.maxRunnableNs = g.yields = g.preemptions = g.syscalls = g.syscallNs = g.tid = g.threadSwitches = g.pSwitches = 0;
        g.p = -1;
      } else {
        g = { runs: 0, runsTimed: 0, runnableNs: 0, maxRunnableNs: 0, yields: 0, preemptions: 0, syscalls: 0, syscallNs: 0, tid: 0, p: -1, threadSwitches: 0, pSwitches: 0 };
      }
      this.goroutines.set(goid, g);
    }
    return g;
  }

  /** runtime.execute: goid runs on thread tid and P p; runnableNs is its run-queue time when cause is known. */
  onRun(goid: number, tid: number, p: number, cause: number, runnableNs: number, site: number | undefined): void {
    const c = this.counters;
    c.runs++;
    this.runsByCause[cause >= 0 && cause < causeNames.length ? cause : RunnableCause.unknown]++;
    const timed = cause !== RunnableCause.unknown;
    if (timed) {
      c.runsTimed++;
      this.runQueue.record(runnableNs);
      const key = site ?? 0;
      let h = this.runQueueBySite.get(key);
      if (!h && this.runQueueBySite.size < this.maxSites) this.runQueueBySite.set(key, (h = new LatencyHistogram()));
      h?.record(runnableNs);
    }
    const g = this.entry(goid);
    // A thread or P is added when a goroutine first runs on it (one lookup per switch, not per run).
    if (!g || g.runs === 0 || g.tid !== tid) this.threads.add(tid);
    if (!g || g.runs === 0 || g.p !== p) this.ps.add(p);
    if (!g) return;
    if (g.runs > 0) {
      if (g.tid !== tid) {
        g.threadSwitches++;
        c.threadSwitches++;
      }
      if (g.p !== p) {
        g.pSwitches++;
        c.pSwitches++;
      }
    }
    g.runs++;
    g.tid = tid;
    g.p = p;
    if (timed) {
      g.runsTimed++;
      g.runnableNs += runnableNs;
      if (runnableNs > g.maxRunnableNs) g.maxRunnableNs = runnableNs;
    }
  }

  /** goschedImpl (cause yielded or preempted) or preemptPark. */
  onYield(goid: number, cause: number): void {
    const g = this.entry(goid);
    if (cause === RunnableCause.yielded) {
      this.counters.yields++;
      if (g) g.yields++;
      return;
    }
    this.counters.preemptions++;
    if (cause === RunnableCause.preemptParked) this.counters.preemptParks++;
    if (g) g.preemptions++;
  }

  onSyscall(goid: number, ns: number): void {
    this.counters.syscalls++;
    this.counters.syscallNs += ns;
    this.syscallTime.record(ns);
    const g = this.entry(goid);
    if (!g) return;
    g.syscalls++;
    g.syscallNs += ns;
  }

  onExit(goid: number): void {
    const g = this.goroutines.get(goid);
    if (!g) return;
    this.goroutines.delete(goid);
    if (this.exitedRetention <= 0) return;
    if (this.exited.length < this.exitedRetention) {
      this.exitedGoids[this.exited.length] = goid;
      this.exited.push(g);
    } else {
      // The exit it pushes out of the ring is reused by the next goroutine (they come at the rate of exits).
      if (this.spare.length < 64) this.spare.push(this.exited[this.exitedHead]);
      this.exited[this.exitedHead] = g;
      this.exitedGoids[this.exitedHead] = goid;
      this.exitedHead = (this.exitedHead + 1) % this.exitedRetention;
    }
  }

  /** A goroutine's scheduling so far, live or lately exited (undefined if no scheduler probe saw it). */
  of(goid: number): Readonly<GoroutineSched> | undefined {
    const live = this.goroutines.get(goid);
    if (live) return live;
    const n = this.exited.length;
    const ids = this.exitedGoids;
    for (let k = 0, i = (this.exitedHead === 0 ? n : this.exitedHead) - 1; k < n; k++, i--) {
      if (i < 0) i = n - 1;
      if (ids[i] === goid) return this.exited[i];
    }
    return undefined;
  }

  get size(): number {
    return this.goroutines.size;
  }

  summary(): SchedSummary {
    return {
      counters: { ...this.counters, byCause: { ...this.counters.byCause } },
      runQueue: this.runQueue.summary(),
      syscalls: this.syscallTime.summary(),
      threads: this.threads.size,
      ps: this.ps.size,
    };
  }
}
