// The argument words Go prints in a traceback ("main.f(0x1, {0xc000010000, 0x3}, 0x0?)"), as runtime.printArgs
// does: FUNCDATA_ArgInfo lists each argument's offset and size from the frame's argp (with markers for
// aggregates, elisions and offsets too large), FUNCDATA_ArgLiveInfo with PCDATA_ArgLiveIndex says which register
// arguments' spill slots may be stale at this pc (printed with a "?").
import type { FrameResolver } from '../gobinary/frames.ts';
import type { FuncInfo, Pclntab } from '../gobinary/pclntab.ts';
import type { StackWindow } from './unwind.ts';

const FUNCDATA_ARG_INFO = 5;
const FUNCDATA_ARG_LIVE_INFO = 6;
const PCDATA_ARG_LIVE_INDEX = 3;
const END_SEQ = 0xff;
const START_AGG = 0xfe;
const END_AGG = 0xfd;
const DOTDOTDOT = 0xfc;
const OFFSET_TOO_LARGE = 0xfb;
/** abi.TraceArgsMaxLen: (maxDepth*3+2)*limit + 1. */
const MAX_LEN = (5 * 3 + 2) * 10 + 1;

function funcdataBytes(resolver: FrameResolver, pclntab: Pclntab, f: FuncInfo, index: number, len: number): Buffer | undefined {
  const off = pclntab.funcdataOffset(f, index);
  const base = resolver.gofunc;
  if (off === undefined || base === null) return undefined;
  for (let n = len; n > 0; n >>= 1) {
    try {
      return resolver.elf.read(base + off, n);
    } catch {
      // near the end of the segment: a shorter read
    }
  }
  return undefined;
}

/** The text between the parentheses of a non-inlined frame; argp is the frame's fp on amd64. */
export function formatArgs(resolver: FrameResolver, pclntab: Pclntab, f: FuncInfo, symPC: number, argp: number, mem: StackWindow): string {
  const p = funcdataBytes(resolver, pclntab, f, FUNCDATA_ARG_INFO, MAX_LEN);
  if (!p) return '';
  const live = funcdataBytes(resolver, pclntab, f, FUNCDATA_ARG_LIVE_INFO, 64);
  const liveIdx = pclntab.pcdata(f, PCDATA_ARG_LIVE_INDEX, symPC);
  const startOffset = live ? live[0] : 0xff;
  const isLive = (off: number, slot: number): boolean => {
    if (!live || liveIdx <= 0 || off < startOffset) return true;
    const i = liveIdx + (slot >> 3);
    return i < live.length ? (live[i] & (1 << (slot & 7))) !== 0 : true;
  };
  const value = (off: number, size: number): string => {
    const at = argp + off - mem.addr;
    if (at < 0 || at + 8 > mem.bytes.length) return '?';
    let x = mem.bytes.readBigUInt64LE(at);
    if (size < 8) x &= (1n << BigInt(size * 8)) - 1n;
    return `0x${x.toString(16)}`;
  };
  let out = '';
  let start = true;
  const comma = () => {
    if (!start) out += ', ';
  };
  let slot = 0;
  for (let pi = 0; pi < p.length; ) {
    const o = p[pi++];
    if (o === END_SEQ) break;
    if (o === START_AGG) {
      comma();
      out += '{';
      start = true;
      continue;
    }
    if (o === END_AGG) out += '}';
    else if (o === DOTDOTDOT) {
      comma();
      out += '...';
    } else if (o === OFFSET_TOO_LARGE) {
      comma();
      out += '_';
    } else {
      comma();
      const size = p[pi++];
      out += value(o, size);
      if (!isLive(o, slot)) out += '?';
      if (o >= startOffset) slot++;
    }
    start = false;
  }
  return out;
}
