// What tracing costs a Go net/http server, side by side in one run. The server runs with GOMAXPROCS=1 pinned to
// one CPU; the load generators, the agent (the real `goroscope agent`, bundled, shipping to a real collector)
// and the collector share the other. Per configuration and handler, on a fresh server each time:
//   - the server's own CPU per request (utime + stime, as the issue defines it: see cpuNs) at a constant rate
//     below saturation, from vegeta (built from the Go module proxy at a pinned version) at real-time priority,
//     so the agent beside it cannot bunch its sends (VEGETA_SCHED): the probes' cost lands there; beside it, the
//     same from the scheduler's run time of its threads in ns (/proc/PID/task/N/schedstat), and what else held the
//     server's CPU in each phase (its threads' run-queue wait; the CPU's busy time in /proc/stat not the server's),
//     noted with every figure of the phase;
//   - its requests/s at saturation (wrk -t1 -c32), where the probes' cost becomes lost throughput, and its CPU
//     per request there, measured after a saturated warm-up (the governor re-measures at the new load);
//   - the agent's CPU apart: % of a core, and per record it read (the bench's scrapes of its /metrics outside);
//   - the server's voluntary context switches per request in both phases (its wake-ups): a server's CPU per
//     request follows how requests bunch (~47 us at 10k/s against ~17 at saturation, hello, untraced), so a
//     difference in CPU beside a difference in switches is bunching, not the probes; and how busy the server
//     kept its CPU at saturation (below ~95%, the load generator set the pace).
// Configurations: no tracing; goroscope's default (overhead budget 2%); goroscope --full; the request probes alone
// (HttpTracer in the bench's process: ServeHTTP's entry and the entry of what net/http calls after it, beside
// Beyla's published ~500 ns per request, and the same with the end at ServeHTTP's RETs, the fallback); Go's
// runtime/trace; Go's flight recorder (Go 1.25+, runtime/trace.FlightRecorder, BENCH_FLIGHT_RECORDER=1 in the
// bench's server); default mode without the request probes, and without TCP tracing (always on, outside the budget).
// --http-configs requests,requests_ret runs only those (and none).
// --http-baseline DIR (another checkout, its BPF objects, bridge and bundle built; README.md says how): each agent configuration also
// runs with that checkout's agent (e.g. default@base beside default), in the same rounds, and the figures add the
// ratios of this checkout's to the baseline's, paired per round.
// Handlers: the empty hello world, and one doing ~200 us of CPU work per request (the realistic case).
// Rounds interleave the configurations (forward, then backward order, so each run of a configuration is next to
// a run of no tracing); figures are medians, and ratios to no tracing are paired per round: the machine's load
// moves both sides of a pair alike. The ratios' notes give their mean with a 95% confidence interval over the
// rounds: a figure is worth what that interval says, and a shared machine makes it wide. Phases span 2.5 of the
// governor's 2 s cycles, so the duty cycle is averaged, not caught on or off.
import { openTarget } from '../../agent/src/tracer/target.ts';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { freePort } from '../../test/lib/receivers.ts';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { HttpTracer } from '../../agent/src/http/http-tracer.ts';
import { processCpuNs, processRunNs, sumOverThreads } from '../../agent/src/overhead/governor.ts';
import { startCollector, stopCollector, TOKEN, type RunningCollector } from './collector.ts';
import { run } from '../../test/lib/child.ts';
import { buildFixture, figure, startProcess, median, repoRoot, round, runCommand, sleep, type BenchContext, type Child, type Figure } from './lib.ts';

const VEGETA = 'github.com/tsenart/vegeta/v12@v12.13.0';
export const SERVER_CPU = '1';
export const OTHER_CPU = '0';

type ConfigName = 'none' | 'default' | 'default_probesoff' | 'default_budget1' | 'default_cycle10' | 'default_norequests' | 'default_notcp' | 'full' | 'full_nosched' | 'requests' | 'requests_ret' | 'trace' | 'flight';

/** Grafana Beyla's published cost of its Go HTTP server probes, per request: the anchor for ours. */
export const BEYLA_NS_PER_REQUEST = 500;

interface Config {
  name: ConfigName | `${ConfigName}@base`;
  label: string;
  /** The checkout whose agent runs (--http-baseline); this one by default. */
  root?: string;
  agent?: string[];
  /** The agent's environment beyond the bench's own. */
  agentEnv?: Record<string, string>;
  /** The request probes (HttpTracer) alone, in this process: the end where the tracer puts it, or at the RETs. */
  requests?: 'auto' | 'ret';
  trace?: boolean;
  flight?: boolean;
  /** A comparison beside the issue's configurations: left out of --quick (the smoke test), for time. */
  extra?: true;
}

const CONFIGS: Config[] = [
  { name: 'none', label: 'no tracing' },
  { name: 'default', label: 'goroscope agent, default (overhead budget 2%)', agent: [] },
  // The duty cycle's length: each switch costs the process (uprobes installed and removed, the first hits after,
  // caches) outside what the governor compares, so fewer switches may cost less at the same on-fraction.
  { name: 'default_cycle10', label: 'goroscope agent, default, 10 s duty cycle', agent: [], agentEnv: { GOROSCOPE_OVERHEAD_CYCLE_MS: '10000' }, extra: true },
  // Half the default budget: how the server's cost follows the budget the governor spends, against the floor below.
  { name: 'default_budget1', label: 'goroscope agent, default, --overhead-budget 1%', agent: ['--overhead-budget', '1%'], extra: true },
  // The floor no duty cycle can beat: the agent attached and scanning, its probes off after the first window (the
  // least on-fraction, 0.001: the next on-window is a minute later). What the agent costs the server from beside it.
  { name: 'default_probesoff', label: 'goroscope agent, default, probes off after the first window (--overhead-budget 0.0001%)', agent: ['--overhead-budget', '0.0001%'], extra: true },
  // What the request probes add to the default mode.
  { name: 'default_norequests', label: 'goroscope agent, default, --no-requests', agent: ['--no-requests'], extra: true },
  // What TCP tracing adds: always on, outside the budget, and its syscall hooks put every syscall of the node on
  // the kernel's slow path (docs/architecture.md: +120-170 ns per syscall).
  { name: 'default_notcp', label: 'goroscope agent, default, --no-tcp', agent: ['--no-tcp'], extra: true },
  { name: 'full', label: 'goroscope agent --full', agent: ['--full'] },
  // What the scheduler probes (execute and its stamps, system calls) add to --full.
  { name: 'full_nosched', label: 'goroscope agent --full, scheduler probes off', agent: ['--full'], agentEnv: { GOROSCOPE_SCHED_PROBES: 'off' }, extra: true },
  { name: 'requests', label: 'goroscope request probes only (ServeHTTP entry + finishRequest entry)', requests: 'auto' },
  { name: 'requests_ret', label: 'goroscope request probes only, the end at the RETs (ServeHTTP entry + RET)', requests: 'ret', extra: true },
  { name: 'trace', label: "Go's runtime/trace", trace: true },
  { name: 'flight', label: "Go's flight recorder", flight: true },
];

