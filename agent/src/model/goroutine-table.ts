// The live goroutines of one process, kept as columns of typed arrays so a million goroutines cost about
// 160 bytes each (bench: scripts/bench), with a bounded number of rows: past the bound new goroutines are
// counted as untracked rather than stored.
//
// What it says about a goroutine's state (status, wait reason) comes from the newest of two sources: the probes'
// events and the scans of the runtime's own goroutine list (applyScan). Each row keeps the time of the source
// that set its state, so an event older than a scan never overwrites it and a scan never undoes a newer event;
// with the park/ready probes off, the scans alone keep states true, and goroutines that vanished from the
// runtime's list are ended (exits derived from memory).
//
// It also keeps what the trace model needs (collector/src/otel/trace-model.ts): each goroutine's unit of work
// (the root of its trace, decided once at creation), and its long parks with the goroutine that woke it.

import type { GoroutineState } from '../../../collector/src/protocol/records.ts';
import type { InventoryGoroutine } from '../inventory/allgs.ts';
import { LRUCache } from 'lru-cache';
import { GoidMap } from './goid-map.ts';

/** Go's goroutine status numbers (runtime2.go), the _Gscan bit removed, of the states named once in the protocol (goroutineStates). */
export const GStatus = {
  idle: 0,
  runnable: 1,
  running: 2,
  syscall: 3,
  waiting: 4,
  dead: 6,
  copystack: 8,
  preempted: 9,
  unknown: 255,
} as const satisfies Record<GoroutineState, number>;

export type GStatusName = keyof typeof GStatus;
const statusNames = new Map<number, GStatusName>(Object.entries(GStatus).map(([k, v]) => [v, k as GStatusName]));
export const statusName = (s: number): GStatusName => statusNames.get(s) ?? 'unknown';

const NO_REASON = 255;
const nan = (x: number): number | null => (Number.isNaN(x) ? null : x);
/** The per-reason times of an exited goroutine none of whose parks ended while observed: shared, never written. */
const NO_BLOCKED_TIME: Map<number, number> = new Map();
const FLAG_PREEXISTING = 1;
/** Its record went to the collector: its descendants in the same trace may name it as their parent. */
const FLAG_SHIPPED = 2;
/** A descendant in its trace was shipped: it must be shipped too, so the child's parent is present. */
const FLAG_MUST_SHIP = 4;
/** Its row changed since the last takeChanged() (the slot is in `changed`). */
const FLAG_CHANGED = 8;

/** Where a goroutine's span is at some time: its trace's root and which of its spans (one per report interval). */
export interface SpanPlace {
  goid: number;
  root: number;
  segment: number;
}

/** A park at least TraceOptions.parkSpanMinMs long that has ended. Times are monotonic ns. */
export interface LongPark {
  reason: number;
  from: number;
  to: number;
  /** The goroutine that readied it, where it was seen (a park ended by exit or an unseen wakeup has none). */
  waker: SpanPlace | null;
}

export interface TraceOptions {
  /** A goroutine created by one at least this old starts a trace of its own (a unit of work). Default 1 s. */
  unitRootAgeMs: number;
  /** At most this many of a goroutine's children join its trace; later ones start their own. Default 64. */
  maxJoinedChildren: number;
  /** Parks at least this long are kept as spans. Default 1 s. */
  parkSpanMinMs: number;
  /** A goroutine's span ends every segmentMs while it lives, so it is seen while alive. Default 60 s. */
  segmentMs: number;
  /** Long parks kept per goroutine until shipped; older ones are dropped (counted). Default 16. */
  maxLongParks: number;
}

export const defaultTraceOptions: TraceOptions = { unitRootAgeMs: 1000, maxJoinedChildren: 64, parkSpanMinMs: 1000, segmentMs: 60_000, maxLongParks: 16 };

/** Which span of a goroutine that started at `start` holds time t (ns): 0 for the first segmentNs, and so on. */
export const segmentAt = (start: number, t: number, segmentNs: number): number => (t > start ? Math.floor((t - start) / segmentNs) : 0);

/** One goroutine as a scan of the runtime's list read it. */
export type ScannedGoroutine = InventoryGoroutine;

/** What the table knows of one goroutine, as plain values. */
export interface GoroutineRow {
  goid: number;
  parentGoid: number | null;
  state: GStatusName;
  waitReason: number | null;
  gopc: number;
  startPc: number;
  /** Monotonic ns (the BPF clock); null when it was created before the agent attached. */
  createdAt: number | null;
  lastParkAt: number | null;
  lastReadyAt: number | null;
  parkCount: number;
  readyCount: number;
  /** Parked time that ended while observed. */
  blockedNs: number;
  blockedByReason: Map<number, number>;
  preexisting: boolean;
  /** Address of the g in the process (0 if unknown). */
  gAddr: number;
  /** Monotonic ns when the current wait began, if known. */
  waitingSince: number | null;
  /** The goid of the root of its trace (itself when it starts one). */
  root: number;
  /** Where its spans start: its creation, or when the agent first saw it. Monotonic ns. */
  traceStart: number;
  /** Its record was shipped, or must be (a descendant in its trace was). */
  shipped: boolean;
  mustShip: boolean;
}

export interface ExitedGoroutine extends GoroutineRow {
  exitedAt: number;
  /** Increases by one per exit: lets a reader take the exits it has not seen. */
  serial: number;
  /** Long parks not shipped before it exited. */
  longParks: LongPark[];
}

