// OpenTelemetry export: a real OTLP/HTTP receiver on 127.0.0.1 decodes what the
// exporter really sends (OTLP/JSON, one of OTLP's two official encodings).
import t from 'tap';
import { createServer, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { api, conn, fatal, gor, leak, pause, proc, T0, TestAgent, testCollector } from './helpers.ts';
import { goroutineSpanIds } from '../../collector/src/otel/ids.ts';

interface Received { url: string; contentType: string; body: any }

async function receiver(t: { teardown(f: () => unknown): void }, status = 200): Promise<{ url: string; requests: Received[] }> {
  const requests: Received[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let raw = Buffer.concat(chunks);
      if (req.headers['content-encoding'] === 'gzip') raw = gunzipSync(raw);
      requests.push({ url: req.url ?? '', contentType: String(req.headers['content-type']), body: JSON.parse(raw.toString('utf8')) });
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(status === 200 ? '{}' : '{"code":3,"message":"rejected by test"}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise((r) => server.close(r)));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, requests };
}

/** Flatten OTLP/JSON resourceSpans into spans carrying their resource and plain attribute objects. */
function spansOf(requests: Received[]) {
  const value = (v: any) => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.boolValue ?? v.doubleValue;
  const attrs = (list: any[] = []) => Object.fromEntries(list.map((a) => [a.key, value(a.value)]));
  return requests.filter((r) => r.url.endsWith('/traces')).flatMap((r) => r.body.resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans.map((s: any) => ({
    ...s, scope: ss.scope.name, resource: attrs(rs.resource.attributes), attributes: attrs(s.attributes),
    events: (s.events ?? []).map((e: any) => ({ ...e, attributes: attrs(e.attributes) })),
  })))));
}

const PK = { node: 'node-a', pid: 10, startTime: 1010 };
const gspan = (goid: number, root: number, segment = 0) => goroutineSpanIds(PK, { goid, root, segment });

t.test('spans follow the trace model: units of work, report intervals, parks, connections', async (t) => {
  const rx = await receiver(t);
  const c = await testCollector(t, { otlpEndpoint: rx.url, export: { scheduledDelayMs: 50 } });
  const a = new TestAgent(c.url);
  await a.hello();
  const handler = gor(10, 5, {
    parentGoid: 1, createdAt: T0, exitedAt: T0 + 2_500, state: 'dead', waitReason: null, startFunction: 'main.handle',
    startLocation: { function: 'main.handle', file: '/src/main.go', line: 35 }, blockedNs: 2.3e9, parkCoverage: 0.25,
    sched: { runs: 12, runsTimed: 11, runnableNs: 4.5e6, maxRunnableNs: 2e6, yields: 1, preemptions: 2, syscalls: 7, syscallNs: 3e5, tid: 4242, p: 1, threadSwitches: 3, pSwitches: 2 },
    trace: { root: 5, segment: 0, from: T0, creator: { goid: 1, root: 1, segment: 3 } },
    longParks: [{ waitReason: 'chan receive', from: T0 + 100, to: T0 + 2_400, segment: 0, segmentFrom: T0, waker: { goid: 6, root: 5, segment: 0 } }],
  });
  await a.send(1, [
    proc(10, { serviceVersion: 'v1.2.3' }),
    handler,
    // Its child, in its trace.
    gor(10, 6, { parentGoid: 5, createdAt: T0 + 50.25, exitedAt: T0 + 2_300, state: 'dead', startFunction: 'main.fetch', trace: { root: 5, segment: 0, from: T0 + 50.25 } }),
    // A long-lived goroutine's third report interval, parked since before it.
    gor(10, 9, {
      parentGoid: 1, createdAt: T0 - 120_000, state: 'waiting', waitReason: 'select', startFunction: 'main.poll',
      trace: { root: 9, segment: 2, from: T0, to: T0 + 60_000, parked: { waitReason: 'select', from: T0 - 10_000 } },
    }),
    // Without a place in the trace model (an older agent, or not selected): no span.
    gor(10, 7, { createdAt: T0, exitedAt: T0 + 5 }),
    // The handler's connection, served by it, accepted by goroutine 1.
    conn(10, 8080, {
      goid: 1, servedBy: 5, role: 'server', family: 'inet6', localAddress: 'fd00::1', peerAddress: 'fd00::2', peerPort: 51000,
      openedAt: T0 + 10, closedAt: T0 + 2_450, bytesSent: 1234, bytesReceived: 99,
      trace: { parent: { goid: 5, root: 5, segment: 0 }, links: [{ goid: 1, root: 1, segment: 3 }], segment: 0, from: T0 + 10 },
    }),
    conn(10, 40001, { openedAt: T0, closedAt: T0 + 1 }), // not selected by the agent: no span
  ]);
  await a.send(2, [{ ...handler, observedAt: T0 + 30_000 }]); // re-sent: no second span
  await c.flushExport();

  t.ok(rx.requests.every((r) => ['/v1/traces', '/v1/metrics', '/v1/logs'].includes(r.url) && r.contentType.startsWith('application/json')), 'OTLP/HTTP JSON to /v1/traces (and metrics, logs)');
  const spans = spansOf(rx.requests);
  t.same(spans.map((s) => s.name).sort(), ['main.fetch', 'main.handle', 'main.poll', 'park chan receive', 'park select', 'tcp accept']);
  const byName = Object.fromEntries(spans.map((s) => [s.name, s]));
  const unit = gspan(5, 5);
  for (const n of ['main.handle', 'main.fetch', 'park chan receive', 'tcp accept']) t.equal(byName[n].traceId, unit.traceId, `${n} in the unit's trace`);

  const h = byName['main.handle'];
  t.equal(h.spanId, unit.spanId);
  t.notOk(h.parentSpanId, 'the unit\'s root has no parent');
  t.same(h.links.map((l: any) => [l.traceId, l.spanId]), [[gspan(1, 1, 3).traceId, gspan(1, 1, 3).spanId]], 'linked to its creator where it was');
  t.equal(h.startTimeUnixNano, String(BigInt(T0) * 1_000_000n));
  t.equal(h.endTimeUnixNano, String(BigInt(T0 + 2_500) * 1_000_000n));
  t.match(h.attributes, {
    'goroscope.goroutine.id': 5, 'goroscope.goroutine.root_id': 5, 'goroscope.goroutine.blocked_ns': 2.3e9,
    'code.function.name': 'main.handle', 'code.file.path': '/src/main.go', 'code.line.number': 35,
    'goroscope.goroutine.created_by.function': 'main.serve', 'goroscope.goroutine.created_by.file': '/src/main.go', 'goroscope.goroutine.created_by.line': 42,
    'goroscope.goroutine.parks.coverage': 0.25, 'goroscope.goroutine.parks.sampled': true,
    'goroscope.goroutine.sched.runs': 12, 'goroscope.goroutine.sched.runnable_ns': 4.5e6, 'goroscope.goroutine.sched.max_runnable_ns': 2e6,
    'goroscope.goroutine.sched.yields': 1, 'goroscope.goroutine.sched.preemptions': 2, 'goroscope.goroutine.sched.syscalls': 7,
    'goroscope.goroutine.sched.syscall_ns': 3e5, 'goroscope.goroutine.sched.thread_switches': 3, 'goroscope.goroutine.sched.p_switches': 2,
    'thread.id': 4242, 'goroscope.goroutine.sched.p': 1,
  });
  t.notOk('goroscope.goroutine.alive' in h.attributes);

  const f = byName['main.fetch'];
  t.equal(f.parentSpanId, unit.spanId, 'a child goroutine of the unit is a child span');
  t.equal(f.startTimeUnixNano, String(BigInt(T0 + 50) * 1_000_000n + 250_000n), 'fractional ms kept to the ns');

  const park = byName['park chan receive'];
  t.equal(park.parentSpanId, unit.spanId);
  t.same(park.links.map((l: any) => l.spanId), [gspan(6, 5).spanId], 'linked to the goroutine that woke it');
  t.match(park.attributes, { 'goroscope.goroutine.wait_reason': 'chan receive', 'goroscope.park.duration_ns': 2.3e9, 'goroscope.park.waker_id': 6 });

  const poll = byName['main.poll'];
  const seg = gspan(9, 9, 2);
  t.equal(poll.traceId, seg.traceId, 'a later report interval is a trace of its own');
  t.notOk(poll.parentSpanId);
  t.same(poll.links.map((l: any) => l.spanId), [gspan(9, 9, 1).spanId], 'linked to the previous interval');
  t.match(poll.attributes, { 'goroscope.goroutine.alive': true, 'goroscope.goroutine.segment': 2, 'goroscope.goroutine.wait_reason': 'select' });
  const inProgress = byName['park select'];
  t.equal(inProgress.parentSpanId, seg.spanId);
  t.equal(inProgress.startTimeUnixNano, String(BigInt(T0) * 1_000_000n), 'the part of the park inside the interval');
  t.match(inProgress.attributes, { 'goroscope.park.in_progress': true, 'goroscope.park.duration_ns': 70_000e6 });

  const acc = byName['tcp accept'];
  t.equal(acc.kind, 2, 'SERVER');
  t.equal(acc.parentSpanId, unit.spanId, 'a child of the goroutine that served it');
  t.same(acc.links.map((l: any) => l.spanId), [gspan(1, 1, 3).spanId], 'linked to the accepting goroutine');
  t.match(acc.attributes, {
    'network.type': 'ipv6', 'server.address': 'fd00::1', 'server.port': 8080, 'client.address': 'fd00::2', 'client.port': 51000,
    'goroscope.tcp.bytes_sent': 1234, 'goroscope.tcp.bytes_received': 99, 'goroscope.goroutine.id': 5, 'goroscope.tcp.accepted_by': 1,
  });

  t.match(h.resource, {
    'service.name': 'app', 'service.version': 'v1.2.3', 'service.instance.id': 'default.pod-10.app', 'process.pid': 10,
    'process.executable.path': '/usr/bin/svc10', 'container.id': 'cid10', 'k8s.pod.name': 'pod-10', 'k8s.namespace.name': 'default', 'k8s.node.name': 'node-a',
  });
  t.equal(h.scope, 'goroscope');
  t.match((await api(c, '/metrics')).body, /goroscope_collector_export_spans_total 6/);
  a.close();
});

t.test('off Kubernetes: no k8s.* attributes, a UUID as service.instance.id', async (t) => {
  const rx = await receiver(t);
  const c = await testCollector(t, { otlpEndpoint: rx.url, export: { scheduledDelayMs: 50 } });
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [proc(10, { pod: null, containerId: null }), gor(10, 5, { exitedAt: T0 + 10, trace: { root: 5, segment: 0, from: T0 + 5 } })]);
  await c.flushExport();
  const [s] = spansOf(rx.requests);
  t.match(s.resource, { 'service.name': 'svc10', 'host.name': 'node-a', 'service.instance.id': /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/ });
  t.notOk(Object.keys(s.resource).some((k) => k.startsWith('k8s.')), `no k8s.*: ${Object.keys(s.resource)}`);
});

