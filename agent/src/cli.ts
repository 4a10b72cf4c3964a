// The goroscope command.
import { Command, InvalidArgumentError, Option } from 'commander';
import { ProcessError } from './proc/process.ts';
import { defineCollectorOptions, collectorOptionsFrom, runCollector } from '../../collector/src/cli.ts';
import { startAgent } from './agent/run.ts';
import { runSnapshot } from './snapshot/run.ts';
import { runTop } from './top/top.ts';

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
    .showHelpAfterError()
    .addOption(
      new Option('--event-transport <transport>', 'how records leave the kernel: BPF ring buffer (5.8+) or perf buffers')
        .choices(['auto', 'ringbuf', 'perf'])
        .env('GOROSCOPE_EVENT_TRANSPORT')
        .default('auto'),
    )
    .hook('preAction', (cmd) => {
      // The tracers read it when they open their BPF objects (agent/src/bpf/events-source.ts).
      process.env.GOROSCOPE_EVENT_TRANSPORT = cmd.opts().eventTransport as string;
    });

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
    .option('--sample-retransmits <percent>', 'record this share of TCP retransmits in detail (counts stay exact)', parsePercent)
    .option('--no-tcp', "leave the process's TCP connections out")
    .action(async (opts: { pid: number; duration: number; json?: boolean; system?: boolean; overheadBudget: number; full?: boolean; sampleParks?: number; sampleRetransmits?: number; tcp: boolean }) => {
      await runSnapshot({ ...opts, parkSampling: opts.sampleParks, retransmitSampling: opts.sampleRetransmits });
    });

  program
    .command('top')
    .description("a live view of a Go process's goroutines by creation site and wait reason (q to quit)")
    .requiredOption('--pid <pid>', 'the Go process', parsePid)
    .option('--interval <duration>', 'time between frames', parseDuration, 1000)
    .option('--iterations <n>', 'stop after n frames', (v: string) => parsePid(v))
    .option('--overhead-budget <percent>', "CPU the probes may cost, as a share of the process's CPU", parsePercent, 0.02)
    .option('--full', 'keep every probe on')
    .action(async (o: { pid: number; interval: number; iterations?: number; overheadBudget: number; full?: boolean }) => {
      await runTop({ pid: o.pid, intervalMs: o.interval, iterations: o.iterations, overheadBudget: o.overheadBudget, full: o.full });
    });

  program
    .command('agent')
    .description("watch this node's Go processes and ship what they do to a collector")
    .requiredOption('--collector <url>', 'the collector, e.g. ws://collector:7070 (token from GOROSCOPE_INGEST_TOKEN)')
    .option('--pid <pid...>', 'only these processes (default: every Go process on the node)', (v: string, prev: number[] = []) => [...prev, parsePid(v)])
    .option('--overhead-budget <percent>', "CPU the probes may cost, as a share of each process's CPU", parsePercent, 0.02)
    .option('--full', 'keep every probe on (no overhead budget)')
    .option('--sample-parks <percent>', 'record parks and readies of this share of goroutines', parsePercent)
    .option('--sample-retransmits <percent>', 'record this share of TCP retransmits in detail (counts stay exact)', parsePercent)
    .option('--spool-dir <dir>', 'keep unacknowledged batches here while the collector is away', '/var/lib/goroscope/spool')
    .option('--max-spool-bytes <bytes>', 'bound on the spool; past it the oldest batches are dropped and counted', (v: string) => Number(v), 256 << 20)
    .option('--node <name>', 'node name (default: $NODE_NAME or the hostname)')
    .option('--metrics-listen <host:port>', 'serve Prometheus /metrics here', '127.0.0.1:9464')
    .option('--leak-min-age <duration>', 'a live goroutine older than this counts towards its creation site', parseDuration, 60_000)
    .action(async (o: { collector: string; pid?: number[]; overheadBudget: number; full?: boolean; sampleParks?: number; sampleRetransmits?: number; spoolDir: string; maxSpoolBytes: number; node?: string; metricsListen: string; leakMinAge: number }) => {
      const agent = await startAgent({
        collector: o.collector,
        token: process.env.GOROSCOPE_INGEST_TOKEN || undefined,
        pids: o.pid,
        overheadBudget: o.overheadBudget,
        full: o.full,
        parkSampling: o.sampleParks,
        retransmitSampling: o.sampleRetransmits,
        spoolDir: o.spoolDir,
        maxSpoolBytes: o.maxSpoolBytes,
        node: o.node,
        metricsListen: o.metricsListen,
        leaks: { minAgeMs: o.leakMinAge },
      });
      await new Promise<void>((resolve) => {
        const stop = () => void agent.stop().finally(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });

  defineCollectorOptions(program.command('collector')).action(async (o) => {
    await runCollector(collectorOptionsFrom(o));
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
