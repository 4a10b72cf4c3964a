// What the agent ships of each traced process's stacks, every interval: its goroutine profile (every goroutine
// read from memory, by stack) and the blocking profile of the interval (parks from the tracer's records, placed
// by that read; see block-profile.ts), as ProfileRecords whose stacks go through the agent's stack table.
import type { AgentRecord, ProfileRecord } from '../../../collector/src/protocol/records.ts';
import type { ProfileData } from '../../../collector/src/protocol/pprof.ts';
import { ProcessMemory } from '../proc/process.ts';
import { stackTargetFor } from '../stacks/dump.ts';
import { readGoroutineStacks } from '../stacks/read-goroutines.ts';
import type { StackTable } from '../stacks/stack-table.ts';
import { monoNowNs, monoToWallMs } from '../tracer/clock.ts';
import type { TracedProcess } from '../tracer/goroutine-tracer.ts';
import { BlockProfiler } from './block-profile.ts';
import { GoroutineProfileBuilder } from './goroutine-profile.ts';

export interface AgentProfilesOptions {
  intervalMs: number;
  stacks: StackTable;
  /** Share of goroutines whose parks the tracer records. */
  parkSampling?: number;
  /** Share of the observed time the goroutine probes were on, per process (the overhead budget's duty cycle). */
  parkCoverage?: (pid: number) => number;
}

interface PerProcess {
  block: BlockProfiler;
  startMs: number;
}

export class AgentProfiles {
  private readonly procs = new Map<number, PerProcess>();
  /** Reads that failed (the process exited mid-read...): counted, never fatal. */
  failures = 0;

  constructor(private readonly opts: AgentProfilesOptions) {}

  /** The tracer's record visitor: parks and the evidence that goroutines run again. */
  onRecord(p: TracedProcess, kind: number, v: DataView, at: number): void {
    this.procs.get(p.info.pid)?.block.onRecord(kind, v, at);
  }

  /** One read of each process: its goroutine profile now, and its blocking profile since the last call. */
  collect(procs: TracedProcess[]): AgentRecord[] {
    const out: AgentRecord[] = [];
    for (const proc of procs) {
      try {
        out.push(...this.collectOne(proc));
      } catch {
        this.failures++;
      }
    }
    return out;
  }

  private collectOne(proc: TracedProcess): AgentRecord[] {
    const pid = proc.info.pid;
    const t = stackTargetFor(proc);
    const out: AgentRecord[] = [];
    const now = monoNowNs();
    // One read serves both, goroutine by goroutine (nothing holds the whole population): the goroutine profile
    // now, the last scan of the closing block window and the first of the next one.
    const mine = this.procs.get(pid);
    const builder = new GoroutineProfileBuilder(t);
    const block = new BlockProfiler(t, { startNs: now, endNs: Number.MAX_SAFE_INTEGER, parkSampling: this.opts.parkSampling ?? 1 });
    mine?.block.beginObserve();
    block.beginObserve();
    const takenAt = Date.now();
    const t0 = performance.now();
    const mem = new ProcessMemory(pid);
    try {
      readGoroutineStacks(mem, t, (g) => {
        builder.add(g);
        mine?.block.observeOne(g, now);
        block.observeOne(g, now);
      });
    } finally {
      mem.close();
    }
    const readMs = performance.now() - t0;
    block.endObserve(now);
    if (mine) {
      mine.block.endObserve(now);
      const data = mine.block.finish(mine.startMs, now);
      const coverage = this.opts.parkCoverage?.(pid);
      if (coverage !== undefined && coverage < 1) {
        data.comments.push(`goroutine probes were on ${(coverage * 100).toFixed(0)}% of the observed time (overhead budget): parks in the off time are not counted (a sample), waits seen by scans are`);
      }
      out.push(this.record(pid, data, out));
    }
    out.push(this.record(pid, builder.finish(takenAt, readMs), out));
    this.procs.set(pid, { block, startMs: monoToWallMs(now) });
    return out;
  }

  private record(pid: number, data: ProfileData, out: AgentRecord[]): ProfileRecord {
    return {
      kind: 'profile',
      pid,
      profile: data.kind,
      from: data.startMs,
      to: data.startMs + data.durationMs,
      samples: data.samples.map((s) => ({ stack: this.opts.stacks.intern(s.frames, out), values: s.values, labels: s.labels })),
      comments: data.comments.slice(0, 16).map((c) => c.slice(0, 1024)),
    };
  }

  forget(pid: number): void {
    this.procs.delete(pid);
  }
}
