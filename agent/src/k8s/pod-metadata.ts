// Pod metadata by pid: the pid's cgroup names its container and pod UID (cgroup.ts); the API server names
// the pod, its namespace, labels, owner and the container, through one list+watch of the pods on this node
// (fieldSelector spec.nodeName=NODE), kept by @kubernetes/client-node's ListWatch.
//
// Memory is bounded: the index holds at most maxPods pods (a node runs at most the kubelet's maxPods, 110 by
// default), a slim copy of what lookups need, never whole Pod objects; the pid cache holds at most maxPids
// entries, least recently used out first.
//
// @kubernetes/client-node (about 800 modules, 20 MiB of source held by V8) is imported only when there is an API
// server to ask: an agent outside a cluster never loads it.
import type { KubeConfig, ListWatch, V1Pod } from '@kubernetes/client-node';
import { containerIdFromStatus, containerOfPid, type CgroupContainer, type ContainerRuntime, type QosClass } from './cgroup.ts';

export interface OwnerRef {
  kind: string;
  name: string;
}

export interface PodInfo {
  uid: string;
  name: string;
  namespace: string;
  node: string | null;
  labels: Record<string, string>;
  /** The controller owner reference (or the first owner). */
  owner: OwnerRef | null;
  /** The workload a person would name: the Deployment behind a ReplicaSet, else the owner, else the pod. */
  workload: OwnerRef;
  /** container id -> container name, from status.{initContainerStatuses,containerStatuses,ephemeralContainerStatuses}. */
  containers: Map<string, string>;
  /** A static pod's config hash (annotation kubernetes.io/config.mirror): the UID its cgroups carry. */
  mirrorOf: string | null;
}

/** What the agent knows of one process's container and pod. */
export interface PodMetadata {
  pid: number;
  containerId: string | null;
  runtime: ContainerRuntime;
  qos: QosClass | null;
  /** From the cgroup, even when the API server does not (yet) know the pod. */
  podUid: string | null;
  pod: PodInfo | null;
  /** The container's name in the pod spec, from the pod's status. */
  container: string | null;
}

/** What the record builder asks: by pid (and start time, so a reused pid is not mistaken for the old one). */
export interface ProcessMetadataSource {
  lookup(pid: number, startTime?: number): PodMetadata | null;
  /** The process exited and its last record is built: what is cached for it can go. */
  forget?(pid: number): void;
}

const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror';

export function podInfoFrom(pod: V1Pod): PodInfo | null {
  const md = pod.metadata;
  if (!md?.uid || !md.name) return null;
  const labels: Record<string, string> = { ...(md.labels ?? {}) };
  const refs = md.ownerReferences ?? [];
  const ref = refs.find((r) => r.controller) ?? refs[0];
  const owner = ref ? { kind: ref.kind, name: ref.name } : null;
  let workload: OwnerRef = owner ?? { kind: 'Pod', name: md.name };
  // A Deployment names its ReplicaSets <deployment>-<pod-template-hash>, and the hash is on the pod.
  const hash = labels['pod-template-hash'];
  if (owner?.kind === 'ReplicaSet' && hash && owner.name.endsWith(`-${hash}`)) {
    workload = { kind: 'Deployment', name: owner.name.slice(0, -hash.length - 1) };
  }
  const containers = new Map<string, string>();
  const st = pod.status;
  for (const s of [...(st?.initContainerStatuses ?? []), ...(st?.containerStatuses ?? []), ...(st?.ephemeralContainerStatuses ?? [])]) {
    const id = containerIdFromStatus(s.containerID);
    if (id) containers.set(id, s.name);
    // A restarted container's previous instance may still have a process exiting.
    const last = containerIdFromStatus(s.lastState?.terminated?.containerID);
    if (last) containers.set(last, s.name);
  }
  return {
    uid: md.uid,
    name: md.name,
    namespace: md.namespace ?? 'default',
    node: pod.spec?.nodeName ?? null,
    labels,
    owner,
    workload,
    containers,
    mirrorOf: md.annotations?.[MIRROR_ANNOTATION] ?? null,
  };
}

/** The pods of this node, by UID, by static-pod config hash and by container id; at most maxPods. */
export class PodIndex {
  private readonly byUid = new Map<string, PodInfo>();
  private readonly byMirror = new Map<string, string>();
  private readonly byContainer = new Map<string, string>();

  constructor(readonly maxPods = 1024) {}

  get size(): number {
    return this.byUid.size;
  }

