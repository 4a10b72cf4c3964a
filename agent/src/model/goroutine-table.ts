// The live goroutines of one process, kept as columns of typed arrays so a million goroutines cost about
// 150 bytes each (bench: scripts/bench), with a bounded number of rows: past the bound new goroutines are
// counted as untracked rather than stored.

/** Go's goroutine status numbers (runtime2.go), the _Gscan bit removed. */
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
} as const;

export type GStatusName = keyof typeof GStatus;
const statusNames = new Map<number, GStatusName>(Object.entries(GStatus).map(([k, v]) => [v, k as GStatusName]));
export const statusName = (s: number): GStatusName => statusNames.get(s) ?? 'unknown';

const NO_REASON = 255;
const FLAG_PREEXISTING = 1;

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
}

export interface ExitedGoroutine extends GoroutineRow {
  exitedAt: number;
  /** Increases by one per exit: lets a reader take the exits it has not seen. */
  serial: number;
}

export interface TableCounters {
  created: number;
  parked: number;
  readied: number;
  exited: number;
  /** A goroutine seen running again with no ready in between (woken by the netpoller, or a missed ready). */
  resumedUnseen: number;
  /** Goroutines not stored because the table was full. */
  untracked: number;
}

export interface GoroutineTableOptions {
  maxGoroutines?: number;
  /** How many exited goroutines to remember, newest first out. */
  exitedRetention?: number;
}

export class GoroutineTable {
  readonly maxGoroutines: number;
  readonly counters: TableCounters = { created: 0, parked: 0, readied: 0, exited: 0, resumedUnseen: 0, untracked: 0 };
  private readonly slotOf = new Map<number, number>();
  private readonly free: number[] = [];
  private capacity = 0;
  private used = 0;
  private goid = new Float64Array(0);
  private parent = new Float64Array(0);
  private state = new Uint8Array(0);
  private reason = new Uint8Array(0);
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
  /** Sparse: only goroutines whose parks ended while observed. */
  private readonly byReason = new Map<number, Map<number, number>>();
  /** A ring of the newest exits (oldest first from exitedHead): O(1) per exit at any churn. */
  private readonly exited: ExitedGoroutine[] = [];
  private exitedHead = 0;
  private exitSerial = 0;
  /** Goroutines whose row changed since the last takeChanged(). */
  private changed = new Set<number>();
  private readonly exitedRetention: number;

  constructor(opts: GoroutineTableOptions = {}) {
    this.maxGoroutines = opts.maxGoroutines ?? 2_000_000;
    this.exitedRetention = opts.exitedRetention ?? 10_000;
    this.grow(1024);
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
    return n;
  }

  /**
   * A goroutine that existed before the agent attached, from the runtime's allgs. A waiting one counts as
   * blocked since the runtime's own g.waitsince when it is set (the GC sets it), else since `seenAt`.
   */
  addPreexisting(g: { goid: number; gAddr: number; parentGoid: number | null; status: number; waitReason: number | null; gopc: number; startPc: number; waitingSince: number | null }, seenAt: number): void {
    const s = this.slot(g.goid);
    if (s < 0) return;
    this.flags[s] |= FLAG_PREEXISTING;
    this.changed.add(g.goid);
    this.parent[s] = g.parentGoid ?? NaN;
    this.state[s] = g.status;
    this.reason[s] = g.status === GStatus.waiting && g.waitReason !== null ? g.waitReason : NO_REASON;
    this.gopc[s] = g.gopc;
    this.startPc[s] = g.startPc;
    this.parkAt[s] = g.status === GStatus.waiting ? (g.waitingSince ?? seenAt) : NaN;
    this.waitSince[s] = this.parkAt[s];
    this.gAddr[s] = g.gAddr;
  }

  onCreate(goid: number, parentGoid: number, gopc: number, startPc: number, ts: number, gAddr = 0): void {
    this.counters.created++;
    this.sawRunning(parentGoid, ts);
    const s = this.slot(goid);
    if (s < 0) return;
    this.parent[s] = parentGoid;
    this.gopc[s] = gopc;
    this.startPc[s] = startPc;
    this.createdAt[s] = ts;
    this.state[s] = GStatus.runnable;
    this.gAddr[s] = gAddr;
    this.changed.add(goid);
  }

  onPark(goid: number, reason: number, ts: number, gAddr = 0): void {
    this.counters.parked++;
    this.sawRunning(goid, ts);
    const s = this.slot(goid);
    if (s < 0) return;
    this.state[s] = GStatus.waiting;
    this.reason[s] = reason;
    this.parkAt[s] = ts;
    this.waitSince[s] = ts;
    if (gAddr) this.gAddr[s] = gAddr;
    this.parkCount[s]++;
    this.changed.add(goid);
  }

