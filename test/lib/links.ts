// The kernel's own view of a process's BPF links: /proc/PID/fdinfo of every link fd names its type and, for a
// uprobe multi-link, the pid it watches. What the tests hold the agent's probes against.
import { readdirSync, readFileSync } from 'node:fs';

/** Uprobe multi-links held by process `holder`, counted by the pid each watches. */
export function uprobeLinksByPid(holder: number | 'self' = 'self'): Map<number, number> {
  const out = new Map<number, number>();
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${holder}/fdinfo`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    let text: string;
    try {
      text = readFileSync(`/proc/${holder}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue; // closed meanwhile
    }
    if (!text.includes('link_type:\tuprobe_multi')) continue;
    const pid = Number(/^pid:\s+(\d+)/m.exec(text)?.[1] ?? 0);
    out.set(pid, (out.get(pid) ?? 0) + 1);
  }
  return out;
}
