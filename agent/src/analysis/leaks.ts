// Leak suspects: per process and creation site, goroutines that keep piling up.
//
// Two shapes of leak, as SREs meet them:
//  - goroutines that never end: live ones older than minAgeMs, grouped by creation site (a poller on a ticker
//    nobody stops, a receive on a channel nobody sends to); a suspect when the group keeps growing;
//  - chains that never end: a start function whose creation rate keeps growing (a time.AfterFunc that re-arms
//    itself, started again and again), though each goroutine is short-lived.
// Before a group is reported, a sample of its goroutines is re-read from the process's memory (g.goid and
// g.atomicstatus at the recorded g address): the runtime's own state confirms they are alive, and one of them
// is walked from its saved context: the suspect carries the stack its goroutines are parked at.
import type { CodeLocation } from '../../../collector/src/protocol/records.ts';
import { ProcessMemory } from '../proc/process.ts';
import { stackTargetFor } from '../stacks/dump.ts';
import { readGoroutineStacks } from '../stacks/read-goroutines.ts';
import { shownFrames } from '../stacks/traceback.ts';
import { goroutineRecord } from '../snapshot/snapshot.ts';
import type { TracedProcess } from '../tracer/goroutine-tracer.ts';
import { monoToWallMs } from '../tracer/clock.ts';

export interface LeakOptions {
  /** A live goroutine older than this counts towards its site's pile. */
  minAgeMs: number;
  /** Fewer goroutines than this in a group is not worth reporting. */
  minCount: number;
  /** Samples kept per group; growth is judged over them. */
  history: number;
  /** Goroutines re-read from memory per group and sample. */
  verifyPerGroup: number;
}

// How far behind now creations are counted: records reach the table after the ring is drained and the batch
// applied, which on a busy node takes a few hundred ms; a record arriving after its stretch was counted is lost
// to the rate (at 100 ms, one sample in four read ~13% low under load, and chains piling up looked flat).
const RING_LAG_NS = 400e6;

export const defaultLeakOptions: LeakOptions = { minAgeMs: 60_000, minCount: 10, history: 10, verifyPerGroup: 32 };

export interface LeakSuspect {
  pid: number;
  kind: 'growing-live' | 'growing-creation-rate';
  createdBy: CodeLocation | null;
  startFunction: string | null;
  /** The most common wait reason of the group's goroutines (null for creation-rate suspects). */
  waitReason: string | null;
  /** Live goroutines in the group (growing-live) or creations per minute (growing-creation-rate). */
  count: number;
  /** Change of count per minute over the history. */
  growthPerMinute: number;
  /** Age of the oldest goroutine in the group, ms. */
  oldestAgeMs: number;
  /** Share of the sampled goroutines the process's memory confirmed alive. */
  verified: number;
  since: number;
  /** Where one of the group's goroutines is parked (read from memory, as a dump shows it); null if none could be read. */
  stack: CodeLocation[] | null;
  /** The goroutine that stack is of. */
  stackGoid: number | null;
}

interface Sample {
  at: number;
  count: number;
}

interface Group {
  key: string;
  createdBy: CodeLocation | null;
  startFunction: string | null;
  samples: Sample[];
  waitReason: string | null;
  oldestAgeMs: number;
  verified: number;
  firstSeen: number;
  stack: CodeLocation[] | null;
  stackGoid: number | null;
}

export class LeakDetector {
  private readonly live = new Map<number, Map<string, Group>>();
  private readonly rates = new Map<number, Map<string, Group & { lastCreated: number }>>();
  readonly opts: LeakOptions;

  /**
   * `coverage` is the share of a stretch (wall ms) during which the creation probes were on (the overhead
   * budget's windows): creation rates are counted from creation records, so they are scaled by it.
   */
  constructor(opts: Partial<LeakOptions> = {}, private readonly coverage: (pid: number, fromMs: number, toMs: number) => number = () => 1) {
    this.opts = { ...defaultLeakOptions, ...opts };
  }

