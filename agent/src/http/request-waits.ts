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

import { GoidMap } from '../model/goid-map.ts';

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
  parkedByReason: ReadonlyMap<number, number>;
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
 * One goroutine's recent timeline: its finished parks in order of start, and its scheduler records in time order,
 * each interleaved in one array of numbers (a park or a scheduler record costs a few stores into an unboxed array,
 * no object) and trimmed in chunks in place, the array never shrunk (V8 gives a halved array's store back, and
 * growing it again made a new one). Entries of goroutines that went quiet are reused (`spare`), arrays and all, so
 * a process that starts a goroutine per request (net/http's background reader) allocates none per record.
 */
interface GoroutineParks {
  /** The park in progress: its reason (NO_PARK: none) and start. */
  openReason: number;
  openFrom: number;
  /** PARK_STRIDE numbers per park: reason, from, to, 1 when it ended without a ready (resumedUnseen), waker. */
  parks: number[];
  /** Parks held (the array may be longer). */
  parkN: number;
  dropped: boolean;
  last: number;
  /** SCHED_STRIDE numbers per record: when (ts), what (SchedMark) and how long (run-queue or system call ns). */
  sched: number[];
  schedN: number;
  schedDropped: boolean;
}

const NO_PARK = -1;
const PARK_STRIDE = 5;
const P_REASON = 0;
const P_FROM = 1;
const P_TO = 2;
const P_UNSEEN = 3;
const P_WAKER = 4;
const SCHED_STRIDE = 3;
const S_AT = 0;
const S_KIND = 1;
const S_NS = 2;
/**
 * Entries kept for reuse (exits release them one at a time, so a few cover the flow; at most ~1024 x 2 KiB held after
 * a burst); one whose arrays grew past SPARE_MAX_NUMBERS is let go (a keep-alive connection's).
 */
const MAX_SPARE = 1024;
const SPARE_MAX_NUMBERS = 128;

/**
 * An empty array that holds unboxed doubles from the start: a literal [] holds small integers until its first time
 * stamp, so the code that appends met arrays of two kinds (new goroutines' and used ones') and was deoptimised
 * whenever a kind it had not met came (as the duty cycle turns the probes on and off).
 */
function doubles(): number[] {
  const a = [0.5];
  a.length = 0;
  return a;
}

/**
 * How many leading entries of a time-ordered column (the time at `offset` of each `stride` numbers) are older than
 * keepNs at `now`, counted only once the oldest is a quarter of keepNs past it: columns are trimmed in chunks (or at
 * twice their bound), so that an append costs O(1) on average.
 */
function expired(a: number[], n: number, stride: number, offset: number, now: number, keepNs: number): number {
  let k = 0;
  if (n > 0 && a[offset] < now - keepNs * 1.25) {
    while (k < n && a[k * stride + offset] < now - keepNs) k++;
  }
  return k;
}

/**
 * Cuts the first k of n entries of stride numbers, in place: a loop of unboxed stores (splice makes an array of
 * what it cuts, and copyWithin boxes each number). Returns the entries left.
 */
function cut(a: number[], n: number, k: number, stride: number): number {
  const from = k * stride;
  const end = n * stride;
  for (let i = from; i < end; i++) a[i - from] = a[i];
  return n - k;
}

export class RequestWaits {
  private readonly byGoid = new GoidMap<GoroutineParks>();
  /** Entries of forgotten goroutines, for reuse. */
  private readonly spare: GoroutineParks[] = [];
  /**
   * Exits in the order seen (goid, time), from exitHead on: an exited goroutine's entry is let go keepNs after its
   * exit, as the sweep would, but one at a time, so its entry is there for the next goroutine to take (the sweep
   * let go of 2 s of them at once, more than the spares it keeps).
   */
  private exitGoids: number[] = [];
  private exitTimes: number[] = [];
  private exitHead = 0;
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
      g = this.spare.pop();
      if (g) {
        g.openReason = NO_PARK;
        g.openFrom = 0;
        g.parkN = 0;
        g.dropped = false;
        g.last = ts;
        g.schedN = 0;
        g.schedDropped = false;
      } else {
        g = { openReason: NO_PARK, openFrom: 0, parks: doubles(), parkN: 0, dropped: false, last: ts, sched: doubles(), schedN: 0, schedDropped: false };
      }
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
    const p = g.parks;
    let n = g.parkN;
    let k = expired(p, n, PARK_STRIDE, P_TO, to, this.keepNs);
    if (n - k >= 2 * this.maxParks) {
      k = n - this.maxParks + 1;
      g.dropped = true;
    }
    if (k > 0) n = cut(p, n, k, PARK_STRIDE);
    // In order, so a store past the end appends (the array stays packed).
    const i = n * PARK_STRIDE;
    p[i + P_REASON] = reason;
    p[i + P_FROM] = from;
    p[i + P_TO] = to;
    p[i + P_UNSEEN] = resumedUnseen ? 1 : 0;
    p[i + P_WAKER] = waker;
    g.parkN = n + 1;
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
    const a = g.sched;
    let n = g.schedN;
    let k = expired(a, n, SCHED_STRIDE, S_AT, ts, this.keepNs);
    if (n - k >= 2 * this.maxSched) {
      k = n - this.maxSched;
      g.schedDropped = true;
    }
    if (k > 0) n = cut(a, n, k, SCHED_STRIDE);
    const i = n * SCHED_STRIDE;
    a[i + S_AT] = ts;
    a[i + S_KIND] = kind;
    a[i + S_NS] = ns;
    g.schedN = n + 1;
    g.last = ts;
  }

  /**
   * What the scheduler did with goroutine goid in [startNs, endNs]; null when its records were not being read at
   * startNs (no scheduler probes, or attached later).
   */
  schedInside(goid: number, startNs: number, endNs: number, into?: RequestSchedSummary): RequestSchedSummary | null {
    if (this.schedSince === undefined || this.schedSince > startNs) return null;
    // `into`: the caller's own object, filled in (one request's figures are read once and copied: no object each).
    const out: RequestSchedSummary = into ?? { runnableNs: 0, syscallNs: 0, runs: 0, preemptions: 0, truncated: false };
    out.runnableNs = out.syscallNs = out.runs = out.preemptions = 0;
    out.truncated = false;
    const g = this.byGoid.get(goid);
    if (!g) return out;
    const a = g.sched;
    const n = g.schedN;
    const end = n * SCHED_STRIDE;
    // In time order: search for the first after the start (a keep-alive connection's goroutine holds many).
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (a[mid * SCHED_STRIDE + S_AT] <= startNs) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo * SCHED_STRIDE; i < end; i += SCHED_STRIDE) {
      const at = a[i + S_AT];
      if (at > endNs) break;
      // Never more than the request holds before it (a clock edge or a stamp from before the request).
      const ns = Math.min(a[i + S_NS], at - startNs);
      switch (a[i + S_KIND]) {
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
    out.truncated = g.schedDropped && (n > 0 ? a[S_AT] : Infinity) > startNs;
    return out;
  }

  onExit(goid: number, ts: number): void {
    this.running(goid, ts);
    if (goid !== 0 && this.byGoid.has(goid)) {
      this.exitGoids.push(goid);
      this.exitTimes.push(ts);
    }
    this.forgetExited(ts);
  }

  /** Lets go of the entries of goroutines that exited more than keepNs before ts with nothing of them since. */
  private forgetExited(ts: number): void {
    const ids = this.exitGoids;
    const times = this.exitTimes;
    let h = this.exitHead;
    while (h < ids.length && times[h] < ts - this.keepNs) {
      const g = this.byGoid.get(ids[h]);
      if (g !== undefined && g.last <= times[h] && g.openReason === NO_PARK) this.release(ids[h], g);
      h++;
    }
    // Compacted in place once the dead head is most of the queue (an amortised O(1) per exit).
    if (h > 1024 && h * 2 > ids.length) {
      const n = ids.length - h;
      for (let i = 0; i < n; i++) {
        ids[i] = ids[h + i];
        times[i] = times[h + i];
      }
      ids.length = n;
      times.length = n;
      h = 0;
    }
    this.exitHead = h;
  }

  private release(goid: number, g: GoroutineParks): void {
    this.byGoid.delete(goid);
    if (this.spare.length < MAX_SPARE && g.parks.length <= SPARE_MAX_NUMBERS && g.sched.length <= SPARE_MAX_NUMBERS) this.spare.push(g);
  }

  /** Forgets goroutines with nothing newer than keepNs before ts (all of them but those parked, when forced). */
  private sweep(ts: number, force: boolean): void {
    this.lastSweep = ts;
    // forEach, not for-of over entries: an entry array per goroutine was most of a sweep's cost.
    this.byGoid.forEach((g, goid) => {
      const open = g.openReason !== NO_PARK;
      if (open && !force) return;
      if (ts - g.last > this.keepNs || (force && !open && ts - g.last > this.keepNs / 8)) this.release(goid, g);
    });
  }

  /** The parks of goroutine goid that began in [startNs, endNs), each cut at endNs. */
  inside(goid: number, startNs: number, endNs: number): RequestWaitsSummary {
    const g = this.byGoid.get(goid);
    if (!g) return NOT_PARKED;
    const p = g.parks;
    const n = g.parkN;
    const end = n * PARK_STRIDE;
    // A goroutine's parks never overlap, so they are in order of start: search for the first inside (a
    // keep-alive connection's goroutine holds up to maxParks of them, and every request of it asks).
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (p[mid * PARK_STRIDE + P_FROM] < startNs) lo = mid + 1;
      else hi = mid;
    }
    const truncated = g.dropped && (n > 0 ? p[P_FROM] : Infinity) > startNs;
    const open = g.openReason !== NO_PARK && g.openFrom >= startNs && g.openFrom < endNs;
    // Most requests park nowhere: one shared summary, no object made.
    if (!truncated && !open && (lo >= n || p[lo * PARK_STRIDE + P_FROM] >= endNs)) return NOT_PARKED;
    const out: RequestWaitsSummary = { parks: [], parkedNs: 0, parkedByReason: NO_PARKS, truncated };
    for (let i = lo * PARK_STRIDE; i < end && p[i + P_FROM] < endNs; i += PARK_STRIDE) {
      add(out, endNs, p[i + P_REASON], p[i + P_FROM], p[i + P_TO], p[i + P_UNSEEN] === 1, p[i + P_WAKER]);
    }
    if (open) add(out, endNs, g.openReason, g.openFrom, endNs, true, 0);
    return out;
  }
}

/** The parkedByReason of a summary with no park (most requests): shared, never written. */
const NO_PARKS: ReadonlyMap<number, number> = new Map();
/** The summary of a request inside which its goroutine never parked: shared, never written. */
const NOT_PARKED: RequestWaitsSummary = Object.freeze({ parks: Object.freeze([]) as unknown as ParkInterval[], parkedNs: 0, parkedByReason: NO_PARKS, truncated: false });

/** Adds a park to a summary, cut at the request's end. */
function add(out: RequestWaitsSummary, endNs: number, reason: number, from: number, to: number, resumedUnseen: boolean, waker: number): void {
  const cutTo = Math.min(to, endNs);
  out.parks.push({ reason, from, to: cutTo, resumedUnseen: resumedUnseen || to > endNs, waker });
  const d = cutTo - from;
  out.parkedNs += d;
  if (out.parkedByReason === NO_PARKS) out.parkedByReason = new Map();
  const m = out.parkedByReason as Map<number, number>;
  m.set(reason, (m.get(reason) ?? 0) + d);
}
