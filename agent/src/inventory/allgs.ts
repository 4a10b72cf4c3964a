// Every goroutine of a process as the runtime itself keeps it (`var allgs []*g`: status, wait reason,
// waitsince, goid, parent goid, gopc, startpc), and how many goroutine ids it has handed out, read from the
// process's memory in a few batched reads: the slice, then every g's fields in one process_vm_readv per
// 4096 goroutines (neighbouring gs in one iovec). Read only: the process is never stopped or written. The stack reader
// (stacks/read-goroutines.ts) reads the same list and the same fields, through readAllgsList and gFields.
import type { GoBinary } from '../gobinary/index.ts';
import type { RuntimeLayout } from '../gobinary/layouts.ts';
import type { ProcessMemory } from '../proc/process.ts';

export interface InventoryGoroutine {
  goid: number;
  /** Address of the g. */
  gAddr: number;
  parentGoid: number | null;
  /** Go's status number without the _Gscan bit; _Gleaked (Go 1.26+) is reported as _Gwaiting. */
  status: number;
  waitReason: number | null;
  /** Runtime addresses (link-time plus load bias). */
  gopc: number;
  startPc: number;
  /** nanotime() when the runtime noticed it blocked (set by the GC, so often unknown); null if unknown. */
  waitingSince: number | null;
}

export interface InventoryResult {
  goroutines: InventoryGoroutine[];
  /** Entries in allgs. */
  allgs: number;
  /** g pointers that could not be read or did not look like a g. */
  unreadable: number;
  /** Entries with status _Gdead (or _Gidle, _Gdeadextra): goroutines that ended, their g kept for reuse. */
  dead: number;
  /** Goroutine ids handed out so far, when sched.goidgen is known (ids.ts). */
  ids: IdCount | null;
  bytesRead: number;
  /** System calls made. */
  reads: number;
}

/** The runtime's goroutine-id generator, read once: how many goroutines it has started, ever. */
export interface IdCount {
  /** sched.goidgen: the last id handed to a P's cache (ids go out in batches of _GoidCacheBatch = 16). */
  goidgen: number;
  /** Ids the Ps took but have not given to a goroutine yet (p.goidcacheend - p.goidcache, summed); null without allp. */
  cached: number | null;
  /**
   * Goroutines created so far: goidgen less the cached ids, exact but for a P refilling its cache while the Ps
   * are read (16 ids each time, within microseconds). Without allp (stripped), goidgen alone: up to 16 per P high.
   */
  created: number;
  /** Ps whose caches were read (len(allp)); null without allp. */
  ps: number | null;
}

export interface ScanTarget {
  binary: GoBinary;
  layout: RuntimeLayout;
  /** Runtime address minus link-time address. */
  bias: number;
}

export interface GFields {
  size: number;
  goid: number;
  parentGoid: number | null;
  gopc: number;
  startpc: number;
  status: number;
  waitreason: number;
  waitsince: number;
  stackLo: number;
  stackHi: number;
  schedSp: number;
  schedPc: number;
  schedBp: number;
  syscallSp: number;
  syscallPc: number;
  lockedm: number | null;
}

/**
 * Where a g keeps what a stack walk needs. syscallsp and syscallpc follow g.sched (a gobuf) directly in every Go
 * version from 1.16 to 1.27 (runtime2.go), so they come from the layout's sched field rather than a copy of it.
 */
export function gFields(layout: RuntimeLayout): GFields {
  const f = layout.g.fields;
  const afterSched = f.sched.offset + f.sched.size;
  return {
    size: layout.g.size,
    goid: f.goid.offset,
    parentGoid: f.parentGoid ? f.parentGoid.offset : null,
    gopc: f.gopc.offset,
    startpc: f.startpc.offset,
    status: f.atomicstatus.offset,
    waitreason: f.waitreason.offset,
    waitsince: f.waitsince.offset,
    stackLo: f['stack.lo'].offset,
    stackHi: f['stack.hi'].offset,
    schedSp: f['sched.sp'].offset,
    schedPc: f['sched.pc'].offset,
    schedBp: f['sched.bp'].offset,
    syscallSp: afterSched,
    syscallPc: afterSched + 8,
    lockedm: f.lockedm ? f.lockedm.offset : null,
  };
}

