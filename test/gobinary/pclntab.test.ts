// The pclntab parser against the Go toolchain's own nm and addr2line, for Go 1.26 and 1.19 and every build kind.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { ElfFile } from '../../agent/src/gobinary/elf.ts';
import { Pclntab } from '../../agent/src/gobinary/pclntab.ts';
import { findModuledataText } from '../../agent/src/gobinary/moduledata.ts';
import { addr2line, buildHello, helloBuilds, nmFuncs, sample, withoutSectionHeaders } from './fixtures/tools.ts';

for (const { version, kind, bin } of helloBuilds(t)) {
  const unstripped = buildHello(version, 'default');
  t.test(`Go ${version} ${kind}`, async (t) => {
    const tab = Pclntab.fromElf(ElfFile.open(bin));
    const funcs = tab.funcs();
    t.equal(tab.version, version === '1.19' ? '1.18' : '1.20', 'pclntab format for the toolchain');
    t.ok(funcs.length > 1000, `${funcs.length} functions`);
    t.ok(tab.funcByName('main.main'), 'main.main is there');
    t.ok(tab.funcByName('main.main.func1'), 'closures are there');

    // Oracle: go tool nm. A stripped binary has no symbols: use the unstripped build of the same source, once we
    // saw that -s -w leaves the code where it was.
    const nmBin = kind === 'stripped' ? unstripped.path! : bin;
    const nm = nmFuncs(version, nmBin);
    if (kind === 'stripped') {
      t.equal(tab.funcByName('main.main')!.entry, nm.get('main.main'), '-s -w did not move main.main');
      t.not(tab.textStartSource, 'symtab', 'no symbols: text start found elsewhere');
    }
    const checked = kind === 'stripped' ? funcs : sample(funcs, 300);
    // ABI0 functions (assembly, or wrappers of Go functions called from assembly) carry a ".abi0" suffix in the
    // symbol table only: the pclntab can hold two functions of the same name.
    // Generated functions are also spelled differently: "·" is "." in symbols, and Go 1.19's pclntab writes array
    // lengths in type:.eq names as "[...]".
    const byAddr = new Map<number, string[]>();
    for (const [name, addr] of nm) byAddr.set(addr, [...(byAddr.get(addr) ?? []), name]);
    const sameName = (pcln: string, sym: string) => {
      const norm = pcln.replaceAll('·', '.');
      if (sym === norm || sym === `${norm}.abi0`) return true;
      const re = new RegExp('^' + norm.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replaceAll('\\[\\.\\.\\.\\]', '\\[\\d+\\]') + '$');
      return norm.includes('[...]') && re.test(sym);
    };
    const wrong = checked.filter((f) => !(byAddr.get(f.entry) ?? []).some((sym) => sameName(f.name, sym)));
    t.same(wrong.slice(0, 5), [], `entries of ${checked.length} functions equal go tool nm's`);
    t.equal(tab.textStart, nm.get('runtime.text'), `text start (${tab.textStartSource}) is runtime.text`);

    // ends: each function ends where the next begins, and funcForPC agrees at the edges.
    for (const f of sample(funcs, 200)) {
      if (tab.funcForPC(f.entry)?.name !== f.name || tab.funcForPC(f.end - 1)?.name !== f.name) {
        t.fail(`funcForPC at the edges of ${f.name}`);
        return;
      }
    }
    t.equal(tab.funcForPC(funcs[0].entry - 1), undefined, 'nothing before the first function');
    t.equal(tab.funcForPC(funcs[funcs.length - 1].end), undefined, 'nothing after the last function');

    // Oracle: go tool addr2line (it reads the binary's own tables, stripped or not).
    const pcs: number[] = [];
    for (const f of sample(funcs, 150)) pcs.push(f.entry, Math.floor((f.entry + f.end) / 2));
    const main = tab.funcByName('main.main')!;
    for (let pc = main.entry; pc < main.end; pc += 7) pcs.push(pc);
    // The newest addr2line reads every format; Go 1.19's own cannot read its PIE builds (it answers "? ?:0").
    const want = addr2line('local', bin, pcs);
    const mism: string[] = [];
    pcs.forEach((pc, i) => {
      const fl = tab.fileLine(pc);
      // addr2line prints ":-1" for code without line information (some generated functions).
      const got = `${tab.funcForPC(pc)?.name}\n${fl ? `${fl.file}:${fl.line}` : ':-1'}`;
      if (got !== want[i].join('\n')) mism.push(`0x${pc.toString(16)}: got ${got} want ${want[i].join(' ')}`);
    });
    t.same(mism.slice(0, 5), [], `function and file:line of ${pcs.length} pcs equal go tool addr2line's`);
    t.match(tab.fileLine(main.entry)?.file, /fixtures\/hello\/main\.go$/, 'main.main is in main.go');
  });

  // Without section headers: the pclntab by scanning, the text start from the moduledata (Go 1.26 has no header
  // copy of it, and external linking puts C code before Go's text, so .text's address would be wrong).
  t.test(`Go ${version} ${kind} without section headers`, async (t) => {
    const ref = Pclntab.fromElf(ElfFile.open(bin));
    const elf = ElfFile.open(withoutSectionHeaders(bin, version, kind));
    t.equal(elf.sections.length, 0, 'no sections left');
    const tab = Pclntab.fromElf(elf);
    t.equal(tab.addr, ref.addr, 'found the same pclntab by scanning');
    t.equal(tab.textStartSource, 'moduledata', 'text start from the moduledata');
    t.equal(tab.textStart, ref.textStart, 'same text start');
    t.same(tab.funcs(), ref.funcs(), 'same functions');
  });

  if (kind === 'pie') {
    // A linker may leave relocated words empty in the file (the dynamic loader fills them in): then the moduledata
    // is found through the R_X86_64_RELATIVE addends. Both Go's and GNU's linkers write them in place, so simulate.
    t.test(`Go ${version} pie with relocated words zeroed`, async (t) => {
      const ref = ElfFile.open(bin);
      const tab = Pclntab.fromElf(ref);
      const copy = readFileSync(bin);
      let zeroed = 0;
      for (const r of ref.relativeRelocations()) {
        copy.fill(0, ref.vaddrToFileOffset(r.offset)!, ref.vaddrToFileOffset(r.offset)! + 8);
        zeroed++;
      }
      const elf = ElfFile.fromBuffer(bin, copy);
      t.ok(zeroed > 1000, `${zeroed} relocated words zeroed`);
      t.equal(findModuledataText(elf, tab.addr, tab.addr + tab.funcnameOffset), ref.symbol('runtime.text')!.value, 'moduledata text from the relocations');
    });
  }
}