/** What the record selection reads of an exit before making its row (GoroutineTable.exitedSince). */
export type ExitSummary = Pick<ExitedGoroutine, 'shipped' | 'mustShip' | 'preexisting' | 'createdAt' | 'root' | 'exitedAt'>;

export interface TableCounters {
  created: number;
  parked: number;
  readied: number;
  exited: number;
  /** A goroutine seen running again with no ready in between (woken by the netpoller, or a missed ready). */
  resumedUnseen: number;
  /** Goroutines not stored because the table was full. */
  untracked: number;
  /** Goroutines first seen in a scan (created while no creation probe was on, or its record not in yet). */
  foundByScan: number;
  /** Goroutines found gone by a scan with no exit seen (exit probes off, or its record lost). */
  endedByScan: number;
  /** Long parks dropped because a goroutine had more than maxLongParks waiting to be shipped. */
  longParksDropped: number;
}

export interface GoroutineTableOptions {
  maxGoroutines?: number;
  /** How many exited goroutines to remember, newest first out. */
  exitedRetention?: number;
  trace?: Partial<TraceOptions>;
}

/** Places the exits' ring starts with (it doubles up to exitedRetention as exits come). */
const FIRST_EXIT_PLACES = 256;

export class GoroutineTable {
  readonly maxGoroutines: number;
  readonly counters: TableCounters = { created: 0, parked: 0, readied: 0, exited: 0, resumedUnseen: 0, untracked: 0, longParksDropped: 0, foundByScan: 0, endedByScan: 0 };
  readonly trace: TraceOptions;
  private readonly rootAgeNs: number;
  private readonly parkSpanMinNs: number;
  readonly segmentNs: number;
  /** When the inventory read the goroutines that existed before the agent: their spans start there. */
  private preexistingSeenAt = NaN;
  /** Each live goroutine's row (its slot in the columns). */
  private readonly slotOf = new GoidMap<number>();
  private readonly free: number[] = [];
  private capacity = 0;
  private used = 0;
  private goid = new Float64Array(0);
  private parent = new Float64Array(0);
  private state = new Uint8Array(0);
  /** The wait reason of the current state (NO_REASON unless waiting), from the same source as state. */
  private reason = new Uint8Array(0);
  /** Monotonic ns of the event or scan that set state: only a newer one may change it. */
  private stateAt = new Float64Array(0);
  /** The reason of the park in progress as the probes saw it; NO_REASON when no park is open. */
  private parkReason = new Uint8Array(0);
  /** The scan that last saw it (scan generation). */
  private seenIn = new Uint32Array(0);
  /** When it was first seen, for a goroutine found by a scan (its creation unseen); NaN otherwise. */
  private firstSeen = new Float64Array(0);
  private flags = new Uint8Array(0);
  private gopc = new Float64Array(0);
  private startPc = new Float64Array(0);
  private createdAt = new Float64Array(0);
  private parkAt = new Float64Array(0);
  private readyAt = new Float64Array(0);
  private parkCount = new Uint32Array(0);
  private readyCount = new Uint32Array(0);
  private blocked = new Float64Array(0);
  /** Address of the g in the process: lets a reader re-check the goroutine against the runtime's own state. */
  private gAddr = new Float64Array(0);
  /** When the current wait began as far as known (kept across the duty cycle's off windows); NaN if not waiting. */
  private waitSince = new Float64Array(0);
  /** The root of each goroutine's trace (its unit of work): itself, or its creator's root. */
  private root = new Float64Array(0);
  /** Children that joined its trace (saturates at 255). */
  private joined = new Uint8Array(0);
  /** Sparse: only goroutines whose parks ended while observed. */
  private readonly byReason = new Map<number, Map<number, number>>();
  /** Sparse: long parks not yet shipped, by slot. */
  private readonly longParks = new Map<number, LongPark[]>();
  /**
   * A ring of the newest exits (oldest first from exitedHead), as columns made into rows only when read (most
   * exits are never read one by one: a short-lived goroutine is shipped only if its trace is sampled): O(1) and
   * no object per exit at any churn. An exited goroutine is looked up through exitSlotPlace/exitSlotCount (below),
   * where a Map by goid cost a set and a delete per exit.
   */
  private exitedCount = 0;
  private exitedGoids!: Float64Array;
  private exParent!: Float64Array;
  private exGopc!: Float64Array;
  private exStartPc!: Float64Array;
  private exCreatedAt!: Float64Array;
  private exReadyAt!: Float64Array;
  private exParkCount!: Uint32Array;
  private exReadyCount!: Uint32Array;
  private exBlocked!: Float64Array;
  private exFlags!: Uint8Array;
  private exGAddr!: Float64Array;
  private exRoot!: Float64Array;
  private exTraceStart!: Float64Array;
  /** When each exited (monotonic ns): a scan looks only at the exits since it began. */
  private exitedAts!: Float64Array;
  private exSerial!: Float64Array;
  /**
   * Where an exited goroutine is in the ring, by goid & (length - 1) (a power of two at least the ring's places):
   * the newest exit's place among the goids of that slot, and how many of the ring's exits have goids of that slot.
   * A lookup reads the place, and knows a goid absent when the slot holds no exit or only another goid's, so only
   * a slot shared by two exits in the ring falls back to the scan of the goids, newest first. A whole scan per
   * lookup of an exited or unknown goid (a connection's goroutine each interval, a shipped child's parent) was ~2%
   * of the agent's CPU at saturation with --full, the ring full at 10,000; this costs two typed-array stores per exit.
   */
  private exitSlotPlace!: Int32Array;
  private exitSlotCount!: Uint32Array;
  /** Sparse, by ring place: the per-reason times and unshipped long parks an exit took with it. */
  private readonly exByReason = new Map<number, Map<number, number>>();
  private readonly exLongParks = new Map<number, LongPark[]>();
  /**
   * Exited goroutines that had children join their trace, kept longer than the ring (bounded, oldest out): a child
   * that becomes worth shipping later ships its parent with it, so the parent is present in the trace.
   */
  private readonly exitedParents = new LRUCache<number, ExitedGoroutine>({ max: 20_000 });
  /** Goroutines seen accepting connections, with the children each started lately (which one serves a connection). */
  private readonly acceptors = new LRUCache<number, { goids: number[]; ts: number[] }>({ max: 1024 });
  private exitedHead = 0;
  private scanGeneration = 0;
  private exitSerial = 0;
  /** Rows that changed since the last takeChanged(), by slot, each once (FLAG_CHANGED): a flag test per record, not a hash. */
  private changed: number[] = [];
  private readonly exitedRetention: number;

