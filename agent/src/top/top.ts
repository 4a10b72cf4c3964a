// `goroscope top`: a live view of a process's goroutines by creation site and wait reason, redrawn in place.
import { GoroutineTracer, type TracedProcess } from '../tracer/goroutine-tracer.ts';
import { openTarget } from '../tracer/target.ts';
import { goroutineRecord } from '../snapshot/snapshot.ts';
import { monoNowNs } from '../tracer/clock.ts';
import { calibrateHitCost } from '../overhead/calibrate.ts';
import { OverheadGovernor } from '../overhead/governor.ts';

export interface TopCommand {
  pid: number;
  intervalMs: number;
  /** Stop after this many frames (for scripts and tests); runs until Ctrl-C when absent. */
  iterations?: number;
  full?: boolean;
  overheadBudget: number;
}

interface Row {
  site: string;
  reason: string;
  count: number;
  blockedNs: number;
  /** Run-queue time and timed runs of its goroutines (the scheduler probes). */
  runnableNs: number;
  runsTimed: number;
}

/** What the previous frame saw: rates are the differences over the frame. */
export interface TopPrev {
  created: number;
  exited: number;
  parked: number;
  at: number;
  runs?: number;
  preemptions?: number;
  syscalls?: number;
}

export const topPrev = (proc: TracedProcess): TopPrev => ({
  ...proc.table.counters,
  runs: proc.sched.counters.runs,
  preemptions: proc.sched.counters.preemptions,
  syscalls: proc.sched.counters.syscalls,
  at: monoNowNs(),
});

/** One frame of the view as text lines, at most `height` of them. */
export function renderTop(proc: TracedProcess, prev: TopPrev, width: number, height: number, coverage: number): string[] {
  const now = monoNowNs();
  const rows = new Map<string, Row>();
  const byState = new Map<string, number>();
  let total = 0;
  for (const r of proc.table.rows(now)) {
    const g = goroutineRecord(proc, r, now);
    if (g.system) continue;
    total++;
    const reason = g.waitReason ?? g.state;
    byState.set(g.state, (byState.get(g.state) ?? 0) + 1);
    const site = g.createdBy ? `${g.createdBy.function} ${g.createdBy.file.split('/').slice(-2).join('/')}:${g.createdBy.line}` : '(unknown)';
    const k = `${site}\u0000${reason}`;
    const row = rows.get(k) ?? { site, reason, count: 0, blockedNs: 0, runnableNs: 0, runsTimed: 0 };
    row.count++;
    row.blockedNs += g.blockedNs;
    row.runnableNs += g.sched?.runnableNs ?? 0;
    row.runsTimed += g.sched?.runsTimed ?? 0;
    rows.set(k, row);
  }
  const c = proc.table.counters;
  const secs = Math.max(1e-9, (now - prev.at) / 1e9);
  const rate = (n: number) => (n / secs).toFixed(0);
  const lines = [
    `goroscope top  pid ${proc.info.pid}  ${proc.info.exe}  ${proc.binary.goVersion}`,
    `goroutines ${total}  ${[...byState].map(([s, n]) => `${s} ${n}`).join('  ')}`,
    `created/s ${rate(c.created - prev.created)}  exited/s ${rate(c.exited - prev.exited)}  parks/s ${rate(c.parked - prev.parked)}  ` +
      `probes on ${(coverage * 100).toFixed(0)}% of the time (parks sampled; counts whole)`,
    schedLine(proc, prev, rate),
    '',
    `${'COUNT'.padStart(7)}  ${'WAIT REASON'.padEnd(22)}  ${'AVG BLOCKED'.padStart(11)}  ${'AVG RUNQ'.padStart(9)}  CREATED BY`,
  ];
  const sorted = [...rows.values()].sort((a, b) => b.count - a.count || a.site.localeCompare(b.site));
  for (const r of sorted.slice(0, Math.max(0, height - lines.length))) {
    const avg = r.count ? r.blockedNs / r.count / 1e6 : 0;
    const runq = r.runsTimed ? `${(r.runnableNs / r.runsTimed / 1e6).toFixed(2)}ms` : '-';
    lines.push(`${String(r.count).padStart(7)}  ${r.reason.slice(0, 22).padEnd(22)}  ${`${avg.toFixed(1)}ms`.padStart(11)}  ${runq.padStart(9)}  ${r.site}`.slice(0, width));
  }
  return lines;
}

/** The scheduler: runs, preemptions and system calls per second, run-queue latency so far. */
function schedLine(proc: TracedProcess, prev: TopPrev, rate: (n: number) => string): string {
  const c = proc.sched.counters;
  const q = proc.sched.runQueue;
  const ms = (ns: number) => `${(ns / 1e6).toFixed(2)}ms`;
  return (
    `runs/s ${rate(c.runs - (prev.runs ?? 0))}  preemptions/s ${rate(c.preemptions - (prev.preemptions ?? 0))}  syscalls/s ${rate(c.syscalls - (prev.syscalls ?? 0))}  ` +
    `run queue p50 ${ms(q.quantile(0.5))} p99 ${ms(q.quantile(0.99))}  threads ${proc.sched.threads.size} Ps ${proc.sched.ps.size}`
  );
}

export async function runTop(cmd: TopCommand): Promise<void> {
  const target = openTarget(cmd.pid);
  const tracer = new GoroutineTracer();
  tracer.start();
  const calibration = cmd.full ? undefined : await calibrateHitCost(tracer);
  const proc = tracer.attach(target);
  const governor = new OverheadGovernor(tracer, { budget: cmd.full ? Infinity : cmd.overheadBudget, nsPerHit: calibration?.nsPerHit ?? 1 });
  governor.add(proc);
  const tty = process.stdout.isTTY;
  let stop = false;
  const quit = () => (stop = true);
  process.once('SIGINT', quit);
  process.once('SIGTERM', quit);
  if (tty && process.stdin.isTTY) {
    process.stdin.setRawMode(true);
    process.stdin.on('data', (d) => (d[0] === 0x71 /* q */ || d[0] === 3 ? quit() : undefined));
  }
  let prev = topPrev(proc);
  try {
    for (let frame = 0; !stop && (cmd.iterations === undefined || frame < cmd.iterations); frame++) {
      await new Promise((r) => setTimeout(r, cmd.intervalMs));
      if (!tracer.process(cmd.pid)) break;
      const lines = renderTop(proc, prev, process.stdout.columns ?? 160, (process.stdout.rows ?? 40) - 1, governor.coverage(cmd.pid));
      prev = topPrev(proc);
      // Home and clear-to-end keep the frame in place without flicker; a pipe gets frames one after another.
      process.stdout.write(tty ? `\x1b[H${lines.join('\x1b[K\n')}\x1b[K\n\x1b[J` : `${lines.join('\n')}\n\n`);
    }
  } finally {
    if (tty && process.stdin.isTTY) process.stdin.setRawMode(false);
    process.stdin.pause();
    governor.stop();
    await tracer.close();
  }
}
