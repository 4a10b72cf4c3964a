// The OpenTelemetry Collector the chart deploys in front of Tempo, Jaeger, Prometheus and Loki: its objects are
// valid Kubernetes objects, the agents and the collector send to it, and the configuration it runs (the chart's
// files/otel-collector*.yaml with the endpoints from values) is accepted by a real OpenTelemetry Collector,
// built from the Go module proxy with the same components (scripts/receivers/otelcol-manifest.yaml).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Service } from 'kubernetes-models/v1/Service';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { renderChart, type K8sObject } from '../../deploy/tools/render.ts';
import { receiverBinary } from '../lib/receivers.ts';

const goMissing = spawnSync('go', ['version']).error ? 'no `go` on PATH: the chart renderer is a Go program' : false;
const otelcol = goMissing ? undefined : receiverBinary('otelcol');
const TOKENS = { tokens: { ingest: 'ingest-secret', api: 'api-secret' } };
const values = {
  ...TOKENS,
  otelCollector: {
    enabled: true,
    tempo: { endpoint: 'tempo.monitoring:4317' },
    jaeger: { endpoint: 'jaeger-collector.monitoring:4317' },
    prometheus: { remoteWriteUrl: 'http://mimir.monitoring:8080/api/v1/push' },
    loki: { otlpEndpoint: 'http://loki.monitoring:3100/otlp' },
  },
  agent: { otlp: true },
};

const find = (objs: K8sObject[], kind: string, name: string) => objs.find((o) => o.kind === kind && o.metadata.name === name) as any;
const argAfter = (args: string[], flag: string) => args[args.indexOf(flag) + 1];

t.test('the chart deploys the OpenTelemetry Collector and sends to it', { skip: goMissing }, async (t) => {
  const objs = renderChart(values);
  const cm = find(objs, 'ConfigMap', 'goroscope-otel-collector');
  const dep = find(objs, 'Deployment', 'goroscope-otel-collector');
  const svc = find(objs, 'Service', 'goroscope-otel-collector');
  t.ok(cm && dep && svc, 'ConfigMap, Deployment and Service');
  new ConfigMap(cm).validate();
  new Deployment(dep).validate();
  new Service(svc).validate();
  t.same(Object.keys(cm.data).sort(), ['otel-collector-jaeger.yaml', 'otel-collector.yaml'], 'the configuration and, with a Jaeger endpoint, its overlay');
  const c = dep.spec.template.spec.containers[0];
  t.same(c.args, ['--config=/etc/otel-collector/otel-collector.yaml', '--config=/etc/otel-collector/otel-collector-jaeger.yaml']);
  t.match(Object.fromEntries(c.env.map((e: any) => [e.name, e.value])), {
    TEMPO_OTLP_ENDPOINT: 'tempo.monitoring:4317', JAEGER_OTLP_ENDPOINT: 'jaeger-collector.monitoring:4317',
    PROMETHEUS_REMOTE_WRITE_URL: 'http://mimir.monitoring:8080/api/v1/push', LOKI_OTLP_ENDPOINT: 'http://loki.monitoring:3100/otlp',
  });
  const url = 'http://goroscope-otel-collector:4318';
  t.equal(argAfter(find(objs, 'DaemonSet', 'goroscope-agent').spec.template.spec.containers[0].args, '--otlp-endpoint'), url, 'the agents export to it');
  t.equal(argAfter(find(objs, 'StatefulSet', 'goroscope-collector').spec.template.spec.containers[0].args, '--otlp-endpoint'), url, 'so does the collector');

  const plain = renderChart(TOKENS);
  t.notOk(plain.some((o) => o.metadata.name.endsWith('otel-collector')), 'nothing of it by default');
  t.notOk(find(plain, 'DaemonSet', 'goroscope-agent').spec.template.spec.containers[0].args.includes('--otlp-endpoint'), 'and agents do not export by default');
  const own = renderChart({ ...TOKENS, agent: { otlpEndpoint: 'http://otel.obs:4318' }, collector: { otlpEndpoint: 'http://tempo:4318' } });
  t.equal(argAfter(find(own, 'DaemonSet', 'goroscope-agent').spec.template.spec.containers[0].args, '--otlp-endpoint'), 'http://otel.obs:4318', 'an endpoint of your own');
});

const noOtelcol = goMissing || (otelcol && 'skip' in otelcol ? otelcol.skip : false);
t.test('a real OpenTelemetry Collector accepts the configuration the chart deploys', { skip: noOtelcol }, async (t) => {
  const bin = (otelcol as { bin: string }).bin;
  const objs = renderChart(values);
  const cm = find(objs, 'ConfigMap', 'goroscope-otel-collector');
  const c = find(objs, 'Deployment', 'goroscope-otel-collector').spec.template.spec.containers[0];
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-otelcol-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [name, text] of Object.entries<string>(cm.data)) writeFileSync(join(dir, name), text);
  const env = { ...process.env, ...Object.fromEntries(c.env.map((e: any) => [e.name, e.value])) };
  const validate = (args: string[], e: NodeJS.ProcessEnv) =>
    spawnSync(bin, ['validate', ...args], { env: e, encoding: 'utf8', timeout: 30_000 });
  const configs = c.args.map((a: string) => a.replace('/etc/otel-collector', dir));
  const ok = validate(configs, env);
  t.equal(ok.status, 0, `otelcol validate: ${ok.stderr}`);
  // The check is real: without its endpoints the same configuration is refused, naming what is missing.
  const bad = validate(configs, { ...process.env, TEMPO_OTLP_ENDPOINT: '', PROMETHEUS_REMOTE_WRITE_URL: 'x', LOKI_OTLP_ENDPOINT: '' });
  t.not(bad.status, 0);
  t.match(bad.stderr, /otlp\/tempo: requires a non-empty "endpoint"/);
});
