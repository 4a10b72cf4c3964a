// Where the runtime keeps its goroutine-id generator: sched.goidgen (runtime.sched + the layout's offset) and
// runtime.allp (each P's unused ids, p.goidcache..p.goidcacheend), from the symbol table. A stripped binary has
// neither symbol: newproc1's cache refill (`pp.goidcache = sched.goidgen.Add(_GoidCacheBatch)`, a LOCK XADDQ on
// the address a LEA loaded, Go 1.16 to 1.27) names goidgen's address, and allp stays unknown (each P's unused
// ids then count as created: at most 16 per P).
import type { ElfFile } from './elf.ts';
import type { RuntimeLayout } from './layouts.ts';
import type { Pclntab } from './pclntab.ts';
import { atomicAddTargets } from './x86.ts';

/** runtime/proc.go's _GoidCacheBatch: the ids a P takes from sched.goidgen at once. */
const GOID_CACHE_BATCH = 16;

export interface GoidGenLocation {
  /** Link-time address of sched.goidgen. */
  goidgen: number;
  /** Link-time address of runtime.allp (a []*p); undefined when only the code gave goidgen away. */
  allp?: number;
  source: 'symtab' | 'code';
}

export function findGoidGen(elf: ElfFile, pclntab: Pclntab, layout: RuntimeLayout): GoidGenLocation | undefined {
  const sched = elf.symbol('runtime.sched');
  if (sched && sched.value !== 0) {
    const allp = elf.symbol('runtime.allp');
    return { goidgen: sched.value + layout.sched.fields.goidgen.offset, allp: allp?.value || undefined, source: 'symtab' };
  }
  const fromCode = goidgenFromCode(elf, pclntab);
  return fromCode === undefined ? undefined : { goidgen: fromCode, source: 'code' };
}

/** The code-derived answer alone (tests compare it with the symbol): the global newproc1 atomically adds 16 to. */
export function goidgenFromCode(elf: ElfFile, pclntab: Pclntab): number | undefined {
  const f = pclntab.funcByName('runtime.newproc1');
  if (!f) return undefined;
  const adds = atomicAddTargets(elf.read(f.entry, f.end - f.entry), f.entry).filter((a) => a.add === GOID_CACHE_BATCH);
  const targets = new Set(adds.map((a) => a.target));
  return targets.size === 1 ? adds[0].target : undefined;
}
