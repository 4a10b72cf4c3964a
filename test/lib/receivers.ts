// Real OpenTelemetry receivers for the tests, built from the Go module proxy by scripts/receivers/build.sh (cached
// under build/receivers): Jaeger v2 with its query API, and the OpenTelemetry Collector with its file exporter.
// A receiver that cannot be built within the tests' budget is a loud skip with the reason; `.ci/run` builds both
// before the tests, so CI runs them.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { startChild, type Child, type Teardown } from './child.ts';
import { repoRoot } from './go.ts';


/** How long a test waits for a receiver's build (a cached one takes seconds; a first Jaeger build ~7 min or more). */
const BUILD_WAIT_MS = Number(process.env.GOROSCOPE_RECEIVER_BUILD_MS ?? 180_000);

/** The receiver's binary, built if needed within BUILD_WAIT_MS; otherwise why not (the reason to skip with). */
export function receiverBinary(name: 'jaeger' | 'otelcol'): { bin: string } | { skip: string } {
  const r = spawnSync('bash', [join(repoRoot, 'scripts/receivers/build.sh'), name], { encoding: 'utf8', timeout: BUILD_WAIT_MS, killSignal: 'SIGKILL' });
  const bin = r.stdout?.trim().split('\n').pop();
  if (r.status === 0 && bin && existsSync(join(repoRoot, bin))) return { bin: join(repoRoot, bin) };
  const why = r.error?.message.includes('ETIMEDOUT') || r.signal
    ? `not built within ${BUILD_WAIT_MS / 1000} s (a first build takes minutes; .ci/run builds it before the tests)`
    : (r.stderr || r.error?.message || '').trim().split('\n').slice(-3).join(' | ');
  return { skip: `${name} receiver unavailable: ${why}. Build it with: bash scripts/receivers/build.sh ${name}` };
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

interface Started { proc: Child; dir: string; log: () => string }

/** Starts a receiver with a config file; resolves once `ready` answers, rejects with its log after `timeoutMs`. */
async function startReceiver(t: Teardown, bin: string, config: string, ready: () => Promise<boolean>, timeoutMs = 30_000): Promise<Started> {
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-receiver-'));
  const file = join(dir, 'config.yaml');
  writeFileSync(file, config.replaceAll('@DIR@', dir));
  const proc = startChild(bin, ['--config', file], { what: basename(bin), mergeStderr: true });
  const log = () => proc.out;
  t.teardown(async () => {
    await proc.stop('SIGTERM', 5000);
    rmSync(dir, { recursive: true, force: true });
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exited) throw new Error(`${bin} exited at start:\n${log().slice(-3000)}`);
    if (await ready().catch(() => false)) return { proc, dir, log };
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${bin} not ready after ${timeoutMs / 1000} s:\n${log().slice(-3000)}`);
}

export interface Jaeger {
  /** OTLP/HTTP endpoint, e.g. http://127.0.0.1:4318 */
  otlp: string;
  /** The query service's HTTP API, e.g. http://127.0.0.1:16686 */
  query: string;
  log(): string;
  /** GET on the query API, JSON. */
  get(path: string): Promise<any>;
}

/** Jaeger v2 with in-memory storage: OTLP/HTTP in, the query API out; no other listener. */
export async function startJaeger(t: Teardown, bin: string): Promise<Jaeger> {
  const [otlpPort, queryPort, grpcPort] = [await freePort(), await freePort(), await freePort()];
  const config = `
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:${queryPort}
    grpc:
      endpoint: 127.0.0.1:${grpcPort}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${otlpPort}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`;
  const query = `http://127.0.0.1:${queryPort}`;
  const get = async (path: string) => {
    const r = await fetch(`${query}${path}`, { signal: AbortSignal.timeout(10_000) });
    if (!r.ok) throw new Error(`Jaeger ${path}: HTTP ${r.status} ${await r.text()}`);
    return r.json();
  };
  const s = await startReceiver(t, bin, config, async () => (await fetch(`${query}/api/services`, { signal: AbortSignal.timeout(2000) })).ok);
  return { otlp: `http://127.0.0.1:${otlpPort}`, query, log: s.log, get };
}

export interface Otelcol {
  otlp: string;
  log(): string;
  /** What the file exporter wrote: one OTLP/JSON export request per line. */
  lines(): any[];
}

/** The OpenTelemetry Collector: OTLP/HTTP in, every signal to its file exporter (OTLP/JSON lines). */
export async function startOtelcol(t: Teardown, bin: string, port?: number): Promise<Otelcol> {
  const otlpPort = port ?? await freePort();
  const config = `
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${otlpPort}
exporters:
  file:
    path: @DIR@/otlp.jsonl
    flush_interval: 100ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [file]
    metrics:
      receivers: [otlp]
      exporters: [file]
    logs:
      receivers: [otlp]
      exporters: [file]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
`;
  const otlp = `http://127.0.0.1:${otlpPort}`;
  // The receiver answers 405 to GET on its path once it listens.
  const s = await startReceiver(t, bin, config, async () => (await fetch(`${otlp}/v1/traces`, { signal: AbortSignal.timeout(2000) })).status === 405);
  const file = join(s.dir, 'otlp.jsonl');
  return {
    otlp,
    log: s.log,
    // Whole lines only: the exporter's buffered writer may be half-way through one.
    lines: () => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(0, -1).filter(Boolean).map((l) => JSON.parse(l)) : []),
  };
}
