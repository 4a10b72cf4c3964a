// A snapshot of one traced process: its goroutines with symbolized sites, totals, and event counts.
// The same goroutine objects are what the agent ships to the collector (collector/src/protocol/records.ts).
import type { CodeLocation, ConnectionRecord, GoroutineRecord, GoroutineSched, WindowRecord } from '../../../collector/src/protocol/records.ts';
import { isSystemGoroutine, waitReasonString } from '../gobinary/layouts.ts';
import type { GoroutineRow } from '../model/goroutine-table.ts';
import type { RuntimeProcessSummary } from '../runtime/runtime-tracer.ts';
import type { TracedProcess } from '../tracer/goroutine-tracer.ts';
import type { LeakSuspect } from '../analysis/leaks.ts';
import type { PartState } from '../health/parts.ts';
import { monoNowNs, monoToWallMs } from '../tracer/clock.ts';
import type { SchedSummary } from '../sched/sched-table.ts';
import type { LatencySummary } from '../sched/latency-histogram.ts';

export interface SiteCount extends CodeLocation {
  count: number;
}

export interface Snapshot {
  pid: number;
  exe: string;
  goVersion: string;
  /** False when the Go version is newer than the layouts table and the newest layout is used as a guess. */
  layoutExact: boolean;
  layoutNote?: string;
  attachedAt: number;
  observedMs: number;
  goroutines: GoroutineRecord[];
  totals: {
    goroutines: number;
    systemGoroutines: number;
    byState: Record<string, number>;
    byWaitReason: Record<string, number>;
    byCreationSite: SiteCount[];
  };
  events: {
    created: number;
    parked: number;
    readied: number;
    exited: number;
    lost: number;
    resumedUnseen: number;
    untracked: number;
  };
  inventory: { preexisting: number; unreadable: number; dead: number };
  /**
   * Goroutines created and exited since attach, from the runtime's own memory (its goroutine-id generator and
   * allgs), whatever probes were on; null when the id generator cannot be found (a stripped binary).
   */
  lifecycle: { created: number; exited: number; live: number; exact: boolean; note: string } | null;
  /** The scans of the runtime's goroutine list: how many, the last one's cost, the interval. */
  scans: { count: number; lastMs: number; usPerGoroutine: number; intervalMs: number };
  probes: Array<{ probe: string; symbol: string; site: string; address: string; attached: boolean }>;
  /** The process's TCP connections (open, and closed while observed); listeners are left out. */
  connections?: ConnectionRecord[];
  /** GC stop-the-world pauses, GC cycles and fatal errors (runtime probes), when they were attached. */
  runtime?: RuntimeProcessSummary;
  /** The scheduler (run and syscall probes): run-queue latency per process and per creation site, yields,
   * preemptions, system calls, threads and Ps. */
  sched: SchedSnapshot;
  /** The parts that ran (goroutines, runtime, tcp), and why any did not. */
  parts?: PartState[];
  /** Leak suspects over the observation, each with the stack its goroutines are parked at. */
  leaks?: LeakSuspect[];
  /** How the probes were observed: all the time (full) or in budgeted windows; event-derived figures cover these. */
  overhead?: {
    mode: 'full' | 'budget';
    budget?: number;
    nsPerHit?: number;
    calibration?: string;
    /** Share of the observed time with park and ready probes on. */
    parkCoverage: number;
    parkSampling: number;
    /** The probes' estimated cost as a share of the process's CPU (last measured window). */
    estimatedOverhead?: { total: number; createExit: number; parkReady: number; requests?: number };
    windows: WindowRecord[];
  };
}

export interface SchedSnapshot extends SchedSummary {
  /** Run-queue latency by the go statement that created the goroutines, most runs first (top 20). */
  runQueueBySite: Array<{ createdBy: CodeLocation | null; latency: LatencySummary }>;
}

/** The go statement at pc (a g.gopc) of the process, or null when unknown. */
export function callSiteOf(proc: TracedProcess, pc: number): CodeLocation | null {
  const c = pc ? proc.binary.symbolizer.callSite(pc - proc.bias) : undefined;
  return c ? { function: c.function, file: c.file, line: c.line } : null;
}

/** The process's scheduler figures, creation sites symbolized. */
export function schedSnapshot(proc: TracedProcess, maxSites = 20): SchedSnapshot {
  const bySite = [...proc.sched.runQueueBySite.entries()]
    .sort((a, b) => b[1].count - a[1].count)
    .slice(0, maxSites)
    .map(([pc, h]) => ({ createdBy: callSiteOf(proc, pc), latency: h.summary() }));
  return { ...proc.sched.summary(), runQueueBySite: bySite };
}

