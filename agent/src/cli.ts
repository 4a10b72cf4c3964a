// The goroscope command. Only commander and the option parsers load at start: each command's code (BPF, the
// collector's server, Kubernetes, OpenTelemetry) is imported when that command runs, so `--help` and the start
// of a snapshot do not pay for the others.
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { Command, InvalidArgumentError, Option } from 'commander';
import { collectorOptionsFrom, defineCollectorOptions } from '../../collector/src/cli.ts';
import { ProcessError } from './proc/process.ts';
import { firstLine, UserError } from './health/explain.ts';
import { ListenError, listenAddressOption } from '../../collector/src/net/listen-address.ts';

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

/**
 * V8's tier-up budget for the agent in default mode (bytecode a function runs before it is optimized; V8's
 * default is 66 KiB). There the agent's work comes in bursts (an on-window's records, a ship every 2 s) between
 * waits: at the default, V8 optimized its functions on thin type feedback, threw the code away at the next branch
 * it had not seen (deopt), and compiled them again; TurboFan's background threads were ~45% of a young agent's
 * CPU. At 8x, functions are optimized later and once, and lukewarm ones stay in the baseline tiers. Not with
 * --full: its records come without pause, hot code is optimized soon either way, and the later tier-up cost its
 * young agent ~10% more CPU at 10k requests/s.
 */
export const AGENT_INTERRUPT_BUDGET = 8 * 67_584;

/** A PEM file, read when the options are parsed: a wrong path is one line before anything starts. */
/** The options of the commands that trace (snapshot, agent): the probes' overhead budget and what they sample. */
function probeOptions(whose: string): Option[] {
  return [
    new Option('--overhead-budget <percent>', `CPU the probes may cost, as a share of ${whose} CPU`).argParser(parsePercent).default(0.02),
    new Option('--full', 'keep every probe on (no overhead budget)'),
    new Option('--sample-parks <percent>', 'record parks and readies of this share of goroutines').argParser(parsePercent),
    new Option('--sample-retransmits <percent>', 'record this share of TCP retransmits in detail (counts stay exact)').argParser(parsePercent),
    new Option('--tcp-syscall-hooks', 'hook connect/accept exits: accept owners of non-Go processes and connect(2) failures before a SYN, ' +
      'at a cost to every syscall of every process on the node (Go processes have their accept owners without them)'),
  ];
}

