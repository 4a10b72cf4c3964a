// Agent memory per live goroutine: a Go fixture parks N goroutines (1M by default: ~3 GB in the target), then
// a child Node process (scripts/bench/memory-child.ts, nothing else in its heap) attaches a GoroutineTracer,
// whose inventory reads runtime.allgs, and reports process.memoryUsage() before and after.
import { join } from 'node:path';
import { build as esbuild } from 'esbuild';
import { buildFixture, figure, startProcess, repoRoot, round, type BenchContext, type Child, type Figure } from './lib.ts';

interface Mem {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

interface ChildResult {
  tableSize: number;
  tableColumnBytes: number;
  inventoried: number;
  unreadable: number;
  dead: number;
  probes: number;
  openMs: number;
  attachMs: number;
  node: Mem;
  idle: Mem;
  opened: Mem;
  attached: Mem;
  tableOnly: Mem;
  idleMappings: Record<string, number>;
  attachedMappings: Record<string, number>;
}

/** RSS of a bare `node` and of `node --import tsx`: the floor under the agent's own memory. */
async function baselineRss(args: string[]): Promise<number> {
  const p = startProcess(process.execPath, [...args, '-e', 'setTimeout(() => console.log("RSS " + process.memoryUsage().rss), 300)'], 'node baseline', { cwd: repoRoot });
  try {
    return Number((await p.until(/^RSS (\d+)$/m, 60_000))[1]);
  } finally {
    await p.stop('SIGKILL');
  }
}

const MiB = 2 ** 20;
/** heapUsed + external: everything the agent holds, JS objects and typed-array backing stores. */
const held = (m: Mem) => m.heapUsed + m.external;

export async function runMemory(ctx: BenchContext, goroutines?: number): Promise<Figure[]> {
  const bench = 'memory';
  const n = goroutines ?? (ctx.quick ? 20_000 : 1_000_000);
  const binary = buildFixture('parked', ctx.goVersion);
  const fixture = startProcess(binary, ['-n', String(n)], 'parked');
  let child: Child | undefined;
  try {
    const ready = await fixture.until(/^READY n=(\d+) goroutines=(\d+)$/m, 600_000);
    ctx.log(`memory: ${ready[2]} goroutines parked in pid ${fixture.pid}`);
    // The child runs bundled, with plain node, as the image runs the agent (dist/goroscope.mjs): no
    // TypeScript loader in its memory.
    const script = join(repoRoot, 'build', 'bench', 'memory-child.mjs');
    await esbuild({
      entryPoints: [join(repoRoot, 'scripts', 'bench', 'memory-child.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      outfile: script,
      logLevel: 'warning',
    });
    child = startProcess(process.execPath, ['--expose-gc', script, String(fixture.pid)], 'memory-child', { cwd: repoRoot });
    const m = await child.until(/^RESULT (.*)$/m, 600_000);
    const r = JSON.parse(m[1]) as ChildResult;
    const count = r.tableSize;
    const bareNode = await baselineRss([]);
    const nodeTsx = await baselineRss(['--import', 'tsx']);
    const mappings = Object.entries(r.idleMappings)
      .sort((a, b) => b[1] - a[1])
      .map(([k, v]) => `${k} ${round(v / MiB)}`)
      .join(', ');
    const cmd = `${ctx.invocation} # parked -n ${n} (Go ${ctx.goVersion}); node --expose-gc build/bench/memory-child.mjs <pid> (scripts/bench/memory-child.ts bundled, as the image runs the agent): GoroutineTracer.attach (every probe + allgs inventory), process.memoryUsage() after gc()`;
    const per = (a: Mem, b: Mem, f: (m: Mem) => number) => round((f(b) - f(a)) / count);
    const out: Figure[] = [
      figure({ id: `${bench}.goroutines`, bench, label: 'live goroutines in the agent\'s table after attach', value: count, unit: 'goroutines', command: cmd, note: `fixture parked ${n}; inventory listed ${r.inventoried} (unreadable ${r.unreadable}, dead ${r.dead}); ${r.probes} probes attached` }),
      figure({
        id: `${bench}.bytes_per_goroutine.rss`,
        bench,
        label: 'agent RSS per live goroutine, as attached (table + the inventory list the tracer keeps)',
        value: per(r.opened, r.attached, (x) => x.rss),
        unit: 'B/goroutine',
        command: cmd,
        target: { op: '<=', value: 300 },
      }),
      figure({
        id: `${bench}.bytes_per_goroutine.held`,
        bench,
        label: 'agent heapUsed + external per live goroutine, as attached',
        value: per(r.opened, r.attached, held),
        unit: 'B/goroutine',
        command: cmd,
        target: { op: '<=', value: 300 },
      }),
      figure({
        id: `${bench}.bytes_per_goroutine.held_table_only`,
        bench,
        label: 'agent heapUsed + external per live goroutine once proc.inventory.goroutines is dropped (the table alone)',
        value: per(r.opened, r.tableOnly, held),
        unit: 'B/goroutine',
        command: cmd,
        target: { op: '<=', value: 300 },
        note: `table columns: ${round(r.tableColumnBytes / count)} B/goroutine (capacity-rounded); the rest is the goid Map`,
      }),
      figure({
        id: `${bench}.bytes_per_goroutine.rss_table_only`,
        bench,
        label: 'agent RSS per live goroutine once the inventory list is dropped (V8 may keep freed pages)',
        value: per(r.opened, r.tableOnly, (x) => x.rss),
        unit: 'B/goroutine',
        command: cmd,
      }),
      figure({
        id: `${bench}.rss.idle`,
        bench,
        label: 'idle agent RSS (tracer constructed, BPF loaded, reader running, nothing attached)',
        value: round(r.idle.rss / MiB),
        unit: 'MiB',
        command: cmd,
        target: { op: '<=', value: 100 },
        note: `bare node ${round(bareNode / MiB)} MiB; node --import tsx ${round(nodeTsx / MiB)} MiB; + the agent's modules ${round(r.node.rss / MiB)} MiB; + tracer ${round(r.idle.rss / MiB)} MiB. Idle RSS by mapping (MiB): ${mappings}`,
      }),
      figure({ id: `${bench}.rss.bare_node`, bench, label: 'RSS of a bare node process (floor)', value: round(bareNode / MiB), unit: 'MiB', command: `node -e '...process.memoryUsage().rss'` }),
      figure({ id: `${bench}.rss.node_tsx`, bench, label: 'RSS of node --import tsx (how the sources run; the image runs the bundle)', value: round(nodeTsx / MiB), unit: 'MiB', command: `node --import tsx -e '...process.memoryUsage().rss'` }),
      figure({ id: `${bench}.rss.agent_modules`, bench, label: "RSS with the agent's modules loaded, before the tracer", value: round(r.node.rss / MiB), unit: 'MiB', command: cmd }),
      figure({ id: `${bench}.rss.attached`, bench, label: `agent RSS with ${count} goroutines tracked`, value: round(r.attached.rss / MiB), unit: 'MiB', command: cmd }),
      figure({ id: `${bench}.heap.attached`, bench, label: `agent heapUsed with ${count} goroutines tracked`, value: round(r.attached.heapUsed / MiB), unit: 'MiB', command: cmd }),
      figure({ id: `${bench}.external.attached`, bench, label: `agent external (typed arrays) with ${count} goroutines tracked`, value: round(r.attached.external / MiB), unit: 'MiB', command: cmd, note: `arrayBuffers ${round(r.attached.arrayBuffers / MiB)} MiB` }),
      figure({ id: `${bench}.time.open_binary`, bench, label: 'open the target binary (ELF, build info, pclntab)', value: round(r.openMs), unit: 'ms', command: cmd }),
      figure({ id: `${bench}.time.attach`, bench, label: `attach: plan + attach every probe + inventory of ${r.inventoried + r.unreadable + r.dead} allgs entries`, value: round(r.attachMs), unit: 'ms', command: cmd }),
      figure({ id: `${bench}.time.attach_per_goroutine`, bench, label: 'attach time per goroutine (the inventory reads each g with one pread)', value: round((r.attachMs * 1e6) / Math.max(1, r.inventoried), 0), unit: 'ns/goroutine', command: cmd }),
    ];
    ctx.log(`memory: ${count} goroutines, attach ${r.attachMs.toFixed(0)} ms, rss ${((r.attached.rss - r.opened.rss) / count).toFixed(0)} B/g`);
    return out;
  } finally {
    await child?.stop('SIGKILL');
    fixture.send('quit');
    await fixture.stop('SIGKILL', 2000);
  }
}
