// The Go runtime layout of one binary, read from its own DWARF: struct offsets, the parameters of the probed
// runtime functions with their ABIInternal registers, wait reasons and goroutine statuses. This is what
// scripts/runtime-layouts (main.go) extracts from its probe program with Go's debug/dwarf, done here on the
// traced binary itself, so it is right for any Go version, GOEXPERIMENT or patched runtime that kept DWARF.
//
// What DWARF does not hold (the system-goroutine rule, what goroutine dumps print for unknown values, which
// statuses show a wait reason) comes from the table entry passed as `base`, and so does any piece this binary's
// DWARF lacks; `fallbacks` says which.
import { DW_ATE, DW_AT, DW_TAG, DwarfData, DwarfIndex, arrayCount, staticAddress, stripTypedefs, structMembers, typeName, typeSize, type Die } from './dwarf.ts';
import { u64, type ElfFile } from './elf.ts';
import { runtimeFields } from './runtime-fields.ts';
import type { AbiRegister, FieldLayout, FunctionLayout, ParamLayout, ProbedFunction, RuntimeLayout, StructLayout } from './layouts.ts';

export interface DwarfLayout {
  layout: RuntimeLayout;
  /** The pieces taken from `base` instead, each with the reason; empty when DWARF gave everything it can. */
  fallbacks: string[];
}

const F = runtimeFields;
const G_OPTIONAL = new Set<string>(F.gOptional);
const NONE = new Set<string>();

const STT_FUNC = 2;

/** Something this binary's DWARF does not have; the caller falls back to the table for that piece. */
class Missing extends Error {}

/**
 * The runtime layout from the binary's DWARF, or undefined when it has none (built with -ldflags=-w or -s).
 * Throws a DwarfError when the DWARF is there but unreadable. goVersion (the build info's, e.g. "go1.22.3")
 * names the layout when DWARF does not say which compiler made it.
 */
export function layoutFromDwarf(elf: ElfFile, base: RuntimeLayout, goVersion?: string): DwarfLayout | undefined {
  const dwarf = DwarfData.fromElf(elf);
  if (!dwarf) return undefined;
  // Only the runtime's units matter (Go names a unit after its package; the types live in one of them too).
  const runtimeUnits = dwarf.units.filter((u) => u.name === 'runtime');
  const idx = new DwarfIndex(runtimeUnits);
  const fallbacks: string[] = [];
  const strings = new StringReader(elf);

  // One piece: from DWARF, or from base with a note when DWARF lacks it.
  function piece<T>(what: string, fromDwarf: () => T, fromBase: () => T): T {
    try {
      return fromDwarf();
    } catch (e) {
      if (!(e instanceof Missing)) throw e;
      fallbacks.push(`${what} (${e.message})`);
      return fromBase();
    }
  }

  // "Go cmd/compile go1.26.8; regabi". The layout's name keys caches of layouts (tracers' BPF layout ids), so
  // it must be this binary's version, not base's.
  const producer = runtimeUnits.map((u) => u.head().attr(DW_AT.producer)).find((p) => typeof p === 'string');
  const versionRe = /\b(go1\.(\d+)[^\s;]*)/;
  const version = (typeof producer === 'string' ? versionRe.exec(producer) : null) ?? (goVersion ? versionRe.exec(goVersion) : null);

  // The field lists above match layouts.ts's field types; the cast is from the generic shape to them.
  const struct = <S>(name: string, fields: readonly string[], optional: Set<string>, b: S): S =>
    piece(name, () => structLayout(idx, name, fields, optional) as S, () => b);

  const g = struct('runtime.g', F.g, G_OPTIONAL, base.g);
  const m = struct('runtime.m', F.m, NONE, base.m);
  const p = struct('runtime.p', F.p, NONE, base.p);
  const panic = struct('runtime._panic', F.panic, NONE, base.panic);
  const mstats = struct('runtime.mstats', F.mstats, NONE, base.mstats);
  const work = struct('runtime.workType', F.work, new Set<string>(F.work), base.work);
  const sched = struct('runtime.schedt', F.sched, NONE, base.sched);

  const functions = {} as Record<ProbedFunction, FunctionLayout>;
  for (const fn of F.functions) {
    functions[fn] = piece(`runtime.${fn}`, () => functionLayout(elf, idx, fn, base), () => base.functions[fn]);
  }
  if (!elf.hasSymtab) fallbacks.push('the functions\' symbol flags (no ELF symbol table)');

  const waitReasonNames = piece('waitReason constants', () => waitReasonNamesOf(idx), () => base.waitReasonNames);
  const waitReasonStrings = piece('runtime.waitReasonStrings', () => {
    const s = strings.array(idx, 'runtime.waitReasonStrings');
    while (s.length < waitReasonNames.length) s.push(''); // as the generator: reasons past the array print ""
    return s;
  }, () => base.waitReasonStrings);
  const statuses = piece('goroutine status constants', () => statusesOf(idx), () => base.statuses);
  const statusStrings = piece('runtime.gStatusStrings', () => strings.array(idx, 'runtime.gStatusStrings'), () => base.statusStrings);
  const stwReasonStrings = piece('runtime.stwReasonStrings', () => {
    if (idx.variable('runtime.stwReasonStrings')) return strings.array(idx, 'runtime.stwReasonStrings');
    // Before Go 1.21 there is no stwReason at all: an empty list is the right answer then.
    const hasType = [...idx.intConstants((n) => n.startsWith('runtime.stw'))].some((c) => typeName(c.type) === 'runtime.stwReason');
    if (hasType) throw new Missing('runtime.stwReason exists but the variable is not in DWARF');
    return [];
  }, () => base.stwReasonStrings);

  const layout: RuntimeLayout = {
    goVersion: version ? `1.${version[2]}` : base.goVersion,
    toolchain: version ? version[1] : base.toolchain,
    g,
    m,
    p,
    panic,
    mstats,
    work,
    sched,
    intArgRegisters: base.intArgRegisters,
    functions,
    waitReasonNames,
    waitReasonStrings,
    waitReasonUnknown: base.waitReasonUnknown,
    stwReasonStrings,
    statuses,
    statusStrings,
    statusUnknown: base.statusUnknown,
    scanBit: statuses._Gscan ?? base.scanBit,
    waitReasonStatuses: base.waitReasonStatuses,
    systemGoroutines: base.systemGoroutines,
  };
  if (!version) fallbacks.push('the Go version (no DW_AT_producer)');
  return { layout, fallbacks };
}

