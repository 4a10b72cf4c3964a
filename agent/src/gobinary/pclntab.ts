// Go's pc-line table (runtime/symtab.go, debug/gosym/pclntab.go): function names, entries and file:line of code.
// Formats: Go 1.16-1.17 (magic 0xfffffffa), 1.18-1.19 (0xfffffff0), 1.20+ (0xfffffff1). All offsets below are
// little-endian amd64 (pointer size 8, instruction quantum 1).
import { ElfFile, PT_LOAD, cstring, u64 } from './elf.ts';
import { findModuledataText } from './moduledata.ts';

export const MAGIC_116 = 0xfffffffa;
export const MAGIC_118 = 0xfffffff0;
export const MAGIC_120 = 0xfffffff1;

export interface GoFunc {
  name: string;
  entry: number;
  /** First address after the function (the next function's entry). */
  end: number;
}

export interface FileLine {
  file: string;
  line: number;
}

/** What a function's _func record says (Go 1.18+ layouts; see runtime2.go), for unwinding and inlining. */
export interface FuncInfo extends GoFunc {
  index: number;
  /** Offsets into the pc-value tables (0: none). */
  pcsp: number;
  pcfile: number;
  pcln: number;
  npcdata: number;
  nfuncdata: number;
  cuOffset: number;
  /** abi.FuncID: which special runtime function it is (values differ by Go version; see SpecialFuncs). */
  funcID: number;
  /** abi.FuncFlag bits: FUNC_FLAG_TOPFRAME, FUNC_FLAG_SPWRITE, FUNC_FLAG_ASM. */
  flag: number;
  /** Offset of the record in the pclntab data. */
  base: number;
}

export const FUNC_FLAG_TOPFRAME = 1;
export const FUNC_FLAG_SPWRITE = 2;
export const FUNC_FLAG_ASM = 4;
/** PCDATA and FUNCDATA table indexes (internal/abi/symtab.go, unchanged since Go 1.16). */
export const PCDATA_INL_TREE_INDEX = 2;
export const FUNCDATA_INL_TREE = 3;

/** Where the text start (base of 1.18+ function entry offsets) came from. */
export type TextStartSource = 'header' | 'symtab' | 'moduledata' | 'section';

interface Header {
  magic: number;
  nfunc: number;
  textStart: number; // 0 when absent (1.16 format, Go 1.26+, or unrelocated PIE)
  funcnameOff: number;
  cuOff: number;
  filetabOff: number;
  pctabOff: number;
  pclnOff: number;
}

export class Pclntab {
  readonly version: '1.16' | '1.18' | '1.20';
  /** Virtual address of the pclntab header. */
  readonly addr: number;
  readonly textStart: number;
  readonly textStartSource: TextStartSource;
  /** Function entries, sorted; entries[nfunc] is the end of the last function. */
  private readonly entries: Float64Array;
  private readonly funcOffs: Uint32Array;
  /** Functions by the hash of their name (nameIndex), built on the first lookup by name. */
  private byName?: { slots: Int32Array; hashes: Int32Array };

  private constructor(readonly elf: ElfFile, private readonly data: Buffer, private readonly h: Header, fileOffset: number) {
    this.version = h.magic === MAGIC_116 ? '1.16' : h.magic === MAGIC_118 ? '1.18' : '1.20';
    const addr = elf.fileOffsetToVaddr(fileOffset);
    if (addr === undefined) throw new Error(`${elf.path}: the pclntab is not in a loaded segment`);
    this.addr = addr;
    const n = h.nfunc;
    this.entries = new Float64Array(n + 1);
    this.funcOffs = new Uint32Array(n + 1);
    if (this.version === '1.16') {
      // functab: {entry uintptr, funcoff uintptr}; entries are absolute.
      for (let i = 0; i <= n; i++) {
        this.entries[i] = u64(data, h.pclnOff + i * 16);
        this.funcOffs[i] = u64(data, h.pclnOff + i * 16 + 8);
      }
      this.textStart = this.entries[0];
      this.textStartSource = 'header';
    } else {
      // functab: {entryoff uint32, funcoff uint32}; entries are offsets from the text start.
      const [text, source] = this.resolveTextStart();
      this.textStart = text;
      this.textStartSource = source;
      readFunctab(data, h.pclnOff, n, text, this.entries, this.funcOffs);
    }
  }