t.test('sampling keeps or drops whole traces', async (t) => {
  const rx = await receiver(t);
  const c = await testCollector(t, { otlpEndpoint: rx.url, export: { sampleRatio: 0.25, scheduledDelayMs: 50, maxQueueSize: 5000 } });
  const a = new TestAgent(c.url);
  await a.hello();
  const recs = Array.from({ length: 1000 }, (_, i) => [
    gor(10, 100 + 2 * i, { exitedAt: T0 + 1000, trace: { root: 100 + 2 * i, segment: 0, from: T0 } }),
    gor(10, 101 + 2 * i, { parentGoid: 100 + 2 * i, exitedAt: T0 + 500, trace: { root: 100 + 2 * i, segment: 0, from: T0 + 1 } }),
  ]).flat();
  await a.send(1, [proc(10), ...recs]);
  await c.flushExport();
  const spans = spansOf(rx.requests);
  const traces = new Map<string, number>();
  for (const s of spans) traces.set(s.traceId, (traces.get(s.traceId) ?? 0) + 1);
  t.ok(traces.size > 180 && traces.size < 320, `${traces.size} of 1000 traces exported at 0.25`);
  t.ok([...traces.values()].every((n) => n === 2), 'each exported trace has its root and its child');
});

t.test('export failures are counted and do not disturb ingest', async (t) => {
  const rx = await receiver(t, 400);
  const c = await testCollector(t, { otlpEndpoint: `${rx.url}/custom/traces`, export: { scheduledDelayMs: 50 } });
  const a = new TestAgent(c.url);
  await a.hello();
  t.same(await a.send(1, [proc(10), gor(10, 5, { exitedAt: T0 + 10, trace: { root: 5, segment: 0, from: T0 } })]), { type: 'ack', seq: 1 });
  await c.flushExport();
  t.equal(rx.requests[0]?.url, '/custom/traces', 'a full traces URL is used as given');
  t.match((await api(c, '/metrics')).body, /goroscope_collector_export_errors_total 1/);
  t.same(await a.send(2, [gor(10, 6)]), { type: 'ack', seq: 2 });
  a.close();
});

