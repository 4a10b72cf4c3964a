// Goroutines in the text format of Go's own traceback (runtime/traceback.go), so tools that read Go dumps
// (panicparse and the like) read goroscope's too:
//
//	goroutine 7 [chan receive, 12 minutes]:
//	main.inner(0x0?)
//		/src/main.go:48 +0x25
//	main.recvInlined(...)
//		/src/main.go:53
//	created by main.spawn in goroutine 1
//		/src/main.go:140 +0x1e
//
// The rules follow the traced program's Go version: which frames are hidden (unexported runtime functions,
// wrappers), how deep stacks are cut ("...N frames elided..." since Go 1.21, "...additional frames elided..."
// before), generic names ("[...]"), and "in goroutine N" (Go 1.21+).
import type { FrameResolver, SourceFrame } from '../gobinary/frames.ts';
import { dumpState, isSystemGoroutine, type RuntimeLayout } from '../gobinary/layouts.ts';
import type { Pclntab } from '../gobinary/pclntab.ts';
import type { GoroutineStack } from './read-goroutines.ts';

/** One frame as a dump prints it. */
export interface TracebackFrame extends SourceFrame {
  /** pc - function entry for a physical frame whose pc is past the entry; null otherwise (Go prints no +0x). */
  pcOffset: number | null;
  /** Argument words for a physical frame (undefined when not read); inlined frames print "...". */
  args?: string;
}

export interface TracebackContext {
  layout: RuntimeLayout;
  pclntab: Pclntab;
  frames: FrameResolver;
  goMinor: number;
}

/** Every logical frame of a goroutine's stack, innermost first, nothing hidden. */
export function logicalFrames(ctx: TracebackContext, g: Pick<GoroutineStack, 'pcs' | 'symPCs' | 'args'>): TracebackFrame[] {
  const out: TracebackFrame[] = [];
  for (let i = 0; i < g.pcs.length; i++) {
    const fn = ctx.pclntab.funcInfoForPC(g.pcs[i]);
    if (!fn) continue;
    const frames = ctx.frames.frames(fn, g.symPCs[i]);
    for (const f of frames) {
      out.push({
        ...f,
        pcOffset: !f.inlined && g.pcs[i] > fn.entry ? g.pcs[i] - fn.entry : null,
        ...(f.inlined ? {} : g.args ? { args: g.args[i] } : {}),
      });
    }
  }
  return out;
}

/** Whether Go's traceback shows a frame at GOTRACEBACK<=1 (showfuncinfo). */
function shown(ctx: TracebackContext, f: SourceFrame, firstFrame: boolean, calleeID: number): boolean {
  const sp = ctx.frames.special;
  if (f.funcID === sp.wrapper && sp.wrapper >= 0 && !(calleeID === sp.gopanic || calleeID === sp.sigpanic || calleeID === sp.panicwrap)) return false;
  if (ctx.goMinor >= 25 && f.funcID >= 0 && (f.funcID === sp.runFinalizers || f.funcID === sp.runCleanups)) return true;
  if (f.function === 'runtime.gopanic' && !firstFrame) return true;
  return f.function.includes('.') && (!f.function.startsWith('runtime.') || isExportedRuntime(f.function));
}

function isExportedRuntime(name: string): boolean {
  let rest = name.slice('runtime.'.length);
  let rcvr = '';
  const dot = rest.lastIndexOf('.');
  if (dot >= 0) {
    rcvr = rest.slice(0, dot);
    rest = rest.slice(dot + 1);
    if (rcvr.length >= 3 && rcvr.startsWith('(*') && rcvr.endsWith(')')) rcvr = rcvr.slice(2, -1);
  }
  const up = (c: string | undefined) => c !== undefined && c >= 'A' && c <= 'Z';
  return rest.length > 0 && up(rest[0]) && (rcvr.length === 0 || up(rcvr[0]));
}

/** printFuncName: runtime.gopanic prints as "panic", the rest as funcNameForPrint. */
export function nameForPrint(name: string, goMinor: number): string {
  return name === 'runtime.gopanic' ? 'panic' : funcNameForPrint(name, goMinor);
}

/** funcNameForPrint (Go 1.21+, also runtime.Frame.Function): a generic function's shape arguments become "[...]". */
export function funcNameForPrint(name: string, goMinor: number): string {
  if (goMinor < 21) return name;
  const i = name.indexOf('[');
  const j = name.lastIndexOf(']');
  if (i < 0 || j <= i) return name;
  return `${name.slice(0, i)}[...]${name.slice(j + 1)}`;
}

/**
 * The frames a dump prints, in order, with the elision marker where Go puts one. With showRuntime, every frame
 * (GOTRACEBACK=system); otherwise hidden frames are left out, and if that leaves none, all are shown (as Go does).
 */
export function visibleFrames(ctx: TracebackContext, all: TracebackFrame[], physicalOf: number[], showRuntime: boolean): Array<TracebackFrame | string> {
  const pick = (runtime: boolean): { frames: TracebackFrame[]; phys: number[] } => {
    const frames: TracebackFrame[] = [];
    const phys: number[] = [];
    let callee = 0;
    for (let i = 0; i < all.length; i++) {
      const f = all[i];
      const ok = runtime || shown(ctx, f, frames.length === 0, callee);
      callee = f.funcID;
      if (ok) {
        frames.push(f);
        phys.push(physicalOf[i]);
      }
    }
    return { frames, phys };
  };
  let { frames, phys } = pick(showRuntime);
  if (frames.length === 0 && !showRuntime) ({ frames, phys } = pick(true));
  if (ctx.goMinor >= 21) {
    const INNER = 50;
    const OUTER = 50;
    if (frames.length <= INNER + OUTER) return frames;
    const elided = frames.length - INNER - OUTER;
    return [...frames.slice(0, INNER), `...${elided} frames elided...`, ...frames.slice(frames.length - OUTER)];
  }
  // Before Go 1.21: the walk stops after 100 physical frames; the marker follows when 100 frames were printed.
  const MAX = 100;
  const kept = frames.filter((_, i) => phys[i] < MAX);
  return kept.length === MAX ? [...kept, '...additional frames elided...'] : kept;
}

