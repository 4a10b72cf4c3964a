// The goroutine record as bpf/goroutines.h lays it out. test/bpf/layout.test.ts checks every offset here
// against what the C compiler produced for the same header.

export const GoroutineEventKind = { create: 1, park: 2, ready: 3, exit: 4 } as const;
export type GoroutineEventKindName = keyof typeof GoroutineEventKind;

/** enum goroutine_probe: indexes the BPF hit and drop counters. */
export const GoroutineProbe = { newproc1Entry: 0, newproc1Ret: 1, gopark: 2, ready: 3, goexit1: 4, empty: 5 } as const;
export const PROBE_KINDS = 8;
export const MAX_RUNTIME_LAYOUTS = 64;

export const goroutineEventLayout = {
  size: 64,
  fields: {
    ts_ns: { offset: 0, size: 8 },
    goid: { offset: 8, size: 8 },
    other_goid: { offset: 16, size: 8 },
    pc: { offset: 24, size: 8 },
    start_pc: { offset: 32, size: 8 },
    pid: { offset: 40, size: 4 },
    tid: { offset: 44, size: 4 },
    kind: { offset: 48, size: 1 },
    wait_reason: { offset: 49, size: 1 },
    layout_id: { offset: 50, size: 2 },
    g_addr: { offset: 56, size: 8 },
  },
} as const;

export const runtimeLayoutLayout = {
  size: 32,
  fields: {
    g_goid: { offset: 0, size: 4 },
    g_parent_goid: { offset: 4, size: 4 },
    g_gopc: { offset: 8, size: 4 },
    g_startpc: { offset: 12, size: 4 },
    g_m: { offset: 16, size: 4 },
    m_curg: { offset: 20, size: 4 },
    flags: { offset: 24, size: 4 },
    reserved: { offset: 28, size: 4 },
  },
} as const;

const F = goroutineEventLayout.fields;
const SIZE = goroutineEventLayout.size;

/**
 * Walks a batch of records without making an object per record: the visitor gets the DataView and the
 * record's offset and reads what it needs through the accessors below.
 */
export function forEachGoroutineEvent(batch: Buffer, visit: (v: DataView, at: number) => void): number {
  const v = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const n = Math.floor(batch.byteLength / SIZE);
  for (let i = 0, at = 0; i < n; i++, at += SIZE) visit(v, at);
  return n;
}

// goids and PCs fit in 2^53 (user-space addresses are below 2^47; goids count up from 1).
const u64 = (v: DataView, at: number): number => v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x1_0000_0000;

export const ev = {
  ts: (v: DataView, at: number): number => u64(v, at + F.ts_ns.offset),
  goid: (v: DataView, at: number): number => u64(v, at + F.goid.offset),
  otherGoid: (v: DataView, at: number): number => u64(v, at + F.other_goid.offset),
  pc: (v: DataView, at: number): number => u64(v, at + F.pc.offset),
  startPc: (v: DataView, at: number): number => u64(v, at + F.start_pc.offset),
  pid: (v: DataView, at: number): number => v.getUint32(at + F.pid.offset, true),
  tid: (v: DataView, at: number): number => v.getUint32(at + F.tid.offset, true),
  kind: (v: DataView, at: number): number => v.getUint8(at + F.kind.offset),
  waitReason: (v: DataView, at: number): number => v.getUint8(at + F.wait_reason.offset),
  layoutId: (v: DataView, at: number): number => v.getUint16(at + F.layout_id.offset, true),
  gAddr: (v: DataView, at: number): number => u64(v, at + F.g_addr.offset),
};

export interface RuntimeLayoutValues {
  g_goid: number;
  g_parent_goid: number;
  g_gopc: number;
  g_startpc: number;
  g_m: number;
  m_curg: number;
  flags: number;
  reserved?: number;
}

/** Encodes struct runtime_layout for the runtime_layouts map. */
export function encodeRuntimeLayout(values: RuntimeLayoutValues): Buffer {
  const b = Buffer.alloc(runtimeLayoutLayout.size);
  for (const [name, f] of Object.entries(runtimeLayoutLayout.fields)) {
    b.writeUInt32LE(values[name as keyof RuntimeLayoutValues] ?? 0, f.offset);
  }
  return b;
}

export interface CookieOptions {
  /** The site is the stack check's conditional jump: skip the hit that goes to morestack (by the flags). */
  stackCheck: boolean;
}

/** The BPF cookie of one uprobe (see the COOKIE_* macros in bpf/goroutines.h). */
export function probeCookie(layoutId: number, probe: number, opts: CookieOptions): bigint {
  return (
    BigInt(layoutId & 0xffff) |
    (BigInt(probe & 0xff) << 16n) |
    (opts.stackCheck ? 1n << 24n : 0n)
  );
}