t.test('a fatal error is an error span; only long pauses are exported', async (t) => {
  const rx = await receiver(t);
  const c = await testCollector(t, { otlpEndpoint: rx.url, export: { scheduledDelayMs: 50, longPauseMs: 10 } });
  const a = new TestAgent(c.url);
  await a.hello();
  const f = fatal(10, { at: T0 + 5_000.5 });
  await a.send(1, [
    proc(10), f,
    pause(10, 0, { durationNs: 10_000_000 }), // exactly the threshold: not exported
    pause(10, 100, { durationNs: 25_000_000, reason: 'GC sweep termination', cycle: 7 }),
    pause(10, 200, { durationNs: 50_000, gc: false, reason: 'ReadMemStats', cycle: null }),
  ]);
  await a.send(2, [f]); // re-sent: no second span
  await c.flushExport();
  const spans = spansOf(rx.requests);
  t.same(spans.map((s) => s.name).sort(), ['gc stop-the-world', 'go fatal error']);
  t.ok(spans.every((s) => !s.parentSpanId) && new Set(spans.map((s) => s.traceId)).size === 2, 'each a trace of its own');

  const fs = spans.find((s) => s.name === 'go fatal error');
  t.same(fs.status, { code: 2, message: 'fatal error: concurrent map writes' });
  t.equal(fs.startTimeUnixNano, String(BigInt(T0 + 5_000) * 1_000_000n + 500_000n));
  t.equal(fs.endTimeUnixNano, fs.startTimeUnixNano);
  t.match(fs.attributes, { 'goroscope.goroutine.id': 42, 'error.type': 'fatal error', 'exception.message': 'concurrent map writes' });
  t.match(fs.resource, { 'k8s.pod.name': 'pod-10', 'process.pid': 10 });
  t.equal(fs.events.length, 1);
  t.match(fs.events[0], { name: 'exception', attributes: { 'exception.type': 'fatal error', 'exception.message': 'concurrent map writes', 'goroscope.runtime_text': 'fatal error: concurrent map writes' } });

  const ps = spans.find((s) => s.name === 'gc stop-the-world');
  t.equal(ps.startTimeUnixNano, String(BigInt(T0 + 100) * 1_000_000n));
  t.equal(ps.endTimeUnixNano, String(BigInt(T0 + 125) * 1_000_000n), 'spans the pause');
  t.match(ps.attributes, { 'goroscope.pause.reason': 'GC sweep termination', 'goroscope.pause.gc': true, 'goroscope.gc.cycle': 7, 'goroscope.pause.duration_ns': 25_000_000 });
  t.match((await api(c, '/metrics')).body, /goroscope_collector_export_spans_total 2/);
  a.close();
});