  constructor(opts: GoroutineTableOptions = {}) {
    this.maxGoroutines = opts.maxGoroutines ?? 2_000_000;
    this.exitedRetention = opts.exitedRetention ?? 10_000;
    this.sizeExits(Math.min(Math.max(0, this.exitedRetention), FIRST_EXIT_PLACES));
    this.trace = { ...defaultTraceOptions, ...opts.trace };
    if (this.trace.unitRootAgeMs > this.trace.segmentMs) throw new Error('unitRootAgeMs must not exceed segmentMs: a joined child is created in its parent\'s first span');
    this.rootAgeNs = this.trace.unitRootAgeMs * 1e6;
    this.parkSpanMinNs = this.trace.parkSpanMinMs * 1e6;
    this.segmentNs = this.trace.segmentMs * 1e6;
    this.grow(1024);
  }

  /**
   * Sizes the exits' columns to n places, keeping the exitedCount filled so far (they grow only before the ring
   * first wraps, so those are places 0..exitedCount-1). They start small and double up to exitedRetention: ~105
   * bytes a place, 1 MiB per traced process at the full 10k, which an idle process with a handful of exits never
   * needs (a change in agentcpu's agent/src/model, for the agent's memory per traced process).
   */
  private sizeExits(n: number): void {
    const keep = this.exitedCount;
    const f64 = (old: Float64Array | undefined) => {
      const a = new Float64Array(n);
      if (old && keep) a.set(old.subarray(0, keep));
      return a;
    };
    this.exitedGoids = f64(this.exitedGoids);
    this.exParent = f64(this.exParent);
    this.exGopc = f64(this.exGopc);
    this.exStartPc = f64(this.exStartPc);
    this.exCreatedAt = f64(this.exCreatedAt);
    this.exReadyAt = f64(this.exReadyAt);
    this.exBlocked = f64(this.exBlocked);
    this.exGAddr = f64(this.exGAddr);
    this.exRoot = f64(this.exRoot);
    this.exTraceStart = f64(this.exTraceStart);
    this.exitedAts = f64(this.exitedAts);
    this.exSerial = f64(this.exSerial);
    const parks = new Uint32Array(n);
    const readies = new Uint32Array(n);
    const flags = new Uint8Array(n);
    if (keep) {
      parks.set(this.exParkCount.subarray(0, keep));
      readies.set(this.exReadyCount.subarray(0, keep));
      flags.set(this.exFlags.subarray(0, keep));
    }
    this.exParkCount = parks;
    this.exReadyCount = readies;
    this.exFlags = flags;
    // Before the ring first wraps its places are in the order of the exits: the newest of a slot is written last.
    const slots = n <= 1 ? 1 : 2 ** Math.ceil(Math.log2(n));
    this.exitSlotPlace = new Int32Array(slots);
    this.exitSlotCount = new Uint32Array(slots);
    for (let i = 0; i < keep; i++) this.noteExitPlace(i);
  }

  /** The ring's place i holds a new exit. */
  private noteExitPlace(i: number): void {
    const slot = this.exitedGoids[i] & (this.exitSlotPlace.length - 1);
    this.exitSlotPlace[slot] = i;
    this.exitSlotCount[slot]++;
  }

  get size(): number {
    return this.slotOf.size;
  }

  has(goid: number): boolean {
    return this.slotOf.has(goid);
  }

  private grow(min: number): void {
    const cap = Math.min(Math.max(min, this.capacity * 2), this.maxGoroutines);
    const f64 = (a: Float64Array) => { const b = new Float64Array(cap); b.set(a); return b; };
    const u8 = (a: Uint8Array) => { const b = new Uint8Array(cap); b.set(a); return b; };
    const u32 = (a: Uint32Array) => { const b = new Uint32Array(cap); b.set(a); return b; };
    this.goid = f64(this.goid);
    this.parent = f64(this.parent);
    this.state = u8(this.state);
    this.reason = u8(this.reason);
    this.stateAt = f64(this.stateAt);
    this.parkReason = u8(this.parkReason);
    this.seenIn = u32(this.seenIn);
    this.firstSeen = f64(this.firstSeen);
    this.flags = u8(this.flags);
    this.gopc = f64(this.gopc);
    this.startPc = f64(this.startPc);
    this.createdAt = f64(this.createdAt);
    this.parkAt = f64(this.parkAt);
    this.readyAt = f64(this.readyAt);
    this.parkCount = u32(this.parkCount);
    this.readyCount = u32(this.readyCount);
    this.blocked = f64(this.blocked);
    this.gAddr = f64(this.gAddr);
    this.waitSince = f64(this.waitSince);
    this.root = f64(this.root);
    this.joined = u8(this.joined);
    this.capacity = cap;
  }

