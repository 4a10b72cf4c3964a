// The scheduler records the agent ships (collector/src/protocol/records.ts SchedRecord): each report interval, what
// a process's SchedTable counted since the previous record of it, as differences, so the collector can sum any
// range. The table's figures are cumulative and recording a run must stay cheap, so the differences are taken here,
// against a copy of what the last record covered.
import { MAX_SCHED_SITES, type CodeLocation, type LatencyBuckets, type SchedRecord } from '../../../collector/src/protocol/records.ts';
import { bucketBounds } from '../../../collector/src/protocol/histogram.ts';
import type { BucketCounts, LatencyHistogram } from './latency-histogram.ts';
import type { SchedCounters, SchedTable } from './sched-table.ts';

/** A histogram as a record covered it. */
interface Covered {
  counts: BucketCounts;
  count: number;
  sumNs: number;
}

interface Previous {
  toMs: number;
  counters: SchedCounters;
  runQueue: Covered;
  syscallTime: Covered;
  sites: Map<number, Covered>;
}

const copyOf = (h: LatencyHistogram): Covered => ({ counts: h.snapshot(), count: h.count, sumNs: h.sumNs });
const NONE: Covered = { counts: new Float64Array(0), count: 0, sumNs: 0 };

/** What h counted since `before`: its buckets, and a largest sample no larger than its highest new bucket allows. */
function difference(h: LatencyHistogram, before: Covered): LatencyBuckets {
  const buckets: Record<string, number> = {};
  let top = -1;
  for (const [b, n] of h.buckets()) {
    const d = n - (before.counts[b] ?? 0);
    if (d <= 0) continue;
    buckets[b] = d;
    if (b > top) top = b;
  }
  return {
    count: h.count - before.count,
    sumNs: Math.max(0, Math.round(h.sumNs - before.sumNs)),
    maxNs: top < 0 ? 0 : Math.round(Math.min(h.maxNs, bucketBounds(top)[1])),
    buckets,
  };
}

/** A process as the reporter needs it: its table, when it was attached (wall ms), its creation sites by pc. */
export interface SchedSource {
  pid: number;
  sched: SchedTable;
  attachedAtMs: number;
  siteOf(pc: number): CodeLocation | null;
}

export class SchedReports {
  private readonly previous = new Map<number, Previous>();

  /** The record of what p's scheduler did since its previous one; undefined when nothing ran. */
  take(p: SchedSource, nowMs: number): SchedRecord | undefined {
    const t = p.sched;
    const before = this.previous.get(p.pid);
    const c = t.counters;
    if (before && c.runs === before.counters.runs && c.syscalls === before.counters.syscalls && c.yields === before.counters.yields &&
      c.preemptions === before.counters.preemptions) return undefined;
    const b = before?.counters;
    const d = (k: keyof Omit<SchedCounters, 'byCause'>) => c[k] - (b?.[k] ?? 0);
    const byCause: Record<string, number> = {};
    for (const [cause, n] of Object.entries(c.byCause)) {
      const x = n - (b?.byCause[cause as keyof SchedCounters['byCause']] ?? 0);
      if (x > 0) byCause[cause] = x;
    }
    // Sites that ran since: those with the most runs go out; every one is covered from now on.
    const coveredSites = before?.sites ?? new Map<number, Covered>();
    const ran: { pc: number; h: LatencyHistogram; runs: number }[] = [];
    for (const [pc, h] of t.runQueueBySite) {
      const runs = h.count - (coveredSites.get(pc)?.count ?? 0);
      if (runs > 0) ran.push({ pc, h, runs });
    }
    const sites = ran
      .sort((x, y) => y.runs - x.runs)
      .slice(0, MAX_SCHED_SITES)
      .map((s) => ({ createdBy: s.pc ? p.siteOf(s.pc) : null, runQueue: difference(s.h, coveredSites.get(s.pc) ?? NONE) }));
    for (const s of ran) coveredSites.set(s.pc, copyOf(s.h));
    const fromMs = before?.toMs ?? p.attachedAtMs;
    // (process, to) names a record in the store: two in one millisecond must not share it.
    const toMs = before ? Math.max(nowMs, before.toMs + 0.001) : nowMs;
    const record: SchedRecord = {
      kind: 'sched',
      pid: p.pid,
      from: Math.min(fromMs, toMs),
      to: toMs,
      runs: d('runs'),
      runsTimed: d('runsTimed'),
      yields: d('yields'),
      preemptions: d('preemptions'),
      preemptParks: d('preemptParks'),
      syscalls: d('syscalls'),
      syscallNs: Math.max(0, Math.round(d('syscallNs'))),
      threadSwitches: d('threadSwitches'),
      pSwitches: d('pSwitches'),
      byCause,
      threads: t.threads.size,
      ps: t.ps.size,
      runQueue: difference(t.runQueue, before?.runQueue ?? NONE),
      syscallTime: difference(t.syscallTime, before?.syscallTime ?? NONE),
      sites,
    };
    this.previous.set(p.pid, {
      toMs,
      counters: { ...c, byCause: { ...c.byCause } },
      runQueue: copyOf(t.runQueue),
      syscallTime: copyOf(t.syscallTime),
      sites: coveredSites,
    });
    return record;
  }

  /** Forgets the processes not in `live` (gone since the last call). */
  keepOnly(live: Set<number>): void {
    for (const pid of this.previous.keys()) if (!live.has(pid)) this.previous.delete(pid);
  }
}
