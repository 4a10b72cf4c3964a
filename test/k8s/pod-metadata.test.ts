// Pod metadata through @kubernetes/client-node's ListWatch against a real HTTP server speaking the Kubernetes API's
// list and watch of pods: the field selector restricts it to this node, ADDED/MODIFIED/DELETED keep the cache, and
// a real process in a real kubepods cgroup resolves to its pod's name, namespace, labels, owner and container.
import t from 'tap';
import { KubeConfig } from '@kubernetes/client-node';
import { PodIndex, PodMetadataProvider, podMetadataFromEnvironment } from '../../agent/src/k8s/pod-metadata.ts';
import { KubeApiServer, type PodObject } from './api-server.ts';
import { cannotMakeCgroup, cgroupMounts, makePodCgroup, type PodCgroup } from './cgroup-fixture.ts';

const NODE = 'node-a';

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function kubeConfigFor(url: string): KubeConfig {
  const kc = new KubeConfig();
  // Plain HTTP needs skipTLSVerify in client-node; the bearer token is what a service account would send.
  kc.loadFromClusterAndUser({ name: 'test', server: url, skipTLSVerify: true }, { name: 'agent', token: 'sa-token' });
  return kc;
}

function pod(name: string, uid: string, opts: { node?: string; containerId?: string; labels?: Record<string, string>; owner?: { kind: string; name: string }; annotations?: Record<string, string> } = {}): PodObject {
  return {
    metadata: {
      name, namespace: 'shop', uid, labels: opts.labels ?? {}, annotations: opts.annotations,
      ownerReferences: opts.owner ? [{ apiVersion: 'apps/v1', kind: opts.owner.kind, name: opts.owner.name, uid: '00000000-0000-4000-8000-000000000001', controller: true }] : undefined,
    },
    spec: { nodeName: opts.node ?? NODE, containers: [{ name: 'istio-proxy', image: 'proxy' }, { name: 'app', image: 'shop:1' }] },
    status: {
      phase: 'Running',
      containerStatuses: opts.containerId ? [
        { name: 'istio-proxy', containerID: `containerd://${'e'.repeat(64)}`, ready: true, restartCount: 0, image: 'proxy', imageID: 'x' },
        { name: 'app', containerID: `containerd://${opts.containerId}`, ready: true, restartCount: 0, image: 'shop:1', imageID: 'y' },
      ] : [],
    },
  };
}

const v2 = cgroupMounts().find((m) => m.version === 2);
const why = cannotMakeCgroup(v2);

