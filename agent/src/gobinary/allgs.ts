// Address of the runtime's `var allgs []*g` (proc.go), the list of every goroutine ever created.
// With symbols it is runtime.allgs; stripped, it is read off code that loads the slice: runtime.forEachG
// (`for _, gp := range allgs`, unchanged from Go 1.16 to 1.27) loads its pointer and length with two RIP-relative
// 8-byte MOVs from X and X+8; runtime.allgadd (the append) also touches X and X+8.
import { ElfFile, PT_LOAD } from './elf.ts';
import { Pclntab } from './pclntab.ts';
import { findProbeSites } from './x86.ts';

export interface AllgsLocation {
  addr: number;
  source: 'symtab' | 'code';
  /** For 'code': the function it was read from. */
  from?: string;
}

const PF_W = 2;
const CANDIDATES = ['runtime.forEachG', 'runtime.allgadd'];

export function findAllgs(elf: ElfFile, pclntab: Pclntab): AllgsLocation | undefined {
  const sym = elf.symbol('runtime.allgs');
  if (sym && sym.value !== 0) return { addr: sym.value, source: 'symtab' };
  return allgsFromCode(elf, pclntab);
}

/** The code-derived answer alone (tests compare it with the symbol). */
export function allgsFromCode(elf: ElfFile, pclntab: Pclntab): AllgsLocation | undefined {
  for (const name of CANDIDATES) {
    const f = pclntab.funcByName(name);
    if (!f) continue;
    const sites = findProbeSites(elf.read(f.entry, f.end - f.entry), f.entry);
    const loaded = new Set(sites.ripRefs.filter((r) => r.mnemonic === 'mov' && r.size === 8 && r.destReg).map((r) => r.target));
    const slices = [...loaded].filter((x) => loaded.has(x + 8) && isWritable(elf, x)).sort((a, b) => a - b);
    if (slices.length > 0) return { addr: slices[0], source: 'code', from: name };
  }
  return undefined;
}

function isWritable(elf: ElfFile, addr: number): boolean {
  return elf.programs.some((p) => p.type === PT_LOAD && (p.flags & PF_W) !== 0 && addr >= p.vaddr && addr + 16 <= p.vaddr + p.memsz);
}