t.test('a leak suspect is a span once per report interval while it holds', async (t) => {
  const rx = await receiver(t);
  const c = await testCollector(t, { otlpEndpoint: rx.url, export: { scheduledDelayMs: 50, leakIntervalMs: 60_000 } });
  const a = new TestAgent(c.url);
  await a.hello();
  const base = Math.floor(T0 / 60_000) * 60_000 + 60_000; // an interval's start
  const stack = [{ function: 'runtime.gopark', file: '/go/src/runtime/proc.go', line: 402 }, { function: 'main.worker', file: '/src/main.go', line: 50 }];
  await a.send(1, [
    proc(10),
    leak(10, 42, { since: base - 30_000, observedAt: base + 10_000, stack, goroutine: { goid: 77, root: 77, segment: 1 } }),
    leak(10, 42, { since: base - 30_000, observedAt: base + 20_000, count: 510, stack }), // same interval
    leak(10, 42, { since: base - 30_000, observedAt: base + 70_000, count: 600, stack }), // the next one
  ]);
  await c.flushExport();
  const spans = spansOf(rx.requests).sort((x, y) => Number(BigInt(x.startTimeUnixNano) - BigInt(y.startTimeUnixNano)));
  t.equal(spans.length, 2, 'one span per interval');
  t.equal(new Set(spans.map((s) => s.traceId)).size, 2, 'each interval a trace of its own');
  const [first, second] = spans;
  t.equal(first.name, 'goroutine leak: main.worker');
  t.equal(first.startTimeUnixNano, String(BigInt(base) * 1_000_000n), 'from the interval\'s start');
  t.equal(first.endTimeUnixNano, String(BigInt(base + 10_000) * 1_000_000n));
  t.equal(first.status.code, 2, 'error status: error=true finds it');
  t.match(first.attributes, {
    'goroscope.leak.suspect': 'growing-live', 'goroscope.leak.count': 500, 'goroscope.leak.start_function': 'main.worker',
    'code.function.name': 'main.worker', 'code.file.path': '/src/main.go', 'code.line.number': 50,
    'code.stacktrace': 'runtime.gopark\n\t/go/src/runtime/proc.go:402\nmain.worker\n\t/src/main.go:50',
  });
  t.same(first.links.map((l: any) => l.spanId), [gspan(77, 77, 1).spanId], 'linked to a leaked goroutine\'s span');
  t.equal(second.attributes['goroscope.leak.count'], 600);
});

