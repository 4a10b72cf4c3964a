// Shared pieces of the benchmarks (scripts/bench/run.ts): figures, statistics, child processes, fixtures,
// and the kernel's own BPF run-time statistics.
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, startChild, type Child, type ChildOptions } from '../../test/lib/child.ts';
import { goBuild, repoRoot } from '../../test/lib/go.ts';

export { repoRoot, type Child };
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

/** A benchmark's child process (test/lib/child.ts): its waits have a minute each, then fail with its stderr. */
export function startProcess(cmd: string, args: string[], what = cmd, opts: Omit<ChildOptions, 'what'> = {}): Child {
  return startChild(cmd, args, { timeoutMs: 60_000, ...opts, what });
}

/** Runs a command to completion; resolves with its output (rejects on a non-zero exit, SIGKILL after timeoutMs). */
export async function runCommand(cmd: string, args: string[], timeoutMs = 120_000): Promise<{ stdout: string; stderr: string }> {
  return run(cmd, args, { check: true, timeoutMs });
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
