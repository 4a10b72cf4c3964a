// The agent's memory and attach cost per traced process, measured from outside as an SRE would: the bundled
// agent (`node bin/goroscope.js agent`, its own process) and a real collector; the agent's VmRSS and VmHWM
// from /proc/PID/status, its CPU from /proc/PID/stat (utime + stime), the memory of its BPF maps from the
// fdinfo of their fds (charged to the cgroup, not in RSS).
//
// Every Go process is started behind `sh -c 'read _; exec BIN'`, so its pid is known before it is Go: the agent
// is given every pid at start (--pid) and takes each process when it execs, as it would a new process on the
// node, and nothing else on this shared machine is traced. Phases: nothing traced; one idle net/http server
// ("idle"); 60 more of the same binary; 30 s after those 60 exit; then the first attach to a 100+ MB binary
// (Jaeger v2, built by scripts/receivers/build.sh) when it is there.
//
// With --agent-baseline DIR (another checkout, its bundle built), that agent runs the same phases after this
// one's, on the same machine in the same run: figures side by side.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { freePort } from '../../test/lib/receivers.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { buildFixture, figure, repoRoot, round, sleep, type BenchContext, type Figure } from './lib.ts';
import { startCollector, stopCollector, TOKEN } from './collector.ts';
import { processCpuNs } from '../../agent/src/overhead/governor.ts';

const MiB = 2 ** 20;
/** When the RSS after the first attach to the big binary is read. */
const AFTER_BIG_MS = 5000;

export interface AgentMemoryOptions {
  /** Another checkout whose agent runs the same phases after this one's. */
  baseline?: string;
  /** Processes started after the idle one (60 by default). */
  processes?: number;
}

/** What /proc says of a process now. */
interface ProcSample {
  rss: number;
  hwm: number;
  anon: number;
  file: number;
  cpuNs: number;
  /** Bytes the kernel charges for the BPF maps the process holds (fdinfo memlock). */
  bpfMaps: number;
  /** Resident bytes by kind of mapping (/proc/PID/smaps): where the RSS is. */
  mappings: Record<string, number>;
}

/**
 * Resident bytes by kind of mapping: the node binary's pages (file-backed: how many of them count depends on the
 * page cache, not on the agent), the BPF ring buffers the reader maps (the kernel inserts every page at mmap),
 * other files (shared libraries, addons), and anonymous memory (V8's heap and code, the C heap, thread stacks).
 */
function rssByMapping(pid: number): Record<string, number> {
  const out: Record<string, number> = {};
  let kind = 'anon';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1].trim();
      if (!name || name === '[heap]' || name === '[stack]' || name.startsWith('[anon')) kind = 'anon';
      else if (name === 'anon_inode:bpf-map') kind = 'bpf rings';
      else if (name === process.execPath || /\/node(js)?$/.test(name)) kind = 'node binary';
      else kind = 'other files';
      continue;
    }
    const m = /^Rss:\s+(\d+) kB$/.exec(line);
    if (m) out[kind] = (out[kind] ?? 0) + Number(m[1]) * 1024;
  }
  return out;
}

