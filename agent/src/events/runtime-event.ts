// The runtime record (stop-the-world pauses, GC cycle ends, fatal errors) as bpf/runtime.h lays it out.
// test/bpf/layout.test.ts checks every offset here against what the C compiler produced for the same header.

export const RuntimeEventKind = { stw: 1, gcMarkTermination: 2, throw: 3, fatalPanic: 4 } as const;

/** enum runtime_probe: indexes the BPF hit and drop counters. */
export const RuntimeProbe = { stop: 0, startRet: 1, markTermination: 2, throw: 3, fatal: 4, fatalPanic: 5, start: 6 } as const;
export type RuntimeProbeName = keyof typeof RuntimeProbe;
export const RT_PROBE_KINDS = 8;
export const RUNTIME_MAX_LAYOUTS = 64;
export const RUNTIME_MSG_MAX = 256;

export const RtFlag = { msgUnreadable: 1, numgc: 2, panicString: 4, panicNil: 8, lastGc: 16 } as const;
export const RtLayoutFlag = { reasonInRax: 1, reasonPreemptoff: 2 } as const;

export const runtimeEventLayout = {
  size: 384,
  fields: {
    ts_ns: { offset: 0, size: 8 },
    start_ns: { offset: 8, size: 8 },
    go_now_ns: { offset: 16, size: 8 },
    go_start_ns: { offset: 24, size: 8 },
    goid: { offset: 32, size: 8 },
    curg_goid: { offset: 40, size: 8 },
    value: { offset: 48, size: 8 },
    pid: { offset: 56, size: 4 },
    tid: { offset: 60, size: 4 },
    msg_len: { offset: 64, size: 4 },
    msg_full_len: { offset: 68, size: 4 },
    kind: { offset: 72, size: 1 },
    stw_reason: { offset: 73, size: 1 },
    value_kind: { offset: 74, size: 1 },
    flags: { offset: 75, size: 1 },
    layout_id: { offset: 76, size: 2 },
    reason_len: { offset: 78, size: 2 },
    reason: { offset: 80, size: 48 },
    msg: { offset: 128, size: 256 },
  },
} as const;

export const rtLayoutLayout = {
  size: 32,
  fields: {
    g_goid: { offset: 0, size: 4 },
    g_m: { offset: 4, size: 4 },
    m_curg: { offset: 8, size: 4 },
    m_preemptoff: { offset: 12, size: 4 },
    panic_arg: { offset: 16, size: 4 },
    flags: { offset: 20, size: 4 },
    start_arg_reg: { offset: 24, size: 4 },
    reserved: { offset: 28, size: 4 },
  },
} as const;

export const rtProcLayout = {
  size: 24,
  fields: {
    numgc_addr: { offset: 0, size: 8 },
    pause_start_addr: { offset: 8, size: 8 },
    last_gc_addr: { offset: 16, size: 8 },
  },
} as const;

export interface RtLayoutValues {
  g_goid: number;
  g_m: number;
  m_curg: number;
  m_preemptoff: number;
  panic_arg: number;
  flags: number;
  /** enum go_abi_reg (goAbiRegister): startTheWorldWithSema's w.startedStopping; 0 before Go 1.22. */
  start_arg_reg: number;
}

export function encodeRtLayout(values: RtLayoutValues): Buffer {
  const b = Buffer.alloc(rtLayoutLayout.size);
  for (const [name, f] of Object.entries(rtLayoutLayout.fields)) {
    if (name in values) b.writeUInt32LE(values[name as keyof RtLayoutValues], f.offset);
  }
  return b;
}

export function encodeRtProc(numgcAddr: number, pauseStartAddr = 0, lastGcAddr = 0): Buffer {
  const b = Buffer.alloc(rtProcLayout.size);
  b.writeBigUInt64LE(BigInt(numgcAddr), rtProcLayout.fields.numgc_addr.offset);
  b.writeBigUInt64LE(BigInt(pauseStartAddr), rtProcLayout.fields.pause_start_addr.offset);
  b.writeBigUInt64LE(BigInt(lastGcAddr), rtProcLayout.fields.last_gc_addr.offset);
  return b;
}

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
const SIZE = runtimeEventLayout.size;
const u64 = (b: Buffer, at: number): number => b.readUInt32LE(at) + b.readUInt32LE(at + 4) * 0x1_0000_0000;

export function decodeRuntimeEvent(b: Buffer, at: number): RuntimeEventRecord {
  const msgLen = Math.min(b.readUInt32LE(at + F.msg_len.offset), F.msg.size);
  const reasonLen = Math.min(b.readUInt16LE(at + F.reason_len.offset), F.reason.size);
  return {
    kind: b.readUInt8(at + F.kind.offset),
    tsNs: u64(b, at + F.ts_ns.offset),
    startNs: u64(b, at + F.start_ns.offset),
    goNowNs: u64(b, at + F.go_now_ns.offset),
    goStartNs: u64(b, at + F.go_start_ns.offset),
    goid: u64(b, at + F.goid.offset),
    curgGoid: u64(b, at + F.curg_goid.offset),
    value: u64(b, at + F.value.offset),
    valueBig: b.readBigUInt64LE(at + F.value.offset),
    pid: b.readUInt32LE(at + F.pid.offset),
    tid: b.readUInt32LE(at + F.tid.offset),
    msg: b.toString('utf8', at + F.msg.offset, at + F.msg.offset + msgLen),
    msgFullLen: b.readUInt32LE(at + F.msg_full_len.offset),
    stwReason: b.readUInt8(at + F.stw_reason.offset),
    valueKind: b.readUInt8(at + F.value_kind.offset),
    flags: b.readUInt8(at + F.flags.offset),
    layoutId: b.readUInt16LE(at + F.layout_id.offset),
    reason: b.toString('utf8', at + F.reason.offset, at + F.reason.offset + reasonLen),
  };
}

export function forEachRuntimeEvent(batch: Buffer, visit: (r: RuntimeEventRecord) => void): number {
  const n = Math.floor(batch.byteLength / SIZE);
  for (let i = 0, at = 0; i < n; i++, at += SIZE) visit(decodeRuntimeEvent(batch, at));
  return n;
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
