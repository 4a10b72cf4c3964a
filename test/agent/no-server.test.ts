// `goroscope agent` loads none of the collector's server: the agent shares with the collector only what the
// collector publishes to it (collector/src/protocol, net, otel), and those import nothing of the server. Held two
// ways: the static import graph of the agent's command (esbuild's own reading of it), and the modules a process
// that loads the agent's command really has loaded.
import t from 'tap';
import { execFile } from 'node:child_process';
import { relative } from 'node:path';
import { promisify } from 'node:util';
import { build, type Metafile } from 'esbuild';
import { repoRoot } from '../lib/go.ts';

const run = promisify(execFile);

/** Folders of collector/src the agent may import: they import nothing else of the collector. */
const PUBLISHED = ['collector/src/protocol/', 'collector/src/net/', 'collector/src/otel/'];
/** The collector's command declares its options and their defaults only (commander); its server loads when it runs. */
const COLLECTOR_OPTIONS = ['collector/src/cli.ts', 'collector/src/limits.ts'];
const SERVER_PACKAGES = /^(fastify|@fastify\/|better-sqlite3|fast-json-stringify|avvio)/;

/** Files and packages reached from the entries through static imports (dynamic imports load on demand). */
async function staticGraph(entries: string[]): Promise<{ files: Set<string>; packages: Set<string>; inputs: Metafile['inputs'] }> {
  const r = await build({
    entryPoints: entries.map((e) => `${repoRoot}/${e}`),
    bundle: true, write: false, metafile: true, platform: 'node', format: 'esm', packages: 'external', outdir: '/nonexistent', logLevel: 'silent',
  });
  const inputs = r.metafile.inputs;
  const files = new Set<string>();
  const packages = new Set<string>();
  const todo = [...entries];
  while (todo.length) {
    const f = todo.pop()!;
    if (files.has(f)) continue;
    files.add(f);
    for (const i of inputs[f]?.imports ?? []) {
      if (i.kind !== 'import-statement') continue;
      if (i.external) packages.add(i.path.startsWith('node:') ? i.path : i.path.split('/').slice(0, i.path.startsWith('@') ? 2 : 1).join('/'));
      else todo.push(i.path);
    }
  }
  return { files, packages, inputs };
}

t.test('the static import graph of the agent command reaches only what the collector publishes', async (t) => {
  const agent = await staticGraph(['agent/src/agent/run.ts']);
  const collectorFiles = [...agent.files].filter((f) => f.startsWith('collector/'));
  t.ok(collectorFiles.length > 0, `the agent does share code with the collector (${collectorFiles.join(', ')})`);
  t.same(collectorFiles.filter((f) => !PUBLISHED.some((p) => f.startsWith(p))), [], 'no collector file outside protocol/, net/, otel/');
  t.same([...agent.packages].filter((p) => SERVER_PACKAGES.test(p)), [], 'no server package');
  t.same([...agent.packages].filter((p) => p.startsWith('@opentelemetry/')), [], 'the OpenTelemetry SDK loads only with --otlp-endpoint');
  // ~800 modules, 20 MiB of source in V8's heap: only an agent with an API server to ask loads it.
  t.notOk(agent.packages.has('@kubernetes/client-node'), 'the Kubernetes client loads only in a cluster (or with GOROSCOPE_KUBECONFIG)');

  // The command line: option parsers, the collector's among them, and nothing a command runs.
  const cli = await staticGraph(['agent/src/cli.ts']);
  t.same([...cli.files].filter((f) => f.startsWith('collector/') && !COLLECTOR_OPTIONS.includes(f) && !PUBLISHED.some((p) => f.startsWith(p))), []);
  t.same([...cli.packages].filter((p) => !p.startsWith('node:')).sort(), ['commander'], 'the command line loads commander only');

  // What the collector publishes imports nothing of the rest of it.
  const published = await staticGraph(Object.keys(agent.inputs).filter((f) => PUBLISHED.some((p) => f.startsWith(p))));
  t.same([...published.files].filter((f) => !PUBLISHED.some((p) => f.startsWith(p))), [], 'protocol/, net/ and otel/ import only each other');
  t.same([...published.packages].filter((p) => SERVER_PACKAGES.test(p)), []);
});

t.test('a process that loads the agent command has no fastify or better-sqlite3 loaded', async (t) => {
  // What `goroscope agent` imports before it starts: the command line, then the agent's loop.
  const script = `
    const { buildCli } = await import(${JSON.stringify(`${repoRoot}/agent/src/cli.ts`)});
    buildCli();
    await import(${JSON.stringify(`${repoRoot}/agent/src/agent/run.ts`)});
    const { createRequire } = await import('node:module');
    const loaded = Object.keys(createRequire(import.meta.url).cache);
    process.stdout.write(JSON.stringify(loaded));`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !/TAP/i.test(k)));
  const r = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: repoRoot, env, timeout: 60_000, maxBuffer: 16 << 20 });
  const loaded = (JSON.parse(r.stdout) as string[]).map((f) => relative(repoRoot, f));
  const pkg = (name: string) => loaded.filter((f) => f.startsWith(`node_modules/${name}/`));
  t.ok(pkg('commander').length > 0, 'the module list is read (commander, which the command line needs, is in it)');
  t.same(pkg('fastify'), [], 'no fastify');
  t.same(pkg('better-sqlite3'), [], 'no better-sqlite3');
  // prom-client loads @opentelemetry/api (for exemplars): the SDK and exporters are what weigh.
  t.same(loaded.filter((f) => f.startsWith('node_modules/@opentelemetry/') && !f.startsWith('node_modules/@opentelemetry/api/')), [],
    'no OpenTelemetry SDK or exporter without --otlp-endpoint');
});