// ---------------------------------------------------------------------------------------------------
// Structs

function structLayout(idx: DwarfIndex, name: string, fields: readonly string[], optional: Set<string>): StructLayout<never, string> {
  const st = idx.struct(name);
  if (!st) throw new Missing('no DWARF struct');
  const out: StructLayout<never, string> = { type: name, size: typeSize(st), fields: {} };
  for (const path of fields) {
    const f = lookup(st, path);
    if (typeof f === 'string') {
      // As the generator: an optional field (or a part of one) that this version lacks is null.
      if (optional.has(path) || (f === 'no such field' && optional.has(path.split('.')[0]))) {
        out.fields[path] = null;
        continue;
      }
      throw new Missing(`${path}: ${f}`);
    }
    out.fields[path] = f;
  }
  return out;
}

/** A dotted member path ("sched.sp") from the start of the struct, or why not. */
function lookup(st: Die, path: string): FieldLayout | string {
  let offset = 0;
  let cur: Die | undefined = st;
  for (const part of path.split('.')) {
    const s = stripTypedefs(cur);
    if (!s || s.tag !== DW_TAG.structure_type) return `${part}: not a struct`;
    const m = structMembers(s).find((x) => x.name === part);
    if (!m) return 'no such field';
    offset += m.offset;
    cur = m.type;
  }
  return { offset, size: typeSize(cur), type: typeName(cur) };
}

// ---------------------------------------------------------------------------------------------------
// Functions

function functionLayout(elf: ElfFile, idx: DwarfIndex, fn: ProbedFunction, base: RuntimeLayout): FunctionLayout {
  const full = `runtime.${fn}`;
  const sp = idx.subprogram(full);
  if (!sp?.die) throw new Missing('no DWARF subprogram');
  const params: ParamLayout[] = [];
  const results: ParamLayout[] = [];
  const paramTypes: Array<Die | undefined> = [];
  const resultTypes: Array<Die | undefined> = [];
  const known = base.functions[fn] as FunctionLayout | undefined;
  for (const p of DwarfIndex.parameters(sp.die)) {
    const dwarfType = typeName(p.type);
    // The source spelling is not in DWARF (byte and uint8 are one type there): keep the table's when the
    // parameter is the same, else spell it from the DWARF name.
    const same = (p.result ? known?.results : known?.params)?.find((x) => x.name === p.name && x.dwarfType === dwarfType);
    const type = same ? same.type : sourceType(dwarfType);
    const pl: ParamLayout = { name: p.name, type, dwarfType, size: typeSize(p.type), register: null };
    (p.result ? results : params).push(pl);
    (p.result ? resultTypes : paramTypes).push(p.type);
  }
  assignRegisters(params, paramTypes, base.intArgRegisters);
  assignRegisters(results, resultTypes, base.intArgRegisters);
  const symbol = elf.hasSymtab ? elf.symbol(full)?.type === STT_FUNC : known?.symbol ?? false;
  return { symbol, inlinable: sp.inline, params, results };
}

/**
 * The type as the runtime's source spells it, from the DWARF name: package runtime's own names are unqualified
 * there ("*runtime.g" is "*g"), and Go's string is a struct in DWARF. Aliases (byte, rune, any) are lost.
 */
export function sourceType(dwarfType: string): string {
  if (dwarfType === 'struct string') return 'string';
  return dwarfType.replace(/(^|[^\w/.])runtime\./g, '$1');
}

const ONE_WORD_ENCODINGS = new Set<number>([DW_ATE.boolean, DW_ATE.signed, DW_ATE.unsigned, DW_ATE.signed_char, DW_ATE.unsigned_char]);

