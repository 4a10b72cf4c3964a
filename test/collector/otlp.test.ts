// OpenTelemetry export: a real OTLP/HTTP receiver on 127.0.0.1 decodes what the
// exporter really sends (OTLP/JSON, one of OTLP's two official encodings).
import t from 'tap';
import { createServer, type Server } from 'node:http';
import { gunzipSync } from 'node:zlib';
import { api, conn, fatal, gor, pause, proc, T0, TestAgent, testCollector } from './helpers.ts';
import { goroutineSpanId, processTraceId } from '../../collector/src/otel/ids.ts';

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
  return requests.flatMap((r) => r.body.resourceSpans.flatMap((rs: any) => rs.scopeSpans.flatMap((ss: any) => ss.spans.map((s: any) => ({
    ...s, scope: ss.scope.name, resource: attrs(rs.resource.attributes), attributes: attrs(s.attributes),
    events: (s.events ?? []).map((e: any) => ({ ...e, attributes: attrs(e.attributes) })),
  })))));
}

t.test('goroutine and connection spans with parents, times and attributes', async (t) => {
  const rx = await receiver(t);
  const c = await testCollector(t, {
    otlpEndpoint: rx.url,
    export: { longLivedMs: 10_000, longBlockedMs: 1_000, sampleRatio: 0, scheduledDelayMs: 50 },
  });
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [
    proc(10),
    // Parent: lived 20 s.
    gor(10, 5, { parentGoid: 1, createdAt: T0, exitedAt: T0 + 20_000, state: 'dead', startFunction: 'main.acceptLoop' }),
    // Child: short-lived but blocked 2 s.
    gor(10, 6, {
      parentGoid: 5, createdAt: T0 + 100.25, exitedAt: T0 + 2_500, state: 'dead', startFunction: 'main.handle',
      lastParkAt: T0 + 300, waitReason: 'IO wait', blockedNs: 2e9, blockedByReason: { 'IO wait': 1.5e9, 'chan receive': 0.5e9 },
    }),
    // Not exported: short, barely blocked; still running; runtime-internal.
    gor(10, 7, { createdAt: T0, exitedAt: T0 + 5, blockedNs: 10 }),
    gor(10, 8, { createdAt: T0, exitedAt: null }),
    gor(10, 9, { createdAt: T0, exitedAt: T0 + 60_000, system: true }),
    conn(10, 40000, { goid: 6, error: 'connection refused', state: 'CLOSE', openedAt: T0 + 200, closedAt: T0 + 201 }),
    conn(10, 8080, {
      goid: 5, role: 'server', family: 'inet6', localAddress: 'fd00::1', peerAddress: 'fd00::2', peerPort: 51000,
      openedAt: T0 + 1000, closedAt: T0 + 15_000, bytesSent: 1234, bytesReceived: 99,
    }),
    conn(10, 40001, { openedAt: T0, closedAt: T0 + 1 }), // short and fine: not exported
  ]);
  // The exit of goroutine 5 re-sent in a later batch must not make a second span.
  await a.send(2, [gor(10, 5, { parentGoid: 1, createdAt: T0, exitedAt: T0 + 20_000, state: 'dead', observedAt: T0 + 30_000 })]);
  await c.flushExport();

  t.ok(rx.requests.length >= 1);
  t.ok(rx.requests.every((r) => r.url === '/v1/traces' && r.contentType.startsWith('application/json')), 'OTLP/HTTP JSON to /v1/traces');
  const spans = spansOf(rx.requests);
  t.same(spans.map((s) => s.name).sort(), ['main.acceptLoop', 'main.handle', 'tcp accept', 'tcp connect']);

  const traceId = processTraceId('node-a', 10, 1010);
  t.ok(spans.every((s) => s.traceId === traceId), 'one trace per process');
  const byName = Object.fromEntries(spans.map((s) => [s.name, s]));
  const parent = byName['main.acceptLoop'];
  const child = byName['main.handle'];
  t.equal(parent.spanId, goroutineSpanId('node-a', 10, 1010, 5));
  t.equal(parent.parentSpanId, goroutineSpanId('node-a', 10, 1010, 1), 'parent of 5 is goroutine 1 (not exported, still linked)');
  t.equal(child.parentSpanId, parent.spanId, 'child goroutine span is a child of its creator');
  t.equal(byName['tcp connect'].parentSpanId, child.spanId, 'connection span is a child of its goroutine');
  t.equal(byName['tcp accept'].parentSpanId, parent.spanId);

  t.equal(parent.startTimeUnixNano, String(BigInt(T0) * 1_000_000n));
  t.equal(parent.endTimeUnixNano, String(BigInt(T0 + 20_000) * 1_000_000n));
  t.equal(child.startTimeUnixNano, String(BigInt(T0 + 100) * 1_000_000n + 250_000n), 'fractional ms kept to the ns');
  t.equal(child.kind, 1, 'INTERNAL');

  t.match(parent.resource, {
    'service.name': 'app', 'process.pid': 10, 'process.executable.path': '/usr/bin/svc10', 'container.id': 'cid10',
    'k8s.pod.name': 'pod-10', 'k8s.namespace.name': 'default', 'k8s.node.name': 'node-a',
  });
  t.equal(parent.scope, 'goroscope');
  t.match(child.attributes, {
    'goroscope.goid': 6, 'goroscope.parent_goid': 5, 'goroscope.blocked_ns': 2e9, 'code.function.name': 'main.handle',
    'code.file.path': '/src/main.go', 'code.line.number': 42, 'goroscope.created_by.function': 'main.serve',
  });
  const blocked = child.events.filter((e: any) => e.name === 'goroutine.blocked').map((e: any) => e.attributes);
  t.same(blocked.map((b: any) => [b['goroscope.wait_reason'], b['goroscope.blocked_ns']]).sort(), [['IO wait', 1.5e9], ['chan receive', 0.5e9]]);
  const park = child.events.find((e: any) => e.name === 'goroutine.park');
  t.equal(park.timeUnixNano, String(BigInt(T0 + 300) * 1_000_000n));
  t.equal(park.attributes['goroscope.wait_reason'], 'IO wait');

  const failed = byName['tcp connect'];
  t.equal(failed.kind, 3, 'CLIENT');
  t.same(failed.status, { code: 2, message: 'connection refused' });
  t.match(failed.attributes, {
    'network.transport': 'tcp', 'network.type': 'ipv4', 'network.peer.address': '10.0.0.2', 'network.peer.port': 5432,
    'server.address': '10.0.0.2', 'server.port': 5432, 'client.address': '10.0.0.1', 'client.port': 40000, 'error.type': 'connection refused',
  });
  const server = byName['tcp accept'];
  t.equal(server.kind, 2, 'SERVER');
  t.match(server.attributes, {
    'network.type': 'ipv6', 'server.address': 'fd00::1', 'server.port': 8080, 'client.address': 'fd00::2', 'client.port': 51000,
    'goroscope.bytes_sent': 1234, 'goroscope.bytes_received': 99,
  });
  t.match((await api(c, '/metrics')).body, /goroscope_collector_export_spans_total 4/);
  a.close();
});

