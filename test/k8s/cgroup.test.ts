// pid -> /proc/PID/cgroup -> container id -> pod UID: every dialect from kubelet/runtime-shaped paths (table), then a
// real kubepods hierarchy on this machine with a real process moved into it.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { containerFromCgroupPath, containerFromProcCgroup, containerIdFromStatus, containerOfPid, parseProcCgroup } from '../../agent/src/k8s/cgroup.ts';
import { cannotMakeCgroup, cgroupMounts, makePodCgroup } from './cgroup-fixture.ts';

const UID = '8a3f1c2e-5b7d-4e9f-a1b2-c3d4e5f60718';
const UIDU = UID.replace(/-/g, '_');
const ID = '4f1d9c6ab1e84b3c9a0e2f7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c6b5a493';
const STATIC = '6f2c0b9e1d8a7c6b5e4d3c2b1a0f9e8d'; // a static pod: UID = the manifest's config hash

type Want = { containerId: string | null; podUid: string | null; runtime: string | null; qos: string | null } | null;

const paths: Array<[string, string, Want]> = [
  // cgroup v2 + systemd driver (the default of kubeadm since 1.22)
  ['v2 systemd containerd burstable', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UIDU}.slice/cri-containerd-${ID}.scope`,
    { containerId: ID, podUid: UID, runtime: 'containerd', qos: 'burstable' }],
  ['v2 systemd containerd besteffort', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UIDU}.slice/cri-containerd-${ID}.scope`,
    { containerId: ID, podUid: UID, runtime: 'containerd', qos: 'besteffort' }],
  ['v2 systemd containerd guaranteed', `/kubepods.slice/kubepods-pod${UIDU}.slice/cri-containerd-${ID}.scope`,
    { containerId: ID, podUid: UID, runtime: 'containerd', qos: 'guaranteed' }],
  ['v2 systemd CRI-O burstable', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UIDU}.slice/crio-${ID}.scope`,
    { containerId: ID, podUid: UID, runtime: 'crio', qos: 'burstable' }],
  ['v2 systemd CRI-O guaranteed', `/kubepods.slice/kubepods-pod${UIDU}.slice/crio-${ID}.scope`,
    { containerId: ID, podUid: UID, runtime: 'crio', qos: 'guaranteed' }],
  ['v2 systemd CRI-O conmon (not the container)', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UIDU}.slice/crio-conmon-${ID}.scope`,
    { containerId: null, podUid: UID, runtime: null, qos: 'burstable' }],
  ['v2 systemd docker (cri-dockerd)', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UIDU}.slice/docker-${ID}.scope`,
    { containerId: ID, podUid: UID, runtime: 'docker', qos: 'besteffort' }],
  // cgroupfs driver (k3s, older kubeadm, most v1 nodes)
  ['cgroupfs containerd burstable', `/kubepods/burstable/pod${UID}/${ID}`, { containerId: ID, podUid: UID, runtime: null, qos: 'burstable' }],
  ['cgroupfs containerd besteffort', `/kubepods/besteffort/pod${UID}/${ID}`, { containerId: ID, podUid: UID, runtime: null, qos: 'besteffort' }],
  ['cgroupfs guaranteed', `/kubepods/pod${UID}/${ID}`, { containerId: ID, podUid: UID, runtime: null, qos: 'guaranteed' }],
  ['cgroupfs CRI-O', `/kubepods/burstable/pod${UID}/crio-${ID}`, { containerId: ID, podUid: UID, runtime: 'crio', qos: 'burstable' }],
  // static pods: the cgroup carries the config hash (32 hex), the mirror pod in the API has another UID
  ['static pod, systemd', `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${STATIC}.slice/cri-containerd-${ID}.scope`,
    { containerId: ID, podUid: STATIC, runtime: 'containerd', qos: 'besteffort' }],
  ['static pod, cgroupfs guaranteed', `/kubepods/pod${STATIC}/${ID}`, { containerId: ID, podUid: STATIC, runtime: null, qos: 'guaranteed' }],
  // kubelets with their own cgroup root, cgroup namespaces, processes in a sub-cgroup of the container
  ['kind (kubelet.slice root)', `/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/kubelet-kubepods-burstable-pod${UIDU}.slice/cri-containerd-${ID}.scope`,
    { containerId: ID, podUid: UID, runtime: 'containerd', qos: 'burstable' }],
  ['seen through a cgroup namespace', `/../../kubepods-besteffort-pod${UIDU}.slice/cri-containerd-${ID}.scope`,
    { containerId: ID, podUid: UID, runtime: 'containerd', qos: 'besteffort' }],
  ['sub-cgroup inside the container', `/kubepods.slice/kubepods-pod${UIDU}.slice/cri-containerd-${ID}.scope/init.scope`,
    { containerId: ID, podUid: UID, runtime: 'containerd', qos: 'guaranteed' }],
  ['kubelet inside a docker container', `/docker/${'1'.repeat(64)}/kubepods/burstable/pod${UID}/${ID}`,
    { containerId: ID, podUid: UID, runtime: null, qos: 'burstable' }],
  ['pod cgroup itself (no container)', `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UIDU}.slice`,
    { containerId: null, podUid: UID, runtime: null, qos: 'burstable' }],
  ['upper-case hex is normalized', `/kubepods/pod${UID.toUpperCase()}/${ID.toUpperCase()}`,
    { containerId: ID, podUid: UID, runtime: null, qos: 'guaranteed' }],
  // containers outside Kubernetes
  ['docker cgroupfs', `/docker/${ID}`, { containerId: ID, podUid: null, runtime: 'docker', qos: null }],
  ['docker systemd', `/system.slice/docker-${ID}.scope`, { containerId: ID, podUid: null, runtime: 'docker', qos: null }],
  ['podman rootless', `/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-${ID}.scope`, { containerId: ID, podUid: null, runtime: 'podman', qos: null }],
  // not containers
  ['host service', '/system.slice/sshd.service', null],
  ['init', '/init.scope', null],
  ['root', '/', null],
  ['bare hex outside a runtime dir', `/system.slice/${ID}`, null],
  ['kubepods without a pod', '/kubepods.slice/kubepods-burstable.slice', null],
];

t.test('cgroup paths of every dialect', async (t) => {
  for (const [name, path, want] of paths) {
    const got = containerFromCgroupPath(path);
    t.same(got && { containerId: got.containerId, podUid: got.podUid, runtime: got.runtime, qos: got.qos }, want, name);
  }
});

t.test('whole /proc/PID/cgroup files: v1, v2, hybrid', async (t) => {
  const v1cgroupfs = [
    `12:pids:/kubepods/besteffort/pod${UID}/${ID}`,
    `11:memory:/kubepods/besteffort/pod${UID}/${ID}`,
    `10:cpu,cpuacct:/kubepods/besteffort/pod${UID}/${ID}`,
    `1:name=systemd:/kubepods/besteffort/pod${UID}/${ID}`,
    '',
  ].join('\n');
  const v1systemd = [
    `11:memory:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UIDU}.slice/crio-${ID}.scope`,
    `4:devices:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UIDU}.slice/crio-${ID}.scope`,
    `1:name=systemd:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod${UIDU}.slice/crio-${ID}.scope`,
    '',
  ].join('\n');
  const v2 = `0::/kubepods.slice/kubepods-pod${UIDU}.slice/cri-containerd-${ID}.scope\n`;
  // hybrid: v1 controllers elsewhere (a sandbox's memory cgroup), the pod only in the unified line
  const hybrid = ['9:name=systemd:/', '4:memory:/process_api/5574a68ccdc8552847526f1d81de0e11', '1:cpu:/',
    `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UIDU}.slice/docker-${ID}.scope`, ''].join('\n');
  // a line that names only a container loses to one naming pod and container
  const mixed = [`5:devices:/docker/${'2'.repeat(64)}`, `0::/kubepods/pod${UID}/${ID}`, ''].join('\n');

  t.same(parseProcCgroup(v1cgroupfs)[2], { hierarchy: 10, controllers: ['cpu', 'cpuacct'], path: `/kubepods/besteffort/pod${UID}/${ID}` });
  t.same(parseProcCgroup(v2), [{ hierarchy: 0, controllers: [], path: `/kubepods.slice/kubepods-pod${UIDU}.slice/cri-containerd-${ID}.scope` }]);
  const pick = (text: string) => {
    const c = containerFromProcCgroup(text);
    return c && { containerId: c.containerId, podUid: c.podUid, runtime: c.runtime, qos: c.qos };
  };
  t.same(pick(v1cgroupfs), { containerId: ID, podUid: UID, runtime: null, qos: 'besteffort' }, 'v1 cgroupfs');
  t.same(pick(v1systemd), { containerId: ID, podUid: UID, runtime: 'crio', qos: 'burstable' }, 'v1 systemd');
  t.same(pick(v2), { containerId: ID, podUid: UID, runtime: 'containerd', qos: 'guaranteed' }, 'v2');
  t.same(pick(hybrid), { containerId: ID, podUid: UID, runtime: 'docker', qos: 'besteffort' }, 'hybrid');
  t.same(pick(mixed), { containerId: ID, podUid: UID, runtime: null, qos: 'guaranteed' }, 'pod beats a bare container');
  t.equal(containerFromProcCgroup('0::/user.slice/user-0.slice/session-3.scope\n'), null, 'host process');
  t.equal(containerFromProcCgroup(''), null, 'empty file');
  t.equal(containerOfPid(2 ** 22 + 12345), null, 'a pid that does not exist');
});

t.test('container ids in pod status', async (t) => {
  t.equal(containerIdFromStatus(`containerd://${ID}`), ID);
  t.equal(containerIdFromStatus(`cri-o://${ID}`), ID);
  t.equal(containerIdFromStatus(`docker://${ID.toUpperCase()}`), ID);
  t.equal(containerIdFromStatus(''), null);
  t.equal(containerIdFromStatus(undefined), null);
});

