// Where the runtime keeps its goroutine-id generator: sched.goidgen (runtime.sched + the layout's offset) and
// runtime.allp (each P's unused ids, p.goidcache..p.goidcacheend), from the symbol table. A stripped binary
// has neither symbol: newproc1 reaches goidgen through a LEA and a LOCK XADDQ on the register, which the
// decoder does not follow yet, so its counts come from the probes.
import type { ElfFile } from './elf.ts';
import type { RuntimeLayout } from './layouts.ts';

export interface GoidGenLocation {
  /** Link-time address of sched.goidgen. */
  goidgen: number;
  /** Link-time address of runtime.allp (a []*p). */
  allp?: number;
  source: 'symtab';
}

export function findGoidGen(elf: ElfFile, layout: RuntimeLayout): GoidGenLocation | undefined {
  const sched = elf.symbol('runtime.sched');
  if (!sched || sched.value === 0) return undefined;
  const allp = elf.symbol('runtime.allp');
  return { goidgen: sched.value + layout.sched.fields.goidgen.offset, allp: allp?.value || undefined, source: 'symtab' };
}
