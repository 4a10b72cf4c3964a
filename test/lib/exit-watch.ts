// Watches processes from a thread of its own, so what it measures does not wait on the main thread's event
// loop (where the agent under test runs): when each process exited (gone from /proc or a zombie), and when the
// last uprobe multi-link that watched it left the holder's fd table (the kernel's fdinfo of each link).
import { Worker } from 'node:worker_threads';

export interface ExitTimes {
  /** performance.timeOrigin-based ms, as performance.now() + timeOrigin. */
  exitedAt: number;
  linksGoneAt: number;
  /** Links seen watching the process while it ran (0: none was seen, so linksGoneAt says nothing). */
  links: number;
}

const workerSource = `
const { parentPort } = require('node:worker_threads');
const { readdirSync, readFileSync } = require('node:fs');
// pid -> { exitedAt?, links: Set of link ids seen watching it }. fdinfo names the pid a multi-link watches
// only while that process exists (0 once it is reaped), so links are tied to their pid while it runs.
const watched = new Map();
const now = () => performance.timeOrigin + performance.now();
function alive(pid) {
  try {
    const stat = readFileSync('/proc/' + pid + '/stat', 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch { return false; }
}
/** link id -> pid (0 when its process is gone) of every uprobe multi-link the holder has open. */
function links() {
  const out = new Map();
  let fds = [];
  try { fds = readdirSync('/proc/' + holder + '/fdinfo'); } catch { return out; }
  for (const fd of fds) {
    let text;
    try { text = readFileSync('/proc/' + holder + '/fdinfo/' + fd, 'utf8'); } catch { continue; }
    if (!text.includes('link_type:\\tuprobe_multi')) continue;
    const id = /^link_id:\\s+(\\d+)/m.exec(text);
    const pid = /^pid:\\s+(\\d+)/m.exec(text);
    if (id) out.set(Number(id[1]), pid ? Number(pid[1]) : 0);
  }
  return out;
}
let holder = 'self';
parentPort.on('message', (m) => {
  if (m.holder) holder = m.holder;
  if (m.watch) watched.set(m.watch, { exitedAt: undefined, links: new Set() });
});
setInterval(() => {
  if (!watched.size) return;
  const t = now();
  const open = links();
  for (const [id, pid] of open) watched.get(pid)?.links.add(id);
  for (const [pid, w] of watched) {
    if (w.exitedAt === undefined && !alive(pid)) {
      w.exitedAt = t;
      parentPort.postMessage({ exited: pid, at: t, links: w.links.size });
    }
    if (w.exitedAt === undefined) continue;
    let left = 0;
    for (const id of w.links) if (open.has(id)) left++;
    if (left) continue;
    parentPort.postMessage({ pid, exitedAt: w.exitedAt, linksGoneAt: t, links: w.links.size });
    watched.delete(pid);
  }
}, 25);
`;

export class ExitWatch {
  private readonly worker = new Worker(workerSource, { eval: true });
  readonly done = new Map<number, ExitTimes>();

  /** onExit runs (on this thread) when a watched process is seen gone. */
  constructor(holder: number | 'self' = 'self', onExit?: (pid: number) => void) {
    this.worker.postMessage({ holder: holder === 'self' ? process.pid : holder });
    this.worker.on('message', (m: { exited: number } | ({ pid: number } & ExitTimes)) => {
      if ('exited' in m) onExit?.(m.exited);
      else this.done.set(m.pid, { exitedAt: m.exitedAt, linksGoneAt: m.linksGoneAt, links: m.links });
    });
    this.worker.unref();
  }

  watch(pid: number): void {
    this.worker.postMessage({ watch: pid });
  }

  async stop(): Promise<void> {
    await this.worker.terminate();
  }
}
