// Keeps each traced process's goroutine table true from the runtime's own memory: re-reads allgs (allgs.ts) on
// an interval that adapts to what a scan costs, so all scans together stay within a CPU budget of the agent's
// own (default 1% of one core), and counts creations and exits from the runtime's goroutine-id generator.
//
// Interval policy: after each scan of a process, its next one is due in cost x processes / budget, clamped to
// [minIntervalMs, maxIntervalMs] (1 s .. 30 s by default), at a second of the agent's grid (tracer/clock.ts
// msToGrid), where its readers and other timers wake too: a scan is one of the agent's wake-ups, and each costs
// the node more than its CPU time (docs/architecture.md, "Few wake-ups"). A process of 1,000 goroutines (~0.3 ms
// a scan) is scanned every second; one of 100,000 (~30 ms) every 3 s; the longest wait is 30 s.
// A scan's result is applied to the table once every event recorded before it is in (appliedThroughNs: at once
// when the process's probes are off, else after asking the reader for its records, which may be in a long idle
// wait, and checked every applyDelayMs): the table keeps whichever is newer per goroutine
// (model/goroutine-table.ts applyScan). A scan applied before an older event arrived would end a goroutine whose
// last park and exit were still on their way, and those late events would make a row of their own (seen with the
// reader stopped for a drain at load 11).
import type { ProcessMemory } from '../proc/process.ts';
import type { GoroutineTable } from '../model/goroutine-table.ts';
import { GRID_MS, monoNowNs, msToGrid } from '../tracer/clock.ts';
import { scanGoroutines, type IdCount, type InventoryResult, type ScanTarget } from './allgs.ts';

export interface ScanOptions {
  /** Share of one CPU core all scans together may use (0.01 = 1%). */
  budget?: number;
  minIntervalMs?: number;
  maxIntervalMs?: number;
  /** How often a scan read but not yet applied asks whether the events recorded before it are in (3 reader polls). */
  applyDelayMs?: number;
  /** Every event of the process stamped before this (CLOCK_MONOTONIC ns) has been applied (the tracer's reader;
   * Infinity when none can still come); none: at once. */
  appliedThroughNs?: (pid: number) => number;
  /** Asks the reader for the records up to now, when a scan waits for them (it may be in a long idle wait). */
  requestRecords?: () => void;
}

/** A process to scan: its memory, what to read it with, and its table. */
export interface Scannable extends ScanTarget {
  pid: number;
  table: GoroutineTable;
  mem: ProcessMemory;
  counts: LifecycleCounts;
}

/**
 * Goroutines created and exited since the agent attached, from the runtime's memory: creations from the
 * goroutine-id generator (sched.goidgen less the ids the Ps hold unused), exits as creations less the growth
 * of the live count. Exact whatever probes are on; a P that refilled its cache (16 ids) during the few
 * microseconds of the read can put one count off by 16, and without runtime.allp (stripped) each P's unused
 * ids (at most 16 per P) count as created.
 */
export class LifecycleCounts {
  /** The ids and live goroutines at attach. */
  private base: { ids: IdCount | null; live: number } | undefined;
  last: { ids: IdCount | null; live: number; at: number } | undefined;
  scans = 0;
  /** Scans applied to the table (a periodic one waits for the events older than it). */
  applied = 0;
  /** Agent CPU (wall time of the synchronous read, ns) of all scans, and goroutines read. */
  scanNs = 0;
  goroutinesRead = 0;
  lastScanNs = 0;
  intervalMs = 0;

  record(r: InventoryResult, at: number, ns: number): void {
    const live = r.goroutines.length;
    if (!this.base) this.base = { ids: r.ids, live };
    this.last = { ids: r.ids, live, at };
    this.scans++;
    this.scanNs += ns;
    this.lastScanNs = ns;
    this.goroutinesRead += r.allgs;
  }