interface Handler {
  name: string;
  label: string;
  workUs: number;
  /** Requests/s of the constant-rate phase, at most: half the saturation measured at the start if that is lower
   * (a loaded machine), so the phase stays below saturation. */
  rate: number;
}

const HANDLERS = (): Handler[] => [
  { name: 'hello', label: 'hello world', workUs: 0, rate: 10_000 },
  { name: 'work200us', label: '~200 us of CPU work per request', workUs: 200, rate: 2_000 },
];

interface RunResult {
  /** The round it ran in: the baseline's ratios pair by it. */
  round?: number;
  /** Constant rate: the server's CPU per request, and what vegeta saw. */
  cpuUsPerReq: number;
  /** The same from the scheduler's run time in ns (/proc/PID/task/N/schedstat), beside the ticks of utime+stime. */
  runUsPerReq: number;
  /** What else held the server's CPU, at the constant rate and at saturation: the time the server's threads
   * waited in its run queue, and the CPU's busy time not the server's (both % of the phase's wall time). */
  waitPct: number;
  othersPct: number;
  satWaitPct: number;
  satOthersPct: number;
  /** The server's voluntary context switches per request (its threads' sleeps: wake-ups), at the constant rate
   * and at saturation: how requests bunched, which the CPU per request follows. */
  cswPerReq: number;
  satCswPerReq: number;
  /** The server's CPU over wall time at saturation (%): below ~95 the load generator, not the server, set the pace. */
  satBusyPct: number;
  constantOk: number;
  constantP99Ms: number;
  /** Saturation. */
  rps: number;
  satCpuUsPerReq: number;
  /** The agent, during the saturation phase and the constant one. */
  agentCpuPctSat?: number;
  agentCpuPctConst?: number;
  agentNsPerRecordSat?: number;
  /** The agent's wake-ups per second at saturation (its threads' voluntary context switches). */
  agentWakeupsSat?: number;
  recordsPerSecSat?: number;
  coverage?: number;
  /** What the governor charged a probe hit at the end (goroscope_probe_hit_cost_nanoseconds). */
  hitCostNs?: number;
  /** What the governor estimated the probes cost the server at the end of saturation, % of its CPU
   * (goroscope_probe_overhead_ratio summed over probes): its belief, beside the loss measured here. */
  estimatedPct?: number;
  traceBytes?: number;
}

/** Builds vegeta from the Go module proxy (pinned), once. */
export function buildVegeta(): string {
  const bin = join(repoRoot, 'build', 'bench', 'bin');
  const out = join(bin, 'vegeta');
  if (!existsSync(out)) {
    mkdirSync(bin, { recursive: true });
    execFileSync('go', ['install', VEGETA], { env: { ...process.env, GOBIN: bin, GOFLAGS: '-buildvcs=false' }, stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
  }
  return out;
}

/**
 * CPU ns a process has used so far: utime + stime, as the issue defines the figure (10 ms ticks: a 6 s phase at
 * 10k/s is ~200 of them, 0.5%); NaN once it is gone.
 */
export function cpuNs(pid: number): number {
  return processCpuNs(pid) ?? NaN;
}

/** Time the threads of a process have waited in a run queue so far, ns (/proc/PID/task/N/schedstat, the second
 * field): another task held their CPU. NaN once it is gone. */
export function runQueueWaitNs(pid: number): number {
  return sumOverThreads(pid, 'schedstat', (s) => Number(s.split(' ')[1])) ?? NaN;
}

let clkTck = 0;
/** Busy time of one CPU so far, ns (/proc/stat: user, nice, system, irq, softirq; in clock ticks, 10 ms). */
export function cpuBusyNs(cpu: string): number {
  clkTck ||= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const f = new RegExp(`^cpu${cpu} (.*)$`, 'm').exec(readFileSync('/proc/stat', 'utf8'))?.[1].split(' ').map(Number);
  return f ? ((f[0] + f[1] + f[2] + f[5] + f[6]) * 1e9) / clkTck : NaN;
}

/** Voluntary context switches of a process's threads so far (/proc/PID/task/N/status): each is a sleep, so one
 * wake-up; NaN once it is gone. */
export function voluntarySwitches(pid: number): number {
  return sumOverThreads(pid, 'status', (t) => Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(t)?.[1] ?? 0)) ?? NaN;
}

/** Above this share of the server's CPU taken by other work in a phase (%), that work, not the probes, may set a
 * figure: the server's requests then queue and bunch, and a bunched request costs less CPU. */
const OTHERS_MAX = 5;

/** What else held the server's CPU in a phase, over a configuration's runs (medians, and the largest). */
function heldNote(rs: RunResult[], phase: 'constant' | 'saturation'): string {
  const [w, o] = phase === 'constant' ? [rs.map((x) => x.waitPct), rs.map((x) => x.othersPct)] : [rs.map((x) => x.satWaitPct), rs.map((x) => x.satOthersPct)];
  return `CPU ${SERVER_CPU} busy with other work ${round(median(o))}% of the phase (at most ${round(Math.max(...o))}), the server's threads waiting for it ${round(median(w))}% (summed over threads, at most ${round(Math.max(...w))})` +
    (Math.max(...o) > OTHERS_MAX ? ` (WARNING: over ${OTHERS_MAX}%, that work moved the server's CPU per request)` : '');
}

/** Two-sided 95% quantiles of Student's t, by degrees of freedom (1-30; beyond, 2.0). */
const T95 = [12.71, 4.3, 3.18, 2.78, 2.57, 2.45, 2.36, 2.31, 2.26, 2.23, 2.2, 2.18, 2.16, 2.14, 2.13, 2.12, 2.11, 2.1, 2.09, 2.09, 2.08, 2.07, 2.07, 2.06, 2.06, 2.06, 2.05, 2.05, 2.05, 2.04];

/** Mean of paired per-round ratios with its 95% confidence interval (t): how far the rounds let a figure be trusted. */
export function meanCi(xs: number[]): { mean: number; half: number } {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, half: NaN };
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  return { mean, half: (T95[n - 2] ?? 2) * (sd / Math.sqrt(n)) };
}
const ciNote = (xs: number[], digits = 1) => {
  const { mean, half } = meanCi(xs);
  return Number.isFinite(half) ? `mean ${round(mean, digits)} ± ${round(half, digits)} (95% CI, ${xs.length} paired rounds)` : `one round: no interval`;
};

