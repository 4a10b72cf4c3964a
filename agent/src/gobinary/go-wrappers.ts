// The function a `go` statement started. Since Go 1.21, `go f(x)` whose arguments must be evaluated first starts a
// compiler-made wrapper (`main.load.gowrap2`) that calls f: a span or a summary named after the wrapper says
// nothing. The wrapper's own code tells what it wraps: when f was inlined into it, the inline tree's outermost
// call is f; else the wrapper's first direct call outside the runtime (morestack, panicwrap) is f. `go func(x)
// {...}(y)` calls its func literal through the closure: the literal is the enclosing function's funcN that starts
// on the go statement's line. Other calls through a func value or an interface keep the wrapper's name.
import type { ElfFile } from './elf.ts';
import type { FrameResolver } from './frames.ts';
import { FUNCDATA_INL_TREE, PCDATA_INL_TREE_INDEX, type Pclntab } from './pclntab.ts';
import type { SourceLocation } from './symbolize.ts';
import { findProbeSites } from './x86.ts';

const GOWRAP = /\.gowrap\d+$/;

export const isGoWrapper = (name: string): boolean => GOWRAP.test(name);

export class GoWrappers {
  private readonly cache = new Map<number, SourceLocation | null>();

  constructor(private readonly elf: ElfFile, private readonly pclntab: Pclntab, private readonly frames: () => FrameResolver, readonly maxCached = 4096) {}

  /** What the wrapper at entry (link-time address) calls; null when entry is not a wrapper or it cannot be told. */
  wrapped(entry: number): SourceLocation | null {
    if (this.cache.has(entry)) return this.cache.get(entry)!;
    let out: SourceLocation | null = null;
    try {
      out = this.resolve(entry);
    } catch {
      out = null; // unreadable code: keep the wrapper's name
    }
    if (this.cache.size >= this.maxCached) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(entry, out);
    return out;
  }

  private resolve(entry: number): SourceLocation | null {
    const f = this.pclntab.funcInfoForPC(entry);
    if (!f || f.entry !== entry || !isGoWrapper(f.name)) return null;
    const sites = findProbeSites(this.elf.read(f.entry, f.end - f.entry), f.entry);
    if (this.pclntab.funcdataOffset(f, FUNCDATA_INL_TREE) !== undefined) {
      for (const pc of sites.boundaries) {
        if (this.pclntab.pcdata(f, PCDATA_INL_TREE_INDEX, pc) < 0) continue;
        const frames = this.frames().frames(f, pc);
        // Innermost first, the wrapper last: the one before it is the call the wrapper made.
        const outer = frames[frames.length - 2];
        if (outer && !outer.function.startsWith('runtime.')) return this.definition(outer.function) ?? { function: outer.function, file: outer.file, line: outer.line };
      }
    }
    for (const c of sites.calls) {
      const callee = this.pclntab.funcForPC(c.target);
      if (callee && callee.entry === c.target && !callee.name.startsWith('runtime.')) return this.definition(callee.name) ?? null;
    }
    return this.literalOnLine(f.name, f.entry);
  }

  /** The func literal of the enclosing function defined where the go statement is (`go func(p T) {...}(v)`). */
  private literalOnLine(wrapper: string, entry: number): SourceLocation | null {
    const at = this.pclntab.fileLine(entry);
    if (!at) return null;
    const prefix = `${wrapper.replace(GOWRAP, '')}.func`;
    for (const g of this.pclntab.funcsWithPrefix(prefix)) {
      if (!/^\d+$/.test(g.name.slice(prefix.length))) continue;
      const fl = this.pclntab.fileLine(g.entry);
      if (fl && fl.file === at.file && fl.line === at.line) return { function: g.name, file: fl.file, line: fl.line };
    }
    return null;
  }

  /** Where a function is defined: its entry's file and line (an inlined-only function has no entry: undefined). */
  private definition(name: string): SourceLocation | undefined {
    const g = this.pclntab.funcByName(name);
    if (!g) return undefined;
    const fl = this.pclntab.fileLine(g.entry);
    return { function: name, file: fl?.file ?? '?', line: fl?.line ?? 0 };
  }
}
