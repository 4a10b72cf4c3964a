// What the goroutine that served a request did inside it: its parks, by wait reason, from the park/ready events
// the goroutine tracer already has. The two ring buffers are drained apart, so a request's end may be read
// before the parks inside it (or after): each process keeps every goroutine's recent parks for `keepNs`, and a
// request is settled only once the goroutine events of its time have been read (the tracer waits a grace period).
//
// A goroutine runs when a request starts and when it ends (the probes are on its own code), so a park is inside
// a request when it began inside it. A park the runtime ended without a ready seen ends where the goroutine became
// runnable, when the scheduler probes saw it (runtime.execute's record carries the run-queue time), else where it
// was next seen running: its next event, or the request's end at the latest; such parks say so (`resumedUnseen`).
//
// With the scheduler probes' records fed in too (runs with their run-queue time, system calls, preemptions), the
// request's time splits into running, runnable (waiting in a run queue) and parked. Every run-queue wait and
// system call inside a request ends inside it (the goroutine runs at both ends), so each counts whole.

export interface ParkInterval {
  reason: number;
  from: number;
  to: number;
  /** The end was not a ready: the goroutine was seen running again (netpoller wakeups, missed readies). */
  resumedUnseen: boolean;
  /** The goroutine that readied it (0: the runtime, or unseen). */
  waker: number;
}

export interface RequestWaitsSummary {
  /** Parks inside the request, whole (cut at the request's end). */
  parks: ParkInterval[];
  /** Sum of their lengths. */
  parkedNs: number;
  /** By wait reason number (the layout names it). */
  parkedByReason: Map<number, number>;
  /** Parks dropped from this summary because the goroutine had more than maxParksPerGoroutine in keepNs. */
  truncated: boolean;
}

/** What the scheduler did with the goroutine inside a request (scheduler probes' records). */
export interface RequestSchedSummary {
  /** Time runnable, waiting for a P (run-queue latency of the runs inside it). */
  runnableNs: number;
  /** Time in system calls (the goroutine counts as running then). */
  syscallNs: number;
  /** Times it started running again, and was preempted, inside it. */
  runs: number;
  preemptions: number;
  /** Records of its scheduling were dropped (more than maxSchedPerGoroutine in keepNs): the figures are short. */
  truncated: boolean;
}

/** What a scheduler record of a goroutine says. */
const SchedMark = { run: 0, syscall: 1, preempt: 2 } as const;
type SchedMark = (typeof SchedMark)[keyof typeof SchedMark];

export interface RequestWaitsOptions {
  /** How long a goroutine's finished parks are kept (ns of event time). */
  keepNs?: number;
  maxParksPerGoroutine?: number;
  /** Scheduler records (runs, system calls, preemptions) kept per goroutine within keepNs (up to twice as many
   * between trims). */
  maxSchedPerGoroutine?: number;
  /** Goroutines with recent parks kept per process; past it, parks of new goroutines are counted and dropped. */
  maxGoroutines?: number;
}

/**
 * One goroutine's recent timeline, as columns (a park or a scheduler record costs a few array pushes, no object):
 * its finished parks in order of start, and its scheduler records in time order, each trimmed in chunks.
 */
interface GoroutineParks {
  /** The park in progress: its reason (NO_PARK: none) and start. */
  openReason: number;
  openFrom: number;
  parkReason: number[];
  parkFrom: number[];
  parkTo: number[];
  /** 1 when the park ended without a ready (resumedUnseen). */
  parkUnseen: number[];
  parkWaker: number[];
  dropped: boolean;
  last: number;
  /** Scheduler records, in time order: when (ts), what (SchedMark) and how long (run-queue or system call ns). */
  schedAt: number[];
  schedKind: SchedMark[];
  schedNs: number[];
  schedDropped: boolean;
}

const NO_PARK = -1;
/** The columns of a goroutine with none yet (most live microseconds): its own are made at its first push. */
const NONE: never[] = [];

/**
 * How many leading entries of a time-ordered column are older than keepNs at `now`, counted only once the oldest is
 * a quarter of keepNs past it: columns are trimmed in chunks (or at twice their bound), so that an append costs O(1)
 * on average.
 */
function expired(times: number[], now: number, keepNs: number): number {
  const n = times.length;
  let k = 0;
  if (n > 0 && times[0] < now - keepNs * 1.25) {
    while (k < n && times[k] < now - keepNs) k++;
  }
  return k;
}

/** Cuts the first n entries of each column. */
function cut(n: number, ...columns: unknown[][]): void {
  for (const c of columns) c.splice(0, n);
}

