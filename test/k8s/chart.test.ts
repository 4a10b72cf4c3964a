// The Helm chart, rendered by Go's text/template (helm's engine; deploy/tools/helm-render) with several value sets,
// every object validated against the Kubernetes (and Prometheus Operator) schemas and checked for unknown
// fields; the agent's privileges, mounts and env; the args against the real CLI; the plain manifests = the chart.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import { DaemonSet } from 'kubernetes-models/apps/v1/DaemonSet';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { ClusterRole } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole';
import { ClusterRoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { buildCli } from '../../agent/src/cli.ts';
import { defineCollectorOptions, collectorOptionsFrom } from '../../collector/src/cli.ts';
import { deployDir, manifestsFile, manifestsText, parseObjects, renderChart, renderChartText, type K8sObject } from '../../deploy/tools/render.ts';

const goMissing = spawnSync('go', ['version']).error ? 'no `go` on PATH: the chart renderer is a Go program (scripts/setup.sh installs Go)' : false;

// kind -> model class and the type name kubernetes-models declares for it (for the unknown-field check)
const MODELS: Record<string, { cls: new (o: never) => { validate(): void }; module: string; type: string }> = {
  'v1/Namespace': { cls: Namespace as never, module: 'kubernetes-models/v1/Namespace', type: 'INamespace' },
  'v1/Secret': { cls: Secret as never, module: 'kubernetes-models/v1/Secret', type: 'ISecret' },
  'v1/Service': { cls: Service as never, module: 'kubernetes-models/v1/Service', type: 'IService' },
  'v1/ServiceAccount': { cls: ServiceAccount as never, module: 'kubernetes-models/v1/ServiceAccount', type: 'IServiceAccount' },
  'apps/v1/DaemonSet': { cls: DaemonSet as never, module: 'kubernetes-models/apps/v1/DaemonSet', type: 'IDaemonSet' },
  'apps/v1/StatefulSet': { cls: StatefulSet as never, module: 'kubernetes-models/apps/v1/StatefulSet', type: 'IStatefulSet' },
  'rbac.authorization.k8s.io/v1/ClusterRole': { cls: ClusterRole as never, module: 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRole', type: 'IClusterRole' },
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': { cls: ClusterRoleBinding as never, module: 'kubernetes-models/rbac.authorization.k8s.io/v1/ClusterRoleBinding', type: 'IClusterRoleBinding' },
  'monitoring.coreos.com/v1/ServiceMonitor': { cls: ServiceMonitor as never, module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor', type: 'IServiceMonitor' },
  'monitoring.coreos.com/v1/PrometheusRule': { cls: PrometheusRule as never, module: '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule', type: 'IPrometheusRule' },
};

const TOKENS = { tokens: { ingest: 'ingest-secret', api: 'api-secret' } };
const variants: Record<string, unknown> = {
  defaults: TOKENS,
  existingSecret: { tokens: { existingSecret: 'my-tokens' } },
  privileged: { ...TOKENS, agent: { privileged: true } },
  sysResource: { ...TOKENS, agent: { extraCapabilities: ['SYS_RESOURCE'] } },
  everything: {
    ...TOKENS,
    agent: { spool: { type: 'emptyDir' }, full: true, sampleParks: '10%', priorityClassName: 'system-node-critical', podAnnotations: { a: 'b' }, extraEnv: [{ name: 'X', value: '1' }] },
    collector: { otlpEndpoint: 'http://tempo.monitoring:4318', retention: { maxBytes: '10000000000' }, syncFull: true, persistence: { storageClassName: 'fast' } },
    serviceMonitor: { enabled: true, labels: { release: 'kube-prometheus-stack' } },
    prometheusRule: { enabled: true },
    imagePullSecrets: [{ name: 'regcred' }],
  },
  tls: { ...TOKENS, tls: { secretName: 'goroscope-tls' }, serviceMonitor: { enabled: true } },
};

const keyOf = (o: K8sObject) => `${o.apiVersion}/${o.kind}`;
const find = (objs: K8sObject[], kind: string, name?: string) => objs.find((o) => o.kind === kind && (name === undefined || o.metadata.name === name)) as any;
const agentContainer = (objs: K8sObject[]) => find(objs, 'DaemonSet').spec.template.spec.containers[0];

t.test('the chart', { skip: goMissing }, async (t) => {
  const rendered: Record<string, K8sObject[]> = {};
  for (const [name, values] of Object.entries(variants)) rendered[name] = renderChart(values);

  t.test('every object of every variant validates against the Kubernetes schemas', async (t) => {
    for (const [name, objs] of Object.entries(rendered)) {
      for (const o of objs) {
        const m = MODELS[keyOf(o)];
        if (!m) { t.fail(`${name}: no schema for ${keyOf(o)}`); continue; }
        t.doesNotThrow(() => new m.cls(o as never).validate(), `${name}: ${o.kind} ${o.metadata.name}`);
      }
    }
    t.same(rendered.everything.map(keyOf).filter((k) => k.startsWith('monitoring')).sort(),
      ['monitoring.coreos.com/v1/PrometheusRule', 'monitoring.coreos.com/v1/ServiceMonitor'], 'ServiceMonitor and PrometheusRule when enabled');
    t.notOk(rendered.defaults.some((o) => o.apiVersion.startsWith('monitoring')), 'and not by default');
  });

  t.test('no unknown fields (the schemas allow them; an API server with strict validation does not)', async (t) => {
    // TypeScript's excess-property check on object literals against kubernetes-models' declared types.
    const dir = join(deployDir, 'tools', `.typecheck-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const imports = Object.values(MODELS).map((m) => `import type { ${m.type} } from '${m.module}';`);
    const lines: string[] = [];
    let i = 0;
    for (const objs of [...Object.values(rendered), parseObjects(manifestsText())]) {
      for (const o of objs) lines.push(`export const o${i++}: ${MODELS[keyOf(o)].type} = ${JSON.stringify(o)};`);
    }
    writeFileSync(join(dir, 'objects.ts'), [...imports, ...lines].join('\n'));
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, noEmit: true, skipLibCheck: true, module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', types: [] }, files: ['objects.ts'] }));
    const r = spawnSync(process.execPath, [join(deployDir, '..', 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { encoding: 'utf8' });
    t.equal(r.status, 0, `${i} objects type-check with no excess properties`);
    if (r.status !== 0) t.comment(r.stdout.slice(0, 4000));
  });

  t.test('tokens: required, or an existing Secret', async (t) => {
    t.throws(() => renderChartText({}), /set tokens.ingest \(or tokens.existingSecret\)/, 'no tokens and no existingSecret: refused');
    const secret = find(rendered.defaults, 'Secret');
    t.equal(Buffer.from(secret.data['ingest-token'], 'base64').toString(), 'ingest-secret');
    t.equal(Buffer.from(secret.data['api-token'], 'base64').toString(), 'api-secret');
    t.notOk(find(rendered.existingSecret, 'Secret'), 'existingSecret: the chart makes no Secret');
    const refs = JSON.stringify(rendered.existingSecret).match(/"secretKeyRef":\{[^}]*\}/g) ?? [];
    t.equal(refs.length, 3, 'agent ingest token, collector ingest and API tokens');
    t.ok(refs.every((r) => r.includes('"name":"my-tokens"')), 'all from the existing Secret');
  });

  t.test('the agent: host PID namespace, capabilities, not privileged by default', async (t) => {
    const ds = find(rendered.defaults, 'DaemonSet');
    const c = agentContainer(rendered.defaults);
    t.equal(ds.spec.template.spec.hostPID, true, 'hostPID');
    t.notOk(ds.spec.template.spec.hostNetwork, 'no host network');
    t.same(c.securityContext.capabilities, { drop: ['ALL'], add: ['BPF', 'PERFMON', 'SYS_PTRACE', 'SYS_ADMIN'] }, 'exactly BPF, PERFMON, SYS_PTRACE and SYS_ADMIN (uprobes need it since Linux 6.16)');
    t.equal(c.securityContext.privileged, false, 'not privileged');
    t.equal(c.securityContext.allowPrivilegeEscalation, false);
    t.equal(c.securityContext.readOnlyRootFilesystem, true, 'read-only root filesystem');
    t.equal(c.securityContext.runAsUser, 0, 'root (capabilities of a non-root user are not effective)');
    t.same(ds.spec.template.spec.tolerations, [{ operator: 'Exists' }], 'tolerates every taint');
    t.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.cpu && c.resources.limits.memory, 'requests and limits');

    t.same(agentContainer(rendered.sysResource).securityContext.capabilities.add, ['BPF', 'PERFMON', 'SYS_PTRACE', 'SYS_ADMIN', 'SYS_RESOURCE'], 'option: SYS_RESOURCE for memlock-accounted kernels');
    const p = agentContainer(rendered.privileged).securityContext;
    t.same([p.privileged, p.allowPrivilegeEscalation, p.capabilities], [true, true, undefined], 'option: privileged');
  });

  t.test('the agent: mounts and env', async (t) => {
    const ds = find(rendered.defaults, 'DaemonSet');
    const c = agentContainer(rendered.defaults);
    const vols = Object.fromEntries(ds.spec.template.spec.volumes.map((v: any) => [v.name, v]));
    const mounts = Object.fromEntries(c.volumeMounts.map((m: any) => [m.mountPath, { ro: !!m.readOnly, vol: vols[m.name] }]));
    t.notOk(Object.keys(mounts).some((p) => /^\/sys\/kernel\/(tracing|debug)/.test(p)), 'no tracefs or debugfs: the TCP programs find their tracepoints through BTF');
    t.same(mounts['/sys/fs/bpf'].vol.hostPath.path, '/sys/fs/bpf', 'bpffs');
    t.same(mounts['/sys/fs/cgroup'], { ro: true, vol: { name: 'cgroup', hostPath: { path: '/sys/fs/cgroup', type: 'Directory' } } }, 'cgroupfs read-only');
    t.same(mounts['/var/lib/goroscope/spool'], { ro: false, vol: { name: 'spool', hostPath: { path: '/var/lib/goroscope/spool', type: 'DirectoryOrCreate' } } }, 'spool: hostPath, writable');
    t.ok(mounts['/tmp']?.vol.emptyDir, '/tmp: emptyDir (the root filesystem is read-only)');
    t.notOk(Object.keys(mounts).some((p) => p.startsWith('/host') || p === '/proc'), 'no host /proc mount: with hostPID the container\'s /proc is the host\'s');
    const spoolEmpty = find(rendered.everything, 'DaemonSet').spec.template.spec.volumes.find((v: any) => v.name === 'spool');
    t.ok(spoolEmpty.emptyDir && !spoolEmpty.hostPath, 'option: spool on an emptyDir');

    const env = Object.fromEntries(c.env.map((e: any) => [e.name, e]));
    t.same(env.NODE_NAME.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } }, 'NODE_NAME from the Downward API');
    t.same(env.GOROSCOPE_INGEST_TOKEN.valueFrom, { secretKeyRef: { name: 'goroscope-tokens', key: 'ingest-token' } }, 'ingest token from the Secret');
  });

  t.test('the agent\'s args are the CLI\'s options and point at the collector Service', async (t) => {
    const c = agentContainer(rendered.everything);
    t.same(c.args.slice(0, 3), ['agent', '--collector', 'ws://goroscope-collector:7070']);
    const agentCmd = buildCli().commands.find((x) => x.name() === 'agent')!;
    const known = new Set(agentCmd.options.map((o) => o.long));
    for (const a of c.args.slice(1).filter((x: string) => x.startsWith('--'))) t.ok(known.has(a), `goroscope agent knows ${a}`);
    const svc = find(rendered.everything, 'Service', 'goroscope-collector');
    const url = new URL(c.args[2]);
    t.equal(url.hostname, svc.metadata.name, 'the collector URL names the collector Service');
    t.equal(Number(url.port), svc.spec.ports[0].port, 'and its port');
    t.equal(c.ports[0].containerPort, Number(c.args[c.args.indexOf('--metrics-listen') + 1].split(':')[1]), 'metrics port = --metrics-listen');
  });

  t.test('the collector: args parse, DB on the volume, non-root, OTLP endpoint from values', async (t) => {
    const sts = find(rendered.everything, 'StatefulSet');
    const c = sts.spec.template.spec.containers[0];
    t.equal(c.args[0], 'collector');
    const cmd = defineCollectorOptions(new Command('collector')).exitOverride();
    cmd.parse(c.args.slice(1), { from: 'user' });
    const o = collectorOptionsFrom(cmd.opts() as never, { GOROSCOPE_INGEST_TOKEN: 'i', GOROSCOPE_API_TOKEN: 'a' });
    t.equal(o.listen, '0.0.0.0:7070');
    t.equal(o.otlpEndpoint, 'http://tempo.monitoring:4318', 'OTLP endpoint from values');
    t.equal(o.retention?.maxBytes, 10_000_000_000);
    t.equal(o.synchronous, 'full');
    const dataMount = c.volumeMounts.find((m: any) => m.name === 'data');
    t.ok(o.db.startsWith(`${dataMount.mountPath}/`), `--db ${o.db} is on the data volume`);
    t.equal(sts.spec.volumeClaimTemplates[0].metadata.name, 'data', 'the data volume is a PVC per replica');
    t.equal(sts.spec.volumeClaimTemplates[0].spec.storageClassName, 'fast');
    t.same([sts.spec.template.spec.securityContext.runAsNonRoot, sts.spec.template.spec.securityContext.runAsUser], [true, 10001], 'non-root');
    t.equal(c.securityContext.readOnlyRootFilesystem, true);
    t.equal(c.readinessProbe.httpGet.path, '/api/v1/readyz');
    const svc = find(rendered.everything, 'Service', 'goroscope-collector');
    for (const [k, v] of Object.entries(svc.spec.selector)) t.equal(sts.spec.template.metadata.labels[k], v, `Service selects the collector pod (${k})`);
    const noOtlp = find(rendered.defaults, 'StatefulSet').spec.template.spec.containers[0].args;
    t.notOk(noOtlp.includes('--otlp-endpoint'), 'no OTLP endpoint by default');
  });

  t.test('TLS: the collector serves with the Secret\'s certificate, the agents check it with its CA', async (t) => {
    const c = find(rendered.tls, 'StatefulSet').spec.template.spec.containers[0];
    const cmd = defineCollectorOptions(new Command('collector')).exitOverride();
    cmd.parse(c.args.slice(1), { from: 'user' });
    const o = cmd.opts() as { tlsCert: string; tlsKey: string };
    const mount = c.volumeMounts.find((m: any) => m.name === 'tls');
    t.ok(o.tlsCert.startsWith(`${mount.mountPath}/`) && o.tlsKey.startsWith(`${mount.mountPath}/`), 'certificate and key from the mounted Secret');
    t.equal(c.readinessProbe.httpGet.scheme, 'HTTPS', 'probes speak HTTPS');
    const a = agentContainer(rendered.tls);
    t.equal(a.args[2], 'wss://goroscope-collector:7070', 'agents connect with wss://');
    const ca = a.args[a.args.indexOf('--ca') + 1];
    t.ok(ca.startsWith(`${a.volumeMounts.find((m: any) => m.name === 'tls').mountPath}/`), '--ca from the mounted Secret');
    const agentVolume = find(rendered.tls, 'DaemonSet').spec.template.spec.volumes.find((v: any) => v.name === 'tls');
    t.same(agentVolume.secret.items.map((i: any) => i.key), ['ca.crt'], 'agents get the CA only, never the key');
    const sm = find(rendered.tls, 'ServiceMonitor').spec.endpoints.find((e: any) => e.port === 'http');
    t.equal(sm.scheme, 'https', 'Prometheus scrapes the collector over HTTPS');
    t.notOk(agentContainer(rendered.defaults).args.includes('--ca'), 'plain by default');
  });

  t.test('RBAC: get/list/watch pods, bound to the agent\'s service account', async (t) => {
    const role = find(rendered.defaults, 'ClusterRole');
    t.same(role.rules, [{ apiGroups: [''], resources: ['pods'], verbs: ['get', 'list', 'watch'] }]);
    const binding = find(rendered.defaults, 'ClusterRoleBinding');
    const sa = find(rendered.defaults, 'ServiceAccount');
    t.equal(binding.roleRef.name, role.metadata.name);
    t.same(binding.subjects, [{ kind: 'ServiceAccount', name: sa.metadata.name, namespace: 'goroscope' }]);
    t.equal(find(rendered.defaults, 'DaemonSet').spec.template.spec.serviceAccountName, sa.metadata.name);
  });

  t.test('ServiceMonitor endpoints name ports of the Services it selects; the rule uses the metrics', async (t) => {
    const sm = find(rendered.everything, 'ServiceMonitor');
    const selected = rendered.everything.filter((o: any) => o.kind === 'Service' && Object.entries(sm.spec.selector.matchLabels).every(([k, v]) => o.metadata.labels[k] === v)) as any[];
    t.same(selected.map((s) => s.metadata.name).sort(), ['goroscope-agent', 'goroscope-collector'], 'the agent and collector Services (not the headless governing one)');
    const ports = new Set(selected.flatMap((s) => s.spec.ports.map((p: any) => p.name)));
    for (const e of sm.spec.endpoints) t.ok(ports.has(e.port), `endpoint port ${e.port} exists`);
    t.equal(sm.metadata.labels.release, 'kube-prometheus-stack', 'extra labels for the Prometheus selector');
    const http = sm.spec.endpoints.find((e: any) => e.port === 'http');
    t.same(http.authorization, { type: 'Bearer', credentials: { name: 'goroscope-tokens', key: 'api-token' } }, 'the collector\'s /metrics is scraped with the API token');
    const rules = JSON.stringify(find(rendered.everything, 'PrometheusRule').spec);
    for (const m of ['goroscope_leak_suspects', 'goroscope_records_lost_total', 'goroscope_collector_ingest_records_total']) t.match(rules, m);
    t.match(rules, '{{ $labels.exe }}', 'alert templates survive helm templating');
  });

  t.test('deploy/manifests/goroscope.yaml is the chart rendered, and valid', async (t) => {
    t.equal(readFileSync(manifestsFile, 'utf8'), manifestsText(), 'no drift (regenerate with node --import tsx deploy/tools/render.ts)');
    const objs = parseObjects(readFileSync(manifestsFile, 'utf8'));
    for (const o of objs) t.doesNotThrow(() => new MODELS[keyOf(o)].cls(o as never).validate(), `${o.kind} ${o.metadata.name}`);
    t.equal(find(objs, 'Namespace').metadata.name, 'goroscope');
    t.notOk(find(objs, 'Secret'), 'no Secret with a made-up token: the operator makes goroscope-tokens');
    t.same(agentContainer(objs).securityContext.capabilities.add, ['BPF', 'PERFMON', 'SYS_PTRACE', 'SYS_ADMIN']);
    const ns = new Set(objs.filter((o) => o.metadata.namespace).map((o) => o.metadata.namespace));
    t.same([...ns], ['goroscope'], 'everything namespaced lives in goroscope');
  });
});

const noHelm = spawnSync('helm', ['version', '--short']).error
  ? 'helm is not installed here (not in Debian or npm); the chart is rendered by deploy/tools/helm-render instead' : false;
t.test('helm template gives the same objects as helm-render', { skip: noHelm || goMissing }, async (t) => {
  const out = execFileSync('helm', ['template', 'goroscope', join(deployDir, 'chart', 'goroscope'), '-n', 'goroscope', '--set', 'tokens.existingSecret=goroscope-tokens'], { encoding: 'utf8' });
  const ours = parseObjects(renderChartText({ tokens: { existingSecret: 'goroscope-tokens' } }));
  t.same(parseObjects(out), ours, 'helm template and helm-render give the same objects');
});
