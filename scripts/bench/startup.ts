// How long goroscope takes to start, side by side in one run: the bundle bin/goroscope.js runs (dist/, built by
// scripts/setup.sh) against the TypeScript sources through tsx (the path before the bundle, and still the one a
// developer's edit takes), with node's own start as the baseline. Rounds interleave the three, so machine noise
// hits all alike. Figures: ms to `--help`; ms to a snapshot's first answer (a pid that does not exist: the
// command has loaded and run its checks); ms to "observing" (BPF loaded, probes attached to a real Go program).
import { join } from 'node:path';
import { buildBundle } from '../build-js.mjs';
import { buildFixture, figure, startProcess, median, repoRoot, round, type BenchContext, type Figure } from './lib.ts';

type Path = 'node' | 'bundle' | 'sources';

const argv: Record<Exclude<Path, 'node'>, string[]> = {
  bundle: [join(repoRoot, 'bin', 'goroscope.js')],
  sources: ['--import', 'tsx', join(repoRoot, 'agent', 'src', 'main.ts')],
};

/** Wall ms from spawn until `done` says so (a line on stderr/stdout) or the process exits. */
async function timeRun(args: string[], done?: RegExp): Promise<number> {
  const start = process.hrtime.bigint();
  const c = startProcess(process.execPath, args, args.join(' '), { cwd: repoRoot, mergeStderr: true });
  if (done) await c.until(done);
  else await c.exit();
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  // Gone before the next run starts, so runs never overlap.
  if (done) await c.stop('SIGINT');
  return ms;
}

export async function runStartup(ctx: BenchContext): Promise<Figure[]> {
  // Fresh, so bin/goroscope.js takes it (a source newer than the bundle sends it to the sources).
  await buildBundle();
  const rounds = ctx.quick ? 3 : 7;
  const prog = startProcess(buildFixture('parked', ctx.goVersion), ['-n', '1000'], 'parked');
  await prog.until(/READY/);
  const help: Record<Path, number[]> = { node: [], bundle: [], sources: [] };
  const firstAnswer: Record<Path, number[]> = { node: [], bundle: [], sources: [] };
  const observing: Record<Path, number[]> = { node: [], bundle: [], sources: [] };
  try {
    // One snapshot first, so calibration is cached and every measured start does the same work.
    await timeRun([...argv.bundle, 'snapshot', '--pid', String(prog.pid), '--duration', '100ms']);
    for (let i = 0; i < rounds; i++) {
      help.node.push(await timeRun(['-e', '0']));
      for (const p of ['bundle', 'sources'] as const) {
        help[p].push(await timeRun([...argv[p], '--help']));
        firstAnswer[p].push(await timeRun([...argv[p], 'snapshot', '--pid', '999999999']));
        observing[p].push(await timeRun([...argv[p], 'snapshot', '--pid', String(prog.pid), '--duration', '30s'], /observing pid/));
      }
      ctx.log(`startup: round ${i + 1}/${rounds}`);
    }
  } finally {
    await prog.stop('SIGKILL');
  }
  const node = median(help.node);
  const cmd = (what: string) => `${ctx.invocation} (startup: ${what}, median of ${rounds} interleaved rounds)`;
  const figs: Figure[] = [
    figure({ id: 'startup.node', bench: 'startup', label: "node's own start (node -e 0)", value: round(node), unit: 'ms', command: cmd('node -e 0'), samples: help.node.map((x) => round(x)) }),
  ];
  for (const p of ['bundle', 'sources'] as const) {
    const label = p === 'bundle' ? 'bundle (bin/goroscope.js)' : 'sources through tsx (before)';
    figs.push(
      figure({ id: `startup.help.${p}`, bench: 'startup', label: `goroscope --help, ${label}`, value: round(median(help[p])), unit: 'ms', command: cmd('--help'), samples: help[p].map((x) => round(x)) }),
      figure({
        id: `startup.help_over_node.${p}`, bench: 'startup', label: `--help beyond node's own start, ${label}`, value: round(median(help[p]) - node), unit: 'ms',
        command: cmd('--help minus node -e 0'), ...(p === 'bundle' ? { target: { op: '<=', value: 300 } } : {}),
      }),
      figure({
        id: `startup.snapshot_first_answer_over_node.${p}`, bench: 'startup', label: `snapshot's first answer (bad pid) beyond node's own start, ${label}`,
        value: round(median(firstAnswer[p]) - node), unit: 'ms', command: cmd('snapshot --pid 999999999'), samples: firstAnswer[p].map((x) => round(x)),
        ...(p === 'bundle' ? { target: { op: '<=', value: 300 } } : {}),
      }),
      figure({
        id: `startup.observing.${p}`, bench: 'startup', label: `snapshot to "observing" (BPF loaded, probes attached; 1000 goroutines), ${label}`,
        value: round(median(observing[p])), unit: 'ms', command: cmd('snapshot --pid PID until "observing pid"'), samples: observing[p].map((x) => round(x)),
      }),
    );
  }
  return figs;
}