t.test('a sampled fraction of ordinary goroutines is exported, deterministically', async (t) => {
  const rx = await receiver(t);
  const c = await testCollector(t, { otlpEndpoint: rx.url, export: { sampleRatio: 0.25, scheduledDelayMs: 50, maxQueueSize: 5000 } });
  const a = new TestAgent(c.url);
  await a.hello();
  await a.send(1, [proc(10), ...Array.from({ length: 2000 }, (_, i) => gor(10, 100 + i, { exitedAt: T0 + 100 + i + 1, blockedNs: 0 }))]);
  await c.flushExport();
  const n = spansOf(rx.requests).length;
  t.ok(n > 400 && n < 600, `${n} of 2000 exported at 0.25`);
});

t.test('export failures are counted and do not disturb ingest', async (t) => {
  const rx = await receiver(t, 400);
  const c = await testCollector(t, { otlpEndpoint: `${rx.url}/custom/traces`, export: { sampleRatio: 1, scheduledDelayMs: 50 } });
  const a = new TestAgent(c.url);
  await a.hello();
  t.same(await a.send(1, [proc(10), gor(10, 5, { exitedAt: T0 + 10 })]), { type: 'ack', seq: 1 });
  await c.flushExport();
  t.equal(rx.requests[0]?.url, '/custom/traces', 'a full traces URL is used as given');
  t.match((await api(c, '/metrics')).body, /goroscope_collector_export_errors_total 1/);
  t.same(await a.send(2, [gor(10, 6)]), { type: 'ack', seq: 2 });
  a.close();
});

t.test('a fatal error is an error span in the process trace; only long pauses are exported', async (t) => {
  const rx = await receiver(t);
  const c = await testCollector(t, { otlpEndpoint: rx.url, export: { sampleRatio: 0, scheduledDelayMs: 50, longPauseMs: 10 } });
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
  const traceId = processTraceId('node-a', 10, 1010);
  t.ok(spans.every((s) => s.traceId === traceId), 'in the process trace');

  const fs = spans.find((s) => s.name === 'go fatal error');
  t.same(fs.status, { code: 2, message: 'fatal error: concurrent map writes' });
  t.equal(fs.parentSpanId, goroutineSpanId('node-a', 10, 1010, 42), 'child of the goroutine that died');
  t.equal(fs.startTimeUnixNano, String(BigInt(T0 + 5_000) * 1_000_000n + 500_000n));
  t.equal(fs.endTimeUnixNano, fs.startTimeUnixNano);
  t.match(fs.attributes, { 'goroscope.goid': 42, 'error.type': 'fatal error', 'exception.message': 'concurrent map writes' });
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
