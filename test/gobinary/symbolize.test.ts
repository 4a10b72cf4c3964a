// Symbolizer against go tool addr2line and the fixture's source.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ElfFile } from '../../agent/src/gobinary/elf.ts';
import { Pclntab } from '../../agent/src/gobinary/pclntab.ts';
import { Symbolizer } from '../../agent/src/gobinary/symbolize.ts';
import { findProbeSites } from '../../agent/src/gobinary/x86.ts';
import { addr2line, buildHello, fixtureDir, helloBuilds, sample } from './fixtures/tools.ts';

const source = readFileSync(join(fixtureDir, 'main.go'), 'utf8').split('\n');
const lineOf = (text: string) => source.findIndex((l) => l.includes(text)) + 1;

for (const { version, kind, bin } of helloBuilds(t, ['default', 'stripped', 'pie'])) {
  t.test(`Go ${version} ${kind}`, async (t) => {
    const elf = ElfFile.open(bin);
    const tab = Pclntab.fromElf(elf);
    const sym = new Symbolizer(tab, 100);
    const pcs = sample(tab.funcs(), 200).map((f) => Math.floor((f.entry + f.end) / 2));
    const want = addr2line('local', bin, pcs);
    const wrong = pcs.filter((pc, i) => {
      const loc = sym.at(pc);
      return `${loc?.function}\n${loc?.line ? `${loc.file}:${loc.line}` : ':-1'}` !== want[i].join('\n');
    });
    t.same(wrong, [], `${pcs.length} pcs symbolized as addr2line does`);
    t.ok(sym.cacheSize <= 100, `cache stays bounded (${sym.cacheSize} entries)`);
    t.same(sym.at(pcs[pcs.length - 1]), sym.at(pcs[pcs.length - 1]), 'a cache hit gives the same answer');
    t.equal(sym.at(1), undefined, 'outside Go code: undefined');

    // callSite: a goroutine's gopc is the return address of the CALL runtime.newproc in the creating function.
    // Symbolizing pc-1 lands on the `go` statement, not the line after.
    const main = tab.funcByName('main.main')!;
    const calls = findProbeSites(elf.read(main.entry, main.end - main.entry), main.entry).callsTo(tab.funcByName('runtime.newproc')!.entry);
    const lines = calls.map((c) => sym.callSite(c.next)!.line);
    t.same(lines, [lineOf('go worker('), lineOf('go func() {'), lineOf('go func(x int) {')], 'creation sites are the go statements');
    const viaTool = addr2line('local', bin, calls.map((c) => c.next - 1)).map(([, fl]) => Number(fl.split(':').pop()));
    t.same(lines, viaTool, 'and addr2line agrees on pc-1');
    t.equal(sym.callSite(main.entry)?.line, sym.at(main.entry)?.line, 'at a function entry, pc itself');
  });
}

t.test('LRU evicts the least recently used', async (t) => {
  const tab = Pclntab.fromElf(ElfFile.open(buildHello('local', 'default').path!));
  const sym = new Symbolizer(tab, 2);
  const [a, b, c] = tab.funcs().slice(10, 13).map((f) => f.entry);
  sym.at(a);
  sym.at(b);
  sym.at(a); // a is now the most recent
  sym.at(c); // evicts b
  t.equal(sym.cacheSize, 2);
  t.same((sym as unknown as { cache: Map<number, unknown> }).cache.has(b), false, 'b evicted');
  t.same((sym as unknown as { cache: Map<number, unknown> }).cache.has(a), true, 'a kept');
  t.throws(() => new Symbolizer(tab, 0));
});
