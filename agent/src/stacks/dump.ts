// `goroscope dump --pid PID`: every goroutine's stack, read from outside, in Go's own traceback format (or
// --json). The process is never stopped: goroutines are read one batch at a time while they run.
import { writeSync } from 'node:fs';
import { parseGoVersion, waitReasonString, statusName } from '../gobinary/layouts.ts';
import { ProcessMemory } from '../proc/process.ts';
import { openTarget, type Target } from '../tracer/target.ts';
import { monoNowNs } from '../tracer/clock.ts';
import { readGoroutineStacks, type GoroutineStack, type ReadOptions, type ReadSummary, type StackReaderTarget } from './read-goroutines.ts';
import {
  createdByLines,
  formatGoroutine,
  goroutineHeader,
  isHiddenGoroutine,
  logicalFrames,
  type TracebackContext,
  type TracebackFrame,
} from './traceback.ts';

/** A process opened for stack reads: its binary, layout, load bias and frame resolver. */
export interface StackTarget extends StackReaderTarget, TracebackContext {
  info: Target['info'];
  layoutExact: boolean;
  layoutNote?: string;
}

/** A process opened for stack reads: the target (opened here unless the caller has it) and its binary's frame resolver. */
export function openStackTarget(pid: number, target: Target = openTarget(pid)): StackTarget {
  const minor = parseGoVersion(target.binary.goVersion)?.minor ?? 0;
  return {
    pid,
    info: target.info,
    binary: target.binary,
    layout: target.layout,
    layoutExact: target.layoutExact,
    ...(target.layoutNote ? { layoutNote: target.layoutNote } : {}),
    bias: target.bias,
    pclntab: target.binary.pclntab,
    frames: target.binary.frames,
    goMinor: minor,
  };
}

const targets = new WeakMap<Target, StackTarget>();

/** The stack target of a traced process, opened once (its frame resolver keeps its caches). */
export function stackTargetFor(proc: Target): StackTarget {
  let t = targets.get(proc);
  if (!t) targets.set(proc, (t = openStackTarget(proc.info.pid, proc)));
  return t;
}

export interface Dump {
  target: StackTarget;
  goroutines: GoroutineStack[];
  summary: ReadSummary;
  /** CLOCK_MONOTONIC (ns) at the start of the read. */
  startedNs: number;
  durationMs: number;
  takenAt: number;
}

export function takeDump(target: StackTarget, opts: ReadOptions = {}): Dump {
  const mem = new ProcessMemory(target.pid);
  try {
    const startedNs = monoNowNs();
    const takenAt = Date.now();
    const goroutines: GoroutineStack[] = [];
    const summary = readGoroutineStacks(mem, target, (g) => goroutines.push(g), opts);
    return { target, goroutines, summary, startedNs, durationMs: (monoNowNs() - startedNs) / 1e6, takenAt };
  } finally {
    mem.close();
  }
}

export interface DumpFormatOptions {
  /** GOTRACEBACK=system: runtime goroutines and frames too. */
  system?: boolean;
}

/** The dump as Go prints it: goroutine blocks separated by blank lines. */
export function formatDump(d: Dump, opts: DumpFormatOptions = {}): string {
  const blocks: string[] = [];
  for (const g of d.goroutines) {
    if (!opts.system && isHiddenGoroutine(d.target, g)) continue;
    blocks.push(formatGoroutine(d.target, g, { showRuntime: opts.system, nowNs: d.startedNs }));
  }
  return `${blocks.join('\n\n')}\n`;
}

export interface GoroutineJson {
  goid: number;
  parentGoid: number | null;
  /** Status word (running, runnable, waiting, syscall...). */
  status: string;
  waitReason: string | null;
  /** What the dump prints in brackets. */
  header: string;
  waitMinutes: number | null;
  lockedToThread: boolean;
  system: boolean;
  startFunction: string | null;
  createdBy: { function: string; file: string; line: number } | null;
  stackState: GoroutineStack['stackState'];
  problem?: string;
  truncated: boolean;
  frames: Array<Omit<TracebackFrame, 'funcID'>>;
}

export function goroutineJson(t: StackTarget, g: GoroutineStack, nowNs: number): GoroutineJson {
  const created = createdByLines(t, g);
  const createdFn = g.gopc ? t.pclntab.funcInfoForPC(g.gopc) : undefined;
  const createdAt = createdFn ? t.pclntab.fileLineIn(createdFn, g.gopc > createdFn.entry ? g.gopc - 1 : g.gopc) : undefined;
  const header = goroutineHeader(t, g, nowNs);
  const S = t.layout.statuses;
  return {
    goid: g.goid,
    parentGoid: g.parentGoid,
    status: statusName(t.layout, g.status),
    waitReason: g.waitReason === null ? null : waitReasonString(t.layout, g.waitReason),
    header: header.slice(header.indexOf('[') + 1, header.lastIndexOf(']')),
    waitMinutes: (g.status === S._Gwaiting || g.status === S._Gsyscall) && g.waitSince ? (nowNs - g.waitSince) / 60e9 : null,
    lockedToThread: g.lockedToThread,
    system: isHiddenGoroutine(t, g),
    startFunction: t.pclntab.funcForPC(g.startPc)?.name ?? null,
    createdBy: createdFn && (created.length || g.goid !== 1) ? { function: createdFn.name, file: createdAt?.file ?? '?', line: createdAt?.line ?? 0 } : null,
    stackState: g.stackState,
    ...(g.problem ? { problem: g.problem } : {}),
    truncated: g.truncated,
    frames: logicalFrames(t, g).map(({ funcID: _, ...f }) => f),
  };
}

