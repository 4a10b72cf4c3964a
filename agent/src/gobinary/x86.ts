// Finds uprobe sites in one Go function's machine code. Go functions hold no embedded data, so a linear decode from
// entry to end visits exactly the real instructions; every address returned is an instruction boundary (a uprobe
// placed mid-instruction would corrupt the traced process).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { compileFunction } from 'node:vm';
import type * as Iced from 'iced-x86';

// iced-x86 is a 0.9 MB CommonJS file with its WebAssembly: loaded on the first decode, by hand (below), so commands
// that decode nothing start ~100 ms sooner. Loaded, it holds ~14 MiB (its JS, the compiled WebAssembly), and an
// agent decodes only while it analyses a new binary (a few functions) or meets a new `go` wrapper: it is let go
// once DECODER_IDLE_MS pass without a decode, and the next decode loads it again. The agent's collection 3 s after
// an attach (agent/processes.ts trimSoon) then finds it unreferenced.
type Instruction = Iced.Instruction;
type MemorySize = Iced.MemorySize;
let loaded: { module: typeof Iced; check: NodeJS.Timeout } | undefined;
let usedSinceCheck = false;
/** A decoder unused for between this and twice this is dropped (checked on an unref'd timer while it is loaded). */
export const DECODER_IDLE_MS = 1000;
/**
 * V8's code cache of iced-x86's JS, made at its first load: a reload, such as a first attach long after the agent's
 * calibration, then skips parsing and compiling the 0.9 MB. ~0.5 MB, kept for the agent's life.
 */
let codeCache: Buffer | undefined;

function iced(): typeof Iced {
  usedSinceCheck = true;
  if (loaded) return loaded.module;
  const check = setInterval(() => {
    if (!usedSinceCheck) releaseDecoder();
    usedSinceCheck = false;
  }, DECODER_IDLE_MS);
  check.unref();
  loaded = { module: loadIced(), check };
  return loaded.module;
}

/**
 * iced-x86's CommonJS module run as require would run it, from a function compiled for it alone (from codeCache
 * when there is one), with no entry in require's cache or in a parent's children, which would keep a dropped copy.
 * A vm.Script instead kept ~2.4 MB of V8 heap after each copy was let go.
 */
function loadIced(): typeof Iced {
  const file = createRequire(import.meta.url).resolve('iced-x86');
  const params = ['exports', 'require', 'module', '__filename', '__dirname'];
  const fn = compileFunction(readFileSync(file, 'utf8'), params, { filename: file, cachedData: codeCache, produceCachedData: !codeCache }) as
    ((...args: unknown[]) => void) & { cachedData?: Buffer; cachedDataRejected?: boolean };
  if (fn.cachedDataRejected) codeCache = undefined; // another V8 or other flags: made again at the next load
  else if (fn.cachedData) codeCache = fn.cachedData;
  const module = { exports: {} as typeof Iced };
  fn(module.exports, createRequire(file), module, file, dirname(file));
  return module.exports;
}

/** Drops iced-x86 now (no decoder or instruction of it outlives a call here): the next decode loads it anew. */
export function releaseDecoder(): void {
  if (!loaded) return;
  clearInterval(loaded.check);
  loaded = undefined;
}

/** Whether iced-x86 is loaded now (tests). */
export const decoderLoaded = (): boolean => loaded !== undefined;

export interface StackCheck {
  /** Address of the conditional jump that follows the compare with g.stackguard0 (16(R14)). */
  jumpAddr: number;
  /** 'jbe' (jump to morestack) or 'ja' (jump over it); the kernel emulates either without single-stepping. */
  jump: 'jbe' | 'ja';
  /** What was compared with the stack guard: 'rsp' for small frames, else the scratch register (e.g. 'r12'). */
  compared: string;
}