function readPemFile(path: string): Buffer {
  let pem: Buffer;
  try {
    pem = readFileSync(path);
  } catch (e) {
    throw new InvalidArgumentError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new InvalidArgumentError(`${path} holds no PEM certificate`);
  return pem;
}

/** An http:// or https:// URL (OTLP/HTTP), checked at parse time. */
function parseHttpUrl(text: string): string {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new InvalidArgumentError(`"${text}" is not a URL (e.g. http://otel-collector:4318)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidArgumentError(`"${text}": OTLP/HTTP needs http:// or https://`);
  return text;
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

  const snapshotCmd = program
    .command('snapshot')
    .description('attach to a Go process, observe it, detach, and print its goroutines')
    .requiredOption('--pid <pid>', 'the Go process', parsePid)
    .option('--duration <duration>', 'how long to observe', parseDuration, 5000)
    .option('--json', 'print one JSON object')
    .option('--system', "include the runtime's own goroutines (Go's dumps hide them)");
  for (const o of probeOptions("the process's")) snapshotCmd.addOption(o);
  snapshotCmd
    .option('--no-tcp', "leave the process's TCP connections out")
    .option('--leak-min-age <duration>', 'a live goroutine older than this counts towards its creation site (default: a fifth of the duration)', parseDuration)
    .action(async (opts: { pid: number; duration: number; json?: boolean; system?: boolean; overheadBudget: number; full?: boolean; sampleParks?: number; sampleRetransmits?: number; tcpSyscallHooks?: boolean; tcp: boolean; leakMinAge?: number }) => {
      const { runSnapshot } = await import('./snapshot/run.ts');
      await runSnapshot({ ...opts, parkSampling: opts.sampleParks, retransmitSampling: opts.sampleRetransmits, leakMinAgeMs: opts.leakMinAge });
    });

  program
    .command('dump')
    .description("every goroutine's stack, read from outside without stopping the process, in Go's traceback format")
    .requiredOption('--pid <pid>', 'the Go process', parsePid)
    .option('--json', 'print one JSON object')
    .option('--system', "include the runtime's goroutines and frames (as GOTRACEBACK=system)")
    .action(async (o: { pid: number; json?: boolean; system?: boolean }) => {
      const { runDump } = await import('./stacks/dump.ts');
      await runDump(o);
    });

  program
    .command('profile')
    .description('a pprof profile of a Go process read from outside: goroutines now, or every wait (off-CPU) over a window')
    .requiredOption('--pid <pid>', 'the Go process', parsePid)
    .addOption(new Option('--type <type>', 'goroutine: every goroutine by stack; block: time waited by stack, every wait reason').choices(['goroutine', 'block']).default('goroutine'))
    .option('--duration <duration>', 'window of a block profile', parseDuration, 30_000)
    .requiredOption('-o, --output <file>', 'where the gzipped protobuf goes (- for stdout); read it with go tool pprof')
    .option('--scan-interval <duration>', 'time between stack scans of a block profile', parseDuration, 200)
    .option('--sample-parks <percent>', 'record the parks of this share of goroutines (block; values scaled back)', parsePercent)
    .action(async (o: { pid: number; type: 'goroutine' | 'block'; duration: number; output: string; scanInterval: number; sampleParks?: number }) => {
      const { runProfile } = await import('./profiles/run.ts');
      await runProfile({ pid: o.pid, type: o.type, duration: o.duration, output: o.output, scanInterval: o.scanInterval, parkSampling: o.sampleParks });
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
      const { runTop } = await import('./top/top.ts');
      await runTop({ pid: o.pid, intervalMs: o.interval, iterations: o.iterations, overheadBudget: o.overheadBudget, full: o.full });
    });

  program
    .command('doctor')
    .description('check what this node allows goroscope to do (kernel, BTF, BPF, uprobes, tracefs, capabilities, cgroups), and with --pid what it can trace in that process')
    .option('--pid <pid>', 'also check this Go process: Go version, layout source, probe sites', parsePid)
    .option('--json', 'print the checks as JSON')
    .action(async (o: { pid?: number; json?: boolean }) => {
      const { runDoctor } = await import('./doctor/run.ts');
      process.exitCode = await runDoctor(o);
    });

  const agentCmd = program
    .command('agent')
    .description("watch this node's Go processes and ship what they do to a collector, or over OTLP, or both")
    .option('--collector <url>', 'the collector, e.g. ws://collector:7070 (token from GOROSCOPE_INGEST_TOKEN)')
    .option('--otlp-endpoint <url>', 'export traces, metrics and logs to this OTLP/HTTP endpoint, e.g. http://otel-collector:4318 ' +
      '(headers from OTEL_EXPORTER_OTLP_HEADERS)', parseHttpUrl)
    .option('--otlp-metric-interval <duration>', 'export OTLP metrics this often', parseDuration, 60_000)
    .option('--pid <pid...>', 'only these processes (default: every Go process on the node)', (v: string, prev: number[] = []) => [...prev, parsePid(v)]);
  for (const o of probeOptions("each process's")) agentCmd.addOption(o);
  agentCmd
    .option('--no-tcp', 'leave TCP connections out')
    .option('--no-requests', 'leave HTTP and gRPC server requests out (their probes)')
    .option('--ca <file>', "PEM certificate(s) the collector's TLS certificate must chain to, for a wss:// collector (default: the system's)", readPemFile)
    .option('--spool-dir <dir>', 'keep unacknowledged batches here while the collector is away', '/var/lib/goroscope/spool')
    .option('--max-spool-bytes <bytes>', 'bound on the spool; past it the oldest batches are dropped and counted', (v: string) => Number(v), 256 << 20)
    .option('--node <name>', 'node name (default: $NODE_NAME or the hostname)')
    .option('--metrics-listen <host:port>', 'serve Prometheus /metrics here (HOST:PORT, [IPv6]:PORT, or :PORT / PORT for every interface)', listenAddressOption, '127.0.0.1:9464')
    .option('--leak-min-age <duration>', 'a live goroutine older than this counts towards its creation site', parseDuration, 60_000)
    .option('--profile-interval <duration>', "how often each process's goroutine and blocking profiles are read and shipped (0: never)", parseDuration, 60_000)
    .option('--trace-interval <duration>', "a live goroutine's or open connection's span ends this often, so long-lived ones are exported while alive", parseDuration, 60_000)
    .option('--park-span-min <duration>', 'parks at least this long are spans (with the goroutine that woke them)', parseDuration, 1000)
    .option('--trace-sample <percent>', 'share of short-lived units of work shipped as whole traces (goroutines living 1 s or more always are)', parsePercent, 0.01)
    .action(async (o: { collector?: string; otlpEndpoint?: string; otlpMetricInterval: number; pid?: number[]; overheadBudget: number; full?: boolean; sampleParks?: number; sampleRetransmits?: number; tcpSyscallHooks?: boolean; tcp: boolean; requests: boolean; ca?: Buffer; spoolDir: string; maxSpoolBytes: number; node?: string; metricsListen: string; leakMinAge: number; profileInterval: number; traceInterval: number; parkSpanMin: number; traceSample: number }) => {
      if (!o.collector && !o.otlpEndpoint) throw new UserError('agent: give --collector, --otlp-endpoint, or both');
      if (!o.full) setFlagsFromString(`--interrupt-budget=${AGENT_INTERRUPT_BUDGET}`);
      const { startAgent } = await import('./agent/run.ts');
      const agent = await startAgent({
        collector: o.collector,
        otlpEndpoint: o.otlpEndpoint,
        otlp: { metricIntervalMs: o.otlpMetricInterval },
        token: process.env.GOROSCOPE_INGEST_TOKEN || undefined,
        pids: o.pid,
        overheadBudget: o.overheadBudget,
        full: o.full,
        parkSampling: o.sampleParks,
        retransmitSampling: o.sampleRetransmits,
        tcp: o.tcp,
        tcpSyscallHooks: o.tcpSyscallHooks,
        requests: o.requests,
        spoolDir: o.spoolDir,
        maxSpoolBytes: o.maxSpoolBytes,
        ca: o.ca,
        node: o.node,
        metricsListen: o.metricsListen,
        leaks: { minAgeMs: o.leakMinAge },
        profileIntervalMs: o.profileInterval,
        trace: { segmentMs: o.traceInterval, parkSpanMinMs: o.parkSpanMin, unitRootAgeMs: Math.min(1000, o.traceInterval) },
        traceSample: o.traceSample,
      });
      await new Promise<void>((resolve) => {
        const stop = () => void agent.stop().finally(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    });

  defineCollectorOptions(program.command('collector')).action(async (o) => {
    const { runCollector } = await import('../../collector/src/run.ts');
    await runCollector(collectorOptionsFrom(o));
  });

  return program;
}

/** Errors a user can act on: bad pids, permissions, a missing build or kernel feature. */
function isExpected(e: unknown): boolean {
  return e instanceof ProcessError || e instanceof UserError || e instanceof ListenError || (e instanceof Error && /not a Go program|cannot find|not permitted|Go \d|not built|is missing/.test(e.message));
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
    process.stderr.write(`goroscope: ${isExpected(e) ? firstLine(e) : ((e as Error).stack ?? String(e))}\n`);
    process.exitCode = 1;
  }
}