  /** Since attach, as of the last scan; null when the id generator cannot be read (stripped, no code match). */
  sinceAttach(): { created: number; exited: number; live: number; at: number; exact: boolean } | null {
    const b = this.base?.ids;
    const l = this.last;
    if (!b || !l?.ids) return null;
    const created = l.ids.created - b.created;
    return { created, exited: Math.max(0, created - (l.live - this.base!.live)), live: l.live, at: l.at, exact: l.ids.cached !== null };
  }
}

export class GoroutineScanner {
  private readonly procs = new Map<number, { p: Scannable; timer?: NodeJS.Timeout; lastReadAt?: number }>();
  readonly budget: number;
  readonly minIntervalMs: number;
  readonly maxIntervalMs: number;
  readonly applyDelayMs: number;
  private readonly appliedThroughNs: (pid: number) => number;
  private readonly requestRecords: () => void;
  /** Scans never applied: a newer one of the same process was read before the events older than them were in. */
  superseded = 0;
  private stopped = false;

  constructor(opts: ScanOptions = {}) {
    this.budget = opts.budget ?? 0.01;
    this.minIntervalMs = opts.minIntervalMs ?? 1000;
    this.maxIntervalMs = opts.maxIntervalMs ?? 30_000;
    this.applyDelayMs = opts.applyDelayMs ?? 30;
    this.appliedThroughNs = opts.appliedThroughNs ?? (() => Infinity);
    this.requestRecords = opts.requestRecords ?? (() => {});
  }

  /** Reads the process's goroutines now; the caller applies them (the inventory at attach, a final scan). */
  static read(p: Scannable): { result: InventoryResult; at: number; ns: number } {
    const at = monoNowNs();
    const result = scanGoroutines(p.mem, p);
    const ns = monoNowNs() - at;
    p.counts.record(result, at, ns);
    return { result, at, ns };
  }

  /** Reads and applies at once: for when no event can be pending (the reader stopped and drained). */
  static scanNow(p: Scannable): InventoryResult {
    const { result, at } = GoroutineScanner.read(p);
    p.table.applyScan(result.goroutines, at, result.unreadable === 0);
    p.counts.applied++;
    return result;
  }

  add(p: Scannable): void {
    if (this.stopped) return;
    this.procs.set(p.pid, { p });
    this.schedule(p.pid, this.minIntervalMs);
  }

  remove(pid: number): void {
    const e = this.procs.get(pid);
    if (e?.timer) clearTimeout(e.timer);
    this.procs.delete(pid);
  }

  private schedule(pid: number, ms: number): void {
    const e = this.procs.get(pid);
    if (!e || this.stopped) return;
    e.p.counts.intervalMs = ms;
    e.timer = setTimeout(() => this.tick(pid), msToGrid(ms, Math.min(GRID_MS, this.minIntervalMs)));
    e.timer.unref();
  }

  private tick(pid: number): void {
    const e = this.procs.get(pid);
    if (!e) return;
    let ns = 0;
    try {
      const { result, at, ns: cost } = GoroutineScanner.read(e.p);
      ns = cost;
      e.lastReadAt = at;
      const apply = () => {
        if (this.procs.get(pid) !== e) return;
        if (e.lastReadAt !== at) {
          this.superseded++;
          return;
        }
        // A goroutine the scan did not list had exited by the end of the read: its exit is stamped before it.
        if (this.appliedThroughNs(pid) < at + cost) {
          this.requestRecords();
          setTimeout(apply, this.applyDelayMs).unref();
          return;
        }
        e.p.table.applyScan(result.goroutines, at, result.unreadable === 0);
        e.p.counts.applied++;
      };
      // At once when no record of the process can come (its probes off): one wake-up a scan, not two.
      apply();
    } catch {
      // The process is exiting (its memory is gone): the tracer removes it; until then, try again later.
      ns = this.maxIntervalMs * 1e6 * this.budget;
    }
    const next = (ns / 1e6) * this.procs.size / this.budget;
    this.schedule(pid, Math.min(this.maxIntervalMs, Math.max(this.minIntervalMs, next)));
  }

  stop(): void {
    this.stopped = true;
    for (const pid of [...this.procs.keys()]) this.remove(pid);
  }
}
