// Reads profiles the way SREs do, with `go tool pprof`, and parses its -raw output and Go's own goroutine
// profile at debug=1 (what /debug/pprof/goroutine?debug=1 serves) for the tests to compare.
import { execFileSync } from 'node:child_process';
import { goCommand } from './go.ts';

export interface RawFrame {
  function: string;
  file: string;
  line: number;
}

export interface RawSample {
  values: number[];
  frames: RawFrame[];
  labels: Record<string, string>;
}

/** Runs `go tool pprof <args> <file>` with the machine's Go; throws with pprof's stderr when it cannot read it. */
export function goToolPprof(args: string[], file: string): string {
  const { cmd, env } = goCommand('local');
  return execFileSync(cmd, ['tool', 'pprof', ...args, file], { env: { ...env, PPROF_TMPDIR: '/tmp' }, encoding: 'utf8', timeout: 60_000, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Samples of `go tool pprof -raw` output, with their locations' frames (innermost first) and labels. */
export function parseRaw(text: string): { sampleTypes: string; samples: RawSample[] } {
  const lines = text.split('\n');
  const locations = new Map<number, RawFrame[]>();
  const start = lines.indexOf('Locations');
  for (let i = start + 1; i < lines.length && lines[i] !== 'Mappings'; i++) {
    const m = /^\s*(\d+): 0x[0-9a-f]+ M=\d+ (\S+) (.*?):(\d+)(?::\d+)? s=\d+$/.exec(lines[i]);
    if (m) locations.set(Number(m[1]), [{ function: m[2], file: m[3], line: Number(m[4]) }]);
  }
  const samplesAt = lines.indexOf('Samples:');
  const sampleTypes = lines[samplesAt + 1];
  const samples: RawSample[] = [];
  for (let i = samplesAt + 2; i < start; i++) {
    const m = /^\s*([\d ]+?):((?: \d+)*)\s*$/.exec(lines[i]);
    if (!m) continue;
    const labels: Record<string, string> = {};
    const next = lines[i + 1] ?? '';
    if (!/^\s*[\d ]+:/.test(next)) {
      for (const l of next.matchAll(/([^\s:][^:]*?):\[([^\]]*)\]/g)) labels[l[1].trim()] = l[2];
    }
    const ids = m[2].trim() ? m[2].trim().split(/\s+/).map(Number) : [];
    samples.push({ values: m[1].trim().split(/\s+/).map(Number), frames: ids.flatMap((id) => locations.get(id) ?? []), labels });
  }
  return { sampleTypes, samples };
}

export interface DebugRecord {
  count: number;
  /** PCs on the "@" line: one per logical frame. */
  pcs: number;
  /** The "#" lines: frames as printed (leading runtime frames and runtime.goexit hidden). */
  frames: RawFrame[];
}

/** Go's goroutine profile at debug=1. */
export function parseDebug1(text: string): { total: number; records: DebugRecord[] } {
  const total = Number(/goroutine profile: total (\d+)/.exec(text)?.[1] ?? NaN);
  const records: DebugRecord[] = [];
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split('\n');
    const head = lines.findIndex((l) => /^\d+ @/.test(l));
    if (head < 0) continue;
    const [count, pcs] = lines[head].split(' @ ');
    const frames: RawFrame[] = [];
    for (const l of lines.slice(head + 1)) {
      const m = /^#\t0x[0-9a-f]+\t(\S+)\+0x[0-9a-f]+\t+(.*):(\d+)$/.exec(l);
      if (m) frames.push({ function: m[1], file: m[2], line: Number(m[3]) });
    }
    records.push({ count: Number(count), pcs: pcs.trim().split(/\s+/).length, frames });
  }
  return { total, records };
}

/** What printStackRecord shows of a stack: leading runtime frames and runtime.goexit hidden (all if nothing is left). */
export function debug1Shown(frames: RawFrame[]): RawFrame[] {
  let show = false;
  const out: RawFrame[] = [];
  for (const f of frames) {
    if (f.function !== 'runtime.goexit' && (show || !(f.function.startsWith('runtime.') || f.function.startsWith('internal/runtime/')))) {
      show = true;
      out.push(f);
    }
  }
  return show ? out : frames.filter((f) => f.function !== 'runtime.goexit');
}
