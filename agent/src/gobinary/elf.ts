// Minimal ELF64 little-endian reader: just what Go binary analysis and uprobes need.
// The whole file is read once; every view below is a subarray of that one Buffer (no copies).
import { readFileSync } from 'node:fs';

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

export class ElfFile {
  readonly type: number;
  readonly machine: number;
  readonly entry: number;
  readonly sections: SectionHeader[];
  readonly programs: ProgramHeader[];
  private symbols?: Map<string, ElfSymbol>;

  private constructor(readonly path: string, readonly data: Buffer) {
    const d = data;
    if (d.length < 64 || d.readUInt32BE(0) !== 0x7f454c46) throw new ElfFormatError(path, 'not an ELF file');
    if (d[4] !== 2) throw new ElfFormatError(path, '32-bit ELF; only 64-bit is supported');
    if (d[5] !== 1) throw new ElfFormatError(path, 'big-endian ELF; only little-endian is supported');
    this.type = d.readUInt16LE(16);
    this.machine = d.readUInt16LE(18);
    this.entry = u64(d, 24);
    this.programs = this.readPrograms(u64(d, 32), d.readUInt16LE(54), d.readUInt16LE(56));
    this.sections = this.readSections(u64(d, 40), d.readUInt16LE(58), d.readUInt16LE(60), d.readUInt16LE(62));
  }

  static open(path: string): ElfFile {
    return new ElfFile(path, readFileSync(path));
  }

  /** Wraps bytes already in memory (e.g. a test's edited copy). */
  static fromBuffer(path: string, data: Buffer): ElfFile {
    return new ElfFile(path, data);
  }

  /** Position-independent executables (and shared objects) are ET_DYN: loaded at a random base. */
  get isPIE(): boolean {
    return this.type === ET_DYN;
  }

  section(name: string): SectionHeader | undefined {
    return this.sections.find((s) => s.name === name);
  }

  /** A section's bytes in the file (empty for NOBITS such as .bss). */
  sectionData(s: SectionHeader): Buffer {
    if (s.type === SHT_NOBITS) return this.data.subarray(0, 0);
    return this.data.subarray(s.offset, s.offset + s.size);
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

  /** len bytes at vaddr as a view of the file; throws if they are not all file-backed in one segment. */
  read(vaddr: number, len: number): Buffer {
    if (len === 0) return this.data.subarray(0, 0);
    const p = this.loadSegment(vaddr);
    if (!p || vaddr + len > p.vaddr + p.filesz) {
      throw new Error(`${this.path}: 0x${vaddr.toString(16)}+${len} is not in the file's loaded segments`);
    }
    const off = p.offset + (vaddr - p.vaddr);
    return this.data.subarray(off, off + len);
  }

  /** A .symtab symbol by name; undefined when absent or when the binary is stripped. */
  symbol(name: string): ElfSymbol | undefined {
    if (!this.symbols) this.symbols = this.readSymbols();
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
    for (let i = 0; i < count; i++) {
      const b = off + i * entsize;
      if (b + 56 > this.data.length) break;
      out.push({
        type: this.data.readUInt32LE(b),
        flags: this.data.readUInt32LE(b + 4),
        offset: u64(this.data, b + 8),
        vaddr: u64(this.data, b + 16),
        filesz: u64(this.data, b + 32),
        memsz: u64(this.data, b + 40),
      });
    }
    return out;
  }

  // Section headers may be missing (sstrip and the like): then this is just empty.
  private readSections(off: number, entsize: number, count: number, strndx: number): SectionHeader[] {
    const d = this.data;
    if (off === 0 || entsize < 64 || off + count * entsize > d.length) return [];
    const raw: Array<SectionHeader & { nameOff: number }> = [];
    for (let i = 0; i < count; i++) {
      const b = off + i * entsize;
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
    for (const s of raw) {
      if (strtab) s.name = cstring(d, strtab.offset + s.nameOff, strtab.offset + strtab.size);
    }
    return raw.map(({ nameOff: _n, ...s }) => s);
  }

  private readSymbols(): Map<string, ElfSymbol> {
    const map = new Map<string, ElfSymbol>();
    const symtab = this.sections.find((s) => s.type === SHT_SYMTAB);
    if (!symtab) return map;
    const strtab = this.sections[symtab.link];
    if (!strtab) return map;
    const d = this.sectionData(symtab);
    const strEnd = strtab.offset + strtab.size;
    for (let i = 24; i + 24 <= d.length; i += 24) {
      const name = cstring(this.data, strtab.offset + d.readUInt32LE(i), strEnd);
      if (!name || map.has(name)) continue;
      map.set(name, { name, type: d[i + 4] & 0xf, value: u64(d, i + 8), size: u64(d, i + 16) });
    }
    return map;
  }
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
