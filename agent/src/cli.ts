// The goroscope command.
import { Command, InvalidArgumentError } from 'commander';
import { ProcessError } from './proc/process.ts';
import { runSnapshot } from './snapshot/run.ts';

export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`"${text}" is not a duration (e.g. 500ms, 5s, 2m)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * unit;
}

/** "2%", "0.5%" or a fraction such as "0.02". */
export function parsePercent(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(%)?$/.exec(text.trim());
  const v = m ? Number(m[1]) / (m[2] ? 100 : 1) : NaN;
  if (!(v > 0 && v <= 1)) throw new InvalidArgumentError(`"${text}" is not a share between 0 and 100%`);
  return v;
}

function parsePid(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) <= 0) throw new InvalidArgumentError(`"${text}" is not a pid`);
  return Number(text);
}

export function buildCli(): Command {
  const program = new Command('goroscope')
    .description('See inside Go services: goroutine lifecycle and TCP, from eBPF, with no restart.')
    .showHelpAfterError();

  program
    .command('snapshot')
    .description('attach to a Go process, observe it, detach, and print its goroutines')
    .requiredOption('--pid <pid>', 'the Go process', parsePid)
    .option('--duration <duration>', 'how long to observe', parseDuration, 5000)
    .option('--json', 'print one JSON object')
    .option('--system', "include the runtime's own goroutines (Go's dumps hide them)")
    .option('--overhead-budget <percent>', "CPU the probes may cost, as a share of the process's CPU", parsePercent, 0.02)
    .option('--full', 'keep every probe on (no overhead budget)')
    .option('--sample-parks <percent>', 'record parks and readies of this share of goroutines', parsePercent)
    .action(async (opts: { pid: number; duration: number; json?: boolean; system?: boolean; overheadBudget: number; full?: boolean; sampleParks?: number }) => {
      await runSnapshot({ ...opts, parkSampling: opts.sampleParks });
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  // `goroscope ... | head` closes our stdout early: that is the reader's choice, not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  try {
    await buildCli().parseAsync(argv);
  } catch (e) {
    // Errors a user can act on get one line; anything else keeps its stack for a bug report.
    const known = e instanceof ProcessError || (e instanceof Error && /not a Go program|cannot find|not permitted|Go \d/.test(e.message));
    process.stderr.write(`goroscope: ${known ? (e as Error).message : ((e as Error).stack ?? String(e))}\n`);
    process.exitCode = 1;
  }
}