t.test('list+watch of this node\'s pods through client-node, resolving a real process by pid', { skip: why ? `a real kubepods cgroup is needed: ${why}` : false }, async (t) => {
  const api = new KubeApiServer();
  const url = await api.start();
  t.teardown(() => api.close());
  const pc: PodCgroup = await makePodCgroup(v2!, 'systemd', 'burstable');
  t.teardown(() => pc.cleanup());

  const web = pod('web-7d9f8b6c5d-x2kqp', pc.podUid, {
    containerId: pc.containerId, labels: { app: 'web', 'pod-template-hash': '7d9f8b6c5d', version: 'v1' },
    owner: { kind: 'ReplicaSet', name: 'web-7d9f8b6c5d' },
  });
  api.add(web);
  api.add(pod('elsewhere', '11111111-2222-4333-8444-555555555555', { node: 'node-b', containerId: 'b'.repeat(64) }));

  const logs: string[] = [];
  const provider = new PodMetadataProvider({ node: NODE, kubeConfig: kubeConfigFor(url), log: (m) => logs.push(m) });
  t.teardown(() => provider.stop());
  await provider.start();
  t.ok(await provider.ready(5000), 'the first list came in');

  const list = api.requests.find((r) => r.query.get('watch') === null);
  const watch = api.requests.find((r) => r.query.get('watch') === 'true');
  t.equal(list?.path, '/api/v1/pods', 'lists pods across namespaces');
  t.equal(list?.query.get('fieldSelector'), `spec.nodeName=${NODE}`, 'the list asks only for this node\'s pods');
  t.equal(watch?.query.get('fieldSelector'), `spec.nodeName=${NODE}`, 'the watch asks only for this node\'s pods');
  t.equal(watch?.query.get('resourceVersion'), '102', 'the watch resumes from the list\'s resourceVersion');
  t.equal(list?.authorization, 'Bearer sa-token', 'with the service account token');
  t.same(provider.index.pods().map((p) => p.name), ['web-7d9f8b6c5d-x2kqp'], 'only this node\'s pod is cached');

  const m = provider.lookup(pc.pid);
  t.equal(m?.containerId, pc.containerId, 'pid -> container id (cgroup)');
  t.equal(m?.podUid, pc.podUid, 'pid -> pod UID (cgroup)');
  t.equal(m?.pod?.name, 'web-7d9f8b6c5d-x2kqp', 'pid -> pod name (API)');
  t.equal(m?.pod?.namespace, 'shop', 'pid -> namespace');
  t.same(m?.pod?.labels, { app: 'web', 'pod-template-hash': '7d9f8b6c5d', version: 'v1' }, 'pid -> labels');
  t.same(m?.pod?.owner, { kind: 'ReplicaSet', name: 'web-7d9f8b6c5d' }, 'owner reference');
  t.same(m?.pod?.workload, { kind: 'Deployment', name: 'web' }, 'the Deployment behind the ReplicaSet');
  t.equal(m?.container, 'app', 'container name from status.containerStatuses[].containerID');
  t.equal(m?.qos, 'burstable');

  // MODIFIED
  api.modify({ ...web, metadata: { ...web.metadata, labels: { ...web.metadata.labels, version: 'v2' } } });
  await until('MODIFIED applied', () => provider.lookup(pc.pid)?.pod?.labels.version === 'v2');
  t.pass('MODIFIED updates the cached labels');
  t.ok(provider.counts.updated >= 1);

  // ADDED: a pod whose container runs a process the agent saw before the pod reached the cache.
  const pc2 = await makePodCgroup(v2!, 'systemd', 'besteffort');
  t.teardown(() => pc2.cleanup());
  const early = provider.lookup(pc2.pid);
  t.equal(early?.podUid, pc2.podUid, 'before ADDED: the pod UID is known from the cgroup');
  t.equal(early?.pod, null, 'before ADDED: no pod name yet');
  api.add(pod('worker-0', pc2.podUid, { containerId: pc2.containerId, labels: { app: 'worker' }, owner: { kind: 'StatefulSet', name: 'worker' } }));
  await until('ADDED applied', () => provider.lookup(pc2.pid)?.pod?.name === 'worker-0');
  const w = provider.lookup(pc2.pid)!;
  t.same([w.pod?.namespace, w.container, w.pod?.workload], ['shop', 'app', { kind: 'StatefulSet', name: 'worker' }], 'ADDED puts the pod in the cache');

  // A pod on another node never reaches this watch.
  api.add(pod('other-node', '99999999-2222-4333-8444-555555555555', { node: 'node-b' }));
  // A static pod: its cgroups carry the config hash, the mirror pod in the API another UID and the hash as annotation.
  const hash = '6f2c0b9e1d8a7c6b5e4d3c2b1a0f9e8d';
  api.add(pod('kube-proxy-node-a', 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee', { annotations: { 'kubernetes.io/config.mirror': hash } }));
  await until('static pod ADDED', () => provider.index.size === 3);
  t.equal(provider.index.resolve({ podUid: hash, containerId: null })?.pod.name, 'kube-proxy-node-a', 'static pod found by its config hash');
  t.notOk(provider.index.pods().some((p) => p.name === 'other-node'), 'a pod on another node is not delivered');

  // The API server ends the watch (as it does on its timeout): client-node watches again from the last version.
  const watchesBefore = api.requests.filter((r) => r.query.get('watch') === 'true').length;
  const rvBefore = api.resourceVersion;
  api.closeWatches();
  await until('re-watch', () => api.openWatches === 1 && api.requests.filter((r) => r.query.get('watch') === 'true').length === watchesBefore + 1);
  const rewatch = api.requests.filter((r) => r.query.get('watch') === 'true').at(-1)!;
  t.equal(rewatch.query.get('resourceVersion'), rvBefore, 'the new watch resumes from the last event seen');
  t.equal(rewatch.query.get('fieldSelector'), `spec.nodeName=${NODE}`, 'with the same field selector');

  // DELETED
  api.remove(pc2.podUid);
  await until('DELETED applied', () => provider.index.size === 2);
  t.equal(provider.index.resolve({ podUid: pc2.podUid, containerId: pc2.containerId }), null, 'DELETED removes the pod from the cache');
  t.equal(provider.lookup(pc2.pid)?.pod?.name, 'worker-0', 'a process still exiting keeps its pod\'s last known metadata');
  t.ok(provider.counts.deleted >= 1);
  t.same(logs, [], 'nothing went wrong');
});

t.test('the list fails: logged, retried, then synced', async (t) => {
  const api = new KubeApiServer();
  const url = await api.start();
  t.teardown(() => api.close());
  api.add(pod('a', '12345678-1234-4234-8234-123456789012'));
  api.failLists = 2;
  const logs: string[] = [];
  const provider = new PodMetadataProvider({ node: NODE, kubeConfig: kubeConfigFor(url), retryMs: 20, log: (m) => logs.push(m) });
  t.teardown(() => provider.stop());
  await provider.start();
  await until('relisted', () => provider.index.size === 1);
  t.equal(api.requests.filter((r) => r.query.get('watch') === null).length, 3, 'two failed lists, then one that worked');
  t.equal(logs.length, 2, 'each failure logged once');
  t.match(logs[0], /pod watch failed .*retrying/);
});

t.test('bounded caches', async (t) => {
  const index = new PodIndex(3);
  for (let i = 0; i < 5; i++) index.upsert(pod(`p${i}`, `0000000${i}-0000-4000-8000-000000000000`, { containerId: String(i).repeat(64) }) as never);
  t.equal(index.size, 3, 'at most maxPods pods');
  t.same(index.pods().map((p) => p.name), ['p2', 'p3', 'p4'], 'the least recently changed went first');
  t.equal(index.resolve({ containerId: '0'.repeat(64), podUid: null }), null, 'and its containers with it');
  t.equal(index.resolve({ containerId: '4'.repeat(64), podUid: null })?.pod.name, 'p4');

  const provider = new PodMetadataProvider({ node: NODE, maxPids: 2 });
  await provider.start();
  t.ok(await provider.ready(10), 'without an API server: ready at once');
  for (const pid of [1, process.pid, process.ppid ?? 1]) provider.lookup(pid);
  t.equal((provider as unknown as { pids: Map<number, unknown> }).pids.size, 2, 'at most maxPids pids');
});

t.test('where the agent runs decides the API server', async (t) => {
  const none = await podMetadataFromEnvironment(NODE, undefined, {});
  await none.start();
  t.ok(await none.ready(10), 'outside a cluster: cgroup-only, ready at once');
  const logs: string[] = [];
  const bad = await podMetadataFromEnvironment(NODE, (m) => logs.push(m), { GOROSCOPE_KUBECONFIG: '/nonexistent/kubeconfig' });
  await bad.start();
  t.match(logs[0] ?? '', /no Kubernetes API/, 'a kubeconfig that cannot be read is reported, not fatal');
});
