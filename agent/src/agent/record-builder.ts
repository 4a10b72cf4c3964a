// Turns what the tracer knows into records for the collector, selectively: a busy service creates 1e5
// goroutines a second, most living microseconds. Shipped: every goroutine that lived past minAgeMs, every
// pre-existing one, and a sample of the short-lived (by goid hash, so a sampled goroutine's records are
// all shipped); the counts of all of them travel in the window records.
import type { AgentRecord, GoroutineRecord, ProcessRecord, WindowRecord } from '../../../collector/src/protocol/records.ts';
import type { GoroutineRow } from '../model/goroutine-table.ts';
import { parkSampled } from '../overhead/sampling.ts';
import { goroutineRecord } from '../snapshot/snapshot.ts';
import { monoToWallMs } from '../tracer/clock.ts';
import type { TracedProcess } from '../tracer/goroutine-tracer.ts';
import type { ProcessMetadataSource } from '../k8s/pod-metadata.ts';

export interface SelectionPolicy {
  /** Goroutines younger than this are shipped only when sampled. */
  minAgeMs: number;
  /** Share of short-lived goroutines shipped anyway. */
  shortLivedSample: number;
  /** Ship the runtime's own goroutines too. */
  system: boolean;
}

export const defaultPolicy: SelectionPolicy = { minAgeMs: 1000, shortLivedSample: 0.01, system: false };

interface ProcCursor {
  exitSerial: number;
  windowsTo: number;
}

export class RecordBuilder {
  private readonly cursors = new Map<number, ProcCursor>();

  constructor(private readonly policy: SelectionPolicy = defaultPolicy) {}

  /** `metadata` names the process's container and pod (agent/src/k8s); without it both stay null. */
  processRecord(proc: TracedProcess, exitedAt: number | null = null, metadata?: ProcessMetadataSource | null): ProcessRecord {
    const m = metadata?.lookup(proc.info.pid, proc.info.startTime) ?? null;
    return {
      kind: 'process',
      pid: proc.info.pid,
      startTime: proc.info.startTime,
      exe: proc.info.exe,
      goVersion: proc.binary.goVersion,
      containerId: m?.containerId ?? null,
      pod: m?.pod ? { name: m.pod.name, namespace: m.pod.namespace, uid: m.pod.uid, container: m.container } : null,
      seenAt: monoToWallMs(proc.attachedAt),
      exitedAt,
    };
  }

  private wanted(row: GoroutineRow, until: number): boolean {
    if (row.preexisting) return true;
    if (row.createdAt === null || (until - row.createdAt) / 1e6 >= this.policy.minAgeMs) return true;
    return parkSampled(row.goid, this.policy.shortLivedSample);
  }

  /** The records that changed for one process since the last call. */
  build(proc: TracedProcess, windows: WindowRecord[], now: number): AgentRecord[] {
    const pid = proc.info.pid;
    let cur = this.cursors.get(pid);
    if (!cur) this.cursors.set(pid, (cur = { exitSerial: 0, windowsTo: 0 }));
    const out: AgentRecord[] = [];
    const keep = (g: GoroutineRecord & { system: boolean }) => this.policy.system || !g.system;
    for (const row of proc.table.takeChanged(now)) {
      if (!this.wanted(row, now)) continue;
      const g = goroutineRecord(proc, row, now);
      if (keep(g)) out.push(g);
    }
    const exits = proc.table.exitedSince(cur.exitSerial);
    for (const row of exits) {
      if (!this.wanted(row, row.exitedAt)) continue;
      const g = goroutineRecord(proc, row, row.exitedAt);
      if (keep(g)) out.push({ ...g, state: 'dead', exitedAt: monoToWallMs(row.exitedAt) });
    }
    if (exits.length) cur.exitSerial = exits[exits.length - 1].serial;
    for (const w of windows) {
      if (w.to <= cur.windowsTo) continue;
      out.push(w);
      cur.windowsTo = w.to;
    }
    return out;
  }

  forget(pid: number): void {
    this.cursors.delete(pid);
  }
}
