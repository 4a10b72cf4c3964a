// The goroutine records of bpf/goroutines.bpf.c, read by the layout generated from the object's BTF
// (goroutines.bpf.ts), and the uprobe cookie the programs decode (bpf/cookie.h).
import {
  COOKIE_LAYOUT_MASK,
  COOKIE_PROBE_MASK,
  COOKIE_PROBE_SHIFT,
  COOKIE_STACK_CHECK_SHIFT,
  COOKIE_WINDOW_SHIFT,
  goidEpochLayout,
  goroutineEventLayout,
  GoroutineEventKind,
  runtimeLayoutLayout,
} from './goroutines.bpf.ts';
import { encode, forEachRecord, readers } from './layout.ts';

export { GOID_EPOCH_SLOTS, GoroutineEventKind, GoroutineProbe, MAX_RUNTIME_LAYOUTS, PROBE_KINDS, goroutineEventLayout, runtimeLayoutLayout } from './goroutines.bpf.ts';
export type GoroutineEventKindName = keyof typeof GoroutineEventKind;

/** Walks a batch of records without making an object per record: the visitor reads fields through `ev`. */
export function forEachGoroutineEvent(batch: Buffer, visit: (v: DataView, at: number) => void): number {
  return forEachRecord(goroutineEventLayout, batch, visit);
}

/** Field readers of struct goroutine_event: ev.goid(v, at), ev.otherGoid(v, at), ... */
export const ev = readers(goroutineEventLayout);

export type RuntimeLayoutValues = Parameters<typeof encode<typeof runtimeLayoutLayout>>[1];

/** Encodes struct runtime_layout for the runtime_layouts map. */
export const encodeRuntimeLayout = (values: RuntimeLayoutValues): Buffer => encode(runtimeLayoutLayout, values);

/** Encodes struct goid_epoch for the goid_epochs map (a process's goid cache epoch, bpf/goroutines.h). */
export const encodeGoidEpoch = (pid: number, epoch: number): Buffer => encode(goidEpochLayout, { pid, epoch });

export interface CookieOptions {
  /** The site is the stack check's conditional jump: skip the hit that goes to morestack (by the flags). */
  stackCheck: boolean;
}

/** The BPF cookie of one uprobe (bpf/cookie.h); window: a scheduler probe's window (0 for the others). */
export function probeCookie(layoutId: number, probe: number, opts: CookieOptions, window = 0): bigint {
  return (
    BigInt(layoutId & COOKIE_LAYOUT_MASK) |
    (BigInt(probe & COOKIE_PROBE_MASK) << BigInt(COOKIE_PROBE_SHIFT)) |
    (opts.stackCheck ? 1n << BigInt(COOKIE_STACK_CHECK_SHIFT) : 0n) |
    (BigInt(window >>> 0) << BigInt(COOKIE_WINDOW_SHIFT))
  );
}