const mounts = cgroupMounts();
const v2 = mounts.find((m) => m.version === 2);
const v2Why = cannotMakeCgroup(v2);

t.test('a real cgroup v2 kubepods hierarchy (systemd driver) resolves a real process', { skip: v2Why ? `cgroup v2: ${v2Why}` : false }, async (t) => {
  for (const qos of ['burstable', 'besteffort'] as const) {
    const pc = await makePodCgroup(v2!, 'systemd', qos);
    t.teardown(() => pc.cleanup());
    const text = readFileSync(`/proc/${pc.pid}/cgroup`, 'utf8');
    t.match(text, `0::${pc.relPath}`, `${qos}: the kernel reports the process in the container's cgroup (${pc.relPath})`);
    const c = containerOfPid(pc.pid);
    t.equal(c?.podUid, pc.podUid, `${qos}: pid ${pc.pid} -> pod UID (underscores turned back into dashes)`);
    t.equal(c?.containerId, pc.containerId, `${qos}: pid -> container id`);
    t.equal(c?.runtime, 'containerd');
    t.equal(c?.qos, qos);
    await pc.cleanup();
    t.notOk(containerOfPid(pc.pid), `${qos}: gone after the process exits`);
  }
});

const v1 = mounts.find((m) => m.version === 1 && /(^|,)pids(,|$)/.test(m.options));
const v1Why = cannotMakeCgroup(v1);
t.test('a real cgroup v1 kubepods hierarchy (cgroupfs driver, pids controller)', { skip: v1Why ? `cgroup v1: ${v1Why}` : false }, async (t) => {
  const pc = await makePodCgroup(v1!, 'cgroupfs', 'besteffort');
  t.teardown(() => pc.cleanup());
  t.match(readFileSync(`/proc/${pc.pid}/cgroup`, 'utf8'), `:pids:${pc.relPath}`, 'the kernel reports the v1 pids line');
  const c = containerOfPid(pc.pid);
  t.equal(c?.podUid, pc.podUid);
  t.equal(c?.containerId, pc.containerId);
  t.equal(c?.qos, 'besteffort');
});
