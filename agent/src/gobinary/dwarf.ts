// A small DWARF reader over an ElfFile: enough of .debug_info to read the Go runtime's own types, constants,
// variables and function parameters (dwarf-layout.ts). It handles what Go 1.19-1.27 emit, DWARF 4 and (from Go
// 1.25) 5, and more: DWARF 2-5, 32- and 64-bit DWARF, every DWARF 5 form (strx, addrx, line_strp, data16,
// implicit_const, rnglistx...), SHF_COMPRESSED sections and the older .zdebug_* ones. Location and range lists,
// line tables and type units are not read.
//
// Units are parsed lazily, one at a time, into a tree of Die: a caller reads only the unit DIEs (cheap) and then
// the units it wants (the runtime's; a Go binary has one unit per package). A reference into another unit
// parses that unit on demand.
import * as zlib from 'node:zlib';
import { SHT_NOBITS, type ElfFile } from './elf.ts';

export const DW_TAG = {
  array_type: 0x01,
  class_type: 0x02,
  enumeration_type: 0x04,
  formal_parameter: 0x05,
  member: 0x0d,
  unspecified_parameters: 0x18,
  pointer_type: 0x0f,
  compile_unit: 0x11,
  structure_type: 0x13,
  subroutine_type: 0x15,
  typedef: 0x16,
  union_type: 0x17,
  subrange_type: 0x21,
  base_type: 0x24,
  const_type: 0x26,
  constant: 0x27,
  subprogram: 0x2e,
  variable: 0x34,
  volatile_type: 0x35,
  restrict_type: 0x37,
} as const;

export const DW_AT = {
  location: 0x02,
  name: 0x03,
  byte_size: 0x0b,
  const_value: 0x1c,
  inline: 0x20,
  producer: 0x25,
  upper_bound: 0x2f,
  count: 0x37,
  data_member_location: 0x38,
  encoding: 0x3e,
  type: 0x49,
  variable_parameter: 0x4b,
  str_offsets_base: 0x72,
  addr_base: 0x73,
} as const;

/** DW_ATE_* base type encodings. */
export const DW_ATE = { address: 1, boolean: 2, complex_float: 3, float: 4, signed: 5, signed_char: 6, unsigned: 7, unsigned_char: 8 } as const;

const F = {
  addr: 0x01, block2: 0x03, block4: 0x04, data2: 0x05, data4: 0x06, data8: 0x07, string: 0x08, block: 0x09,
  block1: 0x0a, data1: 0x0b, flag: 0x0c, sdata: 0x0d, strp: 0x0e, udata: 0x0f, ref_addr: 0x10, ref1: 0x11,
  ref2: 0x12, ref4: 0x13, ref8: 0x14, ref_udata: 0x15, indirect: 0x16, sec_offset: 0x17, exprloc: 0x18,
  flag_present: 0x19, strx: 0x1a, addrx: 0x1b, ref_sup4: 0x1c, strp_sup: 0x1d, data16: 0x1e, line_strp: 0x1f,
  ref_sig8: 0x20, implicit_const: 0x21, loclistx: 0x22, rnglistx: 0x23, ref_sup8: 0x24, strx1: 0x25, strx2: 0x26,
  strx3: 0x27, strx4: 0x28, addrx1: 0x29, addrx2: 0x2a, addrx3: 0x2b, addrx4: 0x2c,
  gnu_addr_index: 0x1f01, gnu_str_index: 0x1f02, gnu_ref_alt: 0x1f20, gnu_strp_alt: 0x1f21,
} as const;

const DW_OP_addr = 0x03;
const DW_OP_plus_uconst = 0x23;
const DW_OP_addrx = 0xa1;
const DW_OP_GNU_addr_index = 0xfb;

const SHF_COMPRESSED = 0x800;
const ELFCOMPRESS_ZLIB = 1;
const ELFCOMPRESS_ZSTD = 2;

/**
 * An attribute's value: a number for constants, addresses, section offsets and references (made absolute
 * .debug_info offsets); a string; a boolean for flags; a Block for blocks, exprlocs and data16; a bigint for
 * 8-byte values beyond 2^53 and for type signatures (ref_sig8), which this reader does not follow.
 */
export type AttrValue = number | bigint | string | boolean | Block;

/** Bytes of an attribute inside .debug_info. A plain object, not a Buffer view: those cost far more to make. */
export class Block {
  constructor(readonly buf: Buffer, readonly start: number, readonly end: number) {}
  get length(): number {
    return this.end - this.start;
  }
  bytes(): Buffer {
    return this.buf.subarray(this.start, this.end);
  }
}

/** Reading .debug_* failed (truncated data, an unknown form, a compression we cannot undo). */
export class DwarfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DwarfError';
  }
}

/**
 * The contents of .debug_<name> (name without the dot: "info", "abbrev", ...), decompressed; undefined when
 * the section is absent or has no bytes in this file (a split-off debug file holds them).
 */
export function debugSection(elf: ElfFile, name: string): Buffer | undefined {
  return readDebugSection(elf, name);
}

function readDebugSection(elf: ElfFile, name: string): Buffer | undefined {
  const s = elf.section(`.debug_${name}`);
  if (s && s.type !== SHT_NOBITS) {
    const raw = elf.sectionData(s);
    if (!(s.flags & SHF_COMPRESSED)) return raw;
    // Elf64_Chdr: ch_type u32, ch_reserved u32, ch_size u64, ch_addralign u64.
    if (raw.length < 24) throw new DwarfError(`.debug_${name}: truncated compression header`);
    return decompress(name, raw.readUInt32LE(0), raw.subarray(24), Number(raw.readBigUInt64LE(8)));
  }
  const z = elf.section(`.zdebug_${name}`);
  if (z && z.type !== SHT_NOBITS) {
    // Pre-gABI compression (Go before 1.12, old binutils): "ZLIB", then the size as a big-endian u64.
    const raw = elf.sectionData(z);
    if (raw.length < 12 || raw.toString('latin1', 0, 4) !== 'ZLIB') return raw; // stored uncompressed
    return decompress(name, ELFCOMPRESS_ZLIB, raw.subarray(12), Number(raw.readBigUInt64BE(4)));
  }
  return undefined;
}

/** Sections up to this size are inflated into one buffer (larger ones are not a Go binary's). */
const ONE_CHUNK_MAX = 1 << 30;