  upsert(pod: V1Pod): void {
    const info = podInfoFrom(pod);
    if (!info) return;
    this.removeUid(info.uid);
    this.byUid.set(info.uid, info);
    if (info.mirrorOf) this.byMirror.set(info.mirrorOf, info.uid);
    for (const id of info.containers.keys()) this.byContainer.set(id, info.uid);
    // Past the bound the least recently changed pod goes (Map keeps insertion order; upsert re-inserts).
    while (this.byUid.size > this.maxPods) this.removeUid(this.byUid.keys().next().value as string);
  }

  remove(pod: V1Pod): void {
    if (pod.metadata?.uid) this.removeUid(pod.metadata.uid);
  }

  private removeUid(uid: string): void {
    const old = this.byUid.get(uid);
    if (!old) return;
    this.byUid.delete(uid);
    if (old.mirrorOf && this.byMirror.get(old.mirrorOf) === uid) this.byMirror.delete(old.mirrorOf);
    for (const id of old.containers.keys()) if (this.byContainer.get(id) === uid) this.byContainer.delete(id);
  }

  /** The pod of a container: by its id in a status, else by the cgroup's pod UID (or a static pod's hash). */
  resolve(c: Pick<CgroupContainer, 'containerId' | 'podUid'>): { pod: PodInfo; container: string | null } | null {
    const byId = c.containerId ? this.byContainer.get(c.containerId) : undefined;
    const uid = byId ?? (c.podUid ? (this.byUid.has(c.podUid) ? c.podUid : this.byMirror.get(c.podUid.replace(/-/g, ''))) : undefined);
    const pod = uid ? this.byUid.get(uid) : undefined;
    if (!pod) return null;
    return { pod, container: c.containerId ? (pod.containers.get(c.containerId) ?? null) : null };
  }

  pods(): PodInfo[] {
    return [...this.byUid.values()];
  }
}

export interface PodMetadataOptions {
  /** This node's name: the watch asks only for pods with spec.nodeName=node. */
  node: string;
  /** The API server; none = cgroup-only metadata (container id and pod UID, no names). */
  kubeConfig?: KubeConfig;
  procRoot?: string;
  maxPods?: number;
  maxPids?: number;
  /** First retry delay after the list or watch fails; doubles to 30 s. */
  retryMs?: number;
  log?: (msg: string) => void;
  /** Told when the list or watch fails (the error) and when it connects again (null); logs nothing itself then. */
  onStatus?: (error: unknown) => void;
}

interface PidEntry {
  startTime: number | undefined;
  cgroup: CgroupContainer | null;
  last: PodMetadata | null;
}

export class PodMetadataProvider implements ProcessMetadataSource {
  readonly index: PodIndex;
  private readonly pids = new Map<number, PidEntry>();
  private readonly maxPids: number;
  private informer: ListWatch<V1Pod> | null = null;
  private stopped = false;
  private retryTimer: NodeJS.Timeout | null = null;
  private retryMs: number;
  private synced = false;
  private readonly syncWaiters: Array<() => void> = [];
  /** Events applied, by type; for tests and metrics. */
  readonly counts = { list: 0, added: 0, updated: 0, deleted: 0, errors: 0 };

  constructor(private readonly opts: PodMetadataOptions) {
    this.index = new PodIndex(opts.maxPods ?? 1024);
    this.maxPids = opts.maxPids ?? 8192;
    this.retryMs = opts.retryMs ?? 1000;
  }

  /** False when there is no API server to ask (cgroup-only metadata). */
  get hasApiServer(): boolean {
    return this.opts.kubeConfig !== undefined;
  }

  get fieldSelector(): string {
    return `spec.nodeName=${this.opts.node}`;
  }