  /**
   * Finds and parses the pclntab: by section name, else by scanning the file for a plausible header. Its bytes
   * are read into a buffer of their own: the only part of the file a Pclntab keeps.
   */
  static fromElf(elf: ElfFile): Pclntab {
    for (const name of ['.gopclntab', '.data.rel.ro.gopclntab']) {
      const s = elf.section(name);
      if (!s || s.size === 0 || s.offset + s.size > elf.size) continue;
      const h = parseHeader((o, n) => elf.readAt(s.offset + o, n), s.size);
      if (h) return new Pclntab(elf, elf.sectionData(s), h, s.offset);
    }
    const found = scanForHeader(elf);
    if (!found) throw new Error(`${elf.path}: no Go pclntab found`);
    return new Pclntab(elf, elf.readAt(found.offset, found.length), found.h, found.offset);
  }

  /** Bytes this table keeps: the pclntab itself and its indexes. */
  get keptBytes(): number {
    return this.data.length + this.entries.byteLength + this.funcOffs.byteLength + (this.byName ? this.byName.slots.byteLength + this.byName.hashes.byteLength : 0);
  }

  get nfunc(): number {
    return this.h.nfunc;
  }

  /** Offset (from the header) of the function name table; moduledata's funcnametab points there. */
  get funcnameOffset(): number {
    return this.h.funcnameOff;
  }

  /** Every function, by address: a new list each call (a binary's 100k+ functions are not kept as objects). */
  funcs(): GoFunc[] {
    const out: GoFunc[] = [];
    for (let i = 0; i < this.h.nfunc; i++) out.push(this.funcAt(i));
    return out;
  }

  /**
   * The function of that name. A few names are held twice, an ABI0 function and its ABIInternal twin (the symbol
   * table tells them apart with a ".abi0" suffix, the pclntab does not): then the lower address; see funcsByName.
   */
  funcByName(name: string): GoFunc | undefined {
    const i = this.indexesByName(name)[0];
    return i === undefined ? undefined : this.funcAt(i);
  }

  /** Every function of that name, by address. */
  funcsByName(name: string): GoFunc[] {
    return this.indexesByName(name).map((j) => this.funcAt(j));
  }

  /**
   * Indexes of the functions named name, ascending: a probe of the name index (nameIndex), comparing the bytes where
   * the names lie, so no string is made for the 100k+ names of a big service. (A search of the name table for each
   * name cost ~5 ms on Jaeger's 109k functions, and an attach looks up a hundred names or more.)
   */
  private indexesByName(name: string): number[] {
    const index = (this.byName ??= this.nameIndex());
    const want = Buffer.from(name);
    const mask = index.slots.length - 1;
    const h = fnv1a(want, 0, want.length);
    const d = this.data;
    const out: number[] = [];
    for (let slot = h & mask; index.slots[slot] !== 0; slot = (slot + 1) & mask) {
      if (index.hashes[slot] !== h) continue;
      const i = index.slots[slot] - 1;
      const off = this.nameOffset(i);
      if (off + want.length < d.length && d[off + want.length] === 0 && d.compare(want, 0, want.length, off, off + want.length) === 0) out.push(i);
    }
    return out.sort((x, y) => x - y);
  }

  /**
   * Every function by the hash of its name: open addressing over twice as many slots as functions (index + 1; 0 is
   * empty), with each slot's full hash beside it. Built on the first lookup by name: ~30 ms of CPU (cold) and 8 bytes a
   * slot for Jaeger's 109k functions.
   */
  private nameIndex(): { slots: Int32Array; hashes: Int32Array } {
    const n = this.h.nfunc;
    let size = 16;
    while (size < n * 2) size *= 2;
    const slots = new Int32Array(size);
    const hashes = new Int32Array(size);
    const mask = size - 1;
    const d = this.data;
    const len = d.length;
    // One pass per name, hashing up to its NUL (fnv1a inlined), with the name offsets read here rather than through
    // nameOffset: this loop runs once per binary, cold (before V8 has optimised anything), over 109k names in
    // Jaeger v2, where two passes and a call per name cost ~60 ms of a first attach.
    const funcs = this.h.pclnOff;
    const names = this.h.funcnameOff;
    const nameField = this.version === '1.16' ? 8 : 4;
    const offs = this.funcOffs;
    for (let i = 0; i < n; i++) {
      let at = names + d.readInt32LE(funcs + offs[i] + nameField);
      let h = 0x811c9dc5;
      for (let b = d[at]; at < len && b !== 0; b = d[++at]) h = Math.imul(h ^ b, 0x01000193);
      let slot = h & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = i + 1;
      hashes[slot] = h;
    }
    return { slots, hashes };
  }

