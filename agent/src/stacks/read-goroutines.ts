// Every goroutine of a running Go process with its stack, read from the process's memory without stopping it:
// runtime.allgs, then each g (status, saved context, stack bounds), then each parked goroutine's stack from its
// saved sp to the stack's top, all in large batched reads. A goroutine may run while it is read, so each g is
// read again after its stack and the two must agree (status, goid, saved pc/sp/bp, stack bounds), and the walk
// itself checks the frame pointers; a goroutine that fails either is reported as inconsistent, never guessed.
// A running goroutine has no saved context: it is reported as running, with no stack.
import type { GoBinary } from '../gobinary/index.ts';
import type { FrameResolver } from '../gobinary/frames.ts';
import type { RuntimeLayout } from '../gobinary/layouts.ts';
import type { ProcessMemory } from '../proc/process.ts';
import { gFields, readAllgsList, type GFields } from '../inventory/allgs.ts';
import { formatArgs } from './args.ts';
import { unwindStack, type UnwindContext } from './unwind.ts';

export type StackState =
  /** Walked from its saved context to the top of its stack. */
  | 'ok'
  /** On a CPU right now: its registers are the only truth, and they are not in memory. */
  | 'running'
  /** It changed while being read, or its frames do not chain up: the stack is left out. */
  | 'inconsistent'
  /** Its memory could not be read (the process exited, or the g was freed). */
  | 'unreadable'
  /** Its stack is being moved (_Gcopystack), or it has no stack in this state. */
  | 'none';

export interface GoroutineStack {
  goid: number;
  gAddr: number;
  parentGoid: number | null;
  /** Go's status number without the _Gscan bit (layout.statuses). */
  status: number;
  scan: boolean;
  /** g.waitreason for a waiting goroutine, else null. */
  waitReason: number | null;
  /** nanotime() (CLOCK_MONOTONIC) the runtime last noted as the start of its wait; null if unset. */
  waitSince: number | null;
  /** Link-time addresses: the go statement's return address, and the start function. */
  gopc: number;
  startPc: number;
  lockedToThread: boolean;
  stackState: StackState;
  /** Frame pcs (link-time), innermost first; empty without a stack. */
  pcs: number[];
  /** Where each frame is symbolized (pc-1 for a return address). */
  symPCs: number[];
  truncated: boolean;
  /** With ReadOptions.args: what Go's traceback prints between each physical frame's parentheses. */
  args?: string[];
  /** Why the stack is inconsistent or unreadable. */
  problem?: string;
}

export interface ReadOptions {
  /** Frames per goroutine at most (deeper stacks are cut, marked truncated). */
  maxFrames?: number;
  /** Bytes of one goroutine's stack read at most. */
  maxStackBytes?: number;
  /** Goroutines read per batch: bounds the memory of a read. */
  batch?: number;
  /** Also format each frame's argument words, as a goroutine dump prints them. */
  args?: boolean;
  /** Read only these g addresses (runtime addresses), not every goroutine in allgs. */
  only?: number[];
}

export interface ReadSummary {
  /** Entries in allgs. */
  allgs: number;
  dead: number;
  /** Entries that were not a readable g. */
  unreadable: number;
  /** Goroutines re-read because they changed between the two reads of their g. */
  retried: number;
  /** Bytes read from the process. */
  bytesRead: number;
  /** System calls (batches) made. */
  reads: number;
}

const u64 = (b: Buffer, o: number) => b.readUInt32LE(o) + b.readUInt32LE(o + 4) * 0x1_0000_0000;

export interface StackReaderTarget {
  pid: number;
  binary: GoBinary;
  layout: RuntimeLayout;
  frames: FrameResolver;
  /** Runtime address minus link-time address. */
  bias: number;
}

/**
 * Reads every goroutine (dead ones left out) and walks the stacks of those not running. Calls `each` per
 * goroutine in allgs order, batch by batch, so a caller that folds them (a profile, a stack table) holds one
 * batch at a time.
 */
