// Locates runtime.firstmoduledata without symbols, to read its `text` field (the base of function entry offsets
// once the pclntab header stopped carrying it in Go 1.26).
// moduledata layout (Go 1.16 through 1.26, runtime/symtab.go): pcHeader *pcHeader at 0, funcnametab []byte at 8
// (its pointer at 8), ... minpc at 160, maxpc at 168, text at 176, etext at 184.
import { ElfFile, PT_LOAD, u64 } from './elf.ts';

const OFF_FUNCNAMETAB = 8;
const OFF_MINPC = 160;
const OFF_MAXPC = 168;
const OFF_TEXT = 176;
const OFF_ETEXT = 184;
const PF_X = 1;

/** moduledata.text, found as the word pointing at the pclntab header followed by one pointing at its name table. */
export function findModuledataText(elf: ElfFile, pclntabAddr: number, funcnameAddr: number): number | undefined {
  return fromFileWords(elf, pclntabAddr, funcnameAddr) ?? fromRelocations(elf, pclntabAddr, funcnameAddr);
}

function isCode(elf: ElfFile, addr: number): boolean {
  const p = elf.loadSegment(addr);
  return !!p && (p.flags & PF_X) !== 0;
}

function fieldsLookRight(elf: ElfFile, text: number, etext: number, minpc: number, maxpc: number): boolean {
  return text !== 0 && text <= minpc && minpc < maxpc && maxpc <= etext && isCode(elf, text) && isCode(elf, minpc);
}

// Non-PIE: the pointers are stored in the file as they are.
function fromFileWords(elf: ElfFile, pclntabAddr: number, funcnameAddr: number): number | undefined {
  const needle = Buffer.alloc(16);
  needle.writeBigUInt64LE(BigInt(pclntabAddr), 0);
  needle.writeBigUInt64LE(BigInt(funcnameAddr), 8);
  for (const p of elf.programs) {
    if (p.type !== PT_LOAD || p.flags & PF_X) continue;
    const seg = elf.data.subarray(p.offset, p.offset + p.filesz);
    for (let i = seg.indexOf(needle); i >= 0; i = seg.indexOf(needle, i + 1)) {
      if (i % 8 !== 0 || i + OFF_ETEXT + 8 > seg.length) continue;
      const text = u64(seg, i + OFF_TEXT);
      if (fieldsLookRight(elf, text, u64(seg, i + OFF_ETEXT), u64(seg, i + OFF_MINPC), u64(seg, i + OFF_MAXPC))) {
        return text;
      }
    }
  }
  return undefined;
}

// PIE: the pointers are R_X86_64_RELATIVE relocations whose addends hold the link-time values.
function fromRelocations(elf: ElfFile, pclntabAddr: number, funcnameAddr: number): number | undefined {
  const addends = new Map<number, number>();
  for (const r of elf.relativeRelocations()) addends.set(r.offset, r.addend);
  if (addends.size === 0) return undefined;
  // A word is either relocated (addend) or stored in the file as is (plain numbers such as minpc are, in PIE too).
  const word = (addr: number): number => {
    const a = addends.get(addr);
    if (a !== undefined) return a;
    try {
      return u64(elf.read(addr, 8), 0);
    } catch {
      return 0;
    }
  };
  for (const [md, addend] of addends) {
    if (addend !== pclntabAddr || addends.get(md + OFF_FUNCNAMETAB) !== funcnameAddr) continue;
    const text = word(md + OFF_TEXT);
    if (fieldsLookRight(elf, text, word(md + OFF_ETEXT), word(md + OFF_MINPC), word(md + OFF_MAXPC))) return text;
  }
  return undefined;
}
