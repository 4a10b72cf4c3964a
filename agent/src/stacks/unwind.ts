// Walks one goroutine's stack as Go's own unwinder does (runtime/traceback.go, amd64): from a saved pc and sp,
// each frame's size comes from pclntab's pcsp table (fp = sp + spdelta + 8, the return address at fp-8), until a
// TOPFRAME function (runtime.goexit) or one that writes SP. Each step is checked against the frame pointers
// Go keeps on amd64: a function with a frame saves its caller's BP at fp-16, so that word must point at the next
// frame's saved-BP slot. A stack read while its goroutine ran fails these checks instead of printing garbage.
import { FUNC_FLAG_SPWRITE, FUNC_FLAG_TOPFRAME, type FuncInfo, type Pclntab } from '../gobinary/pclntab.ts';
import type { SpecialFuncs } from '../gobinary/frames.ts';

/** Memory of a stack: bytes from address `addr` on (up to the stack's top). */
export interface StackWindow {
  addr: number;
  bytes: Buffer;
}

export interface UnwindStart {
  /** Runtime addresses (with the load bias). */
  pc: number;
  sp: number;
  /** The saved frame pointer (g.sched.bp); null when there is none to check (a syscall's saved pc/sp). */
  bp: number | null;
  /** pc/sp come from g.syscallpc/syscallsp: the syscall function's SP writes come after entersyscall saved them. */
  syscall: boolean;
}

export interface UnwindResult {
  /** Frame pcs (link-time), innermost first: return addresses, except after an injected call and at an entry. */
  pcs: number[];
  /** The pc each frame is symbolized at: pc-1 for a return address (inside the CALL), else pc. */
  symPCs: number[];
  /** Each frame's fp (runtime address): its caller's sp, where its arguments' spill slots begin. */
  fps: number[];
  /** Why the walk stopped short; undefined when it reached the top of the stack. */
  error?: string;
  /** Stopped at maxFrames. */
  truncated: boolean;
}

export interface UnwindContext {
  pclntab: Pclntab;
  special: SpecialFuncs;
  /** Runtime address minus link-time address (PIE). */
  bias: number;
  maxFrames: number;
}

function word(w: StackWindow, addr: number): number | undefined {
  const off = addr - w.addr;
  if (off < 0 || off + 8 > w.bytes.length || addr % 8 !== 0) return undefined;
  return w.bytes.readUInt32LE(off) + w.bytes.readUInt32LE(off + 4) * 0x1_0000_0000;
}

interface Frame {
  fn: FuncInfo;
  pc: number; // link-time
  sp: number;
  fp: number;
  /** The frame saved BP at fp-16 (it has a frame of its own). */
  hasFrame: boolean;
}

export function unwindStack(ctx: UnwindContext, start: UnwindStart, mem: StackWindow): UnwindResult {
  const { pclntab, special, bias } = ctx;
  const frames: Frame[] = [];
  const out: UnwindResult = { pcs: [], symPCs: [], fps: [], truncated: false };
  let pc = start.pc;
  let sp = start.sp;
  if (pc === 0) {
    // A call through a nil func: start in the caller.
    const ret = word(mem, sp);
    if (ret === undefined) return { ...out, error: 'nil pc and the stack is unreadable' };
    pc = ret;
    sp += 8;
  }
  let fn = pclntab.funcInfoForPC(pc - bias);
  if (!fn) return { ...out, error: `unknown pc 0x${pc.toString(16)}` };
  let trap = false;
  for (let innermost = true; ; innermost = false) {
    if (frames.length >= ctx.maxFrames) {
      out.truncated = true;
      break;
    }
    const lpc = pc - bias;
    if (fn.pcsp === 0) break; // no frame information: an external function (race runtime, C)
    const delta = pclntab.spDelta(fn, lpc);
    if (delta === undefined || delta < 0) return { ...out, error: `no frame size for ${fn.name} at 0x${lpc.toString(16)}` };
    const fp = sp + delta + 8;
    const symPC = !trap && lpc > fn.entry ? lpc - 1 : lpc;
    frames.push({ fn, pc: lpc, sp, fp, hasFrame: delta > 0 && lpc > fn.entry });
    out.pcs.push(lpc);
    out.symPCs.push(symPC);
    out.fps.push(fp);
    let flag = fn.flag;
    if (innermost && start.syscall) flag &= ~FUNC_FLAG_SPWRITE;
    if (flag & (FUNC_FLAG_TOPFRAME | FUNC_FLAG_SPWRITE)) break;
    const lr = word(mem, fp - 8);
    if (lr === undefined) return { ...out, error: `frame of ${fn.name} runs past the stack read (fp 0x${fp.toString(16)})` };
    // A goroutine's outermost frame is a TOPFRAME function (goexit), which stops the walk above: a zero return
    // address before it is a stack read while it changed (seen once in test/stacks/race.test.ts: a lone
    // runtime.gopark reported as read), so the read is retried, then reported inconsistent, never a cut stack.
    if (lr === 0) return { ...out, error: `no return address above ${fn.name}` };
    const next = pclntab.funcInfoForPC(lr - bias);
    if (!next) return { ...out, error: `unexpected return pc 0x${lr.toString(16)} for ${fn.name}` };
    if (lr === pc && fp === sp) return { ...out, error: `stuck at ${fn.name}` };
    trap = fn.funcID === special.sigpanic || fn.funcID === special.asyncPreempt || fn.funcID === special.debugCallV2;
    fn = next;
    pc = lr;
    sp = fp;
  }
  const bad = checkFramePointers(frames, start, mem, bias);
  if (bad) out.error = bad;
  return out;
}

/**
 * Each frame that has its own frame saved its caller's BP at fp-16. While it runs (or is parked in a call), its
 * caller's BP is the nearest outer frame's fp-16 (frameless functions leave BP alone). The innermost frame's BP
 * itself is g.sched.bp. The outermost user frame's caller (goexit) had no frame: nothing to check there.
 */
function checkFramePointers(frames: Frame[], start: UnwindStart, mem: StackWindow, bias: number): string | undefined {
  let expected: number | undefined; // BP as the caller of frame i left it
  for (let i = frames.length - 1; i >= 0; i--) {
    const f = frames[i];
    if (f.hasFrame && expected !== undefined) {
      const saved = word(mem, f.fp - 16);
      if (saved !== expected) {
        return `frame pointer mismatch in ${f.fn.name} at 0x${f.pc.toString(16)}: saved BP 0x${(saved ?? 0).toString(16)}, the caller's frame is at 0x${expected.toString(16)}`;
      }
    }
    if (f.hasFrame) expected = f.fp - 16;
  }
  const inner = frames[0];
  if (start.bp !== null && inner?.hasFrame && start.bp !== inner.fp - 16) {
    return `g.sched.bp 0x${start.bp.toString(16)} is not ${inner.fn.name}'s frame (0x${(inner.fp - 16).toString(16)})`;
  }
  void bias;
  return undefined;
}