export interface SnapshotOptions {
  /** Include runtime-internal goroutines (Go's own dumps hide them). */
  system?: boolean;
  lost: number;
}

export function goroutineRecord(proc: TracedProcess, row: GoroutineRow, now: number): GoroutineRecord & { system: boolean } {
  const created = callSiteOf(proc, row.gopc);
  // The function the go statement started, not its compiler-made wrapper (agent/src/gobinary/go-wrappers.ts).
  const start = row.startPc ? proc.binary.startFunction(row.startPc - proc.bias) : undefined;
  const byReason: Record<string, number> = {};
  for (const [reason, ns] of row.blockedByReason) byReason[waitReasonString(proc.layout, reason)] = ns;
  const startFunction = start?.function ?? null;
  return {
    kind: 'goroutine',
    pid: proc.info.pid,
    goid: row.goid,
    parentGoid: row.parentGoid,
    state: row.state,
    waitReason: row.waitReason === null ? null : waitReasonString(proc.layout, row.waitReason),
    createdBy: created,
    startFunction,
    startLocation: start ? { function: start.function, file: start.file, line: start.line } : null,
    createdAt: row.createdAt === null ? null : monoToWallMs(row.createdAt),
    exitedAt: null,
    lastParkAt: row.lastParkAt === null ? null : monoToWallMs(row.lastParkAt),
    parkCount: row.parkCount,
    readyCount: row.readyCount,
    blockedNs: row.blockedNs,
    blockedByReason: byReason,
    preexisting: row.preexisting,
    system: isSystemGoroutine(proc.layout, startFunction ?? undefined),
    observedAt: monoToWallMs(now),
    ...schedOf(proc, row.goid),
  };
}

function schedOf(proc: TracedProcess, goid: number): { sched?: GoroutineSched } {
  const s = proc.sched.of(goid);
  if (!s) return {};
  return { sched: { ...s, tid: s.runs ? s.tid : null, p: s.runs ? s.p : null } };
}

const siteKey = (c: CodeLocation | null) => (c ? `${c.function}\u0000${c.file}\u0000${c.line}` : '');

export function buildSnapshot(proc: TracedProcess, opts: SnapshotOptions): Snapshot {
  const now = monoNowNs();
  const goroutines: GoroutineRecord[] = [];
  const byState: Record<string, number> = {};
  const byWaitReason: Record<string, number> = {};
  const bySite = new Map<string, SiteCount>();
  let system = 0;
  for (const row of proc.table.rows(now)) {
    const g = goroutineRecord(proc, row, now);
    if (g.system) {
      system++;
      if (!opts.system) continue;
    }
    goroutines.push(g);
    byState[g.state] = (byState[g.state] ?? 0) + 1;
    if (g.waitReason) byWaitReason[g.waitReason] = (byWaitReason[g.waitReason] ?? 0) + 1;
    const k = siteKey(g.createdBy);
    const site = bySite.get(k);
    if (site) site.count++;
    else if (g.createdBy) bySite.set(k, { ...g.createdBy, count: 1 });
  }
  goroutines.sort((a, b) => a.goid - b.goid);
  const c = proc.table.counters;
  return {
    pid: proc.info.pid,
    exe: proc.info.exe,
    goVersion: proc.binary.goVersion,
    layoutExact: proc.layoutExact,
    ...(proc.layoutNote ? { layoutNote: proc.layoutNote } : {}),
    attachedAt: monoToWallMs(proc.attachedAt),
    observedMs: (now - proc.attachedAt) / 1e6,
    goroutines,
    totals: {
      goroutines: goroutines.length,
      systemGoroutines: system,
      byState,
      byWaitReason,
      byCreationSite: [...bySite.values()].sort((a, b) => b.count - a.count),
    },
    events: {
      created: c.created,
      parked: c.parked,
      readied: c.readied,
      exited: c.exited,
      lost: opts.lost,
      resumedUnseen: c.resumedUnseen,
      untracked: c.untracked,
    },
    inventory: { preexisting: proc.inventory.preexisting, unreadable: proc.inventory.unreadable, dead: proc.inventory.dead },
    lifecycle: lifecycleOf(proc),
    scans: scansOf(proc),
    sched: schedSnapshot(proc),
    probes: proc.sites.map((s) => ({
      probe: s.probe,
      symbol: s.symbol,
      site: s.kind,
      address: `0x${s.vaddr.toString(16)}`,
      attached: proc.links.has(s),
    })),
  };
}

