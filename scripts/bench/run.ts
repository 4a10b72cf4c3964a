// goroscope benchmarks, side by side in one run (never timed tests): `npm run bench`.
//
//   npm run bench -- [--only hit-cost,http,request-cost,pipeline,memory,agent-memory,startup,tcp-attach,stacks,scan] [--quick]
//                    [--out bench/results] [--go local] [--memory-goroutines 1000000] [--stacks-goroutines 100000] [--agent-baseline DIR]
//                    [--http-configs default,full] [--http-handlers hello] [--http-rounds N] [--http-baseline DIR]
//
// Writes <out>/latest.json (every figure with its unit, target and the command that produced it) and
// <out>/latest.md (the same as Markdown tables). The machine is shared and noisy: every comparison is a ratio
// of configurations interleaved in the same run, with medians of the repetitions.
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { goVersionOf } from '../../test/lib/go.ts';
import { runHitCost } from './hit-cost.ts';
import { runHttpLoad } from './http-load.ts';
import { runRequestCost } from './request-cost.ts';
import { runPipeline } from './pipeline.ts';
import { runMemory } from './memory.ts';
import { runAgentMemory } from './agent-memory.ts';
import { runStartup } from './startup.ts';
import { runTcpAttach } from './tcp-attach.ts';
import { runStacks } from './stacks.ts';
import { runScan } from './scan.ts';
import { runCollectorApi, runCollectorCrash, runCollectorIngest } from './collector.ts';
import { renderMarkdown } from './report.ts';
import { repoRoot, type BenchContext, type Figure } from './lib.ts';

export const BENCHES = ['hit-cost', 'pipeline', 'memory', 'agent-memory', 'http', 'request-cost', 'startup', 'tcp-attach', 'stacks', 'scan', 'collector-ingest', 'collector-crash', 'collector-api'] as const;
export type BenchName = (typeof BENCHES)[number];

export interface BenchResults {
  schema: 1;
  startedAt: string;
  finishedAt: string;
  quick: boolean;
  invocation: string;
  machine: { cpus: number; cpuModel: string; memBytes: number; kernel: string; node: string; go: string };
  benches: string[];
  errors: Record<string, string>;
  figures: Figure[];
}

const { values: args } = parseArgs({
  options: {
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    out: { type: 'string', default: join(repoRoot, 'bench', 'results') },
    go: { type: 'string', default: 'local' },
    'memory-goroutines': { type: 'string' },
    'agent-baseline': { type: 'string' },
    'agent-processes': { type: 'string' },
    'stacks-goroutines': { type: 'string' },
    'collector-agents': { type: 'string' },
    'http-configs': { type: 'string' },
    'http-handlers': { type: 'string' },
    'http-rounds': { type: 'string' },
    'http-seconds': { type: 'string' },
    'http-baseline': { type: 'string' },
    'collector-seconds': { type: 'string' },
    'collector-rows': { type: 'string' },
    'collector-baseline': { type: 'string' },
    'collector-rounds': { type: 'string' },
    'collector-max-bytes': { type: 'string' },
  },
});
const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
const list = (v: string | undefined) => v?.split(',').map((x) => x.trim()).filter(Boolean);

const selected: BenchName[] = args.only
  ? args.only.split(',').map((s) => {
      const name = s.trim() === 'http-load' ? 'http' : s.trim();
      if (!(BENCHES as readonly string[]).includes(name)) throw new Error(`unknown bench "${s}" (known: ${BENCHES.join(', ')})`);
      return name as BenchName;
    })
  : [...BENCHES];

const outDir = resolve(args.out!);
mkdirSync(outDir, { recursive: true });
const invocation = `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim();
const log = (msg: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const ctx: BenchContext = { quick: args.quick!, goVersion: args.go!, invocation, log };

if (process.getuid?.() !== 0) log('warning: not root; attaching uprobes needs CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN');

const results: BenchResults = {
  schema: 1,
  startedAt: new Date().toISOString(),
  finishedAt: '',
  quick: ctx.quick,
  invocation,
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memBytes: totalmem(),
    kernel: release(),
    node: process.version,
    go: safe(() => goVersionOf(ctx.goVersion)),
  },
  benches: selected,
  errors: {},
  figures: [],
};

function safe(f: () => string): string {
  try {
    return f();
  } catch (e) {
    return `unknown (${(e as Error).message.split('\n')[0]})`;
  }
}

function write(): void {
  results.finishedAt = new Date().toISOString();
  writeFileSync(join(outDir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(join(outDir, 'latest.md'), renderMarkdown(results));
}

const runners: Record<BenchName, () => Promise<Figure[]>> = {
  'hit-cost': () => runHitCost(ctx),
  pipeline: () => runPipeline(ctx),
  memory: () => runMemory(ctx, args['memory-goroutines'] ? Number(args['memory-goroutines']) : undefined),
  'agent-memory': () => runAgentMemory(ctx, { baseline: args['agent-baseline'], processes: num(args['agent-processes']) }),
  http: () => runHttpLoad(ctx, { configs: list(args['http-configs']), handlers: list(args['http-handlers']), rounds: num(args['http-rounds']), seconds: num(args['http-seconds']), baseline: args['http-baseline'] }),
  'request-cost': () => runRequestCost(ctx),
  startup: () => runStartup(ctx),
  'tcp-attach': () => runTcpAttach(ctx),
  stacks: () => runStacks(ctx, args['stacks-goroutines'] ? Number(args['stacks-goroutines']) : undefined),
  scan: () => runScan(ctx),
  'collector-ingest': () => runCollectorIngest(ctx, {
    agents: num(args['collector-agents']), seconds: num(args['collector-seconds']), baseline: args['collector-baseline'], rounds: num(args['collector-rounds']),
    maxBytes: num(args['collector-max-bytes']),
  }),
  'collector-crash': () => runCollectorCrash(ctx, { agents: num(args['collector-agents']) }),
  'collector-api': () => runCollectorApi(ctx, { rows: num(args['collector-rows']) }),
};

for (const name of selected) {
  log(`${name}: start`);
  try {
    const figs = await runners[name]();
    results.figures.push(...figs);
    log(`${name}: ${figs.length} figures`);
  } catch (e) {
    results.errors[name] = (e as Error).stack ?? String(e);
    log(`${name}: FAILED ${(e as Error).message}`);
  }
  write();
}
write();
log(`wrote ${relative(process.cwd(), join(outDir, 'latest.json'))} and latest.md`);
process.exitCode = Object.keys(results.errors).length ? 1 : 0;