export interface TracebackOptions {
  /** GOTRACEBACK=system: runtime frames and goroutines too. */
  showRuntime?: boolean;
  /** CLOCK_MONOTONIC now, ns: for "N minutes" (from g.waitsince). */
  nowNs: number;
}

/** Whether a dump at GOTRACEBACK<=1 leaves the goroutine out (a runtime goroutine). */
export function isHiddenGoroutine(ctx: TracebackContext, g: GoroutineStack): boolean {
  const start = ctx.pclntab.funcForPC(g.startPc)?.name;
  return isSystemGoroutine(ctx.layout, start);
}

/** The header line: "goroutine N [state, N minutes, locked to thread]:". */
export function goroutineHeader(ctx: TracebackContext, g: GoroutineStack, nowNs: number): string {
  const S = ctx.layout.statuses;
  let status = dumpState(ctx.layout, g.status, g.waitReason ?? 0);
  if (g.status === S._Gleaked) status += ' (leaked)';
  if (g.scan) status += ' (scan)';
  const waiting = g.status === S._Gwaiting || g.status === S._Gsyscall;
  const minutes = waiting && g.waitSince ? Math.floor((nowNs - g.waitSince) / 60e9) : 0;
  if (minutes >= 1) status += `, ${minutes} minutes`;
  if (g.lockedToThread) status += ', locked to thread';
  return `goroutine ${g.goid} [${status}]:`;
}

/** "created by F in goroutine N" and its location, or nothing (goroutine 1, a hidden creator, no gopc). */
export function createdByLines(ctx: TracebackContext, g: GoroutineStack): string[] {
  if (g.goid === 1 || !g.gopc) return [];
  const fn = ctx.pclntab.funcInfoForPC(g.gopc);
  if (!fn) return [];
  if (!shown(ctx, { function: fn.name, file: '', line: 0, inlined: false, funcID: fn.funcID }, false, 0)) return [];
  const tracepc = g.gopc > fn.entry ? g.gopc - 1 : g.gopc;
  const fl = ctx.pclntab.fileLineIn(fn, tracepc);
  const parent = ctx.goMinor >= 21 && g.parentGoid ? ` in goroutine ${g.parentGoid}` : '';
  const off = g.gopc > fn.entry ? ` +0x${(g.gopc - fn.entry).toString(16)}` : '';
  return [`created by ${nameForPrint(fn.name, ctx.goMinor)}${parent}`, `\t${fl?.file ?? '?'}:${fl?.line ?? 0}${off}`];
}

/** One goroutine's block of a dump, without the blank line between goroutines. */
export function formatGoroutine(ctx: TracebackContext, g: GoroutineStack, opts: TracebackOptions): string {
  const lines = [goroutineHeader(ctx, g, opts.nowNs)];
  if (g.stackState === 'running') {
    lines.push('\tgoroutine running on other thread; stack unavailable');
  } else if (g.stackState !== 'ok') {
    lines.push(`\tgoroutine ${g.stackState === 'none' ? 'has no stack to read' : g.stackState === 'unreadable' ? 'could not be read' : 'changed while read'}; stack unavailable${g.problem ? ` (${g.problem})` : ''}`);
  } else {
    const all: TracebackFrame[] = [];
    const physicalOf: number[] = [];
    for (let i = 0; i < g.pcs.length; i++) {
      const one = logicalFrames(ctx, { pcs: [g.pcs[i]], symPCs: [g.symPCs[i]], args: g.args ? [g.args[i]] : undefined });
      for (const f of one) {
        all.push(f);
        physicalOf.push(i);
      }
    }
    for (const f of visibleFrames(ctx, all, physicalOf, opts.showRuntime ?? false)) {
      if (typeof f === 'string') {
        lines.push(f);
        continue;
      }
      lines.push(`${nameForPrint(f.function, ctx.goMinor)}(${f.inlined ? '...' : (f.args ?? '...')})`);
      lines.push(`\t${f.file}:${f.line}${f.pcOffset !== null ? ` +0x${f.pcOffset.toString(16)}` : ''}`);
    }
    if (g.truncated) lines.push('...additional frames elided...');
  }
  lines.push(...createdByLines(ctx, g));
  return lines.join('\n');
}

/** The frames a dump shows for a goroutine's stack (hidden frames left out, names as printed), innermost first. */
export function shownFrames(ctx: TracebackContext, g: Pick<GoroutineStack, 'pcs' | 'symPCs'>): Array<{ function: string; file: string; line: number }> {
  const all: TracebackFrame[] = [];
  const physicalOf: number[] = [];
  for (let i = 0; i < g.pcs.length; i++) {
    for (const f of logicalFrames(ctx, { pcs: [g.pcs[i]], symPCs: [g.symPCs[i]] })) {
      all.push(f);
      physicalOf.push(i);
    }
  }
  return visibleFrames(ctx, all, physicalOf, false)
    .filter((f): f is TracebackFrame => typeof f !== 'string')
    .map((f) => ({ function: nameForPrint(f.function, ctx.goMinor), file: f.file, line: f.line }));
}
