// runtime.allgs from code (stripped binaries) against the symbol table and objdump of the same build.
import t from 'tap';
import { allgsFromCode, findAllgs } from '../../agent/src/gobinary/allgs.ts';
import { ElfFile } from '../../agent/src/gobinary/elf.ts';
import { Pclntab } from '../../agent/src/gobinary/pclntab.ts';
import { findProbeSites } from '../../agent/src/gobinary/x86.ts';
import { buildHello, helloBuilds, objdump, withoutSectionHeaders } from './fixtures/tools.ts';

for (const { version, kind, bin } of helloBuilds(t)) {
  t.test(`Go ${version} ${kind}`, async (t) => {
    const elf = ElfFile.open(bin);
    const tab = Pclntab.fromElf(elf);
    const found = findAllgs(elf, tab);
    const code = allgsFromCode(elf, tab);
    t.ok(code, 'found from code');
    if (kind === 'stripped') {
      t.equal(found?.source, 'code', 'stripped: from code');
      // Oracle: the unstripped build's symbol, at the same offset into the same section (the data, unlike the
      // code, may move when -s -w changes the build info's size).
      const ref = ElfFile.open(buildHello(version, 'default').path!);
      const sym = ref.symbol('runtime.allgs')!;
      const inSection = (e: ElfFile, a: number) => e.sections.find((s) => s.addr && a >= s.addr && a < s.addr + s.size)!;
      const refSec = inSection(ref, sym.value);
      const sec = inSection(elf, found!.addr);
      t.equal(sec.name, refSec.name, `in ${refSec.name} like the symbol`);
      t.equal(found!.addr - sec.addr, sym.value - refSec.addr, 'at the same offset into it');
      return;
    }
    const sym = elf.symbol('runtime.allgs');
    t.ok(sym, 'unstripped build has runtime.allgs');
    t.same(found, { addr: sym!.value, source: 'symtab' }, 'from the symbol table when present');
    t.equal(code!.addr, sym!.value, `code-derived address (from ${code!.from}) equals the symbol`);
    // Oracle 2: objdump names the same load.
    const dis = objdump('local', bin, '^runtime\\.forEachG$').get('runtime.forEachG')!;
    const load = dis.find((i) => /^MOVQ runtime\.allgs\(SB\), /.test(i.text))!;
    t.ok(load, 'objdump shows MOVQ runtime.allgs(SB)');
    const f = tab.funcByName('runtime.forEachG')!;
    const ref = findProbeSites(elf.read(f.entry, f.end - f.entry), f.entry).ripRefs.find((r) => r.addr === load.addr);
    t.same(ref && { target: ref.target, mnemonic: ref.mnemonic, size: ref.size }, { target: sym!.value, mnemonic: 'mov', size: 8 }, 'ripRef of that load');

    // Without section headers there is no symbol table: the code path must give the same answer.
    const bare = ElfFile.open(withoutSectionHeaders(bin, version, kind));
    const fromBare = findAllgs(bare, Pclntab.fromElf(bare));
    t.same(fromBare, { addr: sym!.value, source: 'code', from: 'runtime.forEachG' }, 'no section headers: from code, same address');
  });
}