t.test('metrics and logs of each process go to /v1/metrics and /v1/logs', async (t) => {
  const rx = await receiver(t);
  const c = await testCollector(t, { otlpEndpoint: rx.url, export: { scheduledDelayMs: 50, metricIntervalMs: 60_000 } });
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [
    proc(10),
    gor(10, 5, { state: 'waiting', waitReason: 'chan receive' }),
    gor(10, 6, { state: 'waiting', waitReason: 'chan receive' }),
    gor(10, 7, { state: 'running', waitReason: null }),
    gor(10, 8, { state: 'dead', waitReason: null, exitedAt: T0 + 20 }),
    { kind: 'window', pid: 10, from: T0, to: T0 + 1000, probes: ['create', 'exit'], created: 40, parked: 0, readied: 0, exited: 30, lost: 0 },
    pause(10, 0, { durationNs: 200_000 }),
    pause(10, 10, { durationNs: 3_000_000 }),
    conn(10, 40000, { bytesSent: 100, bytesReceived: 200, closedAt: null }),
    conn(10, 40000, { bytesSent: 150, bytesReceived: 260, closedAt: T0 + 900, srttUs: 2000, observedAt: T0 + 900 }),
    conn(10, 40000, { bytesSent: 150, bytesReceived: 260, closedAt: T0 + 900, srttUs: 2000, observedAt: T0 + 950 }), // re-sent: nothing more
    conn(10, 40001, { error: 'connection refused', bytesSent: 0, bytesReceived: 0, closedAt: T0 + 5, srttUs: null }),
    leak(10, 42, { observedAt: Date.now() }), // the gauge shows groups reported lately
    fatal(10),
  ]);
  await c.flushExport();
  const metricReqs = rx.requests.filter((r) => r.url === '/v1/metrics');
  const logReqs = rx.requests.filter((r) => r.url === '/v1/logs');
  t.ok(metricReqs.length >= 1 && logReqs.length >= 1, 'metrics and logs sent');
  const value = (v: any) => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.boolValue ?? v.doubleValue;
  const attrs = (list: any[] = []) => Object.fromEntries(list.map((x) => [x.key, value(x.value)]));
  const rm = metricReqs.flatMap((r) => r.body.resourceMetrics);
  t.match(attrs(rm[0].resource.attributes), { 'service.name': 'app', 'process.pid': 10, 'k8s.pod.name': 'pod-10' }, 'the process is the resource');
  const metrics = Object.fromEntries(rm.flatMap((r: any) => r.scopeMetrics.flatMap((s: any) => s.metrics.map((m: any) => [m.name, m]))));
  const points = (name: string) => (metrics[name].sum ?? metrics[name].gauge ?? metrics[name].histogram).dataPoints.map((p: any) => ({ ...p, attributes: attrs(p.attributes) }));
  const live = Object.fromEntries(points('go.goroutine.count').map((p: any) => [`${p.attributes['goroscope.goroutine.state']}/${p.attributes['goroscope.goroutine.wait_reason'] ?? ''}`, Number(p.asInt)]));
  t.same(live, { 'waiting/chan receive': 2, 'running/': 1 }, 'live goroutines by state and wait reason, from the store');
  t.equal(Number(points('goroscope.goroutine.created')[0].asInt), 40);
  t.equal(Number(points('goroscope.goroutine.exited')[0].asInt), 30);
  const stw = points('goroscope.stw.duration')[0];
  t.equal(Number(stw.count), 2);
  t.equal(metrics['goroscope.stw.duration'].unit, 's');
  t.same(Object.fromEntries(points('goroscope.tcp.io').map((p: any) => [p.attributes['network.io.direction'], Number(p.asInt)])), { transmit: 150, receive: 260 }, 'bytes counted once per connection');
  t.same(points('goroscope.tcp.errors').map((p: any) => [p.attributes['error.type'], Number(p.asInt)]), [['connection refused', 1]]);
  t.equal(Number(points('goroscope.tcp.rtt')[0].count), 1);
  t.equal(Number(points('goroscope.leak.goroutines')[0].asInt ?? points('goroscope.leak.goroutines')[0].asDouble), 500);

  const logs = logReqs.flatMap((r) => r.body.resourceLogs.flatMap((rl: any) => rl.scopeLogs.flatMap((sl: any) => sl.logRecords.map((l: any) => ({ ...l, attributes: attrs(l.attributes) })))));
  const leakLog = logs.find((l) => l.severityText === 'WARN');
  const fatalLog = logs.find((l) => l.severityText === 'FATAL');
  t.match(leakLog, { severityNumber: 13, body: { stringValue: /^goroutine leak suspect: 500 goroutines of main\.worker created at main\.serve \(\/src\/main\.go:42\), parked in chan receive/ } });
  t.match(fatalLog, { severityNumber: 21, body: { stringValue: 'fatal error: concurrent map writes' }, attributes: { 'exception.type': 'fatal error' } });
  const spans = spansOf(rx.requests.filter((r) => r.url === '/v1/traces'));
  t.equal(leakLog.spanId, spans.find((s) => s.name.startsWith('goroutine leak'))?.spanId, 'the leak log leads to its span');
  t.equal(fatalLog.traceId, spans.find((s) => s.name === 'go fatal error')?.traceId, 'the fatal log to its span');
  a.close();
});

t.test('records of a process not yet known make no spans (no resource to name them)', async (t) => {
  const rx = await receiver(t);
  const c = await testCollector(t, { otlpEndpoint: rx.url, export: { scheduledDelayMs: 50 } });
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [gor(99, 5, { exitedAt: T0 + 10, trace: { root: 5, segment: 0, from: T0 } })]);
  await c.flushExport();
  t.same(spansOf(rx.requests), [], 'nothing under unknown_service');
  a.close();
});