  /** The row of goid, made if missing; -1 when the table is full. */
  private slot(goid: number): number {
    const s = this.slotOf.get(goid);
    if (s !== undefined) return s;
    let n: number;
    if (this.free.length) n = this.free.pop()!;
    else {
      if (this.used >= this.capacity) {
        if (this.capacity >= this.maxGoroutines) {
          this.counters.untracked++;
          return -1;
        }
        this.grow(this.used + 1);
      }
      n = this.used++;
    }
    this.slotOf.set(goid, n);
    this.goid[n] = goid;
    this.parent[n] = NaN;
    this.state[n] = GStatus.unknown;
    this.reason[n] = NO_REASON;
    this.stateAt[n] = -Infinity;
    this.parkReason[n] = NO_REASON;
    this.seenIn[n] = this.scanGeneration;
    this.firstSeen[n] = NaN;
    this.flags[n] = 0;
    this.gopc[n] = 0;
    this.startPc[n] = 0;
    this.createdAt[n] = NaN;
    this.parkAt[n] = NaN;
    this.readyAt[n] = NaN;
    this.parkCount[n] = 0;
    this.readyCount[n] = 0;
    this.blocked[n] = 0;
    this.gAddr[n] = 0;
    this.waitSince[n] = NaN;
    this.root[n] = goid;
    this.joined[n] = 0;
    return n;
  }

  /**
   * A goroutine that existed before the agent attached, from the runtime's allgs. A waiting one counts as
   * blocked since the runtime's own g.waitsince when it is set (the GC sets it), else since `seenAt`.
   */
  addPreexisting(g: ScannedGoroutine, seenAt: number): void {
    if (Number.isNaN(this.preexistingSeenAt)) this.preexistingSeenAt = seenAt;
    const s = this.slot(g.goid);
    if (s < 0) return;
    this.flags[s] |= FLAG_PREEXISTING;
    this.touch(s);
    this.parent[s] = g.parentGoid ?? NaN;
    this.gopc[s] = g.gopc;
    this.startPc[s] = g.startPc;
    this.gAddr[s] = g.gAddr;
    if (seenAt < this.stateAt[s]) return; // an event about it came in first: it is newer
    this.state[s] = g.status;
    this.reason[s] = g.status === GStatus.waiting && g.waitReason !== null ? g.waitReason : NO_REASON;
    this.stateAt[s] = seenAt;
    this.parkAt[s] = g.status === GStatus.waiting ? (g.waitingSince ?? seenAt) : NaN;
    this.parkReason[s] = this.reason[s];
    this.waitSince[s] = this.parkAt[s];
  }

  onCreate(goid: number, parentGoid: number, gopc: number, startPc: number, ts: number, gAddr = 0): void {
    this.counters.created++;
    this.sawRunning(parentGoid, ts);
    const s = this.slot(goid);
    if (s < 0) return;
    // A unit of work: a goroutine created by a young one joins its creator's trace (a handler's fan-out);
    // one created by an established goroutine (main, an accept loop, a worker) starts its own.
    const ps = parentGoid > 0 ? this.slotOf.get(parentGoid) : undefined;
    if (ps !== undefined && !(this.flags[ps] & FLAG_PREEXISTING) && ts - this.createdAt[ps] < this.rootAgeNs && this.joined[ps] < Math.min(255, this.trace.maxJoinedChildren)) {
      this.root[s] = this.root[ps];
      this.joined[ps]++;
    }
    this.parent[s] = parentGoid;
    if (this.acceptors.size) {
      const acc = this.acceptors.get(parentGoid);
      if (acc) {
        acc.goids.push(goid);
        acc.ts.push(ts);
        if (acc.goids.length > 64) { acc.goids.shift(); acc.ts.shift(); }
      }
    }
    this.gopc[s] = gopc;
    this.startPc[s] = startPc;
    this.createdAt[s] = ts;
    this.firstSeen[s] = NaN;
    if (gAddr) this.gAddr[s] = gAddr;
    this.setState(s, GStatus.runnable, NO_REASON, ts);
    this.touch(s);
  }

  onPark(goid: number, reason: number, ts: number, gAddr = 0): void {
    this.counters.parked++;
    this.sawRunning(goid, ts);
    const s = this.slot(goid);
    if (s < 0) return;
    this.parkAt[s] = ts;
    this.parkReason[s] = reason;
    if (this.setState(s, GStatus.waiting, reason, ts)) this.waitSince[s] = ts;
    if (gAddr) this.gAddr[s] = gAddr;
    this.parkCount[s]++;
    this.touch(s);
  }

  onReady(goid: number, wakerGoid: number, ts: number): void {
    this.counters.readied++;
    this.sawRunning(wakerGoid, ts);
    const s = this.slot(goid);
    if (s < 0) return;
    if (this.parkReason[s] !== NO_REASON) this.endPark(s, ts, wakerGoid);
    this.setState(s, GStatus.runnable, NO_REASON, ts);
    this.readyAt[s] = ts;
    this.readyCount[s]++;
    this.touch(s);
  }

  onExit(goid: number, ts: number): void {
    this.counters.exited++;
    const s = this.slotOf.get(goid);
    if (s === undefined) return;
    this.end(s, ts);
  }

