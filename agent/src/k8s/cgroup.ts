// pid -> /proc/PID/cgroup -> container id and pod UID, for every dialect the kubelet and the container
// runtimes write: cgroup v1 (one line per hierarchy) and v2 (the single "0::" line), the cgroupfs driver
// (/kubepods/burstable/pod<uid>/<id>) and the systemd driver (kubepods-burstable-pod<uid_with_underscores>.slice/
// cri-containerd-<id>.scope), containerd, CRI-O, docker (and cri-dockerd), podman; each QoS class; static pods
// (whose UID is the 32-hex config hash, no dashes); paths seen through a cgroup namespace ("/../../kubepods...").
//
// The match is by segment shape, not by prefix, so a kubelet with its own cgroup root (kind's
// /kubelet.slice/kubelet-kubepods.slice/..., k3s, nested docker) resolves the same way.
import { readFileSync } from 'node:fs';

export type ContainerRuntime = 'containerd' | 'crio' | 'docker' | 'podman' | null;
export type QosClass = 'guaranteed' | 'burstable' | 'besteffort';

export interface CgroupContainer {
  /** 64 hex digits, as the runtime and the pod's status.containerStatuses[].containerID name it. */
  containerId: string | null;
  /** The pod UID with dashes (systemd slices spell it with underscores), or null outside a pod. */
  podUid: string | null;
  /** From the scope prefix (cri-containerd-, crio-, docker-, libpod-); null for cgroupfs' bare ids. */
  runtime: ContainerRuntime;
  /** Only for pods. */
  qos: QosClass | null;
  /** The cgroup path it came from. */
  path: string;
}

export interface CgroupLine {
  hierarchy: number;
  /** Empty for the v2 line ("0::/path"); "name=systemd" for the named v1 hierarchy. */
  controllers: string[];
  path: string;
}

/** Parses /proc/PID/cgroup: "hierarchy-ID:controller-list:cgroup-path" per line. */
export function parseProcCgroup(text: string): CgroupLine[] {
  const out: CgroupLine[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const a = line.indexOf(':');
    const b = line.indexOf(':', a + 1);
    if (a < 0 || b < 0) continue;
    const hierarchy = Number(line.slice(0, a));
    if (!Number.isInteger(hierarchy)) continue;
    const controllers = line.slice(a + 1, b);
    out.push({ hierarchy, controllers: controllers ? controllers.split(',') : [], path: line.slice(b + 1) });
  }
  return out;
}

// A pod segment: "pod<uid>" (cgroupfs) or "...-pod<uid>.slice" (systemd). A UID is 36 chars with dashes
// (underscores in systemd names, where "-" means nesting), or a static pod's 32-hex config hash.
const UID = '[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}';
const POD_SEGMENT = new RegExp(`^(?:(.*)-)?pod(${UID})(?:\\.slice)?$`, 'i');
// A container segment: a bare 64-hex id (cgroupfs; docker's /docker/<id>), or a runtime's systemd scope.
const CONTAINER_SEGMENT = /^(?:(cri-containerd|crio|docker|libpod)-)?([0-9a-f]{64})(?:\.scope)?$/i;

const RUNTIMES: Record<string, ContainerRuntime> = { 'cri-containerd': 'containerd', crio: 'crio', docker: 'docker', libpod: 'podman' };

function qosOf(segments: string[], podIndex: number, prefix: string | undefined): QosClass {
  // systemd: the pod slice's own name carries the class (kubepods-burstable-pod...); cgroupfs: the parent.
  const text = `${prefix ?? ''}/${podIndex > 0 ? segments[podIndex - 1] : ''}`.toLowerCase();
  if (/(^|[-/])burstable($|[-./])/.test(text)) return 'burstable';
  if (/(^|[-/])besteffort($|[-./])/.test(text)) return 'besteffort';
  return 'guaranteed';
}

/** What one cgroup path says, or null when it names neither a pod nor a container. */
export function containerFromCgroupPath(path: string): CgroupContainer | null {
  const segments = path.split('/').filter((s) => s && s !== '.' && s !== '..');
  // The innermost pod wins (a kubelet nested in a docker container has the outer container's id above).
  for (let i = segments.length - 1; i >= 0; i--) {
    const m = POD_SEGMENT.exec(segments[i]);
    if (!m) continue;
    const podUid = m[2].toLowerCase().replace(/_/g, '-');
    const c = i + 1 < segments.length ? CONTAINER_SEGMENT.exec(segments[i + 1]) : null;
    return {
      containerId: c ? c[2].toLowerCase() : null,
      podUid,
      runtime: c?.[1] ? RUNTIMES[c[1].toLowerCase()] : null,
      qos: qosOf(segments, i, m[1]),
      path,
    };
  }
  // No pod: a plain container (docker run, podman), innermost first.
  for (let i = segments.length - 1; i >= 0; i--) {
    const c = CONTAINER_SEGMENT.exec(segments[i]);
    if (!c) continue;
    // A bare 64-hex segment names a container only under a runtime's directory (docker's /docker/<id>);
    // elsewhere a hex name is too weak a sign.
    if (!c[1] && !(i > 0 && /^(docker|containerd|crio|libpod)$/i.test(segments[i - 1]))) continue;
    return { containerId: c[2].toLowerCase(), podUid: null, runtime: c[1] ? RUNTIMES[c[1].toLowerCase()] : runtimeFromDir(segments[i - 1]), qos: null, path };
  }
  return null;
}

function runtimeFromDir(dir: string): ContainerRuntime {
  const d = dir.toLowerCase();
  return d === 'docker' ? 'docker' : d === 'crio' ? 'crio' : d === 'libpod' ? 'podman' : d === 'containerd' ? 'containerd' : null;
}

/**
 * The container of a process from its /proc/PID/cgroup text. Hybrid hosts list v1 hierarchies and the v2 line
 * side by side: a line naming a pod and a container beats one naming only a pod, which beats one naming only
 * a container; on a tie the v2 line, then the named systemd hierarchy, then the rest in file order.
 */
export function containerFromProcCgroup(text: string): CgroupContainer | null {
  const lines = parseProcCgroup(text);
  const rank = (l: CgroupLine) => (l.hierarchy === 0 ? 0 : l.controllers.includes('name=systemd') ? 1 : 2);
  let best: { c: CgroupContainer; score: number } | null = null;
  for (const line of [...lines].sort((a, b) => rank(a) - rank(b))) {
    const c = containerFromCgroupPath(line.path);
    if (!c) continue;
    const score = (c.podUid ? 2 : 0) + (c.containerId ? 1 : 0);
    if (!best || score > best.score) best = { c, score };
    if (score === 3) break;
  }
  return best?.c ?? null;
}

/** Reads /proc/PID/cgroup; null when the process is gone or in no container. */
export function containerOfPid(pid: number, procRoot = '/proc'): CgroupContainer | null {
  let text: string;
  try {
    text = readFileSync(`${procRoot}/${pid}/cgroup`, 'utf8');
  } catch {
    return null;
  }
  return containerFromProcCgroup(text);
}

/** "containerd://<id>", "cri-o://<id>", "docker://<id>" -> "<id>" (lower case); null for an empty status. */
export function containerIdFromStatus(containerID: string | undefined | null): string | null {
  if (!containerID) return null;
  const i = containerID.indexOf('://');
  const id = (i >= 0 ? containerID.slice(i + 3) : containerID).trim().toLowerCase();
  return id || null;
}
