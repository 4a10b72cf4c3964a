// test/fixtures/traces, the service the trace exports are checked on (units of work, parks, connections and a
// leak), and agent options that make its traces quickly: the Jaeger and OpenTelemetry Collector tests share both.
import { join } from 'node:path';
import type { AgentOptions } from '../../agent/src/agent/run.ts';
import { startChild, type Child, type Teardown } from './child.ts';
import { goBuild, repoRoot } from './go.ts';

export const tracesFixtureSrc = join(repoRoot, 'test', 'fixtures', 'traces');

/** Builds and starts it, READY within 20 s; it serves once told "go". */
export async function startTracesService(t: Teardown, args = ['-fetch', '1200ms', '-every', '300ms']): Promise<Child> {
  const svc = startChild(goBuild({ srcDir: tracesFixtureSrc }), args, { what: 'traces fixture', timeoutMs: 20_000, t });
  await svc.until(/^READY \d+$/m);
  return svc;
}

/** Short report intervals and scans, a leak flagged within seconds, spans cut every 4 s, no profiles. */
export const quickTraceOptions = {
  overheadBudget: 0.02,
  full: true,
  intervalMs: 300,
  scanMs: 300,
  leakSampleMs: 1000,
  leaks: { minAgeMs: 1500, minCount: 5 },
  trace: { segmentMs: 4000, parkSpanMinMs: 500, unitRootAgeMs: 1000 },
  profileIntervalMs: 0,
} satisfies Partial<AgentOptions>;
