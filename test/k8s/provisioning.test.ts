// Grafana provisioning, the dashboard and the compose stack hang together: every panel's datasource is
// provisioned, every metric it queries is one the agent or collector defines (or is named as still to come),
// and compose mounts files that exist and scrapes services it runs.
import t from 'tap';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { deployDir } from '../../deploy/tools/render.ts';

const root = resolve(deployDir, '..');
const read = (p: string) => readFileSync(join(deployDir, p), 'utf8');
/**
 * Metric names defined in the sources: prom-client's (`name: '...'`), and the OTLP instruments of
 * collector/src/otel/signals.ts as Prometheus names them after the OpenTelemetry Collector's remote write
 * (dots to underscores, the unit as a suffix, _total on counters).
 */
function definedMetrics(): Set<string> {
  const names = new Set<string>();
  for (const f of ['agent/src/metrics/agent-metrics.ts', 'collector/src/metrics.ts']) {
    const p = join(root, f);
    if (!existsSync(p)) continue;
    for (const m of readFileSync(p, 'utf8').matchAll(/(?:name:\s*|lifecycle\()'(goroscope_[a-z_]+)'/g)) names.add(m[1]);
  }
  const otlp = readFileSync(join(root, 'collector/src/otel/signals.ts'), 'utf8');
  for (const m of otlp.matchAll(/create(Counter|Histogram|ObservableUpDownCounter|ObservableGauge)\('([a-z_.]+)', \{ unit: '([^']*)'/g)) {
    const unit = ({ s: '_seconds', By: '_bytes' } as Record<string, string>)[m[3]] ?? '';
    names.add(`${m[2].replaceAll('.', '_')}${unit}${m[1] === 'Counter' ? '_total' : ''}`);
  }
  return names;
}
// The issue names these for the agent; another change implements them (GC pauses, TCP errors).
const PENDING = new Set(['goroscope_gc_pause_seconds', 'goroscope_tcp_retransmits_total']);

t.test('datasources and dashboard', async (t) => {
  const ds = parse(read('grafana/provisioning/datasources/goroscope.yaml')).datasources as Array<{ uid: string; type: string }>;
  t.same(ds.map((d) => d.type).sort(), ['jaeger', 'loki', 'prometheus', 'tempo'], 'Prometheus, Jaeger, Tempo, Loki');
  const dash = JSON.parse(read('grafana/dashboards/goroscope-overview.json'));
  const dsVar = dash.templating.list.find((v: any) => v.name === 'datasource');
  t.ok(ds.some((d) => d.uid === dsVar.current.value), 'the dashboard\'s default datasource is provisioned');
  const defined = definedMetrics();
  const exprs: string[] = dash.panels.filter((p: any) => p.datasource?.type !== 'loki').flatMap((p: any) => (p.targets ?? []).map((x: any) => x.expr)).filter((e: unknown) => typeof e === 'string');
  t.ok(exprs.length >= 8, `${exprs.length} queries`);
  // Label names (in `by (...)` and selectors) are not metrics: OTLP attributes such as goroscope_goroutine_wait_reason.
  const used = new Set(exprs.map((e) => e.replace(/\bby \([^)]*\)/g, '').replace(/\{[^}]*\}/g, '{}')).flatMap((e) => [...e.matchAll(/\b(goroscope_[a-z_]+?)(?:_bucket|_sum|_count)?\b(?=[{\[ )])/g)].map((m) => m[1])));
  for (const m of used) {
    if (defined.has(m)) t.pass(`${m} is defined`);
    else if (PENDING.has(m)) t.comment(`${m}: not defined yet (pending in the agent metrics)`);
    else t.fail(`${m} is queried but defined nowhere`);
  }
  for (const want of ['goroscope_goroutines', 'goroscope_leak_suspects', 'goroscope_gc_pause_seconds', 'goroscope_tcp_retransmits_total', 'goroscope_records_total', 'goroscope_records_lost_total', 'goroscope_collector_ingest_records_total',
    'goroscope_stw_duration_seconds', 'goroscope_tcp_io_bytes_total', 'goroscope_goroutine_created_total']) {
    t.ok(used.has(want), `the dashboard shows ${want}`);
  }
  // Panels that read what the OpenTelemetry Collector routes: traces from Tempo, logs from Loki.
  const byType = (type: string) => dash.panels.filter((p: any) => p.datasource?.type === type);
  t.ok(byType('tempo').some((p: any) => p.targets.some((x: any) => /goroscope\.leak\.suspect/.test(x.query))), 'a Tempo panel finds leak suspects');
  t.ok(byType('loki').length >= 1 && byType('loki').every((p: any) => ds.some((d) => d.uid === p.datasource.uid)), 'a Loki panel, on a provisioned datasource');
  const ids = dash.panels.map((p: any) => p.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
});

t.test('compose stack', async (t) => {
  const c = parse(read('compose/docker-compose.yaml'));
  t.same(Object.keys(c.services).sort(), ['agent', 'collector', 'grafana', 'jaeger', 'loki', 'otel-collector', 'prometheus', 'tempo']);
  for (const [name, s] of Object.entries<any>(c.services)) {
    for (const v of s.volumes ?? []) {
      const src = String(v).split(':')[0];
      if (src.startsWith('.')) t.ok(existsSync(resolve(deployDir, 'compose', src)), `${name}: ${src} exists`);
    }
    if (s.build) t.ok(existsSync(resolve(deployDir, 'compose', s.build.context, s.build.dockerfile)), `${name}: ${s.build.dockerfile} exists`);
  }
  const otlp = c.services.collector.command[c.services.collector.command.indexOf('--otlp-endpoint') + 1];
  t.equal(new URL(otlp).hostname, 'otel-collector', 'the collector exports to the OpenTelemetry Collector');
  const oc = c.services['otel-collector'];
  t.match(oc.environment, { TEMPO_OTLP_ENDPOINT: /^tempo:/, JAEGER_OTLP_ENDPOINT: /^jaeger:/, PROMETHEUS_REMOTE_WRITE_URL: /^http:\/\/prometheus:9090\//, LOKI_OTLP_ENDPOINT: /^http:\/\/loki:3100\/otlp$/ },
    'which routes to the stack\'s Tempo, Jaeger, Prometheus and Loki');
  t.ok(c.services.prometheus.entrypoint.join(' ').includes('--web.enable-remote-write-receiver'), 'Prometheus takes remote write');
  const prom = parse(read('prometheus/prometheus.yml'));
  const target = prom.scrape_configs.find((j: any) => j.job_name === 'goroscope-collector').static_configs[0].targets[0];
  t.equal(target, 'collector:7070', 'Prometheus scrapes the collector service');
  t.same(c.services.agent.cap_add, ['BPF', 'PERFMON', 'SYS_PTRACE', 'SYS_ADMIN'], 'the compose agent gets the same capabilities as the DaemonSet');
});