function decompress(name: string, type: number, data: Buffer, size: number): Buffer {
  let out: Buffer;
  if (type === ELFCOMPRESS_ZLIB) {
    // Into one buffer of the size the header gives (+1: zlib stops with room left, so no second chunk is
    // allocated): by default zlib fills 64 KiB chunks and concatenates them at the end, which holds the section
    // twice at the peak (2 x 31 MiB for Jaeger's .debug_info) and copies it once more.
    // A size past ONE_CHUNK_MAX (a corrupt header) goes the default way and fails the length check below.
    const oneChunk = size >= 0 && size < ONE_CHUNK_MAX;
    out = zlib.inflateSync(data, oneChunk ? { chunkSize: Math.max(zlib.constants.Z_MIN_CHUNK, size + 1) } : {});
  } else if (type === ELFCOMPRESS_ZSTD) {
    // Node 20 has no zstd; newer ones do. Go itself only writes zlib.
    const zstd = (zlib as unknown as { zstdDecompressSync?: (b: Buffer) => Buffer }).zstdDecompressSync;
    if (!zstd) throw new DwarfError(`.debug_${name} is zstd-compressed, which this Node.js cannot decompress`);
    out = zstd(data);
  } else {
    throw new DwarfError(`.debug_${name}: unknown compression type ${type}`);
  }
  if (out.length !== size) throw new DwarfError(`.debug_${name}: decompressed to ${out.length} bytes, header says ${size}`);
  return out;
}

/** A byte cursor over one section. */
class Cursor {
  constructor(readonly buf: Buffer, public pos: number) {}