/** A counter or gauge from the agent's /metrics (summed over its label sets). */
async function scrape(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    seen = true;
  }
  return seen ? sum : NaN;
}

/** Connections of both load generators. vegeta's default opens a new connection whenever none is idle: at
 * 10k/s the server spent its CPU on accepts and SYN backlog overflows (~470 us per request, seconds of latency)
 * instead of requests, so the constant-rate phase measured connection churn. */
export const CONNECTIONS = 32;

/**
 * The constant-rate generator's scheduling: real-time (SCHED_FIFO) on the other CPU, so the agent and collector
 * beside it cannot delay its sends. A server's CPU per request depends on how requests bunch (one wake-up serves
 * one request at an even pace, several when they come in bursts: the untraced hello server pays ~47 us a request
 * at 10k/s, ~17 at saturation); with vegeta at the agent's priority, the agent's CPU bunched its sends and made
 * the traced server look 13% cheaper than the untraced one. The results go to a file (no pipe to a reader that
 * the real-time sender would starve); the report is read after.
 */
export const VEGETA_SCHED = ['chrt', '-f', '10'];

/** vegeta attack (real-time, on the other CPU) to a file, then vegeta report -type=json. */
async function vegeta(bin: string, port: number, rate: number, seconds: number, resultsFile: string): Promise<{ ok: number; p99Ms: number; success: number }> {
  const v = (args: string, sched: string[] = []) => `${sched.join(' ')} taskset -c ${OTHER_CPU} '${bin}' ${args}`;
  const pipeline = `${v(`attack -rate=${rate}/s -duration=${seconds}s -timeout=5s -connections=${CONNECTIONS} -max-connections=${CONNECTIONS} -output='${resultsFile}'`, VEGETA_SCHED)} && ${v(`report -type=json '${resultsFile}'`)}`;
  const r = await run('sh', ['-c', pipeline], { input: `GET http://127.0.0.1:${port}/\n`, what: 'vegeta', timeoutMs: (seconds + 60) * 1000 });
  rmSync(resultsFile, { force: true });
  try {
    const j = JSON.parse(r.stdout) as { status_codes: Record<string, number>; latencies: { '99th': number }; success: number };
    return { ok: j.status_codes['200'] ?? 0, p99Ms: j.latencies['99th'] / 1e6, success: j.success };
  } catch {
    throw new Error(`vegeta (${r.code ?? r.signal}): ${r.stdout.slice(0, 300)} ${r.stderr.slice(-300)}`);
  }
}

/** Below this share of its CPU at saturation (%), the untraced server was held back by other work on its CPU or
 * by the load generator, and the ratios say more about that than about the probes. */
const SERVER_BUSY_MIN = 90;

/**
 * Runs of one round trip through the configurations and handlers: rounds are as many as fit about this many runs
 * (3 to 12). More, shorter rounds: a shared machine's load moves in spells of tens of seconds, so more pairs
 * narrow the confidence interval more than longer phases do (the phases still hold 2.5 of the governor's 2 s
 * cycles).
 */
const RUNS_PER_BENCH = 36;

/**
 * `configs`/`handlers`: only these (by name; --http-configs, --http-handlers); 'none' is always run, as the base.
 * `rounds`, `seconds` (--http-rounds, --http-seconds): rounds of the interleaved configurations (by default as
 * many as fit ~36 runs, 3 to 12) and the length of each measured phase (5 s).
 * `baseline` (--http-baseline DIR): another checkout whose agent runs each agent configuration too (NAME@base).
 */