export interface RipRef {
  /** Address of the instruction. */
  addr: number;
  /** Absolute address referenced (RIP-relative displacement resolved). */
  target: number;
  mnemonic: string;
  /** Bytes accessed through the operand (0 for LEA, which only computes the address). */
  size: number;
  /** Destination register when the instruction is a load into a register ('rcx'), else undefined. */
  destReg?: string;
}

export interface CallSite {
  /** Address of the CALL instruction. */
  addr: number;
  /** Address of the instruction after it: the return address the callee sees. */
  next: number;
}

export interface ProbeSites {
  stackCheck?: StackCheck;
  rets: number[];
  ripRefs: RipRef[];
  /** Every instruction start, in order (for callers that must check a site is a boundary). */
  boundaries: number[];
  /** Direct calls (CALL rel32), in code order, with their targets. */
  calls: Array<CallSite & { target: number }>;
  callsTo(target: number): CallSite[];
}

// The stack check is the first thing Go emits, after at most a couple of setup instructions (huge frames
// compute SP-framesize and test for wrap-around first).
const PROLOGUE_WINDOW = 8;
const G_STACKGUARD0 = 16n;

export function findProbeSites(code: Buffer, entry: number): ProbeSites {
  const { Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, OpKind, Register } = iced();
  const decoder = new Decoder(64, new Uint8Array(code.buffer, code.byteOffset, code.length), DecoderOptions.None);
  decoder.ip = BigInt(entry);
  const ins = new Instruction();
  const rets: number[] = [];
  const ripRefs: RipRef[] = [];
  const boundaries: number[] = [];
  const calls: Array<{ addr: number; next: number; target: number }> = [];
  let stackCheck: StackCheck | undefined;
  let pendingCompare: string | undefined; // set right after a CMP reg, 16(R14)
  // Each getter of an iced-x86 Instruction is a call into its WebAssembly (and ip a BigInt): the address is counted
  // here from the lengths, and an invalid instruction is told by its mnemonic, so an instruction costs a few calls.
  let addr = entry;
  const end = entry + code.length;
  try {
    while (addr < end) {
      decoder.decodeOut(ins);
      const next = addr + ins.length;
      boundaries.push(addr);
      const m = ins.mnemonic;
      if (m === Mnemonic.INVALID) throw new Error(`invalid instruction at 0x${addr.toString(16)} (decoding from 0x${entry.toString(16)})`);
      if (pendingCompare !== undefined && !stackCheck) {
        if (m === Mnemonic.Jbe || m === Mnemonic.Ja) {
          stackCheck = { jumpAddr: addr, jump: m === Mnemonic.Jbe ? 'jbe' : 'ja', compared: pendingCompare };
        }
        pendingCompare = undefined;
      }
      if (!stackCheck && boundaries.length <= PROLOGUE_WINDOW && m === Mnemonic.Cmp) {
        pendingCompare = stackGuardCompare(ins);
      }
      const fc = ins.flowControl;
      if (fc === FlowControl.Return) rets.push(addr);
      else if (fc === FlowControl.Call && ins.op0Kind === OpKind.NearBranch64) {
        calls.push({ addr, next, target: Number(ins.nearBranchTarget) });
      }
      if (ins.isIpRelMemoryOperand) {
        const load = ins.opCount === 2 && ins.op0Kind === OpKind.Register && ins.op1Kind === OpKind.Memory;
        ripRefs.push({
          addr,
          target: Number(ins.ipRelMemoryAddress),
          mnemonic: Mnemonic[m].toLowerCase(),
          size: m === Mnemonic.Lea ? 0 : memorySizeBytes(ins.memorySize),
          destReg: load ? Register[ins.op0Register].toLowerCase() : undefined,
        });
      }
      addr = next;
    }
  } finally {
    ins.free();
    decoder.free();
  }
  return {
    stackCheck,
    rets,
    ripRefs,
    boundaries,
    calls,
    callsTo: (target: number) => calls.filter((c) => c.target === target).map(({ addr, next }) => ({ addr, next })),
  };
}