  /** Told of every goroutine that leaves the table (exit seen, or found gone by a scan): tables kept beside it. */
  onEnded?: (goid: number) => void;

  /** Removes a goroutine that exited at ts (seen by the exit probe, or found gone by a scan). */
  private end(s: number, ts: number): void {
    const goid = this.goid[s];
    this.onEnded?.(goid);
    if (this.parkReason[s] !== NO_REASON) {
      this.endPark(s, ts);
      this.counters.resumedUnseen++;
    }
    // The park is over: the row must not count it again as current (it did, doubling blocked time).
    this.state[s] = GStatus.dead;
    this.reason[s] = NO_REASON;
    this.parkAt[s] = NaN;
    this.waitSince[s] = NaN;
    // Its columns copied into the exits' ring, the row's own per-reason map and long parks handed over (the row
    // is going): exits come at the rate of creations, and an object per exit was the agent's largest allocation.
    const serial = ++this.exitSerial;
    let i = -1;
    if (this.exitedCount < this.exitedRetention) {
      if (this.exitedCount === this.exitedGoids.length) this.sizeExits(Math.min(this.exitedRetention, 2 * this.exitedCount));
      i = this.exitedCount++;
    } else if (this.exitedRetention > 0) {
      i = this.exitedHead;
      this.exitedHead = (this.exitedHead + 1) % this.exitedRetention;
      this.exitSlotCount[this.exitedGoids[i] & (this.exitSlotPlace.length - 1)]--; // the oldest exit leaves the ring
      if (this.exByReason.size) this.exByReason.delete(i);
      if (this.exLongParks.size) this.exLongParks.delete(i);
    }
    if (i >= 0) {
      this.exitedGoids[i] = goid;
      this.exParent[i] = this.parent[s];
      this.exGopc[i] = this.gopc[s];
      this.exStartPc[i] = this.startPc[s];
      this.exCreatedAt[i] = this.createdAt[s];
      this.exReadyAt[i] = this.readyAt[s];
      this.exParkCount[i] = this.parkCount[s];
      this.exReadyCount[i] = this.readyCount[s];
      this.exBlocked[i] = this.blocked[s];
      this.exFlags[i] = this.flags[s] & ~FLAG_CHANGED;
      this.exGAddr[i] = this.gAddr[s];
      this.exRoot[i] = this.root[s];
      this.exTraceStart[i] = this.startOf(s);
      this.exitedAts[i] = ts;
      this.exSerial[i] = serial;
      this.noteExitPlace(i);
      const own = this.byReason.size ? this.byReason.get(s) : undefined;
      if (own) this.exByReason.set(i, own);
      const parks = this.longParks.size ? this.longParks.get(s) : undefined;
      if (parks) this.exLongParks.set(i, parks);
    }
    if (this.joined[s] > 0) {
      const gone = this.row(s, ts, true) as ExitedGoroutine;
      gone.exitedAt = ts;
      gone.serial = serial;
      gone.longParks = (this.longParks.size && this.longParks.get(s)) || [];
      this.exitedParents.set(goid, gone);
    }
    // Only what it holds (each is a hash lookup, and exits come at the rate of creations).
    if (this.acceptors.size) this.acceptors.delete(goid);
    this.flags[s] &= ~FLAG_CHANGED;
    this.slotOf.delete(goid);
    if (this.byReason.size) this.byReason.delete(s);
    if (this.longParks.size) this.longParks.delete(s);
    this.free.push(s);
  }

  /** A goroutine that creates, parks or readies is running: a park it was in has ended unseen. */
  private sawRunning(goid: number, ts: number): void {
    if (goid === 0) return; // g0: the runtime itself
    const s = this.slotOf.get(goid);
    if (s === undefined) return;
    if (this.parkReason[s] !== NO_REASON && ts >= this.parkAt[s]) {
      this.endPark(s, ts);
      this.counters.resumedUnseen++;
    }
    this.setState(s, GStatus.running, NO_REASON, ts);
  }

  /** Sets the state from a source of time `at`, unless a newer one set it already. True when it did. */
  private setState(s: number, state: number, reason: number, at: number): boolean {
    if (at < this.stateAt[s]) return false;
    if (state !== GStatus.waiting || this.state[s] !== GStatus.waiting || this.reason[s] !== reason) this.waitSince[s] = NaN;
    this.state[s] = state;
    this.reason[s] = reason;
    this.stateAt[s] = at;
    return true;
  }