  /** Takes one sample of a process (call every few seconds). `now` is monotonic ns. */
  sample(proc: TracedProcess, now: number): void {
    const pid = proc.info.pid;
    const groups = this.live.get(pid) ?? new Map<string, Group>();
    this.live.set(pid, groups);
    const seen = new Map<string, { count: number; oldest: number; reasons: Map<string, number>; gs: Array<{ goid: number; gAddr: number }>; createdBy: CodeLocation | null; start: string | null }>();
    for (const row of proc.table.rows(now)) {
      const born = row.createdAt ?? proc.attachedAt;
      const age = (now - born) / 1e6;
      if (age < this.opts.minAgeMs) continue;
      const g = goroutineRecord(proc, row, now);
      if (g.system) continue;
      const key = `${g.createdBy?.function}|${g.createdBy?.file}:${g.createdBy?.line}|${g.startFunction}`;
      let s = seen.get(key);
      if (!s) seen.set(key, (s = { count: 0, oldest: 0, reasons: new Map(), gs: [], createdBy: g.createdBy, start: g.startFunction }));
      s.count++;
      s.oldest = Math.max(s.oldest, age);
      const reason = g.waitReason ?? g.state;
      s.reasons.set(reason, (s.reasons.get(reason) ?? 0) + 1);
      if (s.gs.length < this.opts.verifyPerGroup && row.gAddr) s.gs.push({ goid: row.goid, gAddr: row.gAddr });
    }
    for (const [key, s] of seen) {
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { key, createdBy: s.createdBy, startFunction: s.start, samples: [], waitReason: null, oldestAgeMs: 0, verified: 1, firstSeen: now, stack: null, stackGoid: null }));
      g.samples.push({ at: now, count: s.count });
      if (g.samples.length > this.opts.history) g.samples.shift();
      g.waitReason = [...s.reasons.entries()].sort((a, b) => b[1] - a[1])[0]?.[0] ?? null;
      g.oldestAgeMs = s.oldest;
      // Only a group that could be reported is worth a stack read: growing, and big enough.
      const wantStack = !g.stack && s.count >= this.opts.minCount && this.growth(g.samples) > 0;
      const v = this.verify(proc, s.gs, wantStack);
      g.verified = v.share;
      if (v.stack) {
        g.stack = v.stack;
        g.stackGoid = v.goid;
      }
    }
    for (const [key, g] of groups) {
      if (!seen.has(key)) {
        g.samples.push({ at: now, count: 0 });
        if (g.samples.length > this.opts.history) g.samples.shift();
        if (g.samples.every((x) => x.count === 0)) groups.delete(key);
      }
    }
    this.sampleRates(proc, now);
  }

  /** Creations per start function since the last sample, as a rate per minute. */
  private sampleRates(proc: TracedProcess, now: number): void {
    // Creations up to a moment ago: records still in the ring buffer (drained every 10 ms) land in this interval
    // when they arrive, not lost between two samples, which made the rate jitter.
    const until = now - RING_LAG_NS;
    const pid = proc.info.pid;
    const groups = this.rates.get(pid) ?? new Map();
    this.rates.set(pid, groups);
    const created = new Map<string, { n: number; createdBy: CodeLocation | null; start: string | null }>();
    const sym = proc.binary.symbolizer;
    /** Start functions by start PC: the same few for thousands of goroutines. */
    const startOf = new Map<number, string | null>();
    const count = (gopc: number, startPc: number) => {
      let start = startOf.get(startPc);
      if (start === undefined) {
        start = startPc ? (proc.binary.startFunction(startPc - proc.bias)?.function ?? null) : null;
        startOf.set(startPc, start);
      }
      const key = `${start}`;
      let c = created.get(key);
      if (!c) {
        const by = gopc ? (sym.callSite(gopc - proc.bias) ?? null) : null;
        created.set(key, (c = { n: 0, createdBy: by ? { function: by.function, file: by.file, line: by.line } : null, start }));
      }
      c.n++;
    };
    const last = Math.max(0, ...[...groups.values()].map((g) => g.lastCreated));
    const since = last || proc.attachedAt;
    // Over the table's columns, live goroutines then the exits kept (no row made for each).
    proc.table.forEachCreated(since, until, count);
    const minutes = (until - since) / 6e10;
    if (minutes <= 0) return;
    // Creations seen only while the probes were on: a sample, scaled to the whole stretch.
    const seen = this.coverage(pid, monoToWallMs(since), monoToWallMs(until));
    if (seen <= 0) return;
    for (const [key, c] of created) {
      let g = groups.get(key);
      if (!g) groups.set(key, (g = { key, createdBy: c.createdBy, startFunction: c.start, samples: [], waitReason: null, oldestAgeMs: 0, verified: 1, firstSeen: now, lastCreated: now, stack: null, stackGoid: null }));
      g.samples.push({ at: now, count: c.n / seen / minutes });
      if (g.samples.length > this.opts.history) g.samples.shift();
    }
    for (const g of groups.values()) g.lastCreated = until;
  }

  /**
   * Share of goroutines whose g still holds the same goid and is not dead, and the parked stack of the first one
   * that is waiting (read from memory, as `goroscope dump` reads it).
   */
  private verify(proc: TracedProcess, gs: Array<{ goid: number; gAddr: number }>, wantStack: boolean): { share: number; stack: CodeLocation[] | null; goid: number | null } {
    if (!gs.length) return { share: 1, stack: null, goid: null };
    const f = proc.layout.g.fields;
    let mem: ProcessMemory;
    try {
      mem = new ProcessMemory(proc.info.pid);
    } catch {
      return { share: 0, stack: null, goid: null };
    }
    try {
      let ok = 0;
      const alive: Array<{ goid: number; gAddr: number }> = [];
      for (const { goid, gAddr } of gs) {
        const id = mem.u64(gAddr + f.goid.offset);
        const status = mem.read(gAddr + f.atomicstatus.offset, 4);
        if (id === goid && status.length === 4 && (status.readUInt32LE(0) & ~proc.layout.scanBit) !== proc.layout.statuses._Gdead) {
          ok++;
          alive.push({ goid, gAddr });
        }
      }
      let stack: CodeLocation[] | null = null;
      let stackGoid: number | null = null;
      if (wantStack && alive.length) {
        try {
          const t = stackTargetFor(proc);
          readGoroutineStacks(mem, t, (g) => {
            if (stack || g.stackState !== 'ok' || !alive.some((a) => a.goid === g.goid)) return;
            stack = shownFrames(t, g);
            stackGoid = g.goid;
          }, { only: alive.slice(0, 4).map((a) => a.gAddr) });
        } catch {
          // no stack this time: the suspect stands on its count
        }
      }
      return { share: ok / gs.length, stack, goid: stackGoid };
    } finally {
      mem.close();
    }
  }

  private growth(samples: Sample[]): number {
    if (samples.length < 3) return 0;
    const first = samples[0];
    const last = samples[samples.length - 1];
    const minutes = (last.at - first.at) / 6e10;
    // Growing: up over the history, and never far below where it started.
    if (minutes <= 0 || last.count <= first.count || samples.some((s) => s.count < first.count * 0.9)) return 0;
    return (last.count - first.count) / minutes;
  }

  suspects(proc: TracedProcess): LeakSuspect[] {
    const pid = proc.info.pid;
    const out: LeakSuspect[] = [];
    for (const g of this.live.get(pid)?.values() ?? []) {
      const last = g.samples[g.samples.length - 1];
      const growth = this.growth(g.samples);
      if (!last || last.count < this.opts.minCount || growth <= 0 || g.verified < 0.5) continue;
      out.push({
        pid,
        kind: 'growing-live',
        createdBy: g.createdBy,
        startFunction: g.startFunction,
        waitReason: g.waitReason,
        count: Math.round(last.count * g.verified),
        growthPerMinute: growth,
        oldestAgeMs: g.oldestAgeMs,
        verified: g.verified,
        since: monoToWallMs(g.firstSeen),
        stack: g.stack,
        stackGoid: g.stackGoid,
      });
    }
    for (const g of this.rates.get(pid)?.values() ?? []) {
      const last = g.samples[g.samples.length - 1];
      const growth = this.growth(g.samples);
      if (!last || last.count < this.opts.minCount || growth <= 0) continue;
      // A growing rate alone is a busy service; chains piling up grow sample after sample: the later half of the
      // history 15% above the earlier at least, and one step down allowed (from five samples), since on a busy
      // node the program's own timers run late and a rate over a short stretch jitters.
      const downs = g.samples.filter((s, i) => i > 0 && s.count < g.samples[i - 1].count).length;
      const half = g.samples.length >> 1;
      const mean = (xs: Sample[]) => xs.reduce((n, x) => n + x.count, 0) / xs.length;
      if (downs > (g.samples.length >= 5 ? 1 : 0) || mean(g.samples.slice(-half)) < 1.15 * mean(g.samples.slice(0, half))) continue;
      out.push({
        pid,
        kind: 'growing-creation-rate',
        createdBy: g.createdBy,
        startFunction: g.startFunction,
        waitReason: null,
        count: last.count,
        growthPerMinute: growth,
        oldestAgeMs: 0,
        verified: 1,
        since: monoToWallMs(g.firstSeen),
        stack: null,
        stackGoid: null,
      });
    }
    return out.sort((a, b) => b.growthPerMinute - a.growthPerMinute);
  }

  forget(pid: number): void {
    this.live.delete(pid);
    this.rates.delete(pid);
  }
}