/** "node binary 40.1, bpf rings 13, ..." in MiB. */
function mappingNote(s: ProcSample): string {
  return Object.entries(s.mappings)
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${round(v / MiB)}`)
    .join(', ');
}

function procSample(pid: number): ProcSample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  let bpfMaps = 0;
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:bpf-map') continue;
      bpfMaps += Number(/^memlock:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* closed meanwhile */
    }
  }
  return { rss: kb('VmRSS'), hwm: kb('VmHWM'), anon: kb('RssAnon'), file: kb('RssFile'), cpuNs: processCpuNs(pid) ?? NaN, bpfMaps, mappings: rssByMapping(pid) };
}

/** Resets VmHWM to the current RSS (clear_refs 5), so a later VmHWM is the peak of what came after. */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** A process that becomes BIN (exec) when told to: its pid is known before it is a Go program. */
class Deferred {
  readonly child: ChildProcess;
  exited = false;

  constructor(bin: string, args: string[], cwd?: string) {
    this.child = spawn('sh', ['-c', 'read _ && exec "$@"', 'sh', bin, ...args], { stdio: ['pipe', 'ignore', 'ignore'], cwd });
    this.child.once('exit', () => (this.exited = true));
  }

  get pid(): number {
    return this.child.pid!;
  }

  exec(): void {
    this.child.stdin!.write('go\n');
  }

  async kill(): Promise<void> {
    if (this.exited) return;
    this.child.kill('SIGKILL');
    for (const until = Date.now() + 5000; !this.exited && Date.now() < until; ) await sleep(20);
  }
}

/** The bundled agent of a checkout, with the pids it may trace, and which it says it traces. */
class Agent {
  readonly child: ChildProcess;
  readonly traced = new Set<number>();
  private log = '';

  constructor(root: string, pids: number[], collectorUrl: string, readonly metricsPort: number, spool: string) {
    const args = [...imageNodeFlags(root), join(root, 'bin', 'goroscope.js'), 'agent', '--collector', collectorUrl.replace(/^http/, 'ws'), '--metrics-listen', `127.0.0.1:${metricsPort}`, '--spool-dir', spool];
    for (const p of pids) args.push('--pid', String(p));
    // A tmp of its own, as a new pod has: the probe-cost calibration runs (it is cached in tmp for a day, and an
    // agent that found it cached started ~20 MiB smaller before its start-up trim: the runs disagreed by that much).
    const tmp = join(spool, 'tmp');
    mkdirSync(tmp, { recursive: true });
    this.child = spawn(process.execPath, args, { env: { ...process.env, ...imageEnv(root), TMPDIR: tmp, GOROSCOPE_INGEST_TOKEN: TOKEN }, stdio: ['ignore', 'ignore', 'pipe'] });
    createInterface({ input: this.child.stderr! }).on('line', (l) => {
      this.log = `${this.log}${l}\n`.slice(-8000);
      const m = /tracing pid (\d+) /.exec(l);
      if (m) this.traced.add(Number(m[1]));
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  async until(what: string, ok: () => boolean, timeoutMs = 120_000): Promise<void> {
    for (const end = Date.now() + timeoutMs; !ok(); await sleep(50)) {
      if (this.child.exitCode !== null) throw new Error(`the agent exited (${this.child.exitCode}) before ${what}: ${this.log.slice(-2000)}`);
      if (Date.now() > end) throw new Error(`the agent: timed out waiting for ${what}: ${this.log.slice(-2000)}`);
    }
  }

  async metrics(): Promise<string> {
    return (await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`)).text();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.kill('SIGTERM');
    for (const until = Date.now() + 20_000; this.child.exitCode === null && Date.now() < until; ) await sleep(50);
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/**
 * The node flags the checkout's agent image runs the agent with (the ENTRYPOINT of deploy/images/agent.Dockerfile,
 * between "node" and the script): the bench measures the agent as the image runs it.
 */
function imageNodeFlags(root: string): string[] {
  const file = join(root, 'deploy', 'images', 'agent.Dockerfile');
  const line = existsSync(file) ? /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(file, 'utf8'))?.[1] : undefined;
  const argv = line ? (JSON.parse(line) as string[]) : [];
  return argv[0] === 'node' ? argv.slice(1).filter((a) => a.startsWith('--')) : [];
}

/**
 * The environment the checkout's agent image sets (the ENV lines of deploy/images/agent.Dockerfile's last stage,
 * KEY=VALUE each), e.g. glibc's MALLOC_ARENA_MAX: the bench runs the agent in it, as the image does.
 */
function imageEnv(root: string): Record<string, string> {
  const file = join(root, 'deploy', 'images', 'agent.Dockerfile');
  if (!existsSync(file)) return {};
  const text = readFileSync(file, 'utf8');
  const last = text.slice(text.search(/^FROM\s(?![\s\S]*^FROM\s)/m));
  const env: Record<string, string> = {};
  for (const m of last.matchAll(/^ENV\s+(.+)$/gm)) {
    for (const kv of m[1].trim().split(/\s+/)) {
      const eq = kv.indexOf('=');
      if (eq > 0) env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
  }
  return env;
}

/** A gauge or counter of the agent's /metrics, summed over its label sets; NaN when absent (an older agent). */
function metric(text: string, name: string): number {
  let sum = NaN;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name) || (line[name.length] !== ' ' && line[name.length] !== '{')) continue;
    sum = (Number.isNaN(sum) ? 0 : sum) + Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

/** The V8 heap in use that the agent reports on /metrics (NaN from an agent that does not). */
function heapUsed(text: string): number {
  const m = /^goroscope_agent_memory_bytes\{kind="heap_used"\} (\S+)$/m.exec(text);
  return m ? Number(m[1]) : NaN;
}