export function readGoroutineStacks(
  mem: ProcessMemory,
  target: StackReaderTarget,
  each: (g: GoroutineStack) => void,
  opts: ReadOptions = {},
): ReadSummary {
  const { layout, binary } = target;
  const F = gFields(layout);
  const S = layout.statuses;
  const scanBit = layout.scanBit;
  const maxStack = opts.maxStackBytes ?? 1 << 20;
  const batch = opts.batch ?? 2048;
  const ctx: UnwindContext = {
    pclntab: binary.pclntab,
    special: target.frames.special,
    bias: target.bias,
    maxFrames: opts.maxFrames ?? 4096,
  };
  const summary: ReadSummary = { allgs: 0, dead: 0, unreadable: 0, retried: 0, bytesRead: 0, reads: 0 };
  let list: Buffer;
  if (opts.only) {
    list = Buffer.alloc(opts.only.length * 8);
    opts.only.forEach((a, i) => list.writeBigUInt64LE(BigInt(a), i * 8));
    summary.allgs = opts.only.length;
  } else {
    const read = readAllgsList(mem, target);
    list = read.list;
    const len = read.len;
    summary.allgs = len;
    summary.unreadable += len - Math.floor(list.length / 8);
    summary.reads += 2;
  }
  const count = Math.floor(list.length / 8);

  const gsize = F.size;
  const gBuf = Buffer.alloc(batch * gsize);
  const gBuf2 = Buffer.alloc(batch * gsize);
  const readGs = (addrs: number[], into: Buffer): Int32Array => {
    const a = Float64Array.from(addrs);
    const l = new Uint32Array(addrs.length).fill(gsize);
    summary.reads++;
    const got = mem.readMany(a, l, into);
    for (const n of got) summary.bytesRead += n;
    return got;
  };

  interface Pending {
    g: GoroutineStack;
    index: number;
    sp: number;
    hi: number;
    bp: number | null;
    pc: number;
    syscall: boolean;
  }

  for (let first = 0; first < count; first += batch) {
    const addrs: number[] = [];
    for (let i = first; i < Math.min(count, first + batch); i++) addrs.push(u64(list, i * 8));
    let got = readGs(addrs, gBuf);
    let view = gBuf;
    // Goroutines whose g changed between the reads get one more try, with a fresh first read.
    for (let attempt = 0; attempt < 2 && addrs.length > 0; attempt++) {
      const pending: Pending[] = [];
      const settled: GoroutineStack[] = [];
      for (let i = 0; i < addrs.length; i++) {
        if (addrs[i] === 0 || got[i] < gsize) {
          summary.unreadable++;
          continue;
        }
        const b = view.subarray(i * gsize, (i + 1) * gsize);
        const raw = b.readUInt32LE(F.status);
        const status = raw & ~scanBit;
        const goid = u64(b, F.goid);
        // _Gdeadextra (Go 1.26+): a g kept for a C thread's callbacks, which Go's dumps skip as dead.
        if (status === S._Gdead || status === S._Gidle || status === S._Gdeadextra) {
          summary.dead++;
          continue;
        }
        if (goid === 0 || goid > 2 ** 52 || status > 0xff) {
          summary.unreadable++;
          continue;
        }
        const g: GoroutineStack = {
          goid,
          gAddr: addrs[i],
          parentGoid: F.parentGoid === null ? null : u64(b, F.parentGoid),
          status,
          scan: (raw & scanBit) !== 0,
          waitReason: status === S._Gwaiting || status === S._Gleaked ? b[F.waitreason] : null,
          waitSince: u64(b, F.waitsince) || null,
          gopc: u64(b, F.gopc) - target.bias,
          startPc: u64(b, F.startpc) - target.bias,
          lockedToThread: F.lockedm !== null && u64(b, F.lockedm) !== 0,
          stackState: 'none',
          pcs: [],
          symPCs: [],
          truncated: false,
        };
        if (status === S._Grunning) {
          g.stackState = 'running';
          settled.push(g);
          continue;
        }
        if (status === S._Gcopystack) {
          settled.push(g);
          continue;
        }
        const syscallSp = u64(b, F.syscallSp);
        const syscall = syscallSp !== 0;
        const sp = syscall ? syscallSp : u64(b, F.schedSp);
        const pc = syscall ? u64(b, F.syscallPc) : u64(b, F.schedPc);
        const lo = u64(b, F.stackLo);
        const hi = u64(b, F.stackHi);
        if (!(lo <= sp && sp < hi)) {
          g.stackState = 'inconsistent';
          g.problem = `saved sp 0x${sp.toString(16)} is outside its stack [0x${lo.toString(16)}, 0x${hi.toString(16)})`;
          settled.push(g);
          continue;
        }
        pending.push({ g, index: i, sp, hi, bp: syscall ? null : u64(b, F.schedBp), pc, syscall });
      }
      // The stacks, from each saved sp to the stack's top (bounded), in one batched read.
      const sAddrs = new Float64Array(pending.length);
      const sLens = new Uint32Array(pending.length);
      let total = 0;
      pending.forEach((p, k) => {
        sAddrs[k] = p.sp;
        sLens[k] = Math.min(p.hi - p.sp, maxStack);
        total += sLens[k];
      });
      const stackBuf = Buffer.allocUnsafe(total);
      summary.reads++;
      const sGot = pending.length ? mem.readMany(sAddrs, sLens, stackBuf) : new Int32Array(0);
      for (const n of sGot) summary.bytesRead += n;
      // Then each g again: what must not have moved while its stack was read.
      const again = readGs(pending.map((p) => p.g.gAddr), gBuf2);
      const retry: number[] = [];
      let pos = 0;
      pending.forEach((p, k) => {
        const window = { addr: p.sp, bytes: stackBuf.subarray(pos, pos + sGot[k]) };
        pos += sLens[k];
        const b1 = view.subarray(p.index * gsize, (p.index + 1) * gsize);
        const b2 = gBuf2.subarray(k * gsize, (k + 1) * gsize);
        if (again[k] < gsize || sGot[k] === 0) {
          p.g.stackState = 'unreadable';
          p.g.problem = 'the goroutine or its stack could not be read';
          settled.push(p.g);
          return;
        }
        if (!sameContext(F, b1, b2, scanBit)) {
          if (attempt === 0) {
            retry.push(p.g.gAddr);
            return;
          }
          p.g.stackState = 'inconsistent';
          p.g.problem = (b2.readUInt32LE(F.status) & ~scanBit) === S._Grunning ? 'it started running while its stack was read' : 'it moved while its stack was read';
          settled.push(p.g);
          return;
        }
        const r = unwindStack(ctx, { pc: p.pc, sp: p.sp, bp: p.bp, syscall: p.syscall }, window);
        if (r.error) {
          if (attempt === 0) {
            retry.push(p.g.gAddr);
            return;
          }
          p.g.stackState = 'inconsistent';
          p.g.problem = r.error;
        } else {
          p.g.stackState = 'ok';
          p.g.pcs = r.pcs;
          p.g.symPCs = r.symPCs;
          p.g.truncated = r.truncated || sLens[k] < p.hi - p.sp;
          if (opts.args) {
            p.g.args = r.pcs.map((pc, j) =>
              formatArgs(target.frames, binary.pclntab, binary.pclntab.funcInfoForPC(pc)!, r.symPCs[j], r.fps[j], window),
            );
          }
        }
        settled.push(p.g);
      });
      for (const g of settled) each(g);
      summary.retried += retry.length;
      addrs.length = 0;
      addrs.push(...retry);
      if (addrs.length) {
        got = readGs(addrs, gBuf);
        view = gBuf;
      }
    }
  }
  return summary;
}

/** The fields that say where a goroutine is: if any changed between two reads, it ran in between. */
function sameContext(F: GFields, a: Buffer, b: Buffer, scanBit: number): boolean {
  if ((a.readUInt32LE(F.status) & ~scanBit) !== (b.readUInt32LE(F.status) & ~scanBit)) return false;
  for (const o of [F.goid, F.schedSp, F.schedPc, F.schedBp, F.syscallSp, F.syscallPc, F.stackLo, F.stackHi]) {
    if (u64(a, o) !== u64(b, o)) return false;
  }
  return a[F.waitreason] === b[F.waitreason];
}