export function dumpJson(d: Dump, opts: DumpFormatOptions = {}) {
  const t = d.target;
  const goroutines = d.goroutines.map((g) => goroutineJson(t, g, d.startedNs)).filter((g) => opts.system || !g.system);
  const byState: Record<string, number> = {};
  for (const g of goroutines) byState[g.stackState] = (byState[g.stackState] ?? 0) + 1;
  return {
    pid: t.pid,
    exe: t.info.exe,
    goVersion: t.binary.goVersion,
    layoutExact: t.layoutExact,
    ...(t.layoutNote ? { layoutNote: t.layoutNote } : {}),
    takenAt: d.takenAt,
    durationMs: d.durationMs,
    read: { ...d.summary, stacks: byState },
    goroutines,
  };
}

export interface DumpCommand {
  pid: number;
  json?: boolean;
  system?: boolean;
}

export interface StreamedDump {
  summary: ReadSummary;
  states: Record<string, number>;
  goroutines: number;
  durationMs: number;
  bytes: number;
}

/**
 * The dump written as it is read, one batch of goroutines at a time, so memory stays flat whatever the number of
 * goroutines: Go's traceback text, or (json) the same object as dumpJson with its goroutines streamed.
 */
export function streamDump(target: StackTarget, write: (chunk: string) => void, opts: DumpFormatOptions & { json?: boolean } = {}): StreamedDump {
  const mem = new ProcessMemory(target.pid);
  const startedNs = monoNowNs();
  const takenAt = Date.now();
  const states: Record<string, number> = {};
  let n = 0;
  let bytes = 0;
  let pending: string[] = [];
  const flush = () => {
    if (!pending.length) return;
    const chunk = pending.join('');
    pending = [];
    bytes += chunk.length;
    write(chunk);
  };
  const out = (s: string) => {
    pending.push(s);
    if (pending.length >= 256) flush();
  };
  if (opts.json) {
    const head = { pid: target.pid, exe: target.info.exe, goVersion: target.binary.goVersion, layoutExact: target.layoutExact, ...(target.layoutNote ? { layoutNote: target.layoutNote } : {}), takenAt };
    out(`${JSON.stringify(head).slice(0, -1)},"goroutines":[`);
  }
  let summary: ReadSummary;
  try {
    summary = readGoroutineStacks(mem, target, (g) => {
      states[g.stackState] = (states[g.stackState] ?? 0) + 1;
      if (opts.json) {
        const j = goroutineJson(target, g, startedNs);
        if (!opts.system && j.system) return;
        out(`${n++ ? ',' : ''}${JSON.stringify(j)}`);
      } else {
        if (!opts.system && isHiddenGoroutine(target, g)) return;
        out(`${n++ ? '\n\n' : ''}${formatGoroutine(target, g, { showRuntime: opts.system, nowNs: startedNs })}`);
      }
    }, { args: true });
  } finally {
    mem.close();
  }
  const durationMs = (monoNowNs() - startedNs) / 1e6;
  out(opts.json ? `],"durationMs":${durationMs},"read":${JSON.stringify({ ...summary, stacks: states })}}\n` : '\n');
  flush();
  return { summary, states, goroutines: n, durationMs, bytes };
}

export async function runDump(cmd: DumpCommand): Promise<void> {
  const target = openStackTarget(cmd.pid);
  const r = streamDump(target, (chunk) => writeAll(1, chunk), cmd);
  process.stderr.write(
    `goroscope: ${r.goroutines} goroutines of pid ${cmd.pid} read in ${r.durationMs.toFixed(1)} ms without stopping it ` +
      `(${Object.entries(r.states).map(([k, v]) => `${v} ${k}`).join(', ')}; ${(r.summary.bytesRead / 1024).toFixed(0)} KiB in ${r.summary.reads} reads)\n`,
  );
}

/** Writes all of a chunk to a file descriptor (stdout may be a pipe that takes it in parts). */
function writeAll(fd: number, chunk: string): void {
  const buf = Buffer.from(chunk);
  for (let off = 0; off < buf.length; ) {
    try {
      off += writeSync(fd, buf, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
    }
  }
}
