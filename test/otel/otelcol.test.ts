// The agent alone, no goroscope collector: `goroscope agent --otlp-endpoint` sends traces, metrics and logs to a
// real OpenTelemetry Collector (built from the Go module proxy, otlp receiver and file exporter), and what the
// Collector wrote is read back as OTLP/JSON: the spans of a unit of work, goroutine counts by state and wait
// reason, creations, GC pauses as a histogram, TCP bytes and RTT, and a leak suspect as a log that leads to its span.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAgent } from '../../agent/src/agent/run.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { freePort, receiverBinary, startOtelcol } from '../lib/receivers.ts';
import { quickTraceOptions, startTracesService } from '../lib/traces-fixture.ts';

const noBpf = await bpfUnavailable();
const otelcolBin = noBpf ? undefined : receiverBinary('otelcol');
const skip = noBpf ?? (otelcolBin && 'skip' in otelcolBin ? otelcolBin.skip : false);

const value = (v: any): unknown => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.boolValue ?? v.doubleValue;
const attrs = (list: any[] = []) => Object.fromEntries(list.map((a) => [a.key, value(a.value)]));

t.test('the agent alone exports traces, metrics and logs to the OpenTelemetry Collector', { skip, timeout: 240_000 }, async (t) => {
  const otelcol = await startOtelcol(t, (otelcolBin as { bin: string }).bin);
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-otelcol-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  const svc = await startTracesService(t);

  const agent = await startAgent({
    otlpEndpoint: otelcol.otlp,
    otlp: { metricIntervalMs: 1000, scheduledDelayMs: 200 },
    pids: [svc.pid],
    ...quickTraceOptions,
    log: (m) => t.comment(`agent: ${m}`),
  });
  t.teardown(() => agent.stop());
  t.equal(agent.shipper, undefined, 'no goroscope collector');
  svc.send('go');

  // Until the Collector has written a leak suspect's log (it takes the longest: a group must grow for a while).
  const deadline = Date.now() + 90_000;
  let lines: any[] = [];
  const logsOf = (ls: any[]) => ls.flatMap((l) => (l.resourceLogs ?? []).flatMap((rl: any) => rl.scopeLogs.flatMap((sl: any) => sl.logRecords.map((r: any) => ({ ...r, resource: attrs(rl.resource.attributes), attributes: attrs(r.attributes) })))));
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1000));
    await agent.flush();
    lines = otelcol.lines();
    if (logsOf(lines).some((l) => l.attributes['goroscope.leak.start_function'] === 'main.leak')) break;
  }
  await new Promise((r) => setTimeout(r, 1500)); // the file exporter flushes every 100 ms; metrics every second
  lines = otelcol.lines();
  t.ok(lines.length > 0, `${lines.length} OTLP requests written by the Collector`);
  t.equal(agent.parts.state('otlp')?.up, true, 'the otlp part runs');

  // Traces.
  const spans = lines.flatMap((l) => (l.resourceSpans ?? []).flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans.map((s: any) => ({ ...s, resource: attrs(rs.resource.attributes), attributes: attrs(s.attributes) })))));
  const handles = spans.filter((s) => s.name === 'main.handle');
  t.ok(handles.length >= 2, `${handles.length} main.handle spans`);
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  // A handle ends after its fetches: the newest fetches' handles may still be on their way.
  const settled = BigInt(Date.now() - 3000) * 1_000_000n;
  const fetches = spans.filter((s) => s.name === 'main.fetch' && BigInt(s.endTimeUnixNano) < settled);
  t.ok(fetches.length >= 2 && fetches.every((f) => byId.get(f.parentSpanId)?.name === 'main.handle' && byId.get(f.parentSpanId)?.traceId === f.traceId),
    `each fetch under its handle, in its trace (${fetches.length})`);
  const res = handles[0].resource;
  t.match(res, { 'service.name': 'traces', 'process.pid': svc.pid, 'service.version': /^\(devel\) /, 'service.instance.id': /^[0-9a-f-]{36}$/, 'process.runtime.name': 'go' });
  t.notOk(Object.keys(res).some((k) => k.startsWith('k8s.')), 'no k8s.* off Kubernetes');

  // Metrics: the latest data point of each, by attributes.
  const points = new Map<string, any[]>();
  for (const l of lines) {
    for (const rm of l.resourceMetrics ?? []) {
      if (attrs(rm.resource.attributes)['process.pid'] !== svc.pid) continue;
      for (const sm of rm.scopeMetrics) for (const m of sm.metrics) points.set(m.name, [m, ...(points.get(m.name) ?? [])]);
    }
  }
  const latest = (name: string) => points.get(name)?.[0];
  const dp = (m: any) => (m.sum ?? m.gauge ?? m.histogram).dataPoints.map((p: any) => ({ ...p, attributes: attrs(p.attributes) }));
  const count = latest('go.goroutine.count');
  t.ok(count, `go.goroutine.count among ${[...points.keys()]}`);
  if (count) {
    t.equal(count.sum.isMonotonic ?? false, false, 'an up-down counter');
    const byKey = dp(count);
    const waiting = byKey.filter((p: any) => p.attributes['goroscope.goroutine.state'] === 'waiting' && p.attributes['goroscope.goroutine.wait_reason'] === 'chan receive');
    t.ok(waiting.length === 1 && Number(waiting[0].asInt) >= 3 && waiting[0].asDouble === undefined, `goroutines waiting in chan receive: ${JSON.stringify(waiting)}`);
  }
  const created = latest('goroscope.goroutine.created');
  t.ok(created?.sum.isMonotonic && Number(dp(created)[0].asInt) >= 8, 'creations counted, cumulative');
  const stw = latest('goroscope.stw.duration');
  const gc = stw && dp(stw).find((p: any) => p.attributes['goroscope.pause.gc'] === true);
  t.ok(gc && Number(gc.count) >= 2 && gc.explicitBounds.length > 5, `GC pauses as a histogram: ${JSON.stringify(gc)}`);
  const io = latest('goroscope.tcp.io');
  const dirs = io ? Object.fromEntries(dp(io).map((p: any) => [p.attributes['network.io.direction'], Number(p.asInt)])) : {};
  const conns = latest('goroscope.tcp.connections');
  t.same(new Set(conns ? dp(conns).map((p: any) => p.attributes['goroscope.tcp.role']) : []), new Set(['client', 'server']), 'connections by role');
  const opened = conns ? dp(conns).reduce((n: number, p: any) => n + Number(p.asInt), 0) : 0;
  // Both ends of every connection are this process's: what one end sends the other receives. Each request is
  // "hello\n" and a short answer, so a connection carries well under 40 bytes each way.
  t.ok(dirs.transmit > 0 && dirs.transmit === dirs.receive, `TCP bytes, the same both ways: ${JSON.stringify(dirs)}`);
  t.ok(dirs.transmit <= 40 * opened, `each connection's bytes counted once: ${dirs.transmit} bytes over ${opened} connections`);
  const rtt = latest('goroscope.tcp.rtt');
  t.ok(rtt && Number(dp(rtt)[0].count) >= 1, 'RTT as a histogram');

  // Logs: the leak suspect, leading to its span.
  // The leak is found as a growing pile of live goroutines (it may also be flagged for its creation rate first).
  const leakLog = logsOf(lines).find((l) => l.attributes['goroscope.leak.start_function'] === 'main.leak' && l.attributes['goroscope.leak.suspect'] === 'growing-live');
  t.ok(leakLog, 'a leak suspect log');
  if (leakLog) {
    t.equal(leakLog.severityText, 'WARN');
    t.match(leakLog.body.stringValue, /goroutines of main\.leak .*parked in chan receive/);
    t.match(leakLog.attributes, { 'goroscope.leak.suspect': 'growing-live', 'goroscope.leak.start_function': 'main.leak' });
    t.match(leakLog.resource, { 'service.name': 'traces', 'process.pid': svc.pid });
    const leakSpan = spans.find((s) => s.name === 'goroutine leak: main.leak' && s.spanId === leakLog.spanId);
    t.ok(leakSpan && leakSpan.traceId === leakLog.traceId, 'the log carries the trace and span id of the leak suspect\'s span');
  }
});

