// Finds the Go processes on the node: every /proc entry whose executable carries Go build info. The answer
// is cached per executable file (device, inode, mtime), so a scan costs one stat per process.
import { statSync } from 'node:fs';
import { listPids, ProcessError } from '../proc/process.ts';
import { openTarget, type Target } from '../tracer/goroutine-tracer.ts';

export interface ScanResult {
  appeared: Target[];
  exited: number[];
  /** Processes that could not be inspected, with the reason (permission, unsupported Go version...). */
  skipped: Array<{ pid: number; reason: string }>;
}

export class GoProcessWatcher {
  private readonly known = new Set<number>();
  /** Executable identity -> not a Go program (Go binaries are opened per process, for their pid). */
  private readonly notGo = new Set<string>();
  private readonly refused = new Set<number>();

  constructor(private readonly opts: { pids?: number[]; selfPid?: number } = {}) {}

  scan(): ScanResult {
    const out: ScanResult = { appeared: [], exited: [], skipped: [] };
    const pids = this.opts.pids ?? listPids();
    const alive = new Set<number>();
    for (const pid of pids) {
      if (pid === (this.opts.selfPid ?? process.pid)) continue;
      let key: string;
      try {
        const st = statSync(`/proc/${pid}/exe`);
        key = `${st.dev}:${st.ino}:${st.mtimeMs}`;
      } catch {
        continue; // gone, a kernel thread, or not ours to see
      }
      alive.add(pid);
      if (this.known.has(pid) || this.refused.has(pid) || this.notGo.has(key)) continue;
      try {
        out.appeared.push(openTarget(pid));
        this.known.add(pid);
      } catch (e) {
        if (e instanceof ProcessError && / is not a Go program$/.test(e.message)) this.notGo.add(key);
        else {
          this.refused.add(pid);
          out.skipped.push({ pid, reason: (e as Error).message });
        }
      }
    }
    for (const pid of this.known) {
      if (!alive.has(pid)) {
        this.known.delete(pid);
        out.exited.push(pid);
      }
    }
    for (const pid of this.refused) if (!alive.has(pid)) this.refused.delete(pid);
    return out;
  }

  /** Forget a pid (its attach failed), so a later scan tries again. */
  forget(pid: number): void {
    this.known.delete(pid);
  }
}