/** Far above any real count; guards against reading a torn slice header. */
const MAX_ALLGS = 50_000_000;
const MAX_PS = 1 << 16;
/** runtime/proc.go: the ids a P takes from sched.goidgen at once. */
export const GOID_CACHE_BATCH = 16;
const BATCH = 4096;
/** Bytes between two gs' field spans still read as one range; and the longest range. */
const MERGE_GAP = 1024;
const MAX_RANGE = 1 << 20;

const u64 = (b: Buffer, o: number) => b.readUInt32LE(o) + b.readUInt32LE(o + 4) * 0x1_0000_0000;

/** A slice header `[]*T` at addr and its pointers, in two reads. */
export function readPointerSlice(mem: ProcessMemory, addr: number, what: string): { list: Buffer; len: number } {
  const header = mem.read(addr, 16);
  if (header.length < 16) throw new Error(`cannot read ${what} at 0x${addr.toString(16)}`);
  const ptr = u64(header, 0);
  const len = u64(header, 8);
  if (len > MAX_ALLGS) throw new Error(`${what} has an implausible length ${len}`);
  return { list: len ? mem.read(ptr, len * 8) : Buffer.alloc(0), len };
}

/** runtime.allgs of a process: its length and the g pointers that could be read. */
export function readAllgsList(mem: ProcessMemory, target: ScanTarget): { list: Buffer; len: number } {
  const allgs = target.binary.allgs;
  if (!allgs) throw new Error(`cannot find runtime.allgs in ${target.binary.path}`);
  return readPointerSlice(mem, allgs.addr + target.bias, 'runtime.allgs');
}

/**
 * Reads every goroutine (dead ones counted, not listed). The list changes while it is read, so every entry is
 * checked for plausibility and the unreadable ones are counted, never guessed.
 */
export function scanGoroutines(mem: ProcessMemory, target: ScanTarget, opts: { mergeGap?: number } = {}): InventoryResult {
  const mergeGap = opts.mergeGap ?? MERGE_GAP;
  const { layout } = target;
  const F = gFields(layout);
  const S = layout.statuses;
  const scanBit = layout.scanBit;
  const result: InventoryResult = { goroutines: [], allgs: 0, unreadable: 0, dead: 0, ids: null, bytesRead: 0, reads: 2 };
  // Ids before the list: a goroutine created in between is then counted but not listed, never listed but not
  // counted, so exits (created minus live) are never negative.
  result.ids = readIdCount(mem, target);
  const { list, len } = readAllgsList(mem, target);
  result.allgs = len;
  const count = Math.floor(list.length / 8);
  result.unreadable = len - count;
  // Only the span of the g that holds the fields read. The runtime allocates gs side by side in its spans, so
  // the spans of neighbouring gs are read as one range (a gap of up to MERGE_GAP bytes read for nothing): a
  // few hundred ranges instead of one iovec per g, which cost the kernel ~0.8 us each.
  const offs = [F.goid, F.parentGoid ?? F.goid, F.gopc, F.startpc, F.status, F.waitreason, F.waitsince];
  const lo = Math.min(...offs);
  const span = Math.max(...offs) + 8 - lo;
  const waitingLike = new Set([S._Gwaiting, S._Gleaked].filter((x) => x !== undefined));
  const dead = new Set([S._Gdead, S._Gidle, S._Gdeadextra].filter((x) => x !== undefined));
  const gAddrs = new Float64Array(Math.min(count, BATCH));
  const order = new Uint32Array(Math.min(count, BATCH));
  const where = new Float64Array(Math.min(count, BATCH)); // each g's field span: offset in buf, or -1
  for (let first = 0; first < count; first += BATCH) {
    const n = Math.min(BATCH, count - first);
    for (let i = 0; i < n; i++) {
      gAddrs[i] = u64(list, (first + i) * 8);
      order[i] = i;
    }
    const sorted = order.subarray(0, n).sort((x, y) => gAddrs[x] - gAddrs[y]);
    const rStart: number[] = [];
    const rLen: number[] = [];
    const rOf = new Uint32Array(n);
    for (const i of sorted) {
      const from = gAddrs[i] + lo;
      const k = rStart.length - 1;
      if (k >= 0 && from >= rStart[k] && from - (rStart[k] + rLen[k]) <= mergeGap && from + span - rStart[k] <= MAX_RANGE) {
        rLen[k] = Math.max(rLen[k], from + span - rStart[k]);
      } else {
        rStart.push(from);
        rLen.push(span);
      }
      rOf[i] = rStart.length - 1;
    }
    const lens = Uint32Array.from(rLen);
    const bases = new Float64Array(lens.length);
    let total = 0;
    for (let k = 0; k < lens.length; k++) {
      bases[k] = total;
      total += lens[k];
    }
    const buf = Buffer.allocUnsafe(total);
    const got = mem.readMany(Float64Array.from(rStart), lens, buf);
    result.reads++;
    for (const n of got) result.bytesRead += Math.max(0, n);
    for (let i = 0; i < n; i++) {
      const k = rOf[i];
      const inRange = gAddrs[i] + lo - rStart[k];
      where[i] = gAddrs[i] !== 0 && inRange + span <= got[k] ? bases[k] + inRange : -1;
    }
    for (let i = 0; i < n; i++) {
      const gAddr = gAddrs[i];
      if (where[i] < 0) {
        result.unreadable++;
        continue;
      }
      const at = where[i] - lo;
      const raw = buf.readUInt32LE(at + F.status);
      const status = raw & ~scanBit;
      if (dead.has(status)) {
        result.dead++;
        continue;
      }
      const goid = u64(buf, at + F.goid);
      if (status > 0xff || goid === 0 || goid > 2 ** 52) {
        result.unreadable++;
        continue;
      }
      const waiting = waitingLike.has(status);
      const since = u64(buf, at + F.waitsince);
      result.goroutines.push({
        goid,
        gAddr,
        parentGoid: F.parentGoid === null ? null : u64(buf, at + F.parentGoid),
        status: waiting ? S._Gwaiting : status,
        waitReason: waiting ? buf[at + F.waitreason] : null,
        gopc: u64(buf, at + F.gopc),
        startPc: u64(buf, at + F.startpc),
        waitingSince: waiting && since > 0 ? since : null,
      });
    }
  }
  return result;
}

