// A collector in a process of its own, as on a node (`goroscope collector`), for the tests and benchmarks that
// kill it, restart it, or must not share an event loop with it. Started through test/lib/child.ts: its start
// has a minute at most and fails with the collector's own stderr.
import { join } from 'node:path';
import { startChild, type Child, type Teardown } from './child.ts';
import { repoRoot } from './go.ts';

export interface CollectorProcessOptions {
  db: string;
  /** Its ingest and API tokens (GOROSCOPE_INGEST_TOKEN, GOROSCOPE_API_TOKEN). */
  ingestToken: string;
  apiToken: string;
  listen?: string;
  /** More options of `goroscope collector`. */
  args?: string[];
  /** Node's own options (--cpu-prof ...). */
  nodeArgs?: string[];
  /** The checkout whose bundled CLI runs (a baseline's, in a side-by-side bench); this one by default. */
  root?: string;
  /** Run from the sources (tsx) rather than the bundle. */
  fromSources?: boolean;
  t?: Teardown;
}

export interface CollectorProcess {
  proc: Child;
  url: string;
  port: number;
}

export async function startCollectorProcess(o: CollectorProcessOptions): Promise<CollectorProcess> {
  const root = o.root ?? repoRoot;
  const entry = o.fromSources ? ['--import', 'tsx', join(root, 'collector/src/cli-main.ts')] : [join(root, 'bin/goroscope.js'), 'collector'];
  const proc = startChild(process.execPath, [...(o.nodeArgs ?? []), ...entry, '--listen', o.listen ?? '127.0.0.1:0', '--db', o.db, ...(o.args ?? [])], {
    cwd: root,
    env: { ...process.env, GOROSCOPE_INGEST_TOKEN: o.ingestToken, GOROSCOPE_API_TOKEN: o.apiToken },
    what: 'collector',
    timeoutMs: 60_000,
    t: o.t,
  });
  const url = (await proc.until(/"url":"([^"]+)"/))[1];
  return { proc, url, port: Number(new URL(url).port) };
}
