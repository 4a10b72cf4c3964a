// Finds the Go processes on the node: every /proc entry whose executable carries Go build info. The answer
// is cached per executable file (device, inode, mtime), so a scan costs one stat per process.
// Processes named by the operator (--pid) are never skipped in silence: each one that is not traced gets one
// line saying why (gone, not Go, not permitted, unsupported Go).
import { statSync } from 'node:fs';
import { listPids, processRunning, ProcessError } from '../proc/process.ts';
import { openTarget, type Target } from '../tracer/target.ts';

export interface ScanResult {
  appeared: Target[];
  exited: number[];
  /** Processes that could not be inspected, with the reason (permission, unsupported Go version...); named ones also when gone or not Go. */
  skipped: Array<{ pid: number; reason: string }>;
}

export class GoProcessWatcher {
  /** Traced pids and their start times. */
  private readonly known = new Map<number, number>();
  /** Executable identity -> not a Go program (Go binaries are opened per process, for their pid). */
  private readonly notGo = new Set<string>();
  private readonly refused = new Set<number>();
  /** Named pids already reported as not traced (each is said once). */
  private readonly reported = new Set<number>();

  constructor(private readonly opts: { pids?: number[]; selfPid?: number } = {}) {}

  scan(): ScanResult {
    const out: ScanResult = { appeared: [], exited: [], skipped: [] };
    const named = this.opts.pids !== undefined;
    const pids = this.opts.pids ?? listPids();
    const alive = new Set<number>();
    const skip = (pid: number, reason: string) => {
      if (named && this.reported.has(pid)) return;
      this.reported.add(pid);
      out.skipped.push({ pid, reason });
    };
    for (const pid of pids) {
      if (pid === (this.opts.selfPid ?? process.pid)) {
        if (named) skip(pid, `pid ${pid} is goroscope itself`);
        continue;
      }
      let key: string;
      try {
        const st = statSync(`/proc/${pid}/exe`);
        key = `${st.dev}:${st.ino}:${st.mtimeMs}`;
      } catch (e) {
        // gone, a kernel thread, or not ours to see: worth a line only when the operator named it
        if (named && !this.known.has(pid)) skip(pid, unreadable(pid, e));
        continue;
      }
      alive.add(pid);
      if (this.known.has(pid) || this.refused.has(pid)) continue;
      if (this.notGo.has(key)) {
        if (named) skip(pid, `pid ${pid} is not a Go program`);
        continue;
      }
      try {
        const target = openTarget(pid);
        out.appeared.push(target);
        this.known.set(pid, target.info.startTime);
        this.reported.delete(pid);
      } catch (e) {
        if (e instanceof ProcessError && / is not a Go program$/.test(e.message)) {
          this.notGo.add(key);
          if (named) skip(pid, e.message);
        } else {
          this.refused.add(pid);
          skip(pid, (e as Error).message);
        }
      }
    }
    for (const pid of this.known.keys()) {
      if (!alive.has(pid)) {
        this.known.delete(pid);
        out.exited.push(pid);
      }
    }
    for (const pid of this.refused) if (!alive.has(pid)) this.refused.delete(pid);
    return out;
  }

  /**
   * The known processes that have exited (or turned zombie, or whose pid a new process took) since the last
   * look: a read of /proc/PID/stat per known process, cheap enough to run several times a second so probes
   * go with their process; a new process on a reused pid is found by the next scan.
   */
  exited(): number[] {
    const out: number[] = [];
    for (const [pid, startTime] of this.known) {
      if (processRunning(pid, startTime)) continue;
      this.known.delete(pid);
      out.push(pid);
    }
    return out;
  }

  /** Forget a pid (its attach failed), so a later scan tries again. */
  forget(pid: number): void {
    this.known.delete(pid);
  }
}

function unreadable(pid: number, e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') {
    try {
      statSync(`/proc/${pid}`);
      return `pid ${pid} has no executable (a kernel thread or a zombie)`;
    } catch {
      return `no process with pid ${pid}`;
    }
  }
  if (code === 'EACCES' || code === 'EPERM') return `not permitted to read the executable of pid ${pid} (run as root, or with CAP_SYS_PTRACE)`;
  return `cannot read pid ${pid}: ${(e as Error).message}`;
}