  /**
   * Every function whose name starts with prefix, by address: the name table is searched for the prefix (a native
   * search), and each name found is looked up in the name index.
   */
  funcsWithPrefix(prefix: string): GoFunc[] {
    const d = this.data;
    const start = this.h.funcnameOff;
    const names = d.subarray(start, this.h.cuOff);
    const want = Buffer.from(`\0${prefix}`);
    const found = new Set<number>();
    const add = (at: number) => {
      for (const i of this.indexesByName(cstring(names, at))) found.add(i);
    };
    // The first name has no NUL before it.
    if (names.compare(want, 1, want.length, 0, Math.min(names.length, want.length - 1)) === 0) add(0);
    for (let i = names.indexOf(want); i >= 0; i = names.indexOf(want, i + 1)) add(i + 1);
    return [...found].sort((x, y) => x - y).map((i) => this.funcAt(i));
  }

  funcForPC(pc: number): GoFunc | undefined {
    const i = this.indexForPC(pc);
    return i < 0 ? undefined : this.funcAt(i);
  }

  /** Source file and line of the instruction at pc, undefined outside Go code or without line info. */
  fileLine(pc: number): FileLine | undefined {
    const i = this.indexForPC(pc);
    if (i < 0) return undefined;
    const entry = this.entries[i];
    const f = this.funcStruct(i);
    const fileNo = this.pcvalue(f.pcfile, entry, pc);
    const line = this.pcvalue(f.pcln, entry, pc);
    if (fileNo === undefined || line === undefined) return undefined;
    return { file: this.fileName(f.cuOffset, fileNo), line };
  }