export class RequestWaits {
  private readonly byGoid = new Map<number, GoroutineParks>();
  private readonly keepNs: number;
  private readonly maxParks: number;
  private readonly maxSched: number;
  private readonly maxGoroutines: number;
  /** Parks not kept because the process had maxGoroutines goroutines with recent parks. */
  dropped = 0;
  private lastSweep = 0;
  /** When the first scheduler record was read: requests that began before it have no scheduler figures. */
  private schedSince: number | undefined;

  constructor(opts: RequestWaitsOptions = {}) {
    this.keepNs = opts.keepNs ?? 2e9;
    this.maxParks = opts.maxParksPerGoroutine ?? 256;
    this.maxSched = opts.maxSchedPerGoroutine ?? 1024;
    this.maxGoroutines = opts.maxGoroutines ?? 200_000;
  }

  get goroutines(): number {
    return this.byGoid.size;
  }

  private entry(goid: number, ts: number): GoroutineParks | undefined {
    let g = this.byGoid.get(goid);
    if (!g) {
      if (this.byGoid.size >= this.maxGoroutines) {
        this.sweep(ts, true);
        if (this.byGoid.size >= this.maxGoroutines) {
          this.dropped++;
          return undefined;
        }
      }
      g = {
        openReason: NO_PARK, openFrom: 0, parkReason: NONE, parkFrom: NONE, parkTo: NONE, parkUnseen: NONE, parkWaker: NONE, dropped: false, last: ts,
        schedAt: NONE, schedKind: NONE, schedNs: NONE, schedDropped: false,
      };
      this.byGoid.set(goid, g);
    }
    return g;
  }

  private close(g: GoroutineParks, to: number, resumedUnseen: boolean, waker: number): void {
    if (g.openReason === NO_PARK) return;
    const reason = g.openReason;
    const from = g.openFrom;
    g.openReason = NO_PARK;
    if (to < from) return;
    const n = g.parkTo.length;
    let k = expired(g.parkTo, to, this.keepNs);
    if (n - k >= 2 * this.maxParks) {
      k = n - this.maxParks + 1;
      g.dropped = true;
    }
    if (k > 0) cut(k, g.parkReason, g.parkFrom, g.parkTo, g.parkUnseen, g.parkWaker);
    if (g.parkTo === NONE) {
      g.parkReason = [];
      g.parkFrom = [];
      g.parkTo = [];
      g.parkUnseen = [];
      g.parkWaker = [];
    }
    g.parkReason.push(reason);
    g.parkFrom.push(from);
    g.parkTo.push(to);
    g.parkUnseen.push(resumedUnseen ? 1 : 0);
    g.parkWaker.push(waker);
    g.last = to;
  }

  onPark(goid: number, reason: number, ts: number): void {
    const g = this.entry(goid, ts);
    if (!g) return;
    // It is running: a park it was in is over.
    if (goid !== 0 && g.openReason !== NO_PARK) this.close(g, ts, true, 0);
    g.openReason = reason;
    g.openFrom = ts;
    g.last = ts;
    if (ts - this.lastSweep > this.keepNs) this.sweep(ts, false);
  }

  /** The goroutine is running at ts (it readied, created or exited): a park it was in is over. */
  private running(goid: number, ts: number): void {
    if (goid === 0) return;
    const g = this.byGoid.get(goid);
    if (g !== undefined && g.openReason !== NO_PARK) this.close(g, ts, true, 0);
  }

  onReady(goid: number, waker: number, ts: number): void {
    this.running(waker, ts);
    const g = this.byGoid.get(goid);
    if (g !== undefined && g.openReason !== NO_PARK) this.close(g, ts, false, waker);
  }

  onCreate(creator: number, ts: number): void {
    this.running(creator, ts);
  }

  /**
   * runtime.execute: the goroutine runs at ts after runnableNs in a run queue (null: the probes did not see it
   * become runnable). A park it was in ended when it became runnable.
   */
  onRun(goid: number, ts: number, runnableNs: number | null): void {
    const g = this.schedEntry(goid, ts);
    if (!g) return;
    if (g.openReason !== NO_PARK) this.close(g, runnableNs === null ? ts : ts - runnableNs, runnableNs === null, 0);
    this.mark(g, ts, SchedMark.run, runnableNs ?? 0);
  }

  /** runtime.exitsyscall: back from a system call of ns. */
  onSyscall(goid: number, ts: number, ns: number): void {
    const g = this.schedEntry(goid, ts);
    if (g) this.mark(g, ts, SchedMark.syscall, ns);
  }