t.test('an OTLP endpoint that is away degrades the otlp part; the agent runs on and recovers', { skip, timeout: 120_000 }, async (t) => {
  const port = await freePort();
  const svc = await startTracesService(t, []);
  const lines: string[] = [];
  const agent = await startAgent({
    otlpEndpoint: `http://127.0.0.1:${port}`,
    otlp: { metricIntervalMs: 300, timeoutMs: 1000 },
    pids: [svc.pid], overheadBudget: 0.02, full: true, intervalMs: 200, scanMs: 200, profileIntervalMs: 0, tcp: false,
    log: (m) => lines.push(m),
  });
  t.teardown(() => agent.stop());
  const until = async (what: string, f: () => boolean) => {
    const deadline = Date.now() + 30_000;
    while (!f() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    t.ok(f(), what);
  };
  await until('the otlp part is down', () => agent.parts.state('otlp')?.up === false);
  t.match(agent.parts.state('otlp')?.detail, new RegExp(`no OTLP export.*127\\.0\\.0\\.1:${port}`), `with the endpoint in its reason: ${agent.parts.state('otlp')?.detail}`);
  t.ok(agent.tracer?.process(svc.pid), 'the goroutine probes still trace the service');
  t.equal(lines.filter((l) => l.startsWith('no OTLP export')).length, 1, 'said once');
  await startOtelcol(t, (otelcolBin as { bin: string }).bin, port);
  await until('the otlp part is up again once the endpoint answers', () => agent.parts.state('otlp')?.up === true);
  t.ok(lines.some((l) => /OTLP export .*running again/.test(l)), 'and says so');
});