/**
 * Goroutines the runtime has created, ever, from its goroutine-id generator: newproc1 takes ids from its P's
 * cache, which refills 16 at a time from sched.goidgen, so ids handed out = goidgen less what the Ps hold
 * unused. Null when sched.goidgen cannot be found (a stripped binary whose newproc1 does not show it).
 */
export function readIdCount(mem: ProcessMemory, target: ScanTarget): IdCount | null {
  const loc = target.binary.goidgen?.(target.layout);
  if (!loc) return null;
  const gen = mem.u64(loc.goidgen + target.bias);
  if (gen === undefined) return null;
  let cached: number | null = null;
  let ps: number | null = null;
  if (loc.allp !== undefined) {
    const { list, len } = readPointerSlice(mem, loc.allp + target.bias, 'runtime.allp');
    if (len <= MAX_PS && list.length === len * 8) {
      const cacheOff = target.layout.p.fields.goidcache.offset;
      const endOff = target.layout.p.fields.goidcacheend.offset;
      const addrs = new Float64Array(len);
      for (let i = 0; i < len; i++) addrs[i] = u64(list, i * 8) + cacheOff;
      const width = endOff + 8 - cacheOff;
      const buf = Buffer.alloc(len * width);
      const got = mem.readMany(addrs, new Uint32Array(len).fill(width), buf);
      if (got.every((n) => n === width)) {
        cached = 0;
        for (let i = 0; i < len; i++) {
          const cache = u64(buf, i * width);
          const end = u64(buf, i * width + endOff - cacheOff);
          // A P owns its cache and writes it while we read: a torn pair is clamped to what a batch can hold.
          cached += Math.min(GOID_CACHE_BATCH, Math.max(0, end - cache));
        }
        ps = len;
      }
    }
  }
  // Ids start at 1 (runtime.main's goroutine), so the highest handed out is the count.
  return { goidgen: gen, cached, created: gen - (cached ?? 0), ps };
}