/** An integer-class value of one word (pointer, bool, integer, func value): one register's worth. */
function oneWord(t: Die | undefined): boolean {
  if (t?.tag === DW_TAG.pointer_type) {
    const size = typeSize(t);
    return size > 0 && size <= 8;
  }
  if (t?.tag === DW_TAG.base_type) {
    const size = typeSize(t);
    return ONE_WORD_ENCODINGS.has(t.num(DW_AT.encoding) ?? -1) && size > 0 && size <= 8;
  }
  return t?.tag === DW_TAG.subroutine_type; // a Go func value is one pointer (to a funcval)
}

/**
 * ABIInternal on amd64, for the cases the generator handles: each parameter that is one integer-class word
 * takes the next integer register, and a struct (or string) whose members all are takes one per member
 * (`fields`); at the first parameter that is neither, or no longer fits, stop, since placing what follows needs
 * the full algorithm.
 */
function assignRegisters(ps: ParamLayout[], types: Array<Die | undefined>, regs: AbiRegister[]): void {
  let next = 0;
  for (let i = 0; i < ps.length; i++) {
    const t = stripTypedefs(types[i]); // Go's func, chan and map types are typedefs
    if (oneWord(t)) {
      if (next >= regs.length) return;
      ps[i].register = regs[next++];
      continue;
    }
    if (t?.tag !== DW_TAG.structure_type) return;
    const members = structMembers(t);
    if (members.length === 0 || next + members.length > regs.length) return;
    if (!members.every((m) => oneWord(stripTypedefs(m.type)))) return;
    ps[i].fields = members.map((m) => ({ name: m.name, offset: m.offset, size: typeSize(m.type), register: regs[next++] }));
  }
}

// ---------------------------------------------------------------------------------------------------
// Constants and string tables

function waitReasonNamesOf(idx: DwarfIndex): string[] {
  const names: string[] = [];
  for (const c of idx.intConstants((n) => n.startsWith('runtime.waitReason'))) {
    if (typeName(c.type) !== 'runtime.waitReason') continue;
    if (names[c.value] !== undefined) throw new Missing(`${names[c.value]} and ${c.name} are both ${c.value}`);
    names[c.value] = c.name.slice('runtime.'.length);
  }
  if (names.length === 0) throw new Missing('none in DWARF');
  for (let i = 0; i < names.length; i++) if (names[i] === undefined) throw new Missing(`no constant for value ${i}`);
  return names;
}

// _Gidle, _Grunning, _Gscan, _Gmoribund_unused...; not _GCoff or _GoidCacheBatch.
const STATUS_NAME = /^runtime\.(_G[a-z]+(?:_unused)?)$/;

function statusesOf(idx: DwarfIndex): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of idx.intConstants((n) => STATUS_NAME.test(n))) out[STATUS_NAME.exec(c.name)![1]] = c.value;
  for (const want of ['_Gidle', '_Gwaiting', '_Gscan']) if (!(want in out)) throw new Missing(`no runtime.${want}`);
  return out;
}

/** Reads [N]string variables from the binary's data, through PIE relocations when there are any. */
class StringReader {
  private relocated: Map<number, number> | undefined;

  constructor(private readonly elf: ElfFile) {}

  array(idx: DwarfIndex, name: string): string[] {
    const v = idx.variable(name);
    if (!v) throw new Missing('no DWARF variable');
    const addr = staticAddress(v);
    if (addr === undefined) throw new Missing('no static address');
    const t = stripTypedefs(v.ref(DW_AT.type));
    const elem = stripTypedefs(t?.ref(DW_AT.type));
    // Go's string is a 16-byte struct named "string" in DWARF: a data pointer, then a length.
    if (t?.tag !== DW_TAG.array_type || elem?.tag !== DW_TAG.structure_type || elem.name !== 'string' || typeSize(elem) !== 16) {
      throw new Missing(`type ${typeName(t)} is not [N]string`);
    }
    const n = arrayCount(t);
    if (n < 0) throw new Missing('array without a length');
    const out: string[] = [];
    try {
      for (let i = 0; i < n; i++) {
        const ptr = this.word(addr + 16 * i);
        const len = this.word(addr + 16 * i + 8);
        out.push(len === 0 ? '' : this.elf.read(ptr, len).toString('utf8'));
      }
    } catch (e) {
      throw new Missing(`cannot read it from the file: ${(e as Error).message}`); // e.g. in .bss
    }
    return out;
  }

  // A pointer-sized word of initialized data. In PIE files a pointer may be left for the loader to fill from a
  // R_X86_64_RELATIVE relocation, whose addend is the link-time value.
  private word(addr: number): number {
    if (this.elf.isPIE) {
      if (!this.relocated) {
        this.relocated = new Map();
        for (const r of this.elf.relativeRelocations()) this.relocated.set(r.offset, r.addend);
      }
      const a = this.relocated.get(addr);
      if (a !== undefined) return a;
    }
    return u64(this.elf.read(addr, 8), 0);
  }
}
