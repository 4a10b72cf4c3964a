// latest.md: the figures of a bench run as Markdown tables, one per benchmark.
import type { BenchResults } from './run.ts';
import type { Figure } from './lib.ts';

const TITLES: Record<string, string> = {
  'hit-cost': 'Cost per uprobe hit (channel ping-pong)',
  pipeline: 'Agent pipeline (decode + goroutine table) and loss at a fixed event rate',
  memory: 'Agent memory per live goroutine',
  http: 'HTTP server under load (wrk)',
  'tcp-attach': 'TCP programs: what each syscall and each accepted Go connection pays (default plan, syscall hooks), raw (tp_btf) against classic tracepoints per hit',
};

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

function fmt(v: number | null): string {
  if (v === null || !Number.isFinite(v)) return 'n/a';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  return String(v);
}

function target(f: Figure): string {
  if (!f.target) return '';
  const mark = f.met === undefined ? '' : f.met ? ' ✅' : ' ❌';
  return `${f.target.op} ${fmt(f.target.value)}${mark}`;
}

export function renderMarkdown(r: BenchResults): string {
  const lines: string[] = [];
  lines.push(`# goroscope benchmarks${r.quick ? ' (quick mode: tiny configuration, not representative)' : ''}`);
  lines.push('');
  lines.push(`Run ${r.startedAt} → ${r.finishedAt} with \`${r.invocation}\`.`);
  lines.push(
    `Machine: ${r.machine.cpus} × ${r.machine.cpuModel}, ${(r.machine.memBytes / 2 ** 30).toFixed(0)} GiB, kernel ${r.machine.kernel}, Node ${r.machine.node}, ${r.machine.go}.`,
  );
  lines.push('');
  lines.push('Shared, noisy machine: configurations are interleaved in one run and figures are medians of the repetitions');
  lines.push('(samples in latest.json); compare ratios, not absolute times.');
  for (const bench of r.benches) {
    lines.push('');
    lines.push(`## ${TITLES[bench] ?? bench}`);
    lines.push('');
    if (r.errors[bench]) {
      lines.push(`**Failed:** \`${cell(r.errors[bench].split('\n')[0])}\``);
      lines.push('');
    }
    const figs = r.figures.filter((f) => f.bench === bench);
    if (!figs.length) continue;
    lines.push('| figure | value | unit | target | samples / note |');
    lines.push('|---|---:|---|---|---|');
    for (const f of figs) {
      const extra = [f.samples?.length ? `[${f.samples.map(fmt).join(', ')}]` : '', f.note ?? ''].filter(Boolean).join(' ');
      lines.push(`| ${cell(f.label)} | ${fmt(f.value)} | ${cell(f.unit)} | ${target(f)} | ${cell(extra)} |`);
    }
  }
  lines.push('');
  lines.push('## Commands');
  lines.push('');
  const seen = new Set<string>();
  for (const f of r.figures) {
    if (seen.has(f.command)) continue;
    seen.add(f.command);
    lines.push(`- \`${cell(f.command)}\``);
  }
  lines.push('');
  return lines.join('\n');
}