interface RunFigures {
  empty: ProcSample;
  idle: ProcSample;
  loaded: ProcSample;
  /** RSS each second after the 60 exited. */
  after: number[];
  /** The last of those samples. */
  afterLast: ProcSample;
  /** V8 heap in use (the agent's goroscope_agent_memory_bytes{kind="heap_used"}) nothing traced, idle, after. */
  heapUsed: { empty: number; idle: number; after: number };
  /** Agent CPU (ms) per process attached once its binary was known, idle CPU subtracted. */
  attachCpuMs: number;
  /** Agent CPU (ms) of the idle agent per second (subtracted above). */
  idleCpuMsPerS: number;
  cache: { loaded: Record<string, number>; after: Record<string, number> };
  big?: { cpuMs: number; wallMs: number; peakAboveIdle: number; rssAboveIdle: number; bytes: number; sample: ProcSample };
}

const CACHE_METRICS = ['goroscope_agent_binaries_cached', 'goroscope_agent_binary_references', 'goroscope_agent_binary_analyses_total', 'goroscope_agent_binary_kept_bytes'];

async function runAgent(ctx: BenchContext, root: string, label: string, fixture: string, n: number, afterS: number, jaeger: string | undefined, collectorUrl: string, tmp: string): Promise<RunFigures> {
  const first = new Deferred(fixture, ['-addr', '127.0.0.1:0']);
  const more = Array.from({ length: n }, () => new Deferred(fixture, ['-addr', '127.0.0.1:0']));
  const jaegerDir = jaeger ? mkdtempSync(join(tmp, 'jaeger-')) : undefined;
  const big = jaeger ? new Deferred(jaeger, ['--config', await jaegerConfig(jaegerDir!)], jaegerDir) : undefined;
  const all = [first, ...more, ...(big ? [big] : [])];
  const agent = new Agent(root, all.map((d) => d.pid), collectorUrl, await freePort(), join(tmp, `spool-${label}`));
  try {
    // Up: /metrics answers (tracers, governor calibration and the metrics listener have started).
    for (const end = Date.now() + 120_000; ; await sleep(200)) {
      try {
        await agent.metrics();
        break;
      } catch {
        if (agent.child.exitCode !== null || Date.now() > end) throw new Error(`${label} agent did not serve /metrics`);
      }
    }
    await sleep(3000);
    const empty = procSample(agent.pid);
    const heapEmpty = heapUsed(await agent.metrics());
    first.exec();
    await agent.until(`pid ${first.pid}`, () => agent.traced.has(first.pid));
    await sleep(5000);
    const idle0 = procSample(agent.pid);
    const t0 = performance.now();
    await sleep(5000);
    const idle = procSample(agent.pid);
    const heapIdle = heapUsed(await agent.metrics());
    const idleCpuMsPerS = (idle.cpuNs - idle0.cpuNs) / 1e6 / ((performance.now() - t0) / 1000);
    ctx.log(`agent-memory ${label}: idle ${round(idle.rss / MiB)} MiB, ${round(idleCpuMsPerS, 2)} ms CPU/s`);

    const a0 = procSample(agent.pid);
    const ta = performance.now();
    for (const d of more) d.exec();
    await agent.until(`${n} more pids`, () => more.every((d) => agent.traced.has(d.pid)), 300_000);
    const attachS = (performance.now() - ta) / 1000;
    const a1 = procSample(agent.pid);
    const attachCpuMs = Math.max(0, (a1.cpuNs - a0.cpuNs) / 1e6 - idleCpuMsPerS * attachS) / n;
    await sleep(5000);
    const loaded = procSample(agent.pid);
    const cacheLoaded = Object.fromEntries(CACHE_METRICS.map((m) => [m, 0])) as Record<string, number>;
    const mt = await agent.metrics();
    for (const m of CACHE_METRICS) cacheLoaded[m] = metric(mt, m);
    ctx.log(`agent-memory ${label}: ${n + 1} processes ${round(loaded.rss / MiB)} MiB, attach ${round(attachCpuMs)} ms CPU each`);

    await Promise.all(more.map((d) => d.kill()));
    const after: number[] = [];
    let afterLast = loaded;
    for (let s = 1; s <= afterS; s++) {
      await sleep(1000);
      afterLast = procSample(agent.pid);
      after.push(afterLast.rss);
    }
    const mt2 = await agent.metrics();
    const heapAfter = heapUsed(mt2);
    const cacheAfter = Object.fromEntries(CACHE_METRICS.map((m) => [m, metric(mt2, m)]));
    ctx.log(`agent-memory ${label}: ${afterS} s after they exited ${round(after[after.length - 1] / MiB)} MiB`);

    let bigOut: RunFigures['big'];
    if (big && jaeger) {
      const b0 = procSample(agent.pid);
      resetPeak(agent.pid);
      const tb = performance.now();
      big.exec();
      await agent.until(`the 100+ MB binary's pid ${big.pid}`, () => agent.traced.has(big.pid), 300_000);
      const wallMs = performance.now() - tb;
      const b1 = procSample(agent.pid);
      const cpuMs = Math.max(0, (b1.cpuNs - b0.cpuNs) / 1e6 - (idleCpuMsPerS * wallMs) / 1000);
      // Past the agent's collection and trim 3 s after an attach (agent/processes.ts trimSoon): sampled at 3 s it raced them.
      await sleep(AFTER_BIG_MS);
      const b2 = procSample(agent.pid);
      bigOut = { cpuMs, wallMs, peakAboveIdle: Math.max(b1.hwm, b2.hwm) - b0.rss, rssAboveIdle: b2.rss - b0.rss, bytes: statSync(jaeger).size, sample: b2 };
      ctx.log(`agent-memory ${label}: first attach to ${jaeger}: ${round(cpuMs)} ms CPU, peak +${round(bigOut.peakAboveIdle / MiB)} MiB`);
    }
    return { empty, idle, loaded, after, afterLast, heapUsed: { empty: heapEmpty, idle: heapIdle, after: heapAfter }, attachCpuMs, idleCpuMsPerS, cache: { loaded: cacheLoaded, after: cacheAfter }, big: bigOut };
  } finally {
    await agent.stop();
    await Promise.all(all.map((d) => d.kill()));
    if (jaegerDir) rmSync(jaegerDir, { recursive: true, force: true });
  }
}