  /** Starts the list+watch (when there is an API server); resolves once the first list is in or has failed. */
  async start(): Promise<void> {
    const kc = this.opts.kubeConfig;
    if (!kc) return this.markSynced();
    const { CoreV1Api, ListWatch, Watch } = await import('@kubernetes/client-node');
    if (this.stopped) return;
    const api = kc.makeApiClient(CoreV1Api);
    const fieldSelector = this.fieldSelector;
    const lw = new ListWatch<V1Pod>('/api/v1/pods', new Watch(kc), async () => {
      const list = await api.listPodForAllNamespaces({ fieldSelector });
      this.counts.list++;
      this.opts.onStatus?.(null);
      // ListWatch applies the list (gone pods as deletes, the rest as adds/updates) as soon as this resolves,
      // within the same run of microtasks; the first list counts as synced after that.
      setImmediate(() => this.markSynced());
      return list;
    }, false, undefined, fieldSelector);
    lw.on('add', (p) => { this.counts.added++; this.index.upsert(p); });
    lw.on('update', (p) => { this.counts.updated++; this.index.upsert(p); });
    lw.on('delete', (p) => { this.counts.deleted++; this.index.remove(p); });
    lw.on('connect', () => { this.retryMs = this.opts.retryMs ?? 1000; });
    lw.on('error', (err) => {
      this.counts.errors++;
      if (this.stopped) return;
      if (this.opts.onStatus) this.opts.onStatus(new Error(`pod watch failed: ${describe(err)}`));
      else this.opts.log?.(`pod watch failed (${describe(err)}); retrying in ${this.retryMs} ms`);
      this.markSynced(); // lookups go on with what is known (and the cgroup's container id)
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        if (!this.stopped) void lw.start();
      }, this.retryMs);
      this.retryTimer.unref?.();
      this.retryMs = Math.min(this.retryMs * 2, 30_000);
    });
    this.informer = lw;
    await lw.start();
  }

  private markSynced(): void {
    if (this.synced) return;
    this.synced = true;
    for (const w of this.syncWaiters.splice(0)) w();
  }

  /** Waits (at most timeoutMs) for the first list; true if it came. */
  ready(timeoutMs = 5000): Promise<boolean> {
    if (this.synced) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.syncWaiters.push(() => { clearTimeout(t); resolve(true); });
    });
  }

  lookup(pid: number, startTime?: number): PodMetadata | null {
    let e = this.pids.get(pid);
    if (e && startTime !== undefined && e.startTime !== undefined && e.startTime !== startTime) e = undefined;
    if (!e) {
      e = { startTime, cgroup: containerOfPid(pid, this.opts.procRoot), last: null };
    } else {
      if (e.startTime === undefined) e.startTime = startTime;
      this.pids.delete(pid); // re-inserted below: most recently used last
    }
    this.pids.set(pid, e);
    while (this.pids.size > this.maxPids) this.pids.delete(this.pids.keys().next().value as number);
    if (!e.cgroup) return null;
    const hit = this.index.resolve(e.cgroup);
    if (!hit && e.last?.pod) return e.last; // the pod is gone (deleted before its last process exited)
    const m: PodMetadata = {
      pid,
      containerId: e.cgroup.containerId,
      runtime: e.cgroup.runtime,
      qos: e.cgroup.qos,
      podUid: hit?.pod.uid ?? e.cgroup.podUid,
      pod: hit?.pod ?? null,
      container: hit?.container ?? null,
    };
    e.last = m;
    return m;
  }

  /** Drops what is cached for a pid (its process exited). */
  forget(pid: number): void {
    this.pids.delete(pid);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.informer?.stop();
  }
}

function describe(err: unknown): string {
  if (!err) return 'watch closed';
  const e = err as { code?: number; statusCode?: number; message?: string };
  return `${e.code ?? e.statusCode ?? ''} ${e.message ?? String(err)}`.trim().split('\n')[0].slice(0, 200);
}

/**
 * The provider for where the agent runs: in a pod (KUBERNETES_SERVICE_HOST and the service account), or with a
 * kubeconfig named by GOROSCOPE_KUBECONFIG; elsewhere cgroup-only (container ids, pod UIDs, no names).
 */
export async function podMetadataFromEnvironment(
  node: string,
  log?: (m: string) => void,
  env: NodeJS.ProcessEnv = process.env,
  onStatus?: (error: unknown) => void,
): Promise<PodMetadataProvider> {
  let kubeConfig: KubeConfig | undefined;
  try {
    if (env.GOROSCOPE_KUBECONFIG) {
      const { KubeConfig } = await import('@kubernetes/client-node');
      kubeConfig = new KubeConfig();
      kubeConfig.loadFromFile(env.GOROSCOPE_KUBECONFIG);
    } else if (env.KUBERNETES_SERVICE_HOST) {
      const { KubeConfig } = await import('@kubernetes/client-node');
      kubeConfig = new KubeConfig();
      kubeConfig.loadFromCluster();
    }
  } catch (e) {
    if (onStatus) onStatus(e);
    else log?.(`no Kubernetes API (${(e as Error).message}); pod names unknown, container ids from cgroups only`);
    kubeConfig = undefined;
  }
  return new PodMetadataProvider({ node, kubeConfig, log, onStatus });
}