  /** Preempted (or suspended in place for the GC). */
  onPreempt(goid: number, ts: number): void {
    const g = this.schedEntry(goid, ts);
    if (g) this.mark(g, ts, SchedMark.preempt, 0);
  }

  private schedEntry(goid: number, ts: number): GoroutineParks | undefined {
    if (this.schedSince === undefined || ts < this.schedSince) this.schedSince = ts;
    if (goid === 0) return undefined;
    return this.entry(goid, ts);
  }

  private mark(g: GoroutineParks, ts: number, kind: SchedMark, ns: number): void {
    const n = g.schedAt.length;
    let k = expired(g.schedAt, ts, this.keepNs);
    if (n - k >= 2 * this.maxSched) {
      k = n - this.maxSched;
      g.schedDropped = true;
    }
    if (k > 0) cut(k, g.schedAt, g.schedKind, g.schedNs);
    if (g.schedAt === NONE) {
      g.schedAt = [];
      g.schedKind = [];
      g.schedNs = [];
    }
    g.schedAt.push(ts);
    g.schedKind.push(kind);
    g.schedNs.push(ns);
    g.last = ts;
  }

  /**
   * What the scheduler did with goroutine goid in [startNs, endNs]; null when its records were not being read at
   * startNs (no scheduler probes, or attached later).
   */
  schedInside(goid: number, startNs: number, endNs: number): RequestSchedSummary | null {
    if (this.schedSince === undefined || this.schedSince > startNs) return null;
    const out: RequestSchedSummary = { runnableNs: 0, syscallNs: 0, runs: 0, preemptions: 0, truncated: false };
    const g = this.byGoid.get(goid);
    if (!g) return out;
    // In time order: search for the first after the start (a keep-alive connection's goroutine holds many).
    let lo = 0;
    let hi = g.schedAt.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (g.schedAt[mid] <= startNs) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < g.schedAt.length; i++) {
      const at = g.schedAt[i];
      if (at > endNs) break;
      // Never more than the request holds before it (a clock edge or a stamp from before the request).
      const ns = Math.min(g.schedNs[i], at - startNs);
      switch (g.schedKind[i]) {
        case SchedMark.run:
          out.runs++;
          out.runnableNs += ns;
          break;
        case SchedMark.syscall:
          out.syscallNs += ns;
          break;
        case SchedMark.preempt:
          out.preemptions++;
          break;
      }
    }
    out.truncated = g.schedDropped && (g.schedAt[0] ?? Infinity) > startNs;
    return out;
  }

  onExit(goid: number, ts: number): void {
    this.running(goid, ts);
  }

  /** Forgets goroutines with nothing newer than keepNs before ts (all of them but those parked, when forced). */
  private sweep(ts: number, force: boolean): void {
    this.lastSweep = ts;
    for (const [goid, g] of this.byGoid) {
      const open = g.openReason !== NO_PARK;
      if (open && !force) continue;
      if (ts - g.last > this.keepNs || (force && !open && ts - g.last > this.keepNs / 8)) this.byGoid.delete(goid);
    }
  }

  /** The parks of goroutine goid that began in [startNs, endNs), each cut at endNs. */
  inside(goid: number, startNs: number, endNs: number): RequestWaitsSummary {
    const out: RequestWaitsSummary = { parks: [], parkedNs: 0, parkedByReason: new Map(), truncated: false };
    const g = this.byGoid.get(goid);
    if (!g) return out;
    const add = (reason: number, from: number, to: number, resumedUnseen: boolean, waker: number) => {
      const cutTo = Math.min(to, endNs);
      out.parks.push({ reason, from, to: cutTo, resumedUnseen: resumedUnseen || to > endNs, waker });
      const d = cutTo - from;
      out.parkedNs += d;
      out.parkedByReason.set(reason, (out.parkedByReason.get(reason) ?? 0) + d);
    };
    // A goroutine's parks never overlap, so they are in order of start: search for the first inside (a
    // keep-alive connection's goroutine holds up to maxParks of them, and every request of it asks).
    const from = g.parkFrom;
    let lo = 0;
    let hi = from.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (from[mid] < startNs) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < from.length && from[i] < endNs; i++) add(g.parkReason[i], from[i], g.parkTo[i], g.parkUnseen[i] === 1, g.parkWaker[i]);
    if (g.openReason !== NO_PARK && g.openFrom >= startNs && g.openFrom < endNs) add(g.openReason, g.openFrom, endNs, true, 0);
    out.truncated = g.dropped && (from[0] ?? Infinity) > startNs;
    return out;
  }
}