/** Jaeger v2 on ports of its own (others on this machine may run one), in-memory storage. */
async function jaegerConfig(dir: string): Promise<string> {
  const [otlp, query, grpc] = [await freePort(), await freePort(), await freePort()];
  const file = join(dir, 'jaeger.yaml');
  writeFileSync(file, `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:${query}
    grpc:
      endpoint: 127.0.0.1:${grpc}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 1000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:${otlp}
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`);
  return file;
}

/** Jaeger v2 as scripts/receivers/build.sh leaves it, if it was built. */
function jaegerBinary(root: string): string | undefined {
  const dir = join(root, 'build', 'receivers');
  if (!existsSync(dir)) return undefined;
  const f = readdirSync(dir).find((x) => /^jaeger-v[\d.]+$/.test(x));
  return f ? join(dir, f) : undefined;
}

export async function runAgentMemory(ctx: BenchContext, opts: AgentMemoryOptions = {}): Promise<Figure[]> {
  const bench = 'agent-memory';
  const n = opts.processes ?? (ctx.quick ? 3 : 60);
  const afterS = ctx.quick ? 12 : 30;
  const fixture = buildFixture('httpserver', ctx.goVersion);
  const jaeger = ctx.quick ? undefined : jaegerBinary(repoRoot);
  if (!jaeger && !ctx.quick) ctx.log('agent-memory: no Jaeger binary (bash scripts/receivers/build.sh jaeger): the first attach to a 100+ MB binary is not measured');
  const tmp = mkdtempSync(join(tmpdir(), 'goroscope-agent-memory-'));
  const collector = await startCollector(join(tmp, 'collector.db'));
  const runs: Array<[string, RunFigures]> = [];
  try {
    runs.push(['', await runAgent(ctx, repoRoot, 'this', fixture, n, afterS, jaeger, collector.url, tmp)]);
    if (opts.baseline) runs.push(['baseline', await runAgent(ctx, opts.baseline, 'baseline', fixture, n, afterS, jaeger, collector.url, tmp)]);
  } finally {
    await stopCollector(collector);
    rmSync(tmp, { recursive: true, force: true });
  }

  const out: Figure[] = [];
  const cmd = `${ctx.invocation} # node [the node flags of deploy/images/agent.Dockerfile's ENTRYPOINT, in its last stage's ENV] bin/goroscope.js agent --pid ... --collector ws://... (bundled, own process, a fresh TMPDIR: no cached calibration); each Go process behind sh -c 'read _ && exec BIN' so the agent takes it when it execs; VmRSS/VmHWM from /proc/AGENT/status, utime+stime from /proc/AGENT/stat, BPF map memory from /proc/AGENT/fdinfo memlock`;
  for (const [tag, r] of runs) {
    const id = (x: string) => `${bench}.${x}${tag ? `.${tag}` : ''}`;
    const who = tag ? ` (${tag}: ${opts.baseline})` : '';
    const per = (r.loaded.rss - r.idle.rss) / n;
    const last = r.after[r.after.length - 1];
    const backAt = r.after.findIndex((x) => x <= r.idle.rss + 5 * MiB);
    out.push(
      figure({ id: id('rss.empty'), bench, label: `agent RSS, nothing traced${who}`, value: round(r.empty.rss / MiB), unit: 'MiB', command: cmd, note: `anon ${round(r.empty.anon / MiB)} MiB, file ${round(r.empty.file / MiB)} MiB (${mappingNote(r.empty)}; V8 heap used ${round(r.heapUsed.empty / MiB)}); BPF maps ${round(r.empty.bpfMaps / MiB)} MiB (charged to the cgroup, not in RSS)` }),
      figure({ id: id('rss.idle'), bench, label: `agent RSS with one idle Go process (net/http server) traced${who}`, value: round(r.idle.rss / MiB), unit: 'MiB', command: cmd, target: { op: '<=', value: 100 }, note: `anon ${round(r.idle.anon / MiB)} MiB, file ${round(r.idle.file / MiB)} MiB (${mappingNote(r.idle)}; V8 heap used ${round(r.heapUsed.idle / MiB)}); BPF maps ${round(r.idle.bpfMaps / MiB)} MiB (not in RSS); idle CPU ${round(r.idleCpuMsPerS, 2)} ms/s` }),
      figure({ id: id('rss.per_process'), bench, label: `agent RSS per further traced process of the same binary (${n} more)${who}`, value: round(per / MiB, 2), unit: 'MiB', command: cmd, target: { op: '<=', value: 5 }, note: `${round(r.loaded.rss / MiB)} MiB with ${n + 1} processes; BPF maps ${round(r.loaded.bpfMaps / MiB)} MiB` }),
      figure({ id: id('rss.loaded'), bench, label: `agent RSS with ${n + 1} processes of one binary traced${who}`, value: round(r.loaded.rss / MiB), unit: 'MiB', command: cmd }),
      figure({ id: id('rss.after_exit'), bench, label: `agent RSS ${r.after.length} s after the ${n} exited, above idle${who}`, value: round((last - r.idle.rss) / MiB), unit: 'MiB', command: cmd, target: { op: '<=', value: 5 }, note: `${round(last / MiB)} MiB (${mappingNote(r.afterLast)}; V8 heap used ${round(r.heapUsed.after / MiB)}); within 5 MiB of idle after ${backAt < 0 ? 'more than ' + r.after.length : backAt + 1} s; by second: ${r.after.map((x) => round(x / MiB, 0)).join(' ')}` }),
      figure({ id: id('attach_cpu_ms'), bench, label: `agent CPU per attach once the binary is known${who}`, value: round(r.attachCpuMs), unit: 'ms', command: cmd, target: { op: '<=', value: 50 }, note: `utime+stime over the ${n} attaches, less the idle agent's CPU rate over the same time` }),
      figure({ id: id('bpf_maps'), bench, label: `BPF map memory of the agent (charged to its cgroup, not in RSS)${who}`, value: round(r.loaded.bpfMaps / MiB), unit: 'MiB', command: cmd }),
    );
    if (!tag) {
      out.push(
        figure({ id: id('binaries_cached.loaded'), bench, label: `analysed binaries kept with ${n + 1} processes of one binary`, value: r.cache.loaded.goroscope_agent_binaries_cached, unit: 'binaries', command: cmd, note: `references ${r.cache.loaded.goroscope_agent_binary_references}, analyses ${r.cache.loaded.goroscope_agent_binary_analyses_total}, kept ${round(r.cache.loaded.goroscope_agent_binary_kept_bytes / MiB, 2)} MiB (pclntab + indexes)` }),
        figure({ id: id('binaries_cached.after_exit'), bench, label: `analysed binaries kept ${r.after.length} s after the ${n} exited (one idle process left)`, value: r.cache.after.goroscope_agent_binaries_cached, unit: 'binaries', command: cmd, note: `references ${r.cache.after.goroscope_agent_binary_references}` }),
      );
    }
    if (r.big) {
      out.push(
        figure({ id: id('big.attach_cpu_ms'), bench, label: `agent CPU for the first attach to a ${round(r.big.bytes / 1e6, 0)} MB Go binary (Jaeger v2)${who}`, value: round(r.big.cpuMs), unit: 'ms', command: cmd, target: { op: '<=', value: 500 }, note: `${round(r.big.wallMs)} ms from its exec to the agent's "tracing pid" (includes up to one /proc scan interval)` }),
        figure({ id: id('big.peak_above_idle'), bench, label: `agent peak RSS (VmHWM) above idle during the first attach to the ${round(r.big.bytes / 1e6, 0)} MB binary${who}`, value: round(r.big.peakAboveIdle / MiB), unit: 'MiB', command: cmd, target: { op: '<=', value: 100 }, note: `RSS ${AFTER_BIG_MS / 1000} s later ${round(r.big.rssAboveIdle / MiB)} MiB above idle` }),
      );
    }
  }
  return out;
}
