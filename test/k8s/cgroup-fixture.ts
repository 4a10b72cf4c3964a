// A real kubepods hierarchy made on this machine: kubelet-shaped cgroups in the cgroup v2 (or a v1) mount, with a
// real process moved into the container's cgroup through cgroup.procs. Removed again by cleanup().
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startChild, type Child } from '../lib/child.ts';

export interface Mount {
  path: string;
  version: 1 | 2;
  /** v1: the controllers (or name=...) of the hierarchy. */
  options: string;
}

/** cgroup mounts from /proc/self/mountinfo (fields after " - ": fstype, source, super options). */
export function cgroupMounts(): Mount[] {
  const out: Mount[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!post) continue;
    const [fstype, , superOpts] = post.split(' ');
    const mountPoint = pre.split(' ')[4];
    if (fstype === 'cgroup2') out.push({ path: mountPoint, version: 2, options: superOpts });
    else if (fstype === 'cgroup') out.push({ path: mountPoint, version: 1, options: superOpts });
  }
  return out;
}

export interface PodCgroup {
  podUid: string;
  containerId: string;
  /** The container's cgroup directory. */
  dir: string;
  /** What /proc/PID/cgroup should show for it, relative to the mount. */
  relPath: string;
  proc: Child;
  pid: number;
  cleanup(): Promise<void>;
}

export type Why = string;

/** Why a real kubepods cgroup cannot be made here, or null when it can. */
export function cannotMakeCgroup(m: Mount | undefined): Why | null {
  if (!m) return 'no such cgroup mount on this machine';
  if (process.getuid?.() !== 0) return 'not root: cannot create cgroups';
  const probe = join(m.path, `goroscope-probe-${process.pid}`);
  try {
    mkdirSync(probe);
    rmdirSync(probe);
    return null;
  } catch (e) {
    return `cannot create a cgroup under ${m.path}: ${(e as Error).message}`;
  }
}

async function removeTree(dirs: string[]): Promise<void> {
  for (const d of dirs) {
    for (let i = 0; i < 50 && existsSync(d); i++) {
      try {
        rmdirSync(d);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EBUSY') throw e;
        await new Promise((r) => setTimeout(r, 20)); // the killed process is still leaving
      }
    }
  }
}

/**
 * systemd driver (v2 or v1 name=systemd): kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid_>.slice/cri-containerd-<id>.scope
 * cgroupfs driver (v1 controller hierarchies): kubepods/<qos>/pod<uid>/<id>
 */
export async function makePodCgroup(m: Mount, driver: 'systemd' | 'cgroupfs', qos: 'burstable' | 'besteffort' = 'burstable'): Promise<PodCgroup> {
  const podUid = randomUUID();
  const containerId = randomBytes(32).toString('hex');
  const segs = driver === 'systemd'
    ? ['kubepods.slice', `kubepods-${qos}.slice`, `kubepods-${qos}-pod${podUid.replace(/-/g, '_')}.slice`, `cri-containerd-${containerId}.scope`]
    : ['kubepods', qos, `pod${podUid}`, containerId];
  const dirs: string[] = [];
  let dir = m.path;
  for (const s of segs) {
    dir = join(dir, s);
    if (!existsSync(dir)) {
      mkdirSync(dir);
      dirs.unshift(dir); // only what we made, leaf first
    }
  }
  const proc = startChild('sleep', ['300']);
  const pid = proc.pid;
  try {
    writeFileSync(join(dir, 'cgroup.procs'), `${pid}\n`);
  } catch (e) {
    await proc.stop('SIGKILL');
    await removeTree(dirs);
    throw e;
  }
  return {
    podUid, containerId, dir, relPath: `/${segs.join('/')}`, proc, pid,
    async cleanup() {
      await proc.stop('SIGKILL');
      await removeTree(dirs);
    },
  };
}