  /** Index of the function holding pc, or -1. */
  indexForPC(pc: number): number {
    const e = this.entries;
    const n = this.h.nfunc;
    if (n === 0 || pc < e[0] || pc >= e[n]) return -1;
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (e[mid] <= pc) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /**
   * The _func record of function i (Go 1.18+ pclntab formats): entryOff, nameOff, args, deferreturn, pcsp,
   * pcfile, pcln, npcdata, cuOffset, [startLine, 1.20+], funcID, flag, pad, nfuncdata; then pcdata[npcdata]
   * and funcdata[nfuncdata] as uint32 offsets.
   */
  funcInfoAt(i: number): FuncInfo {
    const have = this.infos.get(i);
    if (have) return have;
    if (this.version === '1.16') throw new Error(`${this.elf.path}: frame tables of Go 1.16-1.17 binaries are not supported`);
    const b = this.funcBase(i);
    const d = this.data;
    const tail = this.version === '1.20' ? 40 : 36;
    const info: FuncInfo = {
      ...this.funcAt(i),
      index: i,
      pcsp: d.readUInt32LE(b + 16),
      pcfile: d.readUInt32LE(b + 20),
      pcln: d.readUInt32LE(b + 24),
      npcdata: d.readUInt32LE(b + 28),
      cuOffset: d.readUInt32LE(b + 32),
      funcID: d[b + tail],
      flag: d[b + tail + 1],
      nfuncdata: d[b + tail + 3],
      base: b,
    };
    // Stack walks ask for the same few functions over and over: keep what they asked for (bounded).
    if (this.infos.size >= MAX_CACHED_INFOS) this.infos.delete(this.infos.keys().next().value!);
    this.infos.set(i, info);
    return info;
  }

  private readonly infos = new Map<number, FuncInfo>();

  /** The function record holding pc, or undefined outside Go code. */
  funcInfoForPC(pc: number): FuncInfo | undefined {
    const i = this.indexForPC(pc);
    return i < 0 ? undefined : this.funcInfoAt(i);
  }

  /** SP delta at pc (bytes the frame has pushed below the caller's SP, return address excluded). */
  spDelta(f: FuncInfo, pc: number): number | undefined {
    return this.pcvalue(f.pcsp, f.entry, pc);
  }

  /** Value of pcdata table `table` at pc: -1 when the function has no such table (as runtime.pcdatavalue). */
  pcdata(f: FuncInfo, table: number, pc: number): number {
    if (table >= f.npcdata) return -1;
    const off = this.data.readUInt32LE(f.base + (this.version === '1.20' ? 44 : 40) + table * 4);
    return this.pcvalue(off, f.entry, pc) ?? -1;
  }

  /** Offset past moduledata.gofunc of funcdata `index`, undefined when the function has none. */
  funcdataOffset(f: FuncInfo, index: number): number | undefined {
    if (index >= f.nfuncdata) return undefined;
    const off = this.data.readUInt32LE(f.base + (this.version === '1.20' ? 44 : 40) + f.npcdata * 4 + index * 4);
    return off === 0xffffffff ? undefined : off;
  }

  /** File and line of pc inside f (the innermost inlined position). */
  fileLineIn(f: FuncInfo, pc: number): FileLine | undefined {
    const fileNo = this.pcvalue(f.pcfile, f.entry, pc);
    const line = this.pcvalue(f.pcln, f.entry, pc);
    if (fileNo === undefined || line === undefined) return undefined;
    return { file: this.fileName(f.cuOffset, fileNo), line };
  }

  /** A name from the function name table (inline tree entries refer to names this way). */
  nameAtOffset(off: number): string {
    return cstring(this.data, this.h.funcnameOff + off);
  }

  funcAt(i: number): GoFunc {
    return { name: this.nameAt(i), entry: this.entries[i], end: this.entries[i + 1] };
  }

  private nameAt(i: number): string {
    return cstring(this.data, this.nameOffset(i));
  }

  /** Where function i's name starts in the pclntab. */
  private nameOffset(i: number): number {
    return this.h.funcnameOff + this.data.readInt32LE(this.funcBase(i) + (this.version === '1.16' ? 8 : 4));
  }

  private funcBase(i: number): number {
    return this.h.pclnOff + this.funcOffs[i];
  }

  private funcStruct(i: number): { pcfile: number; pcln: number; cuOffset: number } {
    // 1.16 _func starts with an 8-byte entry; 1.18+ with a 4-byte entryoff. The fields after keep their order.
    const b = this.funcBase(i) + (this.version === '1.16' ? 4 : 0);
    return {
      pcfile: this.data.readUInt32LE(b + 20),
      pcln: this.data.readUInt32LE(b + 24),
      cuOffset: this.data.readUInt32LE(b + 32),
    };
  }

  private fileName(cuOffset: number, fileNo: number): string {
    const off = this.data.readUInt32LE(this.h.cuOff + (cuOffset + fileNo) * 4);
    if (off === 0xffffffff) return '?';
    return cstring(this.data, this.h.filetabOff + off);
  }

  /**
   * Value of a pcvalue table at targetPC: a sequence of (zig-zag varint value delta, varint pc delta) pairs that
   * starts at value -1 and the function entry; each value holds until its pc delta is consumed.
   */
  private pcvalue(tableOff: number, entry: number, targetPC: number): number | undefined {
    if (tableOff === 0) return undefined;
    const d = this.data;
    let p = this.h.pctabOff + tableOff;
    let val = -1;
    let pc = entry;
    let first = true;
    for (;;) {
      let uv = 0;
      let shift = 0;
      let b: number;
      do {
        b = d[p++];
        uv += (b & 0x7f) * 2 ** shift;
        shift += 7;
      } while (b & 0x80);
      if (uv === 0 && !first) return undefined;
      first = false;
      val += uv % 2 === 1 ? -Math.floor(uv / 2) - 1 : uv / 2;
      let pcDelta = 0;
      shift = 0;
      do {
        b = d[p++];
        pcDelta += (b & 0x7f) * 2 ** shift;
        shift += 7;
      } while (b & 0x80);
      pc += pcDelta; // pc quantum is 1 on amd64
      if (targetPC < pc) return val;
    }
  }

  // Go 1.26 no longer stores the text start in the header (it was unrelocated in PIE files anyway), so prefer
  // runtime.text, then the runtime's moduledata, then the header, then the .text section.
  private resolveTextStart(): [number, TextStartSource] {
    const sym = this.elf.symbol('runtime.text');
    if (sym && sym.value !== 0) return [sym.value, 'symtab'];
    const md = findModuledataText(this.elf, this.addr, this.addr + this.h.funcnameOff);
    if (md !== undefined) return [md, 'moduledata'];
    if (this.h.textStart !== 0) return [this.h.textStart, 'header'];
    const text = this.elf.section('.text');
    if (text) return [text.addr, 'section'];
    throw new Error(`${this.elf.path}: cannot tell where Go's text starts (no runtime.text, moduledata or .text)`);
  }
}

/**
 * The Go 1.18+ functab ({entryoff, funcoff} uint32 pairs at off) into entries (text + entryoff) and funcOffs: a loop
 * of its own, so that V8 optimises it alone (it runs once per binary, over 109k functions in Jaeger v2) rather than
 * the constructor with all it calls.
 */
function readFunctab(data: Buffer, off: number, n: number, text: number, entries: Float64Array, funcOffs: Uint32Array): void {
  if ((data.byteOffset + off) % 4 === 0) {
    const w = new Uint32Array(data.buffer, data.byteOffset + off, 2 * (n + 1));
    for (let i = 0; i <= n; i++) {
      entries[i] = text + w[2 * i];
      funcOffs[i] = w[2 * i + 1];
    }
    return;
  }
  for (let i = 0; i <= n; i++) {
    entries[i] = text + data.readUInt32LE(off + i * 8);
    funcOffs[i] = data.readUInt32LE(off + i * 8 + 4);
  }
}

/** FNV-1a (32 bits) of b[from, to): the name index's hash. */
function fnv1a(b: Buffer, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ b[i], 0x01000193);
  return h;
}