  /**
   * What a scan of the runtime's goroutine list read, the list's reads having started at `at` (monotonic ns).
   * Apply it once the events recorded before `at` are in (the tracer waits a few reader polls): a row whose
   * state an event set after `at` keeps it; every other row takes the runtime's. A goroutine the table lacks is
   * added (its creation unseen); one the table holds that the runtime no longer lists has exited. With
   * `complete` false (some g could not be read), nobody is ended.
   */
  applyScan(gs: readonly ScannedGoroutine[], at: number, complete = true): { found: number; ended: number } {
    const gen = ++this.scanGeneration;
    let exitedIn: Set<number> | undefined; // made at the first goroutine the table lacks
    let found = 0;
    let ended = 0;
    for (const g of gs) {
      let s = this.slotOf.get(g.goid);
      if (s === undefined) {
        exitedIn ??= this.exitedSince_(at);
        if (exitedIn.has(g.goid)) continue; // its exit is in: read in its last microseconds
        s = this.slot(g.goid);
        if (s < 0) continue;
        found++;
        this.counters.foundByScan++;
        this.firstSeen[s] = at;
        this.parent[s] = g.parentGoid ?? NaN;
        this.gopc[s] = g.gopc;
        this.startPc[s] = g.startPc;
        this.touch(s);
      }
      this.seenIn[s] = gen;
      if (g.gAddr) this.gAddr[s] = g.gAddr;
      const reason = g.status === GStatus.waiting && g.waitReason !== null ? g.waitReason : NO_REASON;
      const before = this.state[s];
      const beforeReason = this.reason[s];
      if (!this.setState(s, g.status, reason, at)) continue;
      if (before !== g.status || beforeReason !== reason) this.touch(s);
      if (g.status === GStatus.waiting && Number.isNaN(this.waitSince[s])) this.waitSince[s] = g.waitingSince ?? at;
      // A park the probes saw open that the runtime says is over (or is another park now): it ended unseen.
      if (this.parkReason[s] !== NO_REASON && this.parkAt[s] <= at && !(g.status === GStatus.waiting && reason === this.parkReason[s])) {
        this.endPark(s, at);
        this.counters.resumedUnseen++;
      }
    }
    if (complete) {
      // Over the Map itself (a Map's iteration survives the deletes of end()), not a copy of every slot per scan.
      this.slotOf.forEach((s) => {
        if (this.seenIn[s] === gen || this.stateAt[s] > at) return;
        const created = this.createdAt[s];
        if (!Number.isNaN(created) && created > at) return;
        ended++;
        this.counters.endedByScan++;
        this.end(s, at);
      });
    }
    return { found, ended };
  }

  /**
   * Park and ready probes go off (the overhead budget's duty cycle): parks in progress count up to `ts`, and
   * from then on their end is unknown, so they add nothing more until a park seen in a later window.
   */
  suspendParkTracking(ts: number): void {
    for (const s of this.slotOf.values()) {
      if (this.parkReason[s] === NO_REASON) continue;
      // Still waiting as far as we know, for the same reason: the state stays until a scan or event says otherwise.
      this.endPark(s, ts);
      this.parkAt[s] = NaN;
    }
  }

  /** Ends the current park at ts; wakerGoid is the goroutine that readied it, when a ready was seen. */
  private endPark(s: number, ts: number, wakerGoid?: number): void {
    const since = this.parkAt[s];
    const reason = this.parkReason[s];
    if (!Number.isNaN(since) && ts >= since && reason !== NO_REASON) {
      const d = ts - since;
      this.blocked[s] += d;
      let m = this.byReason.get(s);
      if (!m) this.byReason.set(s, (m = new Map()));
      m.set(reason, (m.get(reason) ?? 0) + d);
      if (d >= this.parkSpanMinNs) this.keepLongPark(s, { reason, from: since, to: ts, waker: wakerGoid ? this.placeAt(wakerGoid, ts) : null });
    }
    this.parkReason[s] = NO_REASON;
  }

  private keepLongPark(s: number, p: LongPark): void {
    let list = this.longParks.get(s);
    if (!list) this.longParks.set(s, (list = []));
    list.push(p);
    if (list.length > this.trace.maxLongParks) {
      list.shift();
      this.counters.longParksDropped++;
    }
  }

  /** Where a goroutine's span is at ts; null when the table does not know it (g0, untracked, long gone). */
  placeAt(goid: number, ts: number): SpanPlace | null {
    const s = this.slotOf.get(goid);
    if (s !== undefined) return { goid, root: this.root[s], segment: segmentAt(this.startOf(s), ts, this.segmentNs) };
    const e = this.exited_(goid);
    return e ? { goid, root: e.root, segment: segmentAt(e.traceStart, ts, this.segmentNs) } : null;
  }

  /** The ring place of goid's newest exit; -1 when it is not in the ring. */
  private exitedAt_(goid: number): number {
    const slot = goid & (this.exitSlotPlace.length - 1);
    const inSlot = this.exitSlotCount[slot];
    if (inSlot === 0) return -1;
    // The newest exit of the slot is in the ring while any of the slot's is (the ring lets the oldest go first).
    const newest = this.exitSlotPlace[slot];
    if (this.exitedGoids[newest] === goid) return newest;
    if (inSlot === 1) return -1;
    return this.scanExits(goid);
  }

  /** exitedAt_ by a scan of the ring's goids. */
  private scanExits(goid: number): number {
    const n = this.exitedCount;
    const ids = this.exitedGoids;
    // Newest first (a goid seen again after its exit, by a late event, exits twice: the later one counts).
    for (let k = 0, i = (this.exitedHead === 0 ? n : this.exitedHead) - 1; k < n; k++, i--) {
      if (i < 0) i = n - 1;
      if (ids[i] === goid) return i;
    }
    return -1;
  }

  private exited_(goid: number): ExitedGoroutine | undefined {
    const i = this.exitedAt_(goid);
    return i >= 0 ? this.exitRow(i) : this.exitedParents.get(goid);
  }