/** Creations and exits since attach from the runtime's memory, with what bounds their error. */
export function lifecycleOf(proc: TracedProcess): Snapshot['lifecycle'] {
  const c = proc.scan.counts.sinceAttach();
  if (!c) return null;
  const note = c.exact
    ? 'from sched.goidgen less the Ps\' unused ids: exact but for a P taking its next 16 ids while they were read'
    : 'from sched.goidgen alone (no runtime.allp): up to 16 per P too high, the ids each P took and has not used';
  return { created: c.created, exited: c.exited, live: c.live, exact: c.exact, note };
}

export function scansOf(proc: TracedProcess): Snapshot['scans'] {
  const c = proc.scan.counts;
  return {
    count: c.scans,
    lastMs: c.lastScanNs / 1e6,
    usPerGoroutine: c.goroutinesRead ? c.scanNs / 1e3 / c.goroutinesRead : 0,
    intervalMs: c.intervalMs,
  };
}

const msOf = (ns: number) => `${(ns / 1e6).toFixed(ns < 1e6 ? 3 : 2)}ms`;

/** The scheduler's lines: run-queue latency, yields and preemptions, system calls, threads and Ps. */
export function formatSched(s: SchedSnapshot): string[] {
  const c = s.counters;
  if (c.runs === 0 && c.syscalls === 0) return [];
  const q = s.runQueue;
  const lines = [
    `run queue: ${c.runs} runs (${c.runsTimed} timed)  p50 ${msOf(q.p50Ns)}  p99 ${msOf(q.p99Ns)}  max ${msOf(q.maxNs)};  ` +
      `yields ${c.yields}, preemptions ${c.preemptions};  threads ${s.threads}, Ps ${s.ps}, thread switches ${c.threadSwitches}, P switches ${c.pSwitches}`,
    `syscalls ${c.syscalls}: ${msOf(c.syscallNs)} in all  p50 ${msOf(s.syscalls.p50Ns)}  p99 ${msOf(s.syscalls.p99Ns)}  max ${msOf(s.syscalls.maxNs)}`,
  ];
  if (s.runQueueBySite.length) {
    lines.push('RUN QUEUE BY CREATION SITE');
    for (const x of s.runQueueBySite.slice(0, 10)) {
      const where = x.createdBy ? `${x.createdBy.function}  ${x.createdBy.file}:${x.createdBy.line}` : '(created before the agent, or unknown)';
      lines.push(`  ${String(x.latency.count).padStart(7)} runs  p50 ${msOf(x.latency.p50Ns).padStart(9)}  p99 ${msOf(x.latency.p99Ns).padStart(9)}  ${where}`);
    }
  }
  return lines;
}