/** At most this many _func records are kept decoded (stack walks revisit a few; a dump of many may ask for all). */
const MAX_CACHED_INFOS = 16_384;

/** Bytes of a pclntab, from its header on: read(offset, length) within length bytes. */
type HeaderReader = (offset: number, length: number) => Buffer;

function parseHeader(read: HeaderReader, length: number): Header | undefined {
  if (length < 72) return undefined;
  const d = read(0, 72);
  const magic = d.readUInt32LE(0);
  if (magic !== MAGIC_116 && magic !== MAGIC_118 && magic !== MAGIC_120) return undefined;
  // pad, pad, minLC (instruction quantum, 1 on x86), ptrSize 8.
  if (d[4] !== 0 || d[5] !== 0 || d[6] !== 1 || d[7] !== 8) return undefined;
  const n = u64(d, 8);
  const old = magic === MAGIC_116;
  const o = old ? 24 : 32;
  const h: Header = {
    magic,
    nfunc: n,
    textStart: old ? 0 : u64(d, 24),
    funcnameOff: u64(d, o),
    cuOff: u64(d, o + 8),
    filetabOff: u64(d, o + 16),
    pctabOff: u64(d, o + 24),
    pclnOff: u64(d, o + 32),
  };
  return plausible(read, length, h) ? h : undefined;
}

// Sanity checks so that a stray magic number in data is not taken for a pclntab.
function plausible(read: HeaderReader, length: number, h: Header): boolean {
  const ftabEntry = h.magic === MAGIC_116 ? 16 : 8;
  if (h.nfunc === 0 || h.nfunc > 10_000_000) return false;
  const offs = [h.funcnameOff, h.cuOff, h.filetabOff, h.pctabOff, h.pclnOff];
  if (offs.some((o) => o < 64 || o >= length)) return false;
  if (!(h.funcnameOff <= h.cuOff && h.cuOff <= h.filetabOff && h.filetabOff <= h.pctabOff && h.pctabOff <= h.pclnOff)) {
    return false;
  }
  if (h.pclnOff + (h.nfunc + 1) * ftabEntry > length) return false;
  // Entries must ascend (checking a handful is enough to reject noise).
  const k = Math.min(h.nfunc, 16);
  const ftab = read(h.pclnOff, (k + 1) * ftabEntry);
  const entry = (i: number) => (ftabEntry === 16 ? u64(ftab, i * 16) : ftab.readUInt32LE(i * 8));
  for (let i = 0; i < k; i++) if (entry(i) > entry(i + 1)) return false;
  return true;
}

/**
 * A pclntab found by its header in a file without section headers: where it starts, and its bytes up to the end
 * of the segment holding it (its true end is not recorded anywhere).
 */
function scanForHeader(elf: ElfFile): { offset: number; length: number; h: Header } | undefined {
  for (const magic of [MAGIC_120, MAGIC_118, MAGIC_116]) {
    const pat = Buffer.alloc(8);
    pat.writeUInt32LE(magic, 0);
    pat.set([0, 0, 1, 8], 4);
    for (const off of elf.find(pat, 0, elf.size, 8)) {
      const seg = elf.programs.find((p) => p.type === PT_LOAD && off >= p.offset && off < p.offset + p.filesz);
      const length = (seg ? seg.offset + seg.filesz : elf.size) - off;
      const h = parseHeader((o, n) => elf.readAt(off + o, n), length);
      if (h) return { offset: off, length, h };
    }
  }
  return undefined;
}
