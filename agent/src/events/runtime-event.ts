// The runtime records of bpf/runtime.bpf.c (stop-the-world pauses, GC cycle ends, fatal errors), read by the
// layout generated from the object's BTF (runtime.bpf.ts).
import { rtLayoutLayout, rtProcLayout, runtimeEventLayout, RuntimeProbe } from './runtime.bpf.ts';
import { encode, forEachRecord, readers } from './layout.ts';

export {
  RT_PROBE_KINDS,
  RtFlag,
  RtLayoutReason,
  RUNTIME_MAX_LAYOUTS,
  RUNTIME_MSG_MAX,
  RuntimeEventKind,
  RuntimeProbe,
  rtLayoutLayout,
  rtProcLayout,
  runtimeEventLayout,
} from './runtime.bpf.ts';
export type RuntimeProbeName = keyof typeof RuntimeProbe;

export type RtLayoutValues = Parameters<typeof encode<typeof rtLayoutLayout>>[1];

export const encodeRtLayout = (values: RtLayoutValues): Buffer => encode(rtLayoutLayout, values);

export const encodeRtProc = (numgcAddr: number, pauseStartAddr = 0, lastGcAddr = 0): Buffer =>
  encode(rtProcLayout, { numgc_addr: numgcAddr, pause_start_addr: pauseStartAddr, last_gc_addr: lastGcAddr });

/** One decoded record. Records are rare (pauses, cycle ends, deaths), so an object per record is fine. */
export interface RuntimeEventRecord {
  kind: number;
  tsNs: number;
  startNs: number;
  goNowNs: number;
  goStartNs: number;
  goid: number;
  curgGoid: number;
  /** As the C side stores it; a u64 panic value beyond 2^53 is only exact in valueBig. */
  value: number;
  valueBig: bigint;
  pid: number;
  tid: number;
  msg: string;
  msgFullLen: number;
  stwReason: number;
  valueKind: number;
  flags: number;
  layoutId: number;
  reason: string;
}

const F = runtimeEventLayout.fields;
const rd = readers(runtimeEventLayout);

/** Text of a char[] field: its first `len` bytes (bounded by the field). */
const text = (b: Buffer, at: number, f: { offset: number; size: number }, len: number) =>
  b.toString('utf8', at + f.offset, at + f.offset + Math.min(len, f.size));

export function decodeRuntimeEvent(b: Buffer, v: DataView, at: number): RuntimeEventRecord {
  return {
    kind: rd.kind(v, at),
    tsNs: rd.tsNs(v, at),
    startNs: rd.startNs(v, at),
    goNowNs: rd.goNowNs(v, at),
    goStartNs: rd.goStartNs(v, at),
    goid: rd.goid(v, at),
    curgGoid: rd.curgGoid(v, at),
    value: rd.value(v, at),
    valueBig: v.getBigUint64(at + F.value.offset, true),
    pid: rd.pid(v, at),
    tid: rd.tid(v, at),
    msg: text(b, at, F.msg, rd.msgLen(v, at)),
    msgFullLen: rd.msgFullLen(v, at),
    stwReason: rd.stwReason(v, at),
    valueKind: rd.valueKind(v, at),
    flags: rd.flags(v, at),
    layoutId: rd.layoutId(v, at),
    reason: text(b, at, F.reason, rd.reasonLen(v, at)),
  };
}

export function forEachRuntimeEvent(batch: Buffer, visit: (r: RuntimeEventRecord) => void): number {
  return forEachRecord(runtimeEventLayout, batch, (v, at) => visit(decodeRuntimeEvent(batch, v, at)));
}

/** Go's reflect.Kind numbers, for formatting a non-string panic value as printpanicval does. */
export const GoKind = {
  bool: 1, int: 2, int8: 3, int16: 4, int32: 5, int64: 6, uint: 7, uint8: 8, uint16: 9, uint32: 10, uint64: 11,
  uintptr: 12, float32: 13, float64: 14, string: 24,
} as const;

/**
 * The text Go prints after "panic: " for a value of a basic kind (8 raw little-endian bytes of it), or
 * undefined for kinds printpanicval shows as "(TYPE) ADDRESS" (we do not read type names).
 */
export function formatPanicValue(kind: number, raw: bigint): string | undefined {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(raw);
  switch (kind) {
    case GoKind.bool: return b.readUInt8(0) ? 'true' : 'false';
    case GoKind.int: case GoKind.int64: return b.readBigInt64LE(0).toString();
    case GoKind.int8: return String(b.readInt8(0));
    case GoKind.int16: return String(b.readInt16LE(0));
    case GoKind.int32: return String(b.readInt32LE(0));
    case GoKind.uint: case GoKind.uint64: case GoKind.uintptr: return b.readBigUInt64LE(0).toString();
    case GoKind.uint8: return String(b.readUInt8(0));
    case GoKind.uint16: return String(b.readUInt16LE(0));
    case GoKind.uint32: return String(b.readUInt32LE(0));
    default: return undefined; // floats print in Go's own %e-like format; left to the raw value
  }
}