/** The readable form: totals, then one line per goroutine. */
export function formatSnapshot(s: Snapshot): string {
  const lines: string[] = [];
  lines.push(`pid ${s.pid}  ${s.exe}  ${s.goVersion}${s.layoutExact ? '' : `  (${s.layoutNote})`}`);
  lines.push(
    `observed ${(s.observedMs / 1000).toFixed(1)}s: created ${s.events.created}, parked ${s.events.parked}, ` +
      `readied ${s.events.readied}, exited ${s.events.exited}, lost ${s.events.lost}`,
  );
  if (s.overhead?.mode === 'budget') {
    lines.push(
      `probes on ${(s.overhead.parkCoverage * 100).toFixed(0)}% of the time (budget ${(s.overhead.budget! * 100).toFixed(1)}% CPU, ` +
        `${Math.round(s.overhead.nsPerHit!)} ns/hit ${s.overhead.calibration})` +
        (s.overhead.parkCoverage < 1 ? ': parks, wakers, blocked time and short-lived goroutines are sampled; counts and states are whole; --full for every event' : ''),
    );
    const est = s.overhead.estimatedOverhead;
    if (est) {
      const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
      const over = est.total > s.overhead.budget! * 1.05 ? ' - over budget even at the shortest on-window' : '';
      const req = est.requests ? `, requests ${pct(est.requests)}` : '';
      lines.push(`estimated probe cost ${pct(est.total)} of the process's CPU (create/exit ${pct(est.createExit)}, park/ready ${pct(est.parkReady)}${req})${over}`);
    }
  }
  if (s.lifecycle) lines.push(`from memory since attach: created ${s.lifecycle.created}, exited ${s.lifecycle.exited}, live ${s.lifecycle.live} (${s.lifecycle.note})`);
  for (const p of s.parts ?? []) if (!p.up && p.detail) lines.push(p.detail);
  lines.push(`goroutines ${s.totals.goroutines} (+${s.totals.systemGoroutines} runtime)  preexisting ${s.inventory.preexisting}`);
  if (s.runtime) {
    const p = s.runtime.gcPauses;
    const ms = (ns: number | null | undefined) => (ns === null || ns === undefined ? '-' : `${(ns / 1e6).toFixed(2)}ms`);
    lines.push(`GC pauses ${p.count}: p50 ${ms(p.window.p50Ns)}  p99 ${ms(p.window.p99Ns)}  max ${ms(p.maxNs)};  GC cycles ${s.runtime.cycles.count}`);
    for (const f of s.runtime.fatal) lines.push(`FATAL goroutine ${f.goid}: ${f.text}`);
  }
  lines.push(...formatSched(s.sched));
  if (s.leaks) {
    lines.push('');
    lines.push(`LEAK SUSPECTS ${s.leaks.length ? '' : '(none)'}`.trim());
    for (const l of s.leaks) {
      const what = l.kind === 'growing-live' ? `${Math.round(l.count)} goroutines, +${l.growthPerMinute.toFixed(0)}/min` : `${l.count.toFixed(0)} created/min, rate growing +${l.growthPerMinute.toFixed(0)}/min`;
      const site = l.createdBy ? `${l.createdBy.function} ${l.createdBy.file}:${l.createdBy.line}` : '?';
      lines.push(`  ${l.startFunction ?? '?'}  ${what}${l.waitReason ? `  [${l.waitReason}]` : ''}  created at ${site}`);
      if (l.stack?.length) {
        lines.push(`    parked at (goroutine ${l.stackGoid}):`);
        for (const f of l.stack) lines.push(`      ${f.function}\n        ${f.file}:${f.line}`);
      }
    }
  }
  lines.push('');
  lines.push('BY WAIT REASON');
  for (const [k, v] of Object.entries(s.totals.byWaitReason).sort((a, b) => b[1] - a[1])) lines.push(`  ${String(v).padStart(7)}  ${k}`);
  lines.push('BY CREATION SITE');
  for (const site of s.totals.byCreationSite.slice(0, 20)) {
    lines.push(`  ${String(site.count).padStart(7)}  ${site.function}  ${site.file}:${site.line}`);
  }
  if (s.connections?.length) {
    lines.push('');
    lines.push(`${'CONNECTIONS'.padEnd(12)} ${'GOID'.padStart(6)}  ${'LOCAL'.padEnd(24)} ${'PEER'.padEnd(24)} ${'STATE'.padEnd(12)} ${'SENT'.padStart(9)} ${'RECV'.padStart(9)} ${'SRTT'.padStart(8)} RETR RST ERROR`);
    for (const c of s.connections.slice(0, 50)) {
      lines.push(
        `${c.role.padEnd(12)} ${String(c.goid ?? '').padStart(6)}  ${`${c.localAddress}:${c.localPort}`.padEnd(24)} ${`${c.peerAddress}:${c.peerPort}`.padEnd(24)} ` +
          `${c.state.padEnd(12)} ${String(c.bytesSent).padStart(9)} ${String(c.bytesReceived).padStart(9)} ${c.srttUs === null ? '-'.padStart(8) : `${(c.srttUs / 1000).toFixed(2)}ms`.padStart(8)} ` +
          `${String(c.retransmits).padStart(4)} ${String(c.resets).padStart(3)} ${c.error ?? ''}`,
      );
    }
  }
  lines.push('');
  lines.push(`${'GOID'.padStart(8)}  ${'PARENT'.padStart(8)}  ${'STATE'.padEnd(22)}  ${'BLOCKED'.padStart(10)}  ${'RUNQUEUE'.padStart(10)}  START / CREATED BY`);
  for (const g of s.goroutines) {
    const state = g.waitReason ?? g.state;
    const blocked = g.blockedNs ? `${(g.blockedNs / 1e6).toFixed(1)}ms` : '';
    const by = g.createdBy ? `${g.createdBy.function} ${g.createdBy.file}:${g.createdBy.line}` : '';
    lines.push(
      `${String(g.goid).padStart(8)}  ${String(g.parentGoid ?? '').padStart(8)}  ${state.slice(0, 22).padEnd(22)}  ${blocked.padStart(10)}  ` +
        `${(g.sched?.runsTimed ? msOf(g.sched.runnableNs) : '').padStart(10)}  ${g.startFunction ?? '?'} <- ${by}`,
    );
  }
  return lines.join('\n');
}