  /** The exit at ring place i as a row (what row() said of it as it exited). */
  private exitRow(i: number): ExitedGoroutine {
    const f = this.exFlags[i];
    return {
      goid: this.exitedGoids[i],
      parentGoid: nan(this.exParent[i]),
      state: 'dead',
      waitReason: null,
      gopc: this.exGopc[i],
      startPc: this.exStartPc[i],
      createdAt: nan(this.exCreatedAt[i]),
      lastParkAt: null,
      lastReadyAt: nan(this.exReadyAt[i]),
      parkCount: this.exParkCount[i],
      readyCount: this.exReadyCount[i],
      blockedNs: this.exBlocked[i],
      blockedByReason: (this.exByReason.size && this.exByReason.get(i)) || NO_BLOCKED_TIME,
      preexisting: (f & FLAG_PREEXISTING) !== 0,
      gAddr: this.exGAddr[i],
      waitingSince: null,
      root: this.exRoot[i],
      traceStart: this.exTraceStart[i],
      shipped: (f & FLAG_SHIPPED) !== 0,
      mustShip: (f & FLAG_MUST_SHIP) !== 0,
      exitedAt: this.exitedAts[i],
      serial: this.exSerial[i],
      longParks: (this.exLongParks.size && this.exLongParks.get(i)) || [],
    };
  }

  /**
   * The goids of the goroutines that exited at or after `at` (less a margin), newest first from the ring: a scan
   * read from `at` on lists no goroutine that exited well before it, so the Set holds the exits of a few reader
   * polls, not the whole ring (a Set of 10,000 goids made per scan was most of what a scan allocated under churn).
   * The ring is in the order exits were applied, nearly their time order (an exit a scan found is stamped with that
   * scan's start): the walk stops a second before `at`.
   */
  private exitedSince_(at: number): Set<number> {
    const out = new Set<number>();
    const n = this.exitedCount;
    const ats = this.exitedAts;
    for (let k = 0, i = (this.exitedHead === 0 ? n : this.exitedHead) - 1; k < n; k++, i--) {
      if (i < 0) i = n - 1;
      const t = ats[i];
      if (t < at - 1e9) break;
      // Read alive by the scan, it exited after the read began (a probe's stamp may precede the runtime's own
      // status change by a little).
      if (t >= at - 10e6) out.add(this.exitedGoids[i]);
    }
    return out;
  }

  /** From now on, remember the goroutines this one starts: it accepts connections (an accept loop). */
  markAcceptor(goid: number): void {
    if (this.acceptors.has(goid) || !this.slotOf.has(goid)) return;
    this.acceptors.set(goid, { goids: [], ts: [] });
  }

  /** The first goroutine an acceptor started at or after `at` (monotonic ns): the one serving what it accepted then. */
  startedAfter(acceptor: number, at: number, withinNs = 100e6): number | null {
    const acc = this.acceptors.get(acceptor);
    if (!acc) return null;
    for (let i = 0; i < acc.ts.length; i++) if (acc.ts[i] >= at && acc.ts[i] - at <= withinNs) return acc.goids[i];
    return null;
  }

  private startOf(s: number): number {
    const c = this.createdAt[s];
    if (!Number.isNaN(c)) return c;
    return Number.isNaN(this.firstSeen[s]) ? this.preexistingSeenAt : this.firstSeen[s];
  }

  /** The long parks of a live goroutine not shipped yet; they are handed over once. */
  takeLongParks(goid: number): LongPark[] {
    const s = this.slotOf.get(goid);
    if (s === undefined) return [];
    const list = this.longParks.get(s) ?? [];
    this.longParks.delete(s);
    return list;
  }

  /** Marks a goroutine as shipped (live or exited); false when the table no longer knows it. */
  markShipped(goid: number): boolean {
    const s = this.slotOf.get(goid);
    if (s !== undefined) {
      this.flags[s] = (this.flags[s] | FLAG_SHIPPED) & ~FLAG_MUST_SHIP;
      return true;
    }
    const i = this.exitedAt_(goid);
    if (i >= 0) this.exFlags[i] = (this.exFlags[i] | FLAG_SHIPPED) & ~FLAG_MUST_SHIP;
    const e = this.exitedParents.get(goid);
    if (e) {
      e.shipped = true;
      e.mustShip = false;
    }
    return i >= 0 || e !== undefined;
  }

  /** A live goroutine that must be shipped at the next chance (its child in the trace was). */
  requireShipping(goid: number): void {
    const s = this.slotOf.get(goid);
    if (s === undefined || this.flags[s] & FLAG_SHIPPED) return;
    this.flags[s] |= FLAG_MUST_SHIP;
    this.touch(s);
  }

  /** A goroutine live or recently exited, as a row; exited ones carry exitedAt. */
  lookup(goid: number, now: number): GoroutineRow | ExitedGoroutine | undefined {
    const s = this.slotOf.get(goid);
    return s !== undefined ? this.row(s, now) : this.exited_(goid);
  }

  /**
   * Live goroutines whose current span ended in (after, now]: their record is sent again so the span of each
   * report interval is exported while they live. Yields the goid and the index of the span that ended.
   */
  *segmentsEnded(after: number, now: number): IterableIterator<{ goid: number; segment: number }> {
    for (const s of this.slotOf.values()) {
      const start = this.startOf(s);
      const last = segmentAt(start, now, this.segmentNs);
      if (last === 0) continue;
      const before = segmentAt(start, after, this.segmentNs);
      // Every segment that ended, the first one always (its children's parent), at most a few after it.
      for (let k = Math.max(before, last - 3); k < last; k++) yield { goid: this.goid[s], segment: k };
      if (before === 0 && last > 3) yield { goid: this.goid[s], segment: 0 };
    }
  }