export async function runHttpLoad(ctx: BenchContext, only: { configs?: string[]; handlers?: string[]; rounds?: number; seconds?: number; baseline?: string } = {}): Promise<Figure[]> {
  const bench = 'http';
  const seconds = only.seconds ?? (ctx.quick ? 2 : 5);
  if (cpus().length < 2) throw new Error('needs 2 CPUs: the server on one, load and agent on the other');
  const baseline = only.baseline ? resolve(only.baseline) : undefined;
  if (baseline && !existsSync(join(baseline, 'dist', 'goroscope.mjs'))) throw new Error(`--http-baseline ${baseline}: no dist/goroscope.mjs (run scripts/setup.sh there)`);
  const binary = buildFixture('httpserver', ctx.goVersion);
  const vegetaBin = buildVegeta();
  const tmp = mkdtempSync(join(tmpdir(), 'goroscope-http-bench-'));
  // This process (the harness) stays off the server's CPU too.
  execFileSync('taskset', ['-a', '-p', '-c', OTHER_CPU, String(process.pid)], { stdio: 'ignore' });
  const collector: RunningCollector = await startCollector(join(tmp, 'collector.db'));
  execFileSync('taskset', ['-a', '-p', '-c', OTHER_CPU, String(collector.proc.pid)], { stdio: 'ignore' });
  const collectorCpu0 = cpuNs(collector.proc.pid);
  const benchStart = performance.now();
  const results = new Map<string, RunResult[]>();
  // --quick: the hello handler only (the smoke test's time).
  const handlers = HANDLERS().filter((h) => (only.handlers ? only.handlers.includes(h.name) : !ctx.quick || h.workUs === 0));
  // --quick (the smoke test) leaves out the --full comparison without the scheduler probes, for time.
  const selected = only.configs
    ? CONFIGS.filter((c) => c.name === 'none' || only.configs!.includes(c.name))
    : ctx.quick ? CONFIGS.filter((c) => !c.extra) : CONFIGS;
  // Each agent configuration next to the baseline's agent in the same configuration.
  const configs = selected.flatMap((c): Config[] => (baseline && c.agent ? [c, { ...c, name: `${c.name as ConfigName}@base`, label: `${c.label}, baseline ${baseline}`, root: baseline }] : [c]));
  const reps = only.rounds ?? (ctx.quick ? 1 : Math.max(3, Math.min(12, Math.floor(RUNS_PER_BENCH / (configs.length * handlers.length)))));
  const key = (h: Handler, c: Config) => `${h.name}.${c.name}`;
  let flightSupported = true;
  const failures: string[] = [];

  /** Waits (20 s at most) until the collector, which shares CPU 0 with the agent and the load, has stored what the
   *  last run shipped (a --full run leaves seconds of records to ingest): each run starts with CPU 0 as free as the
   *  run before it had it. */
  const collectorIdle = async () => {
    const pid = collector.proc.pid;
    for (const until = Date.now() + 20_000; Date.now() < until;) {
      const before = cpuNs(pid);
      await sleep(300);
      if (!((cpuNs(pid) - before) / 300e6 > 0.03)) return;
    }
    ctx.log('http: the collector was still busy 20 s after the last run');
  };

  const runOne = async (h: Handler, c: Config): Promise<RunResult | undefined> => {
    await collectorIdle();
    const traceFile = join(tmp, 'server.trace');
    const args = [...(c.trace ? ['-trace', traceFile] : []), ...(h.workUs ? ['-work-us', String(h.workUs)] : [])];
    const env = { ...process.env, GOMAXPROCS: '1', ...(c.flight ? { BENCH_FLIGHT_RECORDER: '1' } : {}) };
    const server = startProcess('taskset', ['-c', SERVER_CPU, binary, ...args], 'httpserver', { env });
    let agent: Child | undefined;
    let reqTracer: HttpTracer | undefined;
    try {
      let port: number;
      try {
        port = Number((await server.until(/^LISTEN (\d+)$/m, 30_000))[1]);
      } catch (e) {
        if (c.flight && /flight recorder needs/.test(server.err)) { flightSupported = false; return undefined; }
        throw e;
      }
      const pid = server.pid;
      let metricsPort = 0;
      if (c.agent) {
        metricsPort = await freePort();
        // GOROSCOPE_BENCH_CPU_PROF=DIR writes a V8 CPU profile of the agent there (where its CPU goes).
        const prof = process.env.GOROSCOPE_BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.GOROSCOPE_BENCH_CPU_PROF}`] : [];
        agent = startProcess('taskset', ['-c', OTHER_CPU, process.execPath, ...prof, join(c.root ?? repoRoot, 'bin', 'goroscope.js'), 'agent', '--pid', String(pid),
          '--collector', collector.url.replace(/^http/, 'ws'), '--metrics-listen', `127.0.0.1:${metricsPort}`, '--spool-dir', join(tmp, `spool-${pid}`), ...c.agent],
        'agent', { env: { ...process.env, GOROSCOPE_INGEST_TOKEN: TOKEN, ...c.agentEnv } });
        for (const until = Date.now() + 60_000; !agent.err.includes(`tracing pid ${pid} `); await sleep(100)) {
          if (agent.exited || Date.now() > until) throw new Error(`the agent did not trace pid ${pid}: ${agent.err.slice(-2000)}`);
        }
      }
      if (c.requests) {
        reqTracer = new HttpTracer({ lastN: 1 });
        reqTracer.start();
        const proc = reqTracer.attach(openTarget(pid), { end: c.requests });
        if (!proc.sites.length) throw new Error(`no request probes placed: ${proc.skipped.join('; ')}`);
        if (c.requests === 'auto' && proc.end !== 'done') throw new Error(`the request's end is at the RETs: ${proc.skipped.join('; ')}`);
      }
      // Warm-up: connections, GC sizing, and the governor's first measuring window (1 s).
      await vegeta(vegetaBin, port, h.rate, 2, join(tmp, 'vegeta.bin'));
      const agentPid = agent?.pid;
      // A phase's start scrapes the agent's records before its CPU is read, its end after: the agent's work for
      // the bench's scrape (a /metrics page each) stays out of the CPU it is charged per record.
      const sample = async (scrapeFirst: boolean) => {
        const records = agent && scrapeFirst ? await scrape(metricsPort, 'goroscope_records_total') : NaN;
        const s = {
          t: performance.now(),
          server: cpuNs(pid),
          run: processRunNs(pid) ?? NaN,
          wait: runQueueWaitNs(pid),
          cpuBusy: cpuBusyNs(SERVER_CPU),
          csw: voluntarySwitches(pid),
          agent: agentPid ? cpuNs(agentPid) : NaN,
          agentWakes: agentPid ? voluntarySwitches(agentPid) : NaN,
          records,
        };
        if (agent && !scrapeFirst) s.records = await scrape(metricsPort, 'goroscope_records_total');
        return s;
      };
      type Sample = Awaited<ReturnType<typeof sample>>;
      /** % of the phase's wall time: the server's threads waiting for its CPU (summed: several may wait at once), and that CPU busy with other work. */
      const held = (a: Sample, b: Sample) => ({
        wait: ((b.wait - a.wait) / 1e6 / (b.t - a.t)) * 100,
        others: ((b.cpuBusy - a.cpuBusy - (b.run - a.run)) / 1e6 / (b.t - a.t)) * 100,
      });
      const a0 = await sample(true);
      const constant = await vegeta(vegetaBin, port, h.rate, seconds, join(tmp, 'vegeta.bin'));
      const c1 = await sample(false);
      // Saturated warm-up: the governor measures the new load and sets its duty cycle before the measured phase.
      await runCommand('taskset', ['-c', OTHER_CPU, 'wrk', '-t1', `-c${CONNECTIONS}`, '-d2s', `http://127.0.0.1:${port}/`], 60_000);
      const a1 = await sample(true);
      const wrk = (await runCommand('taskset', ['-c', OTHER_CPU, 'wrk', '-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`], (seconds + 60) * 1000)).stdout;
      const a2 = await sample(false);
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(wrk);
      const total = /^\s*(\d+) requests in/m.exec(wrk);
      if (!rps || !total) throw new Error(`no Requests/sec in wrk output: ${wrk}`);
      const [constHeld, satHeld] = [held(a0, c1), held(a1, a2)];
      const r: RunResult = {
        cpuUsPerReq: (c1.server - a0.server) / 1000 / constant.ok,
        runUsPerReq: (c1.run - a0.run) / 1000 / constant.ok,
        waitPct: constHeld.wait,
        othersPct: constHeld.others,
        satWaitPct: satHeld.wait,
        satOthersPct: satHeld.others,
        cswPerReq: (c1.csw - a0.csw) / constant.ok,
        satCswPerReq: (a2.csw - a1.csw) / Number(total[1]),
        satBusyPct: ((a2.server - a1.server) / 1e6 / (a2.t - a1.t)) * 100,
        constantOk: constant.success,
        constantP99Ms: constant.p99Ms,
        rps: Number(rps[1]),
        satCpuUsPerReq: (a2.server - a1.server) / 1000 / Number(total[1]),
      };
      if (agent) {
        r.agentCpuPctConst = ((c1.agent - a0.agent) / 1e6 / (c1.t - a0.t)) * 100;
        r.agentCpuPctSat = ((a2.agent - a1.agent) / 1e6 / (a2.t - a1.t)) * 100;
        r.agentWakeupsSat = (a2.agentWakes - a1.agentWakes) / ((a2.t - a1.t) / 1000);
        const recs = a2.records - a1.records;
        r.recordsPerSecSat = recs / ((a2.t - a1.t) / 1000);
        r.agentNsPerRecordSat = recs > 0 ? (a2.agent - a1.agent) / recs : NaN;
        r.coverage = await scrape(metricsPort, 'goroscope_probe_coverage_ratio');
        r.hitCostNs = await scrape(metricsPort, 'goroscope_probe_hit_cost_nanoseconds');
        r.estimatedPct = (await scrape(metricsPort, 'goroscope_probe_overhead_ratio')) * 100;
      }
      if (c.trace) {
        await server.stop('SIGTERM');
        r.traceBytes = existsSync(traceFile) ? statSync(traceFile).size : 0;
      }
      return r;
    } finally {
      await agent?.stop('SIGTERM', 20_000);
      await reqTracer?.close().catch(() => {});
      await server.stop('SIGKILL');
      rmSync(traceFile, { force: true });
    }
  };

  try {
    // Below saturation on this machine now: half what the untraced server serves, at most the nominal rate.
    for (const h of handlers) {
      const server = startProcess('taskset', ['-c', SERVER_CPU, binary, ...(h.workUs ? ['-work-us', String(h.workUs)] : [])], 'httpserver', { env: { ...process.env, GOMAXPROCS: '1' } });
      try {
        const port = Number((await server.until(/^LISTEN (\d+)$/m, 30_000))[1]);
        const [t0, cpu0] = [performance.now(), cpuNs(server.pid)];
        const wrk = (await runCommand('taskset', ['-c', OTHER_CPU, 'wrk', '-t1', `-c${CONNECTIONS}`, '-d3s', `http://127.0.0.1:${port}/`])).stdout;
        const busy = ((cpuNs(server.pid) - cpu0) / 1e6 / (performance.now() - t0)) * 100;
        const sat = Number(/Requests\/sec:\s+([\d.]+)/.exec(wrk)?.[1] ?? NaN);
        if (Number.isFinite(sat)) h.rate = Math.max(200, Math.min(h.rate, Math.round(sat / 2 / 100) * 100));
        ctx.log(`http ${h.name}: ${Math.round(sat)} req/s saturated untraced, the server busy ${busy.toFixed(0)}% of CPU ${SERVER_CPU}; constant rate ${h.rate}/s` +
          (busy < SERVER_BUSY_MIN ? ` (WARNING: other work holds CPU ${SERVER_CPU}: the figures will be that work's, not the probes')` : ''));
      } finally {
        await server.stop('SIGKILL');
      }
    }
    for (let rep = 0; rep < reps; rep++) {
      for (const h of handlers) {
        const order = rep % 2 === 0 ? configs : [...configs].reverse();
        for (const c of order) {
          if (c.flight && !flightSupported) continue;
          // One failed run (an agent that could not start on a crowded machine) costs its sample, not the bench.
          let res: RunResult | undefined;
          try {
            res = await runOne(h, c);
          } catch (e) {
            ctx.log(`http rep ${rep + 1}/${reps} ${h.name} ${c.name}: FAILED ${(e as Error).message.split('\n')[0]}`);
            failures.push(`${h.name} ${c.name}: ${(e as Error).message.split('\n')[0]}`);
          }
          if (!res) continue;
          res.round = rep;
          const list = results.get(key(h, c)) ?? [];
          list.push(res);
          results.set(key(h, c), list);
          ctx.log(
            `http rep ${rep + 1}/${reps} ${h.name} ${c.name}: ${res.cpuUsPerReq.toFixed(2)} us server CPU/req at ${h.rate}/s (run time ${res.runUsPerReq.toFixed(2)}; ${res.cswPerReq.toFixed(2)} switches/req; ` +
              `CPU ${SERVER_CPU} held by others ${res.othersPct.toFixed(1)}%, the server's threads waited for it ${res.waitPct.toFixed(1)}% summed), ${Math.round(res.rps)} req/s saturated ` +
              `(${res.satCpuUsPerReq.toFixed(2)} us/req, ${res.satCswPerReq.toFixed(3)} switches/req, busy ${res.satBusyPct.toFixed(0)}%)` +
              (res.agentCpuPctSat !== undefined ? `, agent ${res.agentCpuPctConst!.toFixed(1)}% / ${res.agentCpuPctSat.toFixed(1)}% of a core, ${Math.round(res.agentNsPerRecordSat!)} ns/record, coverage ${res.coverage}` : ''),
          );
          await sleep(200);
        }
      }
    }
  } finally {
    const collectorCpuPct = ((cpuNs(collector.proc.pid) - collectorCpu0) / 1e6 / (performance.now() - benchStart)) * 100;
    ctx.log(`http: the collector used ${collectorCpuPct.toFixed(1)}% of a core over the bench`);
    await stopCollector(collector);
    rmSync(tmp, { recursive: true, force: true });
    execFileSync('taskset', ['-a', '-p', '-c', `0-${cpus().length - 1}`, String(process.pid)], { stdio: 'ignore' });
  }

  const out: Figure[] = [];
  const base = `${ctx.invocation} # httpserver (Go ${ctx.goVersion}) GOMAXPROCS=1 taskset -c ${SERVER_CPU}; load, agent and collector on CPU ${OTHER_CPU}`;
  for (const h of handlers) {
    const none = results.get(key(h, CONFIGS[0])) ?? [];
    const cmdOf = (c: Config, phase: 'constant' | 'saturation') =>
      `${base}; ${h.workUs ? `-work-us ${h.workUs}; ` : ''}` +
      (c.agent ? `${Object.entries(c.agentEnv ?? {}).map(([k, v]) => `${k}=${v} `).join('')}node ${c.root ? `${c.root}/` : ''}bin/goroscope.js agent --pid PID --collector ws://... ${c.agent.join(' ')}; ` : '') +
      (c.requests ? `HttpTracer.attach(pid${c.requests === 'ret' ? ", { end: 'ret' }" : ''}) in the bench process; ` : '') + (c.trace ? '-trace FILE; ' : '') + (c.flight ? 'BENCH_FLIGHT_RECORDER=1; ' : '') +
      (phase === 'constant' ? `${VEGETA_SCHED.join(' ')} ${VEGETA} attack -rate=${h.rate}/s -duration=${seconds}s after a 2 s warm-up at ${h.rate}/s` : `wrk -t1 -c32 -d${seconds}s after a 2 s warm-up at saturation`) +
      `; server CPU = utime + stime; ${reps} interleaved rounds, median (ratios paired per round)`;
    for (const c of configs) {
      const rs = results.get(key(h, c));
      if (!rs?.length) continue;
      const id = (what: string) => `${bench}.${h.name}.${what}.${c.name}`;
      const cpu = rs.map((x) => x.cpuUsPerReq);
      out.push(figure({
        id: id('server_cpu_us_per_req'), bench, label: `server CPU per request at ${h.rate}/s (utime+stime), ${h.label}, ${c.label}`,
        value: round(median(cpu), 2), unit: 'us CPU/req', command: cmdOf(c, 'constant'), samples: cpu.map((x) => round(x, 2)),
        note: `vegeta (real-time priority): success ${round(median(rs.map((x) => x.constantOk * 100)))}%, p99 ${round(median(rs.map((x) => x.constantP99Ms)), 2)} ms; ` +
          `the server's voluntary context switches ${round(median(rs.map((x) => x.cswPerReq)), 2)} per request; ${heldNote(rs, 'constant')}`,
      }));
      // The same from the scheduler's own count in ns: utime + stime are whole clock ticks (10 ms), ~0.4% of a phase.
      const run = rs.map((x) => x.runUsPerReq);
      out.push(figure({
        id: id('server_run_us_per_req'), bench, label: `server CPU per request at ${h.rate}/s (run time in ns, /proc/PID/task/N/schedstat), ${h.label}, ${c.label}`,
        value: round(median(run), 2), unit: 'us CPU/req', command: cmdOf(c, 'constant').replace('server CPU = utime + stime', 'server CPU = the run time of its threads (schedstat)'),
        samples: run.map((x) => round(x, 2)),
      }));
      // Bunching made visible: the CPU per request follows the wake-ups per request.
      for (const [phase, get] of [['constant', (x: RunResult) => x.cswPerReq], ['saturation', (x: RunResult) => x.satCswPerReq]] as const) {
        const csw = rs.map(get);
        out.push(figure({
          id: id(phase === 'constant' ? 'server_csw_per_req' : 'sat_server_csw_per_req'), bench,
          label: `server voluntary context switches per request ${phase === 'constant' ? `at ${h.rate}/s` : 'at saturation'}, ${h.label}, ${c.label}`,
          value: round(median(csw), 3), unit: 'switches/req', command: cmdOf(c, phase), samples: csw.map((x) => round(x, 3)),
          note: 'a switch is a sleep of one of its threads, so a wake-up: fewer per request means requests came bunched, and each costs less CPU',
        }));
      }
      const rps = rs.map((x) => x.rps);
      out.push(figure({
        id: id('rps'), bench, label: `requests/s at saturation, ${h.label}, ${c.label}`, value: Math.round(median(rps)), unit: 'req/s',
        command: cmdOf(c, 'saturation'), samples: rps.map(Math.round),
        note: `server CPU ${round(median(rs.map((x) => x.satCpuUsPerReq)), 2)} us/req, busy ${round(median(rs.map((x) => x.satBusyPct)))}% of its CPU [${rs.map((x) => round(x.satBusyPct)).join(', ')}] (below ~95: the load generator set the pace)`,
      }));
      if (c.name !== 'none' && none.length === rs.length) {
        const over = cpu.map((x, i) => (x / none[i].cpuUsPerReq - 1) * 100);
        const isDefault = c.name === 'default' && h.name === 'hello';
        out.push(figure({
          id: id('server_cpu_overhead_pct'), bench, label: `server CPU per request vs no tracing at ${h.rate}/s, ${h.label}, ${c.label}`,
          value: round(median(over)), unit: '%', command: cmdOf(c, 'constant'), samples: over.map((x) => round(x)),
          ...(isDefault ? { target: { op: '<=' as const, value: 2 } } : {}),
          note: `${ciNote(over)}; voluntary context switches per request ${round(median(rs.map((x) => x.cswPerReq)), 2)} against ${round(median(none.map((x) => x.cswPerReq)), 2)} untraced; ` +
            `${heldNote(rs, 'constant')}, untraced ${heldNote(none, 'constant')}`,
        }));
        const runOver = run.map((x, i) => (x / none[i].runUsPerReq - 1) * 100);
        out.push(figure({
          id: id('server_run_overhead_pct'), bench, label: `server CPU per request vs no tracing at ${h.rate}/s (run time in ns, schedstat), ${h.label}, ${c.label}`,
          value: round(median(runOver)), unit: '%', command: cmdOf(c, 'constant').replace('server CPU = utime + stime', 'server CPU = the run time of its threads (schedstat)'),
          samples: runOver.map((x) => round(x)), note: `${ciNote(runOver)}; beside the utime+stime figure (the issue's), which counts the same time in 10 ms ticks`,
        }));
        const loss = rps.map((x, i) => (1 - x / none[i].rps) * 100);
        out.push(figure({
          id: id('loss_pct'), bench, label: `requests/s lost at saturation vs no tracing, as wrk saw them, ${h.label}, ${c.label}`,
          value: round(median(loss)), unit: '%', command: cmdOf(c, 'saturation'), samples: loss.map((x) => round(x)),
          note: (c.agent ? 'on 2 CPUs the agent shares the load generator\'s CPU, so this mixes its CPU into the server\'s throughput; ' : '') +
            (c.trace ? `trace ${round(median(rs.map((x) => (x.traceBytes ?? 0) / 2 ** 20)))} MiB per run` : ''),
        }));
        // What the server's own CPU allows: requests/s per CPU-second at saturation, paired per round. The
        // server has its CPU to itself, so this is its throughput loss with the agent's CPU kept apart.
        const cpuLoss = rs.map((x, i) => (1 - none[i].satCpuUsPerReq / x.satCpuUsPerReq) * 100);
        out.push(figure({
          id: id('cpu_loss_pct'), bench, label: `requests/s per server CPU-second lost at saturation vs no tracing, ${h.label}, ${c.label}`,
          value: round(median(cpuLoss)), unit: '%', command: cmdOf(c, 'saturation'), samples: cpuLoss.map((x) => round(x)),
          ...(isDefault ? { target: { op: '<=' as const, value: 2 } } : {}),
          note: `${ciNote(cpuLoss)}; voluntary context switches per request ${round(median(rs.map((x) => x.satCswPerReq)), 3)} against ${round(median(none.map((x) => x.satCswPerReq)), 3)} untraced ` +
            `(fewer: requests more bunched, each cheaper); server busy ${round(median(rs.map((x) => x.satBusyPct)))}% against ${round(median(none.map((x) => x.satBusyPct)))}%` +
            (median(none.map((x) => x.satBusyPct)) < SERVER_BUSY_MIN ? `; WARNING: the untraced server had under ${SERVER_BUSY_MIN}% of its CPU, other work set this figure` : '') +
            `; ${heldNote(rs, 'saturation')}, untraced ${heldNote(none, 'saturation')}` +
            (c.agent && rs.some((x) => Number.isFinite(x.estimatedPct)) ? `; the governor estimated ${round(median(rs.map((x) => x.estimatedPct ?? NaN).filter(Number.isFinite)), 2)}% at the end [${rs.map((x) => round(x.estimatedPct ?? NaN, 2)).join(', ')}]` : ''),
        }));
      }
      if (c.agent) {
        const sat = rs.map((x) => x.agentCpuPctSat!);
        out.push(figure({
          id: id('agent_cpu_pct'), bench, label: `agent CPU at saturation (its own process, /proc utime+stime), ${h.label}, ${c.label}`,
          value: round(median(sat)), unit: '% of a core', command: cmdOf(c, 'saturation'), samples: sat.map((x) => round(x)),
          ...(c.name === 'default' && h.name === 'hello' ? { target: { op: '<=' as const, value: 5 } } : {}),
          note: `at ${h.rate}/s: ${round(median(rs.map((x) => x.agentCpuPctConst!)))}% of a core; records read ${Math.round(median(rs.map((x) => x.recordsPerSecSat!)))}/s at saturation; probes on ${round(median(rs.map((x) => (x.coverage ?? NaN) * 100)))}% of the time`,
        }));
        const wakes = rs.map((x) => x.agentWakeupsSat ?? NaN).filter(Number.isFinite);
        if (wakes.length) {
          out.push(figure({
            id: id('agent_wakeups_per_s'), bench, label: `agent wake-ups per second at saturation (its threads' voluntary context switches), ${h.label}, ${c.label}`,
            value: Math.round(median(wakes)), unit: 'wake-ups/s', command: cmdOf(c, 'saturation'), samples: wakes.map(Math.round),
            note: 'each wake-up on the load generator\'s CPU cost the server more than the agent\'s CPU time shows (a timer process there, 250 wake-ups/s at 6 us each, took ~16% of the hello server\'s requests/s on this VM): agent/native/reader.c',
          }));
        }
        const hitCost = rs.map((x) => x.hitCostNs ?? NaN).filter(Number.isFinite);
        if (hitCost.length && !c.agent.includes('--full')) {
          out.push(figure({
            id: id('hit_cost_ns'), bench, label: `what the governor charges a probe hit at the end of saturation (measured in the server, or the calibration when that is more), ${h.label}, ${c.label}`,
            note: 'measured: the on-windows\' extra CPU (from their switch on until 250 ms after their switch off, or their detach done when later) per byte the server moved, pooled over 30 cycles, over the hits the agent had read; a reader behind undercounts them',
            value: Math.round(median(hitCost)), unit: 'ns/hit', command: cmdOf(c, 'saturation'), samples: hitCost.map(Math.round),
          }));
        }
        const perRec = rs.map((x) => x.agentNsPerRecordSat!).filter(Number.isFinite);
        if (perRec.length) {
          out.push(figure({
            id: id('agent_ns_per_record'), bench, label: `agent CPU per record read at saturation (the whole agent process / goroscope_records_total), ${h.label}, ${c.label}`,
            value: Math.round(median(perRec)), unit: 'ns CPU/record', command: cmdOf(c, 'saturation'), samples: perRec.map(Math.round),
            ...(c.name === 'full' && h.name === 'hello' ? { target: { op: '<=' as const, value: 1000 } } : {}),
          }));
        }
      }
    }
    // The request probes' cost per request: the server's extra CPU per request at the constant rate, paired with
    // the no-tracing run of the same round; the end at an entry (2 emulated hits a request) and at a RET.
    const perReqOf = (name: ConfigName) => {
      const rs = results.get(key(h, CONFIGS.find((c) => c.name === name)!)) ?? [];
      return rs.length && rs.length === none.length ? rs.map((x, i) => (x.cpuUsPerReq - none[i].cpuUsPerReq) * 1000) : [];
    };
    for (const name of ['requests', 'requests_ret'] as const) {
      const perReq = perReqOf(name);
      if (!perReq.length) continue;
      const c = CONFIGS.find((x) => x.name === name)!;
      const v = median(perReq);
      out.push(figure({
        id: `${bench}.${h.name}.request_probe_ns_per_req${name === 'requests' ? '' : '.ret'}`, bench,
        label: `request probes: server CPU added per request (${name === 'requests' ? 'ServeHTTP entry + finishRequest entry' : 'ServeHTTP entry + RET'}, record written), ${h.label}`,
        value: round(v), unit: 'ns/req', command: cmdOf(c, 'constant'), samples: perReq.map((x) => round(x)),
        note: `Beyla publishes ~${BEYLA_NS_PER_REQUEST} ns per request for its Go HTTP probes: ${round(v / BEYLA_NS_PER_REQUEST, 2)}x that here (this VM's uprobe trap is ~3x bare metal's, FACTS.md)`,
      }));
    }
    // The anchors: default against Go's own tracers, paired per round (percentage points of server CPU per request).
    const def = results.get(key(h, CONFIGS[1])) ?? [];
    for (const anchor of CONFIGS.filter((c) => c.trace || c.flight)) {
      const a = results.get(key(h, anchor)) ?? [];
      if (!def.length || a.length !== def.length || none.length !== def.length) continue;
      const diff = def.map((d, i) => ((d.cpuUsPerReq - a[i].cpuUsPerReq) / none[i].cpuUsPerReq) * 100);
      out.push(figure({
        id: `${bench}.${h.name}.default_minus_${anchor.name}_pct`, bench,
        label: `goroscope default's server CPU per request minus ${anchor.label}'s, as % of no tracing's, ${h.label}`,
        value: round(median(diff)), unit: 'points', command: cmdOf(CONFIGS[1], 'constant'), samples: diff.map((x) => round(x)),
        ...(anchor.trace && h.name === 'hello' ? { target: { op: '<=' as const, value: 0 } } : {}),
        note: 'negative: goroscope costs the server less',
      }));
    }
    // This checkout's agent against the baseline's, the same configuration: ratios paired per round (both ran in it).
    for (const c of configs.filter((x) => x.root)) {
      const name = c.name.slice(0, -'@base'.length);
      const baseRuns = new Map((results.get(key(h, c)) ?? []).map((x) => [x.round, x]));
      const pairs = (results.get(`${h.name}.${name}`) ?? []).flatMap((x) => (baseRuns.has(x.round) ? [[x, baseRuns.get(x.round)!] as const] : []));
      if (!pairs.length) continue;
      const ratios: [string, string, 'constant' | 'saturation', (x: RunResult) => number | undefined][] = [
        ['server_cpu_us_per_req', `server CPU per request at ${h.rate}/s`, 'constant', (x) => x.cpuUsPerReq],
        ['sat_server_cpu_us_per_req', 'server CPU per request at saturation', 'saturation', (x) => x.satCpuUsPerReq],
        ['rps', 'requests/s at saturation', 'saturation', (x) => x.rps],
        ['agent_cpu_pct_const', `agent CPU at ${h.rate}/s`, 'constant', (x) => x.agentCpuPctConst],
        ['agent_cpu_pct', 'agent CPU at saturation', 'saturation', (x) => x.agentCpuPctSat],
        ['agent_ns_per_record', 'agent CPU per record at saturation', 'saturation', (x) => x.agentNsPerRecordSat],
        // The agent's fixed work is spread over the records read: a side that read fewer (its server held back by other
        // work on its CPU) shows more per record for that alone.
        ['records_per_s', 'records the agent read per second at saturation', 'saturation', (x) => x.recordsPerSecSat],
      ];
      for (const [what, label, phase, get] of ratios) {
        const r = pairs.map(([n, b]) => (get(n) ?? NaN) / (get(b) ?? NaN)).filter(Number.isFinite);
        if (!r.length) continue;
        out.push(figure({
          id: `${bench}.${h.name}.${what}.${name}_vs_base`, bench, label: `${label}, ${h.label}, ${name}: this checkout / baseline ${baseline} (paired per round)`,
          value: round(median(r), 3), unit: 'x', command: cmdOf(c, phase), samples: r.map((x) => round(x, 3)),
          note: `${ciNote(r, 3)}; this checkout ${round(median(pairs.map(([n]) => get(n) ?? NaN)), 2)}, baseline ${round(median(pairs.map(([, b]) => get(b) ?? NaN)), 2)} (medians)`,
        }));
      }
    }
  }
  if (failures.length) ctx.log(`http: ${failures.length} runs failed (left out; paired figures need every round): ${failures.join('; ')}`);
  return out;
}