  u8(): number {
    if (this.pos >= this.buf.length) throw new DwarfError('read past the end of a section');
    return this.buf[this.pos++];
  }
  u16(): number {
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  u24(): number {
    const v = this.buf.readUIntLE(this.pos, 3);
    this.pos += 3;
    return v;
  }
  u32(): number {
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  /** A u64 as a number when it fits exactly, else a bigint. */
  u64(): number | bigint {
    const lo = this.buf.readUInt32LE(this.pos);
    const hi = this.buf.readUInt32LE(this.pos + 4);
    this.pos += 8;
    return hi < 0x200000 ? hi * 0x1_0000_0000 + lo : this.buf.readBigUInt64LE(this.pos - 8);
  }
  uN(n: number): number {
    if (n === 4) return this.u32();
    const v = this.u64();
    if (typeof v === 'bigint') throw new DwarfError(`offset 0x${v.toString(16)} is too large`);
    return v;
  }
  // LEB128 with float arithmetic: bit operations would wrap at 32 bits. Values beyond 2^53 lose precision
  // (no runtime value we read is that large), but the cursor always advances by the right number of bytes.
  uleb(): number {
    let result = 0;
    let mul = 1;
    for (;;) {
      const b = this.buf[this.pos++];
      if (b === undefined) throw new DwarfError('truncated LEB128');
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
  }
  sleb(): number {
    let result = 0;
    let mul = 1;
    for (;;) {
      const b = this.buf[this.pos++];
      if (b === undefined) throw new DwarfError('truncated LEB128');
      result += (b & 0x7f) * mul;
      mul *= 128;
      if (b < 0x80) return b & 0x40 ? result - mul : result;
    }
  }
  block(n: number): Block {
    if (this.pos + n > this.buf.length) throw new DwarfError('block runs past the end of its section');
    const b = new Block(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new DwarfError('unterminated string');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
}

interface Abbrev {
  tag: number;
  hasChildren: boolean;
  attrs: number[];
  forms: number[];
  /** DW_FORM_implicit_const values, by attribute index. */
  implicit: number[];
}

// Moving past DIEs. A first attach walks every DIE of the runtime's unit once (Go puts every type of the program
// there: 7.5 MiB in Jaeger v2), in code V8 has not optimised yet, and optimising it costs CPU too (on the compiler's
// threads, which count as the agent's). The walk is a few small functions over the bytes, with a plan per
// abbreviation made up front. A walk through Cursor and the general form switch was compiled into one large function
// and recompiled after each deopt: --trace-opt showed ~360 ms of compile jobs for it in one first attach to Jaeger
// v2 (on a loaded machine), and the walk took 120 ms of CPU against ~55 now.

/** Plan flags (a plan's first element): children follow; the tag is indexed (INDEXED_TAGS); a form needs skipSlow. */
const PLAN_CHILDREN = 1;
const PLAN_INDEXED = 2;
const PLAN_SLOW = 4;
/** Plan steps for one variable-size form (a step >= 0 is a run of fixed-size bytes). */
const SKIP_ULEB = -1;
const SKIP_STRING = -2;
const SKIP_BLOCK1 = -3;
const SKIP_BLOCK2 = -4;
const SKIP_BLOCK4 = -5;
const SKIP_BLOCK = -6;

const VARIABLE_STEPS = new Map<number, number>([
  [F.sdata, SKIP_ULEB], [F.udata, SKIP_ULEB], [F.ref_udata, SKIP_ULEB], [F.strx, SKIP_ULEB], [F.addrx, SKIP_ULEB],
  [F.loclistx, SKIP_ULEB], [F.rnglistx, SKIP_ULEB], [F.gnu_addr_index, SKIP_ULEB], [F.gnu_str_index, SKIP_ULEB],
  [F.string, SKIP_STRING], [F.block1, SKIP_BLOCK1], [F.block2, SKIP_BLOCK2], [F.block4, SKIP_BLOCK4],
  [F.block, SKIP_BLOCK], [F.exprloc, SKIP_BLOCK],
]);

/** How file() reads the name of an indexed DIE: the plans of the attributes around it, and its form. */
interface NamePlan {
  tag: number;
  children: boolean;
  before: Int32Array;
  form: number;
  implicit: number;
  after: Int32Array;
}

/**
 * Where the attributes of a DIE that start at pos end, by its plan (not PLAN_SLOW). Small, so that V8 inlines it
 * where it is called: the rarer forms are skipBlock's.
 */
function skipByPlan(info: Buffer, pos: number, plan: Int32Array): number {
  const n = info.length;
  for (let i = 1; i < plan.length; i++) {
    const step = plan[i];
    if (step >= 0) pos += step;
    else if (step === SKIP_STRING) {
      while (pos < n && info[pos] !== 0) pos++;
      pos++;
    } else if (step === SKIP_ULEB) {
      while (pos < n && info[pos] >= 0x80) pos++;
      pos++;
    } else if (step === SKIP_BLOCK1) pos += 1 + info[pos];
    else pos = skipBlock(info, pos, step);
  }
  if (pos > n) throw new DwarfError('a DIE runs past the end of its section');
  return pos;
}

/** Past a DW_FORM_block2, block4, block or exprloc at pos. */
function skipBlock(info: Buffer, pos: number, step: number): number {
  if (step === SKIP_BLOCK2) return pos + 2 + info[pos] + info[pos + 1] * 0x100;
  if (step === SKIP_BLOCK4) return pos + 4 + info.readUInt32LE(pos);
  const c = new Cursor(info, pos);
  const len = c.uleb();
  return c.pos + len;
}

/** A ULEB128 at pos: its value and where it ends. */
function uleb(info: Buffer, pos: number): [number, number] {
  const c = new Cursor(info, pos);
  const v = c.uleb();
  return [v, c.pos];
}

/**
 * A debugging information entry. Attributes are kept as parallel arrays: DIEs are many and mostly small. Its
 * children are read when first asked for: Go puts every type of the program in the runtime's unit, and an
 * analysis looks at a few of them.
 */
export class Die {
  parent: Die | undefined;
  private kids: Die[] | undefined;

  constructor(
    readonly unit: DwarfUnit,
    /** Offset in .debug_info. */
    readonly offset: number,
    readonly tag: number,
    /** The abbreviation says children follow (the list may still be empty). */
    readonly hasChildren: boolean,
    readonly attrs: number[],
    readonly values: AttrValue[],
    /** Offset of its first child (just past its attributes). */
    readonly childStart: number,
  ) {}

  get children(): Die[] {
    return (this.kids ??= this.unit.childrenOf(this));
  }

  attr(at: number): AttrValue | undefined {
    const i = this.attrs.indexOf(at);
    return i < 0 ? undefined : this.values[i];
  }

  has(at: number): boolean {
    return this.attrs.includes(at);
  }

  get name(): string | undefined {
    const v = this.attr(DW_AT.name);
    return typeof v === 'string' ? v : undefined;
  }

  /** A number-valued attribute: a constant, an address, a section offset. */
  num(at: number): number | undefined {
    const v = this.attr(at);
    return typeof v === 'number' ? v : undefined;
  }

  flag(at: number): boolean {
    const v = this.attr(at);
    return v === true || (typeof v === 'number' && v !== 0);
  }

  /** The DIE a reference attribute (DW_AT_type, ...) points to; undefined when absent or not followable. */
  ref(at: number): Die | undefined {
    const v = this.attr(at);
    return typeof v === 'number' ? this.unit.dwarf.die(v) : undefined;
  }
}

export class DwarfUnit {
  private top: Die | undefined;
  /** The DIEs read so far, by offset. */
  private readonly dies = new Map<number, Die>();
  /** Bases of DWARF 5's indexed forms; set from the unit DIE (defaults: just past the tables' headers). */
  strOffsetsBase: number;
  addrBase: number;
  private basesKnown = false;

  constructor(
    readonly dwarf: DwarfData,
    /** Offset of the unit header in .debug_info. */
    readonly offset: number,
    /** Offset just past the unit. */
    readonly end: number,
    readonly version: number,
    readonly addrSize: number,
    /** 4 for 32-bit DWARF, 8 for 64-bit. */
    readonly offSize: number,
    readonly abbrevs: Map<number, Abbrev>,
    /** Offset of the unit's first DIE. */
    readonly dieStart: number,
  ) {
    this.strOffsetsBase = offSize === 8 ? 16 : 8;
    this.addrBase = offSize === 8 ? 16 : 8;
  }

  /** The unit DIE (its children are read when asked for). */
  head(): Die {
    if (!this.top) {
      if (this.dieStart >= this.end) throw new DwarfError(`unit at 0x${this.offset.toString(16)} has no DIE`);
      this.top = this.read(this.dieStart);
      this.setBases(this.top);
    }
    return this.top;
  }

  /** DW_AT_name of the unit DIE: the package path for Go ("runtime"). */
  get name(): string | undefined {
    if (this.top) return this.top.name;
    if (this.nameRead === undefined) this.nameRead = { name: this.readName() };
    return this.nameRead.name;
  }

  private nameRead: { name: string | undefined } | undefined;

  /**
   * The unit DIE's name alone when it is an inline string (as Go writes it): callers pick units by package name
   * (1,308 units in Jaeger v2), and reading each unit DIE whole cost more than the pick. Else the whole DIE.
   */
  private readName(): string | undefined {
    if (this.dieStart >= this.end) return this.head().name; // throws the head's error
    const c = new Cursor(this.dwarf.info, this.dieStart);
    const ab = this.abbrevs.get(c.uleb());
    if (!ab) return this.head().name;
    for (let i = 0; i < ab.forms.length; i++) {
      if (ab.attrs[i] === DW_AT.name) return ab.forms[i] === F.string ? c.cstring() : this.head().name;
      this.skip(c, ab.forms[i]);
    }
    return undefined;
  }

  /** The unit DIE; its descendants are read as they are walked. */
  root(): Die {
    return this.head();
  }

  /** The DIE at a .debug_info offset inside this unit (where a reference points). */
  dieAt(offset: number): Die | undefined {
    if (offset < this.dieStart || offset >= this.end) return undefined;
    this.head();
    return this.dies.get(offset) ?? this.read(offset);
  }

  /** The children of a DIE of this unit: each read, their own subtrees skipped over. */
  childrenOf(die: Die): Die[] {
    const out: Die[] = [];
    if (!die.hasChildren) return out;
    let pos = die.childStart;
    while (pos < this.end) {
      if (this.dwarf.info[pos] === 0) break; // end of the sibling list
      const child = this.dies.get(pos) ?? this.read(pos);
      child.parent = die;
      out.push(child);
      pos = child.hasChildren ? this.skipChildren(child.childStart) : child.childStart;
    }
    return out;
  }

  /**
   * The unit's top-level structs, constants, variables and subprograms by name, read once and shared by every
   * DwarfIndex over the unit (the runtime layout's and net/http's both index the runtime, where Go's linker puts
   * every type of the program: 26k named entries among 173k DIEs in Jaeger v2). Only names are read; other DIEs
   * cost a skip.
   */
  index(): UnitIndex {
    if (this.indexed) return this.indexed;
    const out: UnitIndex = { structs: new NameTable(this), constants: new Map(), variables: new Map(), subprograms: new NameTable(this) };
    const root = this.root();
    const info = this.dwarf.info;
    const plans = this.skipPlans();
    let pos = root.childStart;
    while (root.hasChildren && pos < this.end) {
      const offset = pos;
      let code = info[pos++];
      if (code >= 0x80) [code, pos] = uleb(info, offset); // Go's codes are all below 128: one byte
      if (code === 0) break; // end of the sibling list
      const plan = plans[code] ?? this.planOf(code, offset);
      if (plan[0] & PLAN_INDEXED) {
        pos = this.file(out, offset, pos, code);
        continue;
      }
      pos = plan[0] & PLAN_SLOW ? this.skipSlow(pos, code) : skipByPlan(info, pos, plan);
      if (plan[0] & PLAN_CHILDREN) pos = this.skipChildren(pos);
    }
    return (this.indexed = out);
  }

  /** Files one indexed DIE (INDEXED_TAGS) whose attributes start at pos under its name; where it ends, children and all. */
  private file(out: UnitIndex, offset: number, pos: number, code: number): number {
    const np = this.namePlans[code];
    if (!np || np.form !== F.string) return this.fileSlow(out, offset, pos, code);
    const info = this.dwarf.info;
    if (np.before.length > 1) pos = skipByPlan(info, pos, np.before); // Go's DIEs have their name first
    const tag = np.tag;
    if (tag === DW_TAG.structure_type || tag === DW_TAG.subprogram) {
      // Go puts every struct type of the program here (22k in Jaeger v2), a package's unit holds its functions, and
      // an analysis asks for a dozen of each: they are filed by the hash of their name's bytes, no string made
      // (making them cost ~40% of the runtime's index).
      const n = info.length;
      const empty = info[pos] === 0;
      let h = FNV_OFFSET;
      for (; pos < n && info[pos] !== 0; pos++) h = Math.imul(h ^ info[pos], FNV_PRIME);
      pos = skipByPlan(info, pos + 1, np.after);
      if (np.children) pos = this.skipChildren(pos);
      if (!empty) (tag === DW_TAG.structure_type ? out.structs : out.subprograms).add(h, offset);
      return pos;
    }
    const c = new Cursor(info, pos);
    const name = c.cstring();
    pos = skipByPlan(info, c.pos, np.after);
    if (np.children) pos = this.skipChildren(pos);
    if (name !== '') {
      const names = tag === DW_TAG.constant ? out.constants : out.variables;
      if (!names.has(name)) names.set(name, offset);
    }
    return pos;
  }

  /**
   * file() through the general reader: an abbreviation with a form the plans do not take, without a name, or with
   * its name elsewhere than inline (DW_FORM_strp and the like: not Go's).
   */
  private fileSlow(out: UnitIndex, offset: number, pos: number, code: number): number {
    const info = this.dwarf.info;
    const ab = this.abbrevs.get(code)!;
    const c = new Cursor(info, pos);
    const table = ab.tag === DW_TAG.structure_type ? out.structs : ab.tag === DW_TAG.subprogram ? out.subprograms : undefined;
    if (table) {
      // Go puts every struct type of the program here (22k in Jaeger v2), a package's unit holds its functions, and
      // an analysis asks for a dozen of each: they are filed by the hash of their name's bytes, no string made
      // (making them cost ~40% of the runtime's index).
      let hash: number | undefined;
      for (let i = 0; i < ab.forms.length; i++) {
        if (ab.attrs[i] !== DW_AT.name) this.skip(c, ab.forms[i]);
        else if (ab.forms[i] !== F.string) hash = nameHash(this.value(c, ab.forms[i], ab.implicit[i]));
        else if (info[c.pos] === 0) c.pos++; // an empty name
        else {
          let h = FNV_OFFSET;
          for (let b = info[c.pos]; b !== 0; b = info[++c.pos]) {
            if (b === undefined) throw new DwarfError('unterminated string');
            h = Math.imul(h ^ b, FNV_PRIME);
          }
          c.pos++;
          hash = h;
        }
      }
      if (ab.hasChildren) c.pos = this.skipChildren(c.pos);
      if (hash !== undefined) table.add(hash, offset);
      return c.pos;
    }
    let name: string | undefined;
    for (let i = 0; i < ab.forms.length; i++) {
      if (ab.attrs[i] === DW_AT.name) {
        const v = this.value(c, ab.forms[i], ab.implicit[i]);
        if (typeof v === 'string') name = v;
      } else {
        this.skip(c, ab.forms[i]);
      }
    }
    if (ab.hasChildren) c.pos = this.skipChildren(c.pos);
    if (name === undefined || name === '') return c.pos;
    const names = ab.tag === DW_TAG.constant ? out.constants : out.variables;
    if (!names.has(name)) names.set(name, offset);
    return c.pos;
  }

  private indexed: UnitIndex | undefined;

  /** Reads one DIE: its abbreviation and attribute values. */
  private read(offset: number): Die {
    const c = new Cursor(this.dwarf.info, offset);
    const code = c.uleb();
    const ab = this.abbrevs.get(code);
    if (!ab) throw new DwarfError(`DIE at 0x${offset.toString(16)}: ${code === 0 ? 'a null entry' : `unknown abbreviation ${code}`}`);
    const values: AttrValue[] = new Array(ab.attrs.length);
    for (let i = 0; i < ab.attrs.length; i++) values[i] = this.value(c, ab.forms[i], ab.implicit[i]);
    const die = new Die(this, offset, ab.tag, ab.hasChildren, ab.attrs, values, c.pos);
    this.dies.set(offset, die);
    return die;
  }

  /** Where the sibling list starting at pos ends (just past its null entry), reading no values. */
  private skipChildren(pos: number): number {
    const info = this.dwarf.info;
    const plans = this.skipPlans();
    let depth = 1;
    while (depth > 0 && pos < this.end) {
      const at = pos;
      let code = info[pos++];
      if (code >= 0x80) [code, pos] = uleb(info, at);
      if (code === 0) {
        depth--;
        continue;
      }
      const plan = plans[code] ?? this.planOf(code, at);
      pos = plan[0] & PLAN_SLOW ? this.skipSlow(pos, code) : skipByPlan(info, pos, plan);
      if (plan[0] & PLAN_CHILDREN) depth++;
    }
    return pos;
  }

  /** Skip plans by abbreviation code (see planOf), made for the whole abbreviation table at the first walk. */
  private plans: Array<Int32Array | undefined> | undefined;

  private skipPlans(): Array<Int32Array | undefined> {
    if (this.plans) return this.plans;
    this.plans = [];
    for (const code of this.abbrevs.keys()) this.planOf(code, this.dieStart);
    return this.plans;
  }

  /**
   * How to move past the attributes of a DIE of an abbreviation code: [flags (PLAN_*), then per run a byte count
   * (a run of fixed-size forms) or a SKIP_* step (one variable-size form)]. A form only the general reader knows
   * (DW_FORM_indirect) makes the plan PLAN_SLOW.
   */
  private planOf(code: number, pos: number): Int32Array {
    const ab = this.abbrevs.get(code);
    if (!ab) throw new DwarfError(`DIE at 0x${pos.toString(16)}: unknown abbreviation ${code}`);
    const plan = [(ab.hasChildren ? PLAN_CHILDREN : 0) | (INDEXED_TAGS.has(ab.tag) ? PLAN_INDEXED : 0)];
    if (!this.pushSteps(ab.forms, plan)) plan[0] |= PLAN_SLOW;
    const out = Int32Array.from(plan);
    if (code < 1 << 16) {
      (this.plans ??= [])[code] = out; // codes are small; a huge one is not worth an array slot
      if (out[0] & PLAN_INDEXED && !(out[0] & PLAN_SLOW)) this.planName(code, ab);
    }
    return out;
  }

  /**
   * Appends the steps past these forms to a plan: runs of fixed-size forms as their byte count, a variable-size
   * form as its SKIP_* step. False when a form has no step (only the general reader knows it); it is left out.
   */
  private pushSteps(forms: readonly number[], plan: number[]): boolean {
    let run = 0;
    let known = true;
    for (const form of forms) {
      const n = this.fixedSize(form);
      if (n >= 0) {
        run += n;
        continue;
      }
      if (run > 0) plan.push(run);
      run = 0;
      const step = VARIABLE_STEPS.get(form);
      if (step === undefined) known = false;
      else plan.push(step);
    }
    if (run > 0) plan.push(run);
    return known;
  }

  /** For indexed tags: plans of the attributes before and after DW_AT_name, to file a DIE by its name (file). */
  private readonly namePlans: Array<NamePlan | undefined> = [];

  private planName(code: number, ab: Abbrev): void {
    const at = ab.attrs.indexOf(DW_AT.name);
    if (at < 0) return;
    const part = (forms: number[]): Int32Array => {
      const plan = [0];
      this.pushSteps(forms, plan); // every form has a step: planOf found the plan not slow
      return Int32Array.from(plan);
    };
    this.namePlans[code] = {
      tag: ab.tag,
      children: ab.hasChildren,
      before: part(ab.forms.slice(0, at)),
      form: ab.forms[at],
      implicit: ab.implicit[at],
      after: part(ab.forms.slice(at + 1)),
    };
  }

  /** Past the attributes of a DIE at pos through the general reader (a form such as DW_FORM_indirect). */
  private skipSlow(pos: number, code: number): number {
    const ab = this.abbrevs.get(code)!;
    const c = new Cursor(this.dwarf.info, pos);
    for (const form of ab.forms) this.skip(c, form);
    return c.pos;
  }

  /**
   * Where the NUL ending an inline string at pos is. A loop here, not Buffer.indexOf: Go names every member and
   * type inline, mostly in under 20 bytes, and a call into C++ per name cost more than the scan.
   */
  private stringEnd(pos: number): number {
    const b = this.dwarf.info;
    const n = b.length;
    while (pos < n && b[pos] !== 0) pos++;
    if (pos >= n) throw new DwarfError('unterminated string');
    return pos;
  }

  /** Bytes a form takes whatever its value, or -1 when that depends on the value (LEB128, strings, blocks). */
  private fixedSize(form: number): number {
    switch (form) {
      case F.addr: return this.addrSize;
      case F.data1: case F.ref1: case F.flag: case F.strx1: case F.addrx1: return 1;
      case F.data2: case F.ref2: case F.strx2: case F.addrx2: return 2;
      case F.strx3: case F.addrx3: return 3;
      case F.data4: case F.ref4: case F.strx4: case F.addrx4: case F.ref_sup4: return 4;
      case F.data8: case F.ref8: case F.ref_sig8: case F.ref_sup8: return 8;
      case F.data16: return 16;
      case F.strp: case F.line_strp: case F.strp_sup: case F.gnu_strp_alt: case F.sec_offset: case F.gnu_ref_alt:
        return this.offSize;
      case F.ref_addr: return this.version <= 2 ? this.addrSize : this.offSize;
      case F.flag_present: case F.implicit_const: return 0;
    }
    return -1;
  }

  /** Moves past a value of the form without making it. */
  private skip(c: Cursor, form: number): void {
    switch (form) {
      case F.addr: c.pos += this.addrSize; return;
      case F.data1: case F.ref1: case F.flag: case F.strx1: case F.addrx1: c.pos += 1; return;
      case F.data2: case F.ref2: case F.strx2: case F.addrx2: c.pos += 2; return;
      case F.strx3: case F.addrx3: c.pos += 3; return;
      case F.data4: case F.ref4: case F.strx4: case F.addrx4: case F.ref_sup4: c.pos += 4; return;
      case F.data8: case F.ref8: case F.ref_sig8: case F.ref_sup8: c.pos += 8; return;
      case F.data16: c.pos += 16; return;
      case F.sdata: c.sleb(); return;
      case F.udata: case F.ref_udata: case F.strx: case F.addrx: case F.loclistx: case F.rnglistx:
      case F.gnu_addr_index: case F.gnu_str_index:
        c.uleb();
        return;
      case F.string:
        c.pos = this.stringEnd(c.pos) + 1;
        return;
      case F.strp: case F.line_strp: case F.strp_sup: case F.gnu_strp_alt: case F.sec_offset: case F.gnu_ref_alt:
        c.pos += this.offSize;
        return;
      case F.ref_addr: c.pos += this.version <= 2 ? this.addrSize : this.offSize; return;
      // The length first: `c.pos += c.u8()` would add to the position from before the length was read.
      case F.block1: { const n = c.u8(); c.pos += n; return; }
      case F.block2: { const n = c.u16(); c.pos += n; return; }
      case F.block4: { const n = c.u32(); c.pos += n; return; }
      case F.block: case F.exprloc: { const n = c.uleb(); c.pos += n; return; }
      case F.flag_present: case F.implicit_const: return;
      case F.indirect: this.skip(c, c.uleb()); return;
    }
    throw new DwarfError(`unit at 0x${this.offset.toString(16)}: unknown attribute form 0x${form.toString(16)}`);
  }

  // The unit DIE's own strx/addrx attributes may come before the bases it names: resolve them afterwards.
  private setBases(die: Die): void {
    const so = die.num(DW_AT.str_offsets_base);
    if (so !== undefined) this.strOffsetsBase = so;
    const ab = die.num(DW_AT.addr_base);
    if (ab !== undefined) this.addrBase = ab;
    this.basesKnown = true;
    for (let i = 0; i < die.values.length; i++) {
      const v: unknown = die.values[i];
      if (v instanceof Deferred) die.values[i] = v.kind === 'str' ? this.strx(v.index) : this.addrx(v.index);
    }
  }

  private value(c: Cursor, form: number, implicit: number): AttrValue {
    switch (form) {
      case F.addr: return this.addrSize === 8 ? c.u64() : c.uN(this.addrSize);
      case F.data1: case F.ref1: case F.flag: case F.strx1: case F.addrx1:
        return this.finish(form, c.u8());
      case F.data2: case F.ref2: case F.strx2: case F.addrx2:
        return this.finish(form, c.u16());
      case F.strx3: case F.addrx3: return this.finish(form, c.u24());
      case F.data4: case F.ref4: case F.strx4: case F.addrx4:
        return this.finish(form, c.u32());
      case F.data8: case F.ref8: return this.finish(form, c.u64());
      // References this reader does not follow (type units, supplementary files) are bigints, which ref() ignores.
      case F.ref_sig8: case F.ref_sup8: return BigInt(c.u64());
      case F.ref_sup4: return BigInt(c.u32());
      case F.gnu_ref_alt: return BigInt(c.uN(this.offSize));
      case F.data16: return c.block(16);
      case F.sdata: return c.sleb();
      case F.udata: case F.ref_udata: case F.strx: case F.addrx: case F.loclistx: case F.rnglistx:
      case F.gnu_addr_index: case F.gnu_str_index:
        return this.finish(form, c.uleb());
      case F.string: return c.cstring();
      case F.strp: return this.dwarf.string('str', c.uN(this.offSize));
      case F.line_strp: return this.dwarf.string('line_str', c.uN(this.offSize));
      case F.strp_sup: case F.gnu_strp_alt: case F.sec_offset:
        return c.uN(this.offSize); // strings in a supplementary file are not read
      case F.ref_addr: return this.version <= 2 ? c.uN(this.addrSize) : c.uN(this.offSize);
      case F.block1: return c.block(c.u8());
      case F.block2: return c.block(c.u16());
      case F.block4: return c.block(c.u32());
      case F.block: case F.exprloc: return c.block(c.uleb());
      case F.flag_present: return true;
      case F.implicit_const: return implicit;
      case F.indirect: return this.value(c, c.uleb(), 0);
    }
    throw new DwarfError(`unit at 0x${this.offset.toString(16)}: unknown attribute form 0x${form.toString(16)}`);
  }

  /** Turns a raw integer into what the form means: CU-relative references become absolute, indices strings. */
  private finish(form: number, v: number | bigint): AttrValue {
    switch (form) {
      case F.flag: return v !== 0;
      case F.ref1: case F.ref2: case F.ref4: case F.ref8: case F.ref_udata:
        return this.offset + Number(v);
      case F.strx: case F.strx1: case F.strx2: case F.strx3: case F.strx4: case F.gnu_str_index:
        return this.basesKnown ? this.strx(Number(v)) : (new Deferred('str', Number(v)) as unknown as AttrValue);
      case F.addrx: case F.addrx1: case F.addrx2: case F.addrx3: case F.addrx4: case F.gnu_addr_index:
        return this.basesKnown ? this.addrx(Number(v)) : (new Deferred('addr', Number(v)) as unknown as AttrValue);
    }
    return v;
  }

  strx(index: number): string {
    const so = this.dwarf.section('str_offsets');
    if (!so) throw new DwarfError('DW_FORM_strx without .debug_str_offsets');
    const c = new Cursor(so, this.strOffsetsBase + index * this.offSize);
    return this.dwarf.string('str', c.uN(this.offSize));
  }

  /** An address from .debug_addr (DW_FORM_addrx, DW_OP_addrx). */
  addrx(index: number): number {
    const a = this.dwarf.section('addr');
    if (!a) throw new DwarfError('DW_FORM_addrx without .debug_addr');
    return new Cursor(a, this.addrBase + index * this.addrSize).uN(this.addrSize);
  }
}

/** An indexed string or address in the unit DIE, read before the base it is relative to. */
class Deferred {
  constructor(readonly kind: 'str' | 'addr', readonly index: number) {}
}

const recentDwarf = new WeakMap<ElfFile, WeakRef<DwarfData>>();

export class DwarfData {
  readonly units: DwarfUnit[] = [];
  private readonly extra = new Map<string, Buffer | undefined>();
  private readonly abbrevTables = new Map<number, Map<number, Abbrev>>();

  private constructor(readonly elf: ElfFile, readonly info: Buffer, readonly abbrev: Buffer) {
    const c = new Cursor(info, 0);
    while (c.pos + 11 <= info.length) {
      const offset = c.pos;
      let len = c.u32();
      let offSize = 4;
      if (len === 0xffffffff) {
        len = c.uN(8);
        offSize = 8;
      } else if (len >= 0xfffffff0) {
        throw new DwarfError(`unit at 0x${offset.toString(16)}: reserved length 0x${len.toString(16)}`);
      }
      const end = c.pos + len;
      if (end > info.length) throw new DwarfError(`unit at 0x${offset.toString(16)} runs past the end of .debug_info`);
      const version = c.u16();
      if (version < 2 || version > 5) throw new DwarfError(`unit at 0x${offset.toString(16)}: DWARF version ${version}`);
      let addrSize: number;
      let abbrevOff: number;
      if (version >= 5) {
        const unitType = c.u8();
        addrSize = c.u8();
        abbrevOff = c.uN(offSize);
        // DW_UT_skeleton/split_compile carry a dwo_id, DW_UT_type/split_type a signature and a type offset.
        if (unitType === 4 || unitType === 5) c.pos += 8;
        else if (unitType === 2 || unitType === 6) c.pos += 8 + offSize;
      } else {
        abbrevOff = c.uN(offSize);
        addrSize = c.u8();
      }
      this.units.push(new DwarfUnit(this, offset, end, version, addrSize, offSize, this.abbrevTable(abbrevOff), c.pos));
      c.pos = end;
    }
  }

  /**
   * DWARF of an ELF file; undefined when it has none (stripped with -s or -w). While anything holds the answer
   * it is shared: an attach reads the runtime's layout and net/http's one after the other from the same
   * decompressed sections and the same index of the runtime's unit (Go puts every type there); a weak reference
   * keeps none of it past that.
   */
  static fromElf(elf: ElfFile): DwarfData | undefined {
    const had = recentDwarf.get(elf)?.deref();
    if (had) return had;
    const info = debugSection(elf, 'info');
    if (!info || info.length === 0) return undefined;
    const abbrev = debugSection(elf, 'abbrev');
    if (!abbrev) throw new DwarfError('.debug_info without .debug_abbrev');
    const d = new DwarfData(elf, info, abbrev);
    recentDwarf.set(elf, new WeakRef(d));
    return d;
  }

  /** Another .debug_* section (str, str_offsets, line_str, addr), decompressed once. */
  section(name: string): Buffer | undefined {
    if (!this.extra.has(name)) this.extra.set(name, debugSection(this.elf, name));
    return this.extra.get(name);
  }

  string(section: 'str' | 'line_str', offset: number): string {
    const s = this.section(section);
    if (!s || offset >= s.length) throw new DwarfError(`string at 0x${offset.toString(16)} is outside .debug_${section}`);
    return new Cursor(s, offset).cstring();
  }

  /** The unit holding a .debug_info offset. */
  unitAt(offset: number): DwarfUnit | undefined {
    let lo = 0;
    let hi = this.units.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const u = this.units[mid];
      if (offset < u.offset) hi = mid - 1;
      else if (offset >= u.end) lo = mid + 1;
      else return u;
    }
    return undefined;
  }

  /** The DIE at a .debug_info offset (what references hold); parses its unit if that was not done yet. */
  die(offset: number): Die | undefined {
    return this.unitAt(offset)?.dieAt(offset);
  }

  private abbrevTable(offset: number): Map<number, Abbrev> {
    let t = this.abbrevTables.get(offset);
    if (t) return t;
    t = new Map();
    const c = new Cursor(this.abbrev, offset);
    for (;;) {
      const code = c.uleb();
      if (code === 0) break;
      const ab: Abbrev = { tag: c.uleb(), hasChildren: c.u8() !== 0, attrs: [], forms: [], implicit: [] };
      for (;;) {
        const at = c.uleb();
        const form = c.uleb();
        if (at === 0 && form === 0) break;
        ab.attrs.push(at);
        ab.forms.push(form);
        ab.implicit.push(form === F.implicit_const ? c.sleb() : 0);
      }
      t.set(code, ab);
    }
    this.abbrevTables.set(offset, t);
    return t;
  }
}

// ---------------------------------------------------------------------------------------------------
// Types. Names and sizes follow Go's debug/dwarf (Type.Common().Name, Size()), which made runtime-layouts.json.

const QUALIFIERS: Record<number, string> = { [DW_TAG.const_type]: 'const', [DW_TAG.volatile_type]: 'volatile', [DW_TAG.restrict_type]: 'restrict' };

/** Follows typedefs (and const/volatile/restrict) to the underlying type; undefined for void. */
export function stripTypedefs(t: Die | undefined): Die | undefined {
  for (let i = 0; t && i < 100; i++) {
    if (t.tag !== DW_TAG.typedef && !(t.tag in QUALIFIERS)) return t;
    t = t.ref(DW_AT.type);
  }
  return t;
}

/**
 * A type's name as the generator's typeName (over debug/dwarf) gives it: the DIE's own name for named kinds (base
 * types, typedefs: Go's named types are typedefs), "*T" for pointers (one without a target is "unsafe.Pointer"),
 * and the type spelled out for the rest ("struct string", "[4]uint8").
 */
export function typeName(t: Die | undefined): string {
  if (!t) return 'void';
  if (!UNNAMED_KINDS.has(t.tag)) {
    const n = t.name;
    if (n) return n;
  }
  if (t.tag === DW_TAG.pointer_type) {
    const to = t.ref(DW_AT.type);
    return to ? `*${typeName(to)}` : 'unsafe.Pointer';
  }
  return typeString(t);
}

// Kinds whose debug/dwarf Type leaves Common().Name empty (their name, if any, is StructName, EnumName...).
const UNNAMED_KINDS = new Set<number>([
  DW_TAG.array_type, DW_TAG.class_type, DW_TAG.structure_type, DW_TAG.union_type, DW_TAG.enumeration_type,
  DW_TAG.pointer_type, DW_TAG.subroutine_type, DW_TAG.const_type, DW_TAG.volatile_type, DW_TAG.restrict_type,
]);

/** debug/dwarf's Type.String(). */
function typeString(t: Die | undefined, depth = 0): string {
  if (!t) return 'void';
  if (depth > 20) return '...';
  const inner = (): string => typeString(t.ref(DW_AT.type), depth + 1);
  switch (t.tag) {
    case DW_TAG.pointer_type: return `*${inner()}`;
    case DW_TAG.array_type: return `[${arrayCount(t)}]${inner()}`;
    case DW_TAG.structure_type: case DW_TAG.class_type: case DW_TAG.union_type: {
      const kind = t.tag === DW_TAG.structure_type ? 'struct' : t.tag === DW_TAG.union_type ? 'union' : 'class';
      if (t.name) return `${kind} ${t.name}`;
      const fields = structMembers(t).map((m) => `${m.name} ${typeString(m.type, depth + 1)}@${m.offset}`);
      return `${kind} {${fields.join('; ')}}`;
    }
    case DW_TAG.enumeration_type: return t.name ? `enum ${t.name}` : 'enum';
    case DW_TAG.subroutine_type: {
      const params = t.children.filter((c) => c.tag === DW_TAG.formal_parameter || c.tag === DW_TAG.unspecified_parameters)
        .map((c) => (c.tag === DW_TAG.formal_parameter ? typeString(c.ref(DW_AT.type), depth + 1) : '...'));
      return `func(${params.join(', ')})${t.has(DW_AT.type) ? ` ${inner()}` : ''}`;
    }
  }
  if (t.tag in QUALIFIERS) return `${QUALIFIERS[t.tag]} ${inner()}`;
  return t.name ?? '?';
}

/** Elements of an array type (its first dimension); -1 when unknown. */
export function arrayCount(t: Die): number {
  const sub = t.children.find((c) => c.tag === DW_TAG.subrange_type);
  const count = sub?.num(DW_AT.count);
  if (count !== undefined) return count;
  const ub = sub?.num(DW_AT.upper_bound);
  return ub !== undefined ? ub + 1 : -1;
}

/** A type's size in bytes as debug/dwarf reports it: DW_AT_byte_size, else derived; -1 when unknown. */
export function typeSize(t: Die | undefined, addrSize = 8): number {
  for (let i = 0; t && i < 100; i++) {
    if (t.tag === DW_TAG.array_type) {
      const n = arrayCount(t);
      return n < 0 ? 0 : n * typeSize(t.ref(DW_AT.type), addrSize);
    }
    if (t.tag in QUALIFIERS) {
      t = t.ref(DW_AT.type);
      continue;
    }
    const b = t.num(DW_AT.byte_size);
    if (b !== undefined) return b;
    if (t.tag === DW_TAG.pointer_type) return addrSize;
    if (t.tag !== DW_TAG.typedef) return -1;
    t = t.ref(DW_AT.type);
  }
  return -1;
}

export interface Member {
  name: string;
  /** Byte offset from the start of the struct. */
  offset: number;
  type: Die | undefined;
}

/**
 * structMembers' answers: a layout asks for the members of runtime.g once per field it reads (~40), and the
 * agent has no use for the function being hot (V8 would optimise it, inlining all the DIE reading under it).
 */
const membersOf = new WeakMap<Die, readonly Member[]>();

/** The data members of a struct, in order. */
export function structMembers(t: Die): readonly Member[] {
  let out = membersOf.get(t);
  if (!out) membersOf.set(t, (out = readMembers(t)));
  return out;
}

function readMembers(t: Die): Member[] {
  const out: Member[] = [];
  for (const c of t.children) {
    if (c.tag !== DW_TAG.member) continue;
    let offset = 0;
    const loc = c.attr(DW_AT.data_member_location);
    if (typeof loc === 'number') offset = loc;
    else if (loc instanceof Block) {
      // The DWARF 2 form: an expression, DW_OP_plus_uconst N.
      const cur = new Cursor(loc.buf, loc.start);
      if (cur.u8() !== DW_OP_plus_uconst) throw new DwarfError(`member ${c.name} at 0x${c.offset.toString(16)}: unexpected location expression`);
      offset = cur.uleb();
    }
    out.push({ name: c.name ?? '', offset, type: c.ref(DW_AT.type) });
  }
  return out;
}

/** The static address in a DW_AT_location that is just DW_OP_addr (or DW_OP_addrx); undefined otherwise. */
export function staticAddress(d: Die): number | undefined {
  const loc = d.attr(DW_AT.location);
  if (!(loc instanceof Block) || loc.length === 0) return undefined;
  const c = new Cursor(loc.buf, loc.start);
  const op = c.u8();
  let addr: number;
  if (op === DW_OP_addr) addr = c.uN(d.unit.addrSize);
  else if (op === DW_OP_addrx || op === DW_OP_GNU_addr_index) addr = d.unit.addrx(c.uleb());
  else return undefined;
  return c.pos === loc.end ? addr : undefined;
}

// ---------------------------------------------------------------------------------------------------
// An index of the top-level entries of some units (Go puts types, constants, variables and functions there).

export interface Subprogram {
  /** The first DIE with this name that has children (for an inlinable function, the abstract one). */
  die: Die | undefined;
  /** Some DIE with this name has DW_AT_inline: the compiler may inline the function. */
  inline: boolean;
}

export interface FormalParameter {
  name: string;
  type: Die | undefined;
  /** DW_AT_variable_parameter: in Go's DWARF, a result rather than a parameter. */
  result: boolean;
}

/** A unit's top-level named entries: .debug_info offsets by name (see DwarfUnit.index). */
export interface UnitIndex {
  /** Struct types by name (the first of a name). */
  structs: NameTable;
  constants: Map<string, number>;
  variables: Map<string, number>;
  /** Functions by name (every DIE of a name: an inlinable function has an abstract one and concrete ones). */
  subprograms: NameTable;
}

const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a (32 bits) of a name's UTF-8 bytes, as the index hashes them where they lie in .debug_info. */
function nameHash(name: AttrValue): number | undefined {
  if (typeof name !== 'string' || name === '') return undefined;
  let h = FNV_OFFSET;
  for (const b of Buffer.from(name)) h = Math.imul(h ^ b, FNV_PRIME);
  return h;
}

/**
 * DIEs of a unit by the hash of their names: filed without making a string of each name, then looked up by
 * reading the DIEs whose hash matches. Of DIEs with one name, the first filed is found.
 */
export class NameTable {
  /** Hash and DIE offset of each DIE filed, in order; the table is made from them at the first lookup. */
  private filed: number[] = [];
  private table: { slots: Int32Array; hashes: Int32Array } | undefined;

  constructor(private readonly unit: DwarfUnit) {}

  add(hash: number, offset: number): void {
    this.filed.push(hash, offset);
  }

  /** The first DIE filed under this name. */
  get(name: string): Die | undefined {
    return this.find(name, true)[0];
  }

  /** Every DIE filed under this name, in the order filed. */
  all(name: string): Die[] {
    return this.find(name, false);
  }

  private find(name: string, firstOnly: boolean): Die[] {
    const out: Die[] = [];
    const hash = nameHash(name);
    if (hash === undefined) return out;
    const { slots, hashes } = (this.table ??= this.build());
    const mask = slots.length - 1;
    // Open addressing with linear probing and no removal: DIEs of one name lie along the probe sequence in the order
    // they were filed.
    for (let slot = hash & mask; slots[slot] !== 0; slot = (slot + 1) & mask) {
      if (hashes[slot] !== hash) continue;
      const die = this.unit.dieAt(slots[slot] - 1);
      if (die?.name !== name) continue;
      out.push(die);
      if (firstOnly) break;
    }
    return out;
  }

  private build(): { slots: Int32Array; hashes: Int32Array } {
    const n = this.filed.length / 2;
    let size = 16;
    while (size < n * 2) size *= 2;
    const slots = new Int32Array(size);
    const hashes = new Int32Array(size);
    const mask = size - 1;
    for (let i = 0; i < this.filed.length; i += 2) {
      const hash = this.filed[i];
      let slot = hash & mask;
      while (slots[slot] !== 0) slot = (slot + 1) & mask;
      slots[slot] = this.filed[i + 1] + 1;
      hashes[slot] = hash;
    }
    this.filed = [];
    return { slots, hashes };
  }
}

const INDEXED_TAGS = new Set<number>([DW_TAG.structure_type, DW_TAG.constant, DW_TAG.variable, DW_TAG.subprogram]);

/** The top-level entries of some units by name; where a name is in several, the first unit given has it. */
export class DwarfIndex {
  private readonly units: DwarfUnit[];

  /** Indexes the top-level DIEs of the units given (each DIE is read when looked up). */
  constructor(units: Iterable<DwarfUnit>) {
    this.units = [...units];
    for (const u of this.units) u.index();
  }

  private first(kind: 'constants' | 'variables', name: string): Die | undefined {
    for (const u of this.units) {
      const offset = u.index()[kind].get(name);
      if (offset !== undefined) return u.dieAt(offset);
    }
    return undefined;
  }

  /** A struct type by its DWARF name, e.g. "runtime.g" (the struct itself, not the typedef of the same name). */
  struct(name: string): Die | undefined {
    for (const u of this.units) {
      const die = u.index().structs.get(name);
      if (die) return die;
    }
    return undefined;
  }

  /** A variable by name, e.g. "runtime.waitReasonStrings". */
  variable(name: string): Die | undefined {
    return this.first('variables', name);
  }

  subprogram(name: string): Subprogram | undefined {
    let found = false;
    let die: Die | undefined;
    let inline = false;
    for (const u of this.units) {
      for (const d of u.index().subprograms.all(name)) {
        found = true;
        if (d.has(DW_AT.inline)) inline = true;
        if (!die && d.hasChildren) die = d; // as debug/dwarf's Entry.Children: declared, maybe empty
      }
    }
    return found ? { die, inline } : undefined;
  }

  /** Integer constants (DW_TAG_constant with a numeric DW_AT_const_value), filtered by name. */
  *intConstants(filter: (name: string) => boolean = () => true): Generator<{ name: string; value: number; type: Die | undefined }> {
    const seen = new Set<string>();
    for (const u of this.units) {
      for (const [name, offset] of u.index().constants) {
        if (seen.has(name)) continue;
        seen.add(name);
        if (!filter(name)) continue;
        const d = u.dieAt(offset)!;
        const v = d.attr(DW_AT.const_value);
        if (typeof v === 'number') yield { name, value: v, type: d.ref(DW_AT.type) };
      }
    }
  }

  /** The formal parameters of a subprogram DIE, in order (only its direct children). */
  static parameters(fn: Die): FormalParameter[] {
    return fn.children
      .filter((c) => c.tag === DW_TAG.formal_parameter)
      .map((c) => ({ name: c.name ?? '', type: c.ref(DW_AT.type), result: c.flag(DW_AT.variable_parameter) }));
  }
}