  /** A row as plain values; `exiting`: the row is going, so its per-reason map is handed over, not copied. */
  private row(s: number, now: number, exiting = false): GoroutineRow {
    const waiting = this.state[s] === GStatus.waiting;
    // The park in progress as the probes saw it, while the state still says so.
    const open = waiting && this.parkReason[s] === this.reason[s] && this.parkReason[s] !== NO_REASON;
    const current = open && !Number.isNaN(this.parkAt[s]) && now >= this.parkAt[s] ? now - this.parkAt[s] : 0;
    const own = this.byReason.get(s);
    const byReason = exiting ? (own ?? NO_BLOCKED_TIME) : new Map(own ?? []);
    if (current > 0) byReason.set(this.parkReason[s], (byReason.get(this.parkReason[s]) ?? 0) + current);
    return {
      goid: this.goid[s],
      parentGoid: nan(this.parent[s]),
      state: statusName(this.state[s]),
      waitReason: waiting && this.reason[s] !== NO_REASON ? this.reason[s] : null,
      gopc: this.gopc[s],
      startPc: this.startPc[s],
      createdAt: nan(this.createdAt[s]),
      lastParkAt: nan(this.parkAt[s]),
      lastReadyAt: nan(this.readyAt[s]),
      parkCount: this.parkCount[s],
      readyCount: this.readyCount[s],
      blockedNs: this.blocked[s] + current,
      blockedByReason: byReason,
      preexisting: (this.flags[s] & FLAG_PREEXISTING) !== 0,
      gAddr: this.gAddr[s],
      waitingSince: waiting ? nan(this.waitSince[s]) : null,
      root: this.root[s],
      traceStart: this.startOf(s),
      shipped: (this.flags[s] & FLAG_SHIPPED) !== 0,
      mustShip: (this.flags[s] & FLAG_MUST_SHIP) !== 0,
    };
  }

  get(goid: number, now: number): GoroutineRow | undefined {
    const s = this.slotOf.get(goid);
    return s === undefined ? undefined : this.row(s, now);
  }

  /** A live goroutine's creation site (g.gopc; 0 when not known), without making its row. */
  gopcOf(goid: number): number | undefined {
    const s = this.slotOf.get(goid);
    return s === undefined ? undefined : this.gopc[s];
  }

  /** Every live goroutine; `now` (monotonic ns) closes current parks for blockedNs. */
  *rows(now: number): IterableIterator<GoroutineRow> {
    for (const s of this.slotOf.values()) yield this.row(s, now);
  }

  /** The newest exits, oldest first. */
  recentlyExited(): ExitedGoroutine[] {
    return this.exitedSince(0);
  }

  /** The serial of the newest exit (exitedSince(lastExitSerial) is empty). */
  get lastExitSerial(): number {
    return this.exitSerial;
  }

  /**
   * Exits with a serial above `after`, oldest first (those pushed out of the retention are gone); with `keep`,
   * only those it takes are made into rows (it is handed one reused summary of each, not to be kept).
   */
  exitedSince(after: number, keep?: (e: ExitSummary) => boolean): ExitedGoroutine[] {
    const n = Math.min(this.exitSerial - after, this.exitedCount);
    const out: ExitedGoroutine[] = [];
    const cap = this.exitedRetention;
    const e = this.summary;
    for (let k = this.exitedCount - n; k < this.exitedCount; k++) {
      const i = (this.exitedHead + k) % cap;
      if (keep) {
        const f = this.exFlags[i];
        e.shipped = (f & FLAG_SHIPPED) !== 0;
        e.mustShip = (f & FLAG_MUST_SHIP) !== 0;
        e.preexisting = (f & FLAG_PREEXISTING) !== 0;
        e.createdAt = nan(this.exCreatedAt[i]);
        e.root = this.exRoot[i];
        e.exitedAt = this.exitedAts[i];
        if (!keep(e)) continue;
      }
      out.push(this.exitRow(i));
    }
    return out;
  }

  private readonly summary: ExitSummary = { shipped: false, mustShip: false, preexisting: false, createdAt: null, root: 0, exitedAt: 0 };

  /** Every goroutine created in (after, until] (monotonic ns), live or among the exits kept: its creation site and start. */
  forEachCreated(after: number, until: number, visit: (gopc: number, startPc: number) => void): void {
    const inside = (c: number) => !Number.isNaN(c) && c > after && c <= until;
    this.slotOf.forEach((s) => {
      if (inside(this.createdAt[s])) visit(this.gopc[s], this.startPc[s]);
    });
    for (let k = 0; k < this.exitedCount; k++) {
      const i = (this.exitedHead + k) % this.exitedRetention; // oldest first, as recentlyExited() lists them
      if (inside(this.exCreatedAt[i])) visit(this.exGopc[i], this.exStartPc[i]);
    }
  }

  private touch(s: number): void {
    if (this.flags[s] & FLAG_CHANGED) return;
    this.flags[s] |= FLAG_CHANGED;
    this.changed.push(s);
  }

  /** The live goroutines that changed since the last call, as rows. */
  takeChanged(now: number): GoroutineRow[] {
    const out: GoroutineRow[] = [];
    const slots = this.changed;
    this.changed = [];
    for (const s of slots) {
      // A slot freed since (its flag cleared at the exit) and perhaps reused and touched again: listed twice, taken once.
      if (!(this.flags[s] & FLAG_CHANGED)) continue;
      this.flags[s] &= ~FLAG_CHANGED;
      out.push(this.row(s, now));
    }
    return out;
  }

  /** Bytes held by the columns (the Map of goids comes on top). */
  columnBytes(): number {
    return this.capacity * (8 * 14 + 4 * 3 + 1 * 5);
  }
}
