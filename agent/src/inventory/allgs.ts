// The goroutines that already exist when the agent attaches, read once from the runtime's own list
// (`var allgs []*g`) in the process's memory. Read-only: the process is never stopped or written.
import type { ProcessMemory } from '../proc/process.ts';

/** Where a g keeps what the inventory reads, for one Go version. */
export interface GOffsets {
  goid: number;
  parentGoid: number | null;
  gopc: number;
  startpc: number;
  atomicstatus: number;
  waitreason: number;
  waitsince: number;
}

export interface InventoryGoroutine {
  goid: number;
  /** Address of the g. */
  gAddr: number;
  parentGoid: number | null;
  /** Go's status number without the _Gscan bit. */
  status: number;
  waitReason: number | null;
  gopc: number;
  startPc: number;
  /** nanotime() when the runtime noticed it blocked (set by the GC, so often unknown); null if unknown. */
  waitingSince: number | null;
}

const G_SCAN = 0x1000;
const G_DEAD = 6;
const G_WAITING = 4;
/** Far above any real count; guards against reading a torn slice header. */
const MAX_ALLGS = 50_000_000;

export interface InventoryResult {
  goroutines: InventoryGoroutine[];
  /** g pointers that could not be read or did not look like a g. */
  unreadable: number;
  /** Entries with status _Gdead: goroutines that ended, their g kept for reuse. */
  dead: number;
}

/**
 * Reads allgs at `allgsAddr` (a runtime address: link-time address plus load bias). The list changes while
 * it is read, so every entry is checked for plausibility and the unreadable ones are counted, not guessed.
 */
export function readAllGoroutines(mem: ProcessMemory, allgsAddr: number, g: GOffsets): InventoryResult {
  const ptr = mem.u64(allgsAddr);
  const len = mem.u64(allgsAddr + 8);
  if (ptr === undefined || len === undefined) throw new Error(`cannot read runtime.allgs at 0x${allgsAddr.toString(16)}`);
  if (len > MAX_ALLGS) throw new Error(`runtime.allgs has an implausible length ${len}`);
  const list = mem.read(ptr, len * 8);
  const count = Math.floor(list.length / 8);
  const span = Math.max(g.goid, g.parentGoid ?? 0, g.gopc, g.startpc, g.atomicstatus, g.waitreason, g.waitsince) + 8;
  const buf = Buffer.alloc(span);
  const out: InventoryGoroutine[] = [];
  let unreadable = count < len ? len - count : 0;
  let dead = 0;
  const u64 = (b: Buffer, o: number) => b.readUInt32LE(o) + b.readUInt32LE(o + 4) * 0x1_0000_0000;
  for (let i = 0; i < count; i++) {
    const gp = u64(list, i * 8);
    const b = gp ? mem.read(gp, span, buf) : buf.subarray(0, 0);
    if (b.length < span) {
      unreadable++;
      continue;
    }
    const status = b.readUInt32LE(g.atomicstatus) & ~G_SCAN;
    const goid = u64(b, g.goid);
    if (status === G_DEAD) {
      dead++;
      continue;
    }
    if (status > 9 || goid === 0 || goid > 2 ** 52) {
      unreadable++;
      continue;
    }
    const since = u64(b, g.waitsince);
    out.push({
      goid,
      gAddr: gp,
      parentGoid: g.parentGoid === null ? null : u64(b, g.parentGoid),
      status,
      waitReason: status === G_WAITING ? b.readUInt8(g.waitreason) : null,
      gopc: u64(b, g.gopc),
      startPc: u64(b, g.startpc),
      waitingSince: status === G_WAITING && since > 0 ? since : null,
    });
  }
  return { goroutines: out, unreadable, dead };
}
