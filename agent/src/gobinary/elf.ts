// Minimal ELF64 little-endian reader: just what Go binary analysis and uprobes need.
// The file is not held in memory: headers are read at open, and every other read (a section, a function's code,
// a word of data) is a read of the file at that offset into a buffer of its own size, so what a caller keeps is
// only what it asked for (the pclntab, say), and what it reads to analyse (DWARF, code) goes when it is done.
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

export const PT_LOAD = 1;
export const PT_DYNAMIC = 2;
export const ET_EXEC = 2;
export const ET_DYN = 3;
export const SHT_NOBITS = 8;
export const SHT_SYMTAB = 2;
export const SHT_RELA = 4;
export const R_X86_64_RELATIVE = 8;

export interface SectionHeader {
  name: string;
  type: number;
  flags: number;
  addr: number;
  offset: number;
  size: number;
  link: number;
  entsize: number;
}

export interface ProgramHeader {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  filesz: number;
  memsz: number;
}

export interface ElfSymbol {
  name: string;
  value: number;
  size: number;
  /** STT_* (low 4 bits of st_info). */
  type: number;
}

/** The file is not an ELF64 little-endian file; `reason` says why in a few words. */
export class ElfFormatError extends Error {
  constructor(readonly path: string, readonly reason: string) {
    super(`${path}: ${reason}`);
    this.name = 'ElfFormatError';
  }
}

/** Where an ElfFile's bytes come from: the file (read when asked) or bytes already in memory (a test's edited copy). */
interface Bytes {
  readonly size: number;
  /** length bytes at offset; the caller may keep them (they are not a view of anything larger it did not ask for). */
  read(offset: number, length: number): Buffer;
  close(): void;
}

/** Reads of at most SMALL_READ bytes go through CACHED_PAGES pages of PAGE bytes (256 KiB a binary). */
const SMALL_READ = 1024;
const PAGE = 4096;
const CACHED_PAGES = 64;

/** Files of ElfFiles dropped without close() (a command's or a test's binary) are closed when they are collected. */
const unclosed = new FinalizationRegistry<number>((fd) => {
  try {
    closeSync(fd);
  } catch {
    /* already closed */
  }
});

class FileBytes implements Bytes {
  private fd: number | undefined;
  readonly size: number;

  constructor(private readonly path: string, fd: number) {
    this.size = fstatSync(fd).size;
    this.fd = fd;
    unclosed.register(this, fd, this);
  }

  read(offset: number, length: number): Buffer {
    if (length > SMALL_READ) return this.readFile(offset, length);
    // Small reads (a word of data, an inline-tree entry, a function's argument map) come back to the same few
    // places: they go through a few cached pages.
    const first = Math.floor(offset / PAGE);
    const last = Math.floor((offset + length - 1) / PAGE);
    const out = Buffer.allocUnsafe(length);
    for (let p = first, at = 0; p <= last && at < length; p++) {
      const page = this.page(p);
      const from = Math.max(offset, p * PAGE) - p * PAGE;
      at += page.copy(out, at, from, Math.min(page.length, from + length - at));
    }
    return out;
  }

  private readonly pages = new Map<number, Buffer>();

  private page(index: number): Buffer {
    let page = this.pages.get(index);
    if (page) {
      this.pages.delete(index);
    } else {
      page = this.readFile(index * PAGE, Math.min(PAGE, this.size - index * PAGE));
      if (this.pages.size >= CACHED_PAGES) this.pages.delete(this.pages.keys().next().value!);
    }
    this.pages.set(index, page);
    return page;
  }

  private readFile(offset: number, length: number): Buffer {
    if (this.fd === undefined) throw new Error(`${this.path}: read after the binary was released`);
    // Pooled buffers are slices of a shared 8 KiB slab: a kept one would hold the slab, so big ones get their own.
    const b = length >= 4096 ? Buffer.allocUnsafeSlow(length) : Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = readSync(this.fd, b, got, length - got, offset + got);
      if (n === 0) throw new Error(`${this.path}: ${offset}+${length} is past the end of the file`);
      got += n;
    }
    return b;
  }

  close(): void {
    if (this.fd === undefined) return;
    unclosed.unregister(this);
    closeSync(this.fd);
    this.fd = undefined;
    this.pages.clear();
  }
}

