// Locates runtime.firstmoduledata without symbols, to read its fields: `text` (the base of function entry offsets
// once the pclntab header stopped carrying it in Go 1.26) and `gofunc` (the base of funcdata offsets, where the
// inline trees are).
// moduledata layout (Go 1.16 through 1.27, runtime/symtab.go): pcHeader *pcHeader at 0, funcnametab []byte at 8
// (its pointer at 8), ... minpc at 160, maxpc at 168, text at 176, etext at 184; gofunc further on, where
// depends on the version (moduledataGofuncOffset).
import { ElfFile, PT_LOAD, u64 } from './elf.ts';

const OFF_FUNCNAMETAB = 8;
const OFF_MINPC = 160;
const OFF_MAXPC = 168;
const OFF_TEXT = 176;
const OFF_ETEXT = 184;
const PF_X = 1;

/** One moduledata in the file: its address, and its words as the loaded program sees them (link-time values). */
export interface Moduledata {
  addr: number;
  word(offset: number): number;
}

/** moduledata.text, found as the word pointing at the pclntab header followed by one pointing at its name table. */
export function findModuledataText(elf: ElfFile, pclntabAddr: number, funcnameAddr: number): number | undefined {
  const md = findModuledata(elf, pclntabAddr, funcnameAddr);
  return md?.word(OFF_TEXT);
}

/**
 * Offset of moduledata.gofunc: after rodata, which follows the section bounds; Go 1.20 added covctrs/ecovctrs,
 * Go 1.27 typedesclen, itaboffset and itabsize.
 */
export function moduledataGofuncOffset(goMinor: number): number {
  if (goMinor <= 19) return 304;
  if (goMinor <= 26) return 320;
  return 344;
}

export function findModuledata(elf: ElfFile, pclntabAddr: number, funcnameAddr: number): Moduledata | undefined {
  return fromFileWords(elf, pclntabAddr, funcnameAddr) ?? fromRelocations(elf, pclntabAddr, funcnameAddr);
}

function isCode(elf: ElfFile, addr: number): boolean {
  const p = elf.loadSegment(addr);
  return !!p && (p.flags & PF_X) !== 0;
}

function fieldsLookRight(elf: ElfFile, md: Moduledata): boolean {
  const text = md.word(OFF_TEXT);
  const minpc = md.word(OFF_MINPC);
  const maxpc = md.word(OFF_MAXPC);
  const etext = md.word(OFF_ETEXT);
  return text !== 0 && text <= minpc && minpc < maxpc && maxpc <= etext && isCode(elf, text) && isCode(elf, minpc);
}

function fileWord(elf: ElfFile, addr: number): number {
  try {
    return u64(elf.read(addr, 8), 0);
  } catch {
    return 0;
  }
}

// Non-PIE: the pointers are stored in the file as they are.
function fromFileWords(elf: ElfFile, pclntabAddr: number, funcnameAddr: number): Moduledata | undefined {
  const needle = Buffer.alloc(16);
  needle.writeBigUInt64LE(BigInt(pclntabAddr), 0);
  needle.writeBigUInt64LE(BigInt(funcnameAddr), 8);
  for (const p of elf.programs) {
    if (p.type !== PT_LOAD || p.flags & PF_X) continue;
    for (const off of elf.find(needle, p.offset, p.offset + p.filesz)) {
      const i = off - p.offset;
      if (i % 8 !== 0 || i + OFF_ETEXT + 8 > p.filesz) continue;
      const addr = p.vaddr + i;
      const md: Moduledata = { addr, word: (off) => fileWord(elf, addr + off) };
      if (fieldsLookRight(elf, md)) return md;
    }
  }
  return undefined;
}

// PIE: the pointers are R_X86_64_RELATIVE relocations whose addends hold the link-time values.
function fromRelocations(elf: ElfFile, pclntabAddr: number, funcnameAddr: number): Moduledata | undefined {
  const addends = new Map<number, number>();
  for (const r of elf.relativeRelocations()) addends.set(r.offset, r.addend);
  if (addends.size === 0) return undefined;
  // A word is either relocated (addend) or stored in the file as is (plain numbers such as minpc are, in PIE too).
  const word = (addr: number): number => addends.get(addr) ?? fileWord(elf, addr);
  for (const [addr, addend] of addends) {
    if (addend !== pclntabAddr || addends.get(addr + OFF_FUNCNAMETAB) !== funcnameAddr) continue;
    const md: Moduledata = { addr, word: (off) => word(addr + off) };
    if (fieldsLookRight(elf, md)) return md;
  }
  return undefined;
}
