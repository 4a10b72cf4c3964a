// Shared pieces of the benchmarks (scripts/bench/run.ts): figures, statistics, child processes, fixtures,
// and the kernel's own BPF run-time statistics.
import { spawn, type ChildProcessWithoutNullStreams, type SpawnOptionsWithoutStdio } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { goBuild, repoRoot } from '../../test/lib/go.ts';

export { repoRoot };
export const fixturesDir = join(repoRoot, 'scripts', 'bench', 'fixtures');

/** A target a figure is checked against. */
export interface Target {
  op: '<=' | '>=' | '==';
  value: number;
}

/** One measured number, with what it means and how it was produced. */
export interface Figure {
  /** Stable key, e.g. "hit-cost.per_hit.full_jump". */
  id: string;
  bench: string;
  label: string;
  /** null: not measured (see note). */
  value: number | null;
  unit: string;
  /** The command that produced it: the harness invocation and the configuration inside it. */
  command: string;
  /** Individual repetitions behind a median. */
  samples?: number[];
  target?: Target;
  met?: boolean;
  note?: string;
}

export interface BenchContext {
  quick: boolean;
  /** Go toolchain for the fixtures ('local', '1.19', '1.N.P'). */
  goVersion: string;
  /** How the harness was invoked, for Figure.command. */
  invocation: string;
  log: (msg: string) => void;
}

export function figure(f: Omit<Figure, 'met'>): Figure {
  const out: Figure = { ...f };
  if (f.target && f.value !== null && Number.isFinite(f.value)) {
    const v = f.value;
    const t = f.target.value;
    out.met = f.target.op === '<=' ? v <= t : f.target.op === '>=' ? v >= t : v === t;
  }
  return out;
}

export function median(xs: number[]): number {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export const round = (x: number, digits = 1): number => (Number.isFinite(x) ? Number(x.toFixed(digits)) : x);

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Builds a fixture under scripts/bench/fixtures/<name> (rebuilt only when main.go changed). */
export function buildFixture(name: string, goVersion: string): string {
  return goBuild({ srcDir: join(fixturesDir, name), version: goVersion, name: `bench-${name}` });
}

/** A child process driven line by line over stdin/stdout. */
export class LineProcess {
  private out = '';
  private err = '';
  private waiters: Array<() => void> = [];
  exited = false;

  constructor(readonly child: ChildProcessWithoutNullStreams, readonly what: string) {
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    const wake = () => {
      for (const w of this.waiters.splice(0)) w();
    };
    child.stdout.on('data', (d: string) => {
      this.out += d;
      wake();
    });
    child.stderr.on('data', (d: string) => {
      this.err += d;
      if (this.err.length > 20000) this.err = this.err.slice(-10000);
    });
    // 'close', not 'exit': output can still be on its way when 'exit' fires.
    child.once('close', () => {
      this.exited = true;
      wake();
    });
  }

  static start(cmd: string, args: string[], what = cmd, opts: SpawnOptionsWithoutStdio = {}): LineProcess {
    return new LineProcess(spawn(cmd, args, { ...opts, stdio: ['pipe', 'pipe', 'pipe'] }), what);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Waits for the output (after what was consumed) to match; consumes through the match. */
  async until(re: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.out);
      if (m) {
        this.out = this.out.slice(m.index + m[0].length);
        return m;
      }
      if (this.exited) throw new Error(`${this.what} exited (code ${this.child.exitCode}, signal ${this.child.signalCode}) before ${re}: ${this.err.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`${this.what}: timed out waiting for ${re}; output: ${this.out.slice(-500)} ${this.err.slice(-500)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  async command(line: string, reply: RegExp, timeoutMs?: number): Promise<RegExpExecArray> {
    this.send(line);
    return this.until(reply, timeoutMs);
  }

  stderr(): string {
    return this.err;
  }

  async stop(signal: NodeJS.Signals = 'SIGKILL', timeoutMs = 10_000): Promise<void> {
    if (this.exited) return;
    this.child.kill(signal);
    const deadline = Date.now() + timeoutMs;
    while (!this.exited && Date.now() < deadline) await sleep(20);
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

/** Runs a command to completion; resolves with its output (rejects on a non-zero exit). */
export function runCommand(cmd: string, args: string[], timeoutMs = 120_000): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    c.once('close', (code, sig) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr }); // all of it: 'close' comes after the output streams end
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? sig}: ${stderr.slice(-1000)}`));
    });
  });
}

// ---- Kernel BPF statistics -------------------------------------------------------------------------------

const BPF_STATS = '/proc/sys/kernel/bpf_stats_enabled';

/**
 * Turns on kernel.bpf_stats_enabled (per-program run_time_ns/run_cnt) and returns a function that puts the
 * previous value back; undefined when it cannot be enabled. The sysctl is global: keep the window short.
 */
export function enableBpfStats(): (() => void) | undefined {
  try {
    const before = readFileSync(BPF_STATS, 'utf8').trim();
    if (before === '1') return () => {};
    writeFileSync(BPF_STATS, '1');
    return () => {
      try {
        writeFileSync(BPF_STATS, before);
      } catch {
        /* nothing to restore with */
      }
    };
  } catch {
    return undefined;
  }
}

export interface ProgStats {
  id: number;
  name: string;
  runTimeNs: number;
  runCnt: number;
}

/**
 * The BPF programs this process holds, with the kernel's run statistics: program ids from our own file
 * descriptors (/proc/self/fdinfo names them, so other people's programs with the same names are never
 * counted), names and counters from `bpftool -j prog show id N`.
 */
export async function ownProgStats(): Promise<Map<string, ProgStats>> {
  const ids = new Set<number>();
  for (const fd of readdirSync('/proc/self/fd')) {
    let link: string;
    try {
      link = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (link !== 'anon_inode:bpf-prog') continue;
    try {
      const m = /prog_id:\s*(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      if (m) ids.add(Number(m[1]));
    } catch {
      /* closed meanwhile */
    }
  }
  const out = new Map<string, ProgStats>();
  for (const id of ids) {
    const { stdout } = await runCommand('bpftool', ['-j', 'prog', 'show', 'id', String(id)]);
    const p = JSON.parse(stdout) as { id: number; name: string; run_time_ns?: number; run_cnt?: number };
    out.set(`${p.name}#${p.id}`, { id: p.id, name: p.name, runTimeNs: p.run_time_ns ?? 0, runCnt: p.run_cnt ?? 0 });
  }
  return out;
}

/** Sums run time and count per program name between two snapshots. */
export function progDelta(before: Map<string, ProgStats>, after: Map<string, ProgStats>, names: string[]): { runTimeNs: number; runCnt: number } {
  let runTimeNs = 0;
  let runCnt = 0;
  for (const [key, a] of after) {
    if (!names.includes(a.name)) continue;
    const b = before.get(key);
    runTimeNs += a.runTimeNs - (b?.runTimeNs ?? 0);
    runCnt += a.runCnt - (b?.runCnt ?? 0);
  }
  return { runTimeNs, runCnt };
}