class MemoryBytes implements Bytes {
  constructor(private readonly data: Buffer) {}

  get size(): number {
    return this.data.length;
  }

  read(offset: number, length: number): Buffer {
    return this.data.subarray(offset, offset + length);
  }

  close(): void {}
}

/** Symbols kept by name once the table is read: the runtime's (what analysis asks for); others are looked up by a pass. */
const KEPT_SYMBOL_PREFIX = Buffer.from('runtime.');
const KEPT_SYMBOLS = new Set(['go:func.*', 'go.func.*']);
/** The kept names with their NUL, to match in .strtab before a string is made. */
const KEPT_SYMBOL_NAMES = [...KEPT_SYMBOLS].map((n) => Buffer.from(`${n}\0`));
const isKeptSymbol = (name: string): boolean => name.startsWith('runtime.') || KEPT_SYMBOLS.has(name);
/** Bytes a pattern search reads at once. */
const SCAN_CHUNK = 4 << 20;

export class ElfFile {
  readonly type: number;
  readonly machine: number;
  readonly entry: number;
  readonly sections: SectionHeader[];
  readonly programs: ProgramHeader[];
  /** The runtime's symbols, and every other name asked for (undefined: absent). */
  private symbols?: Map<string, ElfSymbol | undefined>;

  private constructor(readonly path: string, private readonly bytes: Bytes) {
    if (bytes.size < 64) throw new ElfFormatError(path, 'not an ELF file');
    const d = bytes.read(0, 64);
    if (d.readUInt32BE(0) !== 0x7f454c46) throw new ElfFormatError(path, 'not an ELF file');
    if (d[4] !== 2) throw new ElfFormatError(path, '32-bit ELF; only 64-bit is supported');
    if (d[5] !== 1) throw new ElfFormatError(path, 'big-endian ELF; only little-endian is supported');
    this.type = d.readUInt16LE(16);
    this.machine = d.readUInt16LE(18);
    this.entry = u64(d, 24);
    this.programs = this.readPrograms(u64(d, 32), d.readUInt16LE(54), d.readUInt16LE(56));
    this.sections = this.readSections(u64(d, 40), d.readUInt16LE(58), d.readUInt16LE(60), d.readUInt16LE(62));
  }

  /** Opens the file and reads its headers; the file stays open for later reads until close(). */
  static open(path: string): ElfFile {
    return ElfFile.fromFd(path, openSync(path, 'r'));
  }