/** For `cmp reg, [r14+16]` (either operand order) the register's name, else undefined. */
function stackGuardCompare(ins: Instruction): string | undefined {
  const { OpKind, Register } = iced();
  if (ins.opCount !== 2 || ins.memoryBase !== Register.R14 || ins.memoryDisplacement !== G_STACKGUARD0) return undefined;
  if (ins.memoryIndex !== Register.None) return undefined;
  if (ins.op0Kind === OpKind.Register && ins.op1Kind === OpKind.Memory) return Register[ins.op0Register].toLowerCase();
  if (ins.op1Kind === OpKind.Register && ins.op0Kind === OpKind.Memory) return Register[ins.op1Register].toLowerCase();
  return undefined;
}

function memorySizeBytes(ms: MemorySize): number {
  const { MemorySize } = iced();
  switch (ms) {
    case MemorySize.UInt8: case MemorySize.Int8: return 1;
    case MemorySize.UInt16: case MemorySize.Int16: return 2;
    case MemorySize.UInt32: case MemorySize.Int32: case MemorySize.Float32: return 4;
    case MemorySize.UInt64: case MemorySize.Int64: case MemorySize.Float64: return 8;
    case MemorySize.UInt128: case MemorySize.Packed128_UInt64: return 16;
    default: return 0;
  }
}

/**
 * What the 8-byte LOCK XADDs in one function add to, where the code names it: a RIP-relative operand, or a base
 * register that a LEA of a RIP-relative address set before (how Go emits `x.Add(n)` on a global such as
 * sched.goidgen); with the constant added, when a MOV of an immediate set the source register.
 */
export function atomicAddTargets(code: Buffer, entry: number): Array<{ target: number; add?: number }> {
  const { Decoder, DecoderOptions, Instruction, Mnemonic, OpKind, Register } = iced();
  const decoder = new Decoder(64, new Uint8Array(code.buffer, code.byteOffset, code.length), DecoderOptions.None);
  decoder.ip = BigInt(entry);
  const ins = new Instruction();
  const leaOf = new Map<number, number>(); // register -> the RIP-relative address a LEA put in it
  const immOf = new Map<string, number>(); // 64-bit register name -> the constant a MOV put in it (or in its low half)
  const full = (r: number) => Register[r].replace(/^(R\d+)[DWB]$/, '$1').replace(/^E([A-Z]{2})$/, 'R$1');
  const out: Array<{ target: number; add?: number }> = [];
  try {
    while (decoder.canDecode) {
      decoder.decodeOut(ins);
      if (ins.isInvalid) break;
      const m = ins.mnemonic;
      if (m === Mnemonic.Xadd && ins.hasLockPrefix && ins.op0Kind === OpKind.Memory && memorySizeBytes(ins.memorySize) === 8) {
        let target: number | undefined;
        if (ins.isIpRelMemoryOperand) target = Number(ins.ipRelMemoryAddress);
        else if (ins.memoryIndex === Register.None && Number(ins.memoryDisplacement) === 0) target = leaOf.get(ins.memoryBase);
        if (target !== undefined) out.push({ target, add: immOf.get(full(ins.op1Register)) });
      }
      if (ins.opCount > 0 && ins.op0Kind === OpKind.Register) {
        const r = ins.op0Register;
        leaOf.delete(r);
        immOf.delete(full(r));
        if (m === Mnemonic.Lea && ins.isIpRelMemoryOperand) leaOf.set(r, Number(ins.ipRelMemoryAddress));
        if (m === Mnemonic.Mov && ins.opCount === 2 && (ins.op1Kind === OpKind.Immediate32 || ins.op1Kind === OpKind.Immediate32to64 || ins.op1Kind === OpKind.Immediate64)) {
          immOf.set(full(r), Number(ins.immediate(1)));
        }
      }
    }
  } finally {
    ins.free();
    decoder.free();
  }
  return out;
}