  onReady(goid: number, wakerGoid: number, ts: number): void {
    this.counters.readied++;
    this.sawRunning(wakerGoid, ts);
    const s = this.slot(goid);
    if (s < 0) return;
    if (this.state[s] === GStatus.waiting) this.endPark(s, ts);
    this.state[s] = GStatus.runnable;
    this.waitSince[s] = NaN;
    this.readyAt[s] = ts;
    this.readyCount[s]++;
    this.changed.add(goid);
  }

  onExit(goid: number, ts: number): void {
    this.counters.exited++;
    const s = this.slotOf.get(goid);
    if (s === undefined) return;
    if (this.state[s] === GStatus.waiting) {
      this.endPark(s, ts);
      this.counters.resumedUnseen++;
    }
    const row = this.row(s, ts);
    const gone: ExitedGoroutine = { ...row, state: 'dead', exitedAt: ts, serial: ++this.exitSerial };
    if (this.exited.length < this.exitedRetention) this.exited.push(gone);
    else {
      this.exited[this.exitedHead] = gone;
      this.exitedHead = (this.exitedHead + 1) % this.exitedRetention;
    }
    this.changed.delete(goid);
    this.slotOf.delete(goid);
    this.byReason.delete(s);
    this.free.push(s);
  }

  /** A goroutine that creates, parks or readies is running: a park it was in has ended unseen. */
  private sawRunning(goid: number, ts: number): void {
    if (goid === 0) return; // g0: the runtime itself
    const s = this.slotOf.get(goid);
    if (s === undefined) return;
    if (this.state[s] === GStatus.waiting) {
      this.endPark(s, ts);
      this.counters.resumedUnseen++;
    }
    this.waitSince[s] = NaN;
    this.state[s] = GStatus.running;
  }

  /**
   * Park and ready probes go off (the overhead budget's duty cycle): parks in progress count up to `ts`, and
   * from then on their end is unknown, so they add nothing more until a park seen in a later window.
   */
  suspendParkTracking(ts: number): void {
    for (const s of this.slotOf.values()) {
      if (this.state[s] !== GStatus.waiting || Number.isNaN(this.parkAt[s])) continue;
      const reason = this.reason[s];
      this.endPark(s, ts);
      this.reason[s] = reason; // still waiting as far as we know, for the same reason
      this.parkAt[s] = NaN;
    }
  }

  private endPark(s: number, ts: number): void {
    const since = this.parkAt[s];
    if (!Number.isNaN(since) && ts >= since) {
      const d = ts - since;
      this.blocked[s] += d;
      let m = this.byReason.get(s);
      if (!m) this.byReason.set(s, (m = new Map()));
      m.set(this.reason[s], (m.get(this.reason[s]) ?? 0) + d);
    }
    this.reason[s] = NO_REASON;
  }

  private row(s: number, now: number): GoroutineRow {
    const nan = (x: number) => (Number.isNaN(x) ? null : x);
    const waiting = this.state[s] === GStatus.waiting;
    const current = waiting && !Number.isNaN(this.parkAt[s]) && now >= this.parkAt[s] ? now - this.parkAt[s] : 0;
    const byReason = new Map(this.byReason.get(s) ?? []);
    if (current > 0) byReason.set(this.reason[s], (byReason.get(this.reason[s]) ?? 0) + current);
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
    };
  }

  get(goid: number, now: number): GoroutineRow | undefined {
    const s = this.slotOf.get(goid);
    return s === undefined ? undefined : this.row(s, now);
  }

  /** Every live goroutine; `now` (monotonic ns) closes current parks for blockedNs. */
  *rows(now: number): IterableIterator<GoroutineRow> {
    for (const s of this.slotOf.values()) yield this.row(s, now);
  }

  /** The newest exits, oldest first. */
  recentlyExited(): ExitedGoroutine[] {
    return this.exitedHead === 0 ? this.exited.slice() : [...this.exited.slice(this.exitedHead), ...this.exited.slice(0, this.exitedHead)];
  }

  /** Exits with a serial above `after`, oldest first (those pushed out of the retention are gone). */
  exitedSince(after: number): ExitedGoroutine[] {
    const n = Math.min(this.exitSerial - after, this.exited.length);
    if (n <= 0) return [];
    const all = this.recentlyExited();
    return all.slice(all.length - n);
  }

  /** The live goroutines that changed since the last call, as rows. */
  takeChanged(now: number): GoroutineRow[] {
    const out: GoroutineRow[] = [];
    for (const goid of this.changed) {
      const s = this.slotOf.get(goid);
      if (s !== undefined) out.push(this.row(s, now));
    }
    this.changed = new Set();
    return out;
  }

  /** Bytes held by the columns (the Map of goids comes on top). */
  columnBytes(): number {
    return this.capacity * (8 * 11 + 4 * 2 + 1 * 3);
  }
}