  /** An ElfFile over an open file, which it takes over (closed by close(), or now when it is not ELF). */
  static fromFd(path: string, fd: number): ElfFile {
    try {
      return new ElfFile(path, new FileBytes(path, fd));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** Wraps bytes already in memory (e.g. a test's edited copy). */
  static fromBuffer(path: string, data: Buffer): ElfFile {
    return new ElfFile(path, new MemoryBytes(data));
  }

  /** Lets go of the file: later reads throw. */
  close(): void {
    this.bytes.close();
  }

  /** The file's size in bytes. */
  get size(): number {
    return this.bytes.size;
  }

  /** length bytes at a file offset; throws when they are not all in the file. */
  readAt(offset: number, length: number): Buffer {
    if (offset < 0 || length < 0 || offset + length > this.bytes.size) {
      throw new Error(`${this.path}: ${offset}+${length} is outside the file (${this.bytes.size} bytes)`);
    }
    return this.bytes.read(offset, length);
  }

  /**
   * File offsets where needle occurs in [from, to), at multiples of align, first to last; the range is read a few
   * MiB at a time.
   */
  *find(needle: Buffer, from = 0, to = this.bytes.size, align = 1): Generator<number> {
    to = Math.min(to, this.bytes.size);
    for (let start = from; start + needle.length <= to; start += SCAN_CHUNK) {
      const end = Math.min(to, start + SCAN_CHUNK + needle.length - 1);
      const chunk = this.readAt(start, end - start);
      for (let i = chunk.indexOf(needle); i >= 0 && i < SCAN_CHUNK; i = chunk.indexOf(needle, i + 1)) {
        if ((start + i) % align === 0) yield start + i;
      }
    }
  }

  /** Position-independent executables (and shared objects) are ET_DYN: loaded at a random base. */
  get isPIE(): boolean {
    return this.type === ET_DYN;
  }

  section(name: string): SectionHeader | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** A section's bytes in the file (empty for NOBITS such as .bss), read now. */
  sectionData(s: SectionHeader): Buffer {
    if (s.type === SHT_NOBITS) return Buffer.alloc(0);
    return this.readAt(s.offset, s.size);
  }

  /** The PT_LOAD segment whose file-backed part holds vaddr. */
  loadSegment(vaddr: number): ProgramHeader | undefined {
    return this.programs.find((p) => p.type === PT_LOAD && vaddr >= p.vaddr && vaddr < p.vaddr + p.filesz);
  }

  /**
   * File offset of a virtual address, as uprobes want it. Goes through PT_LOAD segments (not sections), so it is
   * right whatever the linker did with section addresses; undefined when the address is not backed by the file.
   */
  vaddrToFileOffset(vaddr: number): number | undefined {
    const p = this.loadSegment(vaddr);
    return p ? p.offset + (vaddr - p.vaddr) : undefined;
  }

  /** Inverse of vaddrToFileOffset. */
  fileOffsetToVaddr(off: number): number | undefined {
    const p = this.programs.find((q) => q.type === PT_LOAD && off >= q.offset && off < q.offset + q.filesz);
    return p ? p.vaddr + (off - p.offset) : undefined;
  }

  /** len bytes at vaddr, read from the file; throws if they are not all file-backed in one segment. */
  read(vaddr: number, len: number): Buffer {
    if (len === 0) return Buffer.alloc(0);
    const p = this.loadSegment(vaddr);
    if (!p || vaddr + len > p.vaddr + p.filesz) {
      throw new Error(`${this.path}: 0x${vaddr.toString(16)}+${len} is not in the file's loaded segments`);
    }
    return this.readAt(p.offset + (vaddr - p.vaddr), len);
  }

  /**
   * A .symtab symbol by name; undefined when absent or when the binary is stripped. The first call reads the
   * table and keeps the runtime's symbols (what analysis asks for: a few thousand of a Go binary's 100k+); a name
   * outside them costs a pass over the table, once.
   */
  symbol(name: string): ElfSymbol | undefined {
    if (!this.symbols) this.symbols = this.readSymbols();
    if (!this.symbols.has(name) && !isKeptSymbol(name)) this.symbols.set(name, this.readSymbols(name).get(name));
    return this.symbols.get(name);
  }

  get hasSymtab(): boolean {
    return this.sections.some((s) => s.type === SHT_SYMTAB);
  }

  /** R_X86_64_RELATIVE relocations (offset -> addend): in PIE files the pointers they patch may read as 0 in the file. */
  *relativeRelocations(): Generator<{ offset: number; addend: number }> {
    for (const s of this.sections) {
      if (s.type !== SHT_RELA || s.entsize !== 24) continue;
      const d = this.sectionData(s);
      for (let i = 0; i + 24 <= d.length; i += 24) {
        if (d.readUInt32LE(i + 8) !== R_X86_64_RELATIVE) continue;
        yield { offset: u64(d, i), addend: u64(d, i + 16) };
      }
    }
  }

  private readPrograms(off: number, entsize: number, count: number): ProgramHeader[] {
    const out: ProgramHeader[] = [];
    if (off === 0 || entsize < 56) return out;
    count = Math.min(count, Math.floor((this.bytes.size - off) / entsize));
    if (count <= 0) return out;
    const d = this.readAt(off, count * entsize);
    for (let i = 0; i < count; i++) {
      const b = i * entsize;
      out.push({
        type: d.readUInt32LE(b),
        flags: d.readUInt32LE(b + 4),
        offset: u64(d, b + 8),
        vaddr: u64(d, b + 16),
        filesz: u64(d, b + 32),
        memsz: u64(d, b + 40),
      });
    }
    return out;
  }

  // Section headers may be missing (sstrip and the like): then this is just empty.
  private readSections(off: number, entsize: number, count: number, strndx: number): SectionHeader[] {
    if (off === 0 || entsize < 64 || count === 0 || off + count * entsize > this.bytes.size) return [];
    const d = this.readAt(off, count * entsize);
    const raw: Array<SectionHeader & { nameOff: number }> = [];
    for (let i = 0; i < count; i++) {
      const b = i * entsize;
      raw.push({
        nameOff: d.readUInt32LE(b),
        name: '',
        type: d.readUInt32LE(b + 4),
        flags: Number(d.readBigUInt64LE(b + 8)),
        addr: u64(d, b + 16),
        offset: u64(d, b + 24),
        size: u64(d, b + 32),
        link: d.readUInt32LE(b + 40),
        entsize: u64(d, b + 56),
      });
    }
    const strtab = raw[strndx];
    if (strtab && strtab.type !== SHT_NOBITS && strtab.offset + strtab.size <= this.bytes.size) {
      const names = this.readAt(strtab.offset, strtab.size);
      for (const s of raw) s.name = cstring(names, s.nameOff);
    }
    return raw.map(({ nameOff: _n, ...s }) => s);
  }

  /** One pass over .symtab: the runtime's symbols, or (only) the one named. */
  private readSymbols(only?: string): Map<string, ElfSymbol | undefined> {
    const map = new Map<string, ElfSymbol | undefined>();
    const symtab = this.sections.find((s) => s.type === SHT_SYMTAB);
    const strtab = symtab && this.sections[symtab.link];
    if (!symtab || !strtab) return map;
    const d = this.sectionData(symtab);
    const names = this.sectionData(strtab);
    const want = only === undefined ? undefined : Buffer.from(`${only}\0`);
    for (const i of want ? [...entriesNamed(d, names, want)] : keptCandidates(d, names)) {
      const off = d.readUInt32LE(i);
      if (!want && !startsWith(names, off, KEPT_SYMBOL_PREFIX) && !KEPT_SYMBOL_NAMES.some((k) => startsWith(names, off, k))) continue;
      const name = cstring(names, off);
      if (map.has(name)) continue;
      map.set(name, { name, type: d[i + 4] & 0xf, value: u64(d, i + 8), size: u64(d, i + 16) });
      if (want) break;
    }
    return map;
  }
}

/**
 * Offsets in .symtab of the entries whose name may be a kept one: it starts with r (runtime.), or with g and has
 * an f fourth (go:func.*, go.func.*). Most of a big program's names ("github.com/...", "go:itab...", "type:...")
 * are passed over on a byte or two with no string made (Jaeger v2: 136k entries, ~2k kept). A loop this small is
 * optimised early and cheaply in a first attach; the full tests are for the few it finds.
 */
function keptCandidates(d: Buffer, names: Buffer): number[] {
  const out: number[] = [];
  const n = Math.floor(d.length / 24);
  // st_name through a word view when the table is 4-aligned (it is: a buffer of its own).
  const words = d.byteOffset % 4 === 0 ? new Uint32Array(d.buffer, d.byteOffset, d.length >>> 2) : undefined;
  for (let k = 1; k < n; k++) {
    const off = words ? words[k * 6] : d.readUInt32LE(k * 24);
    const c = names[off];
    if (c === 0x72 /* r */ || (c === 0x67 /* g */ && names[off + 3] === 0x66 /* f */)) out.push(k * 24);
  }
  return out;
}

/** Offsets in .symtab of the entries named want (NUL-terminated). */
function* entriesNamed(d: Buffer, names: Buffer, want: Buffer): Generator<number> {
  for (let i = 24; i + 24 <= d.length; i += 24) {
    const off = d.readUInt32LE(i);
    if (off + want.length <= names.length && names.compare(want, 0, want.length, off, off + want.length) === 0) yield i;
  }
}

/** Whether b holds prefix at off (byte by byte: cheaper than a call into Buffer.compare for 100k+ symbols). */
function startsWith(b: Buffer, off: number, prefix: Buffer): boolean {
  if (off + prefix.length > b.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[off + i] !== prefix[i]) return false;
  return true;
}

/** Little-endian u64 as a JS number (addresses and sizes are far below 2^53). */
export function u64(b: Buffer, off: number): number {
  return b.readUInt32LE(off) + b.readUInt32LE(off + 4) * 0x1_0000_0000;
}

/** NUL-terminated string at off, not reading past end. */
export function cstring(b: Buffer, off: number, end: number = b.length): string {
  let e = off;
  while (e < end && b[e] !== 0) e++;
  return b.toString('utf8', off, e);
}
