// ElfFile against readelf and go tool nm.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { ElfFile, PT_LOAD } from '../../agent/src/gobinary/elf.ts';
import { helloBuilds, nmFuncs } from './fixtures/tools.ts';

for (const { version, kind, bin } of helloBuilds(t)) {
  t.test(`Go ${version} ${kind}`, async (t) => {
    const elf = ElfFile.open(bin);
    t.equal(elf.isPIE, kind === 'pie', `isPIE is ${kind === 'pie'}`);
    // Oracle: readelf's section table (name, address, offset, size).
    const want = [...execFileSync('readelf', ['-SW', bin], { encoding: 'utf8' }).matchAll(
      /^\s+\[\s*\d+\]\s+(\S+)\s+\S+\s+([0-9a-f]{16})\s+([0-9a-f]{6,})\s+([0-9a-f]{6,})/gm,
    )].map((m) => `${m[1]} ${parseInt(m[2], 16)} ${parseInt(m[3], 16)} ${parseInt(m[4], 16)}`);
    const got = elf.sections.filter((s) => s.name).map((s) => `${s.name} ${s.addr} ${s.offset} ${s.size}`);
    t.same(got, want, `${got.length} sections as readelf lists them`);
    const loads = execFileSync('readelf', ['-lW', bin], { encoding: 'utf8' }).match(/^\s+LOAD\s.*$/gm)!;
    t.equal(elf.programs.filter((p) => p.type === PT_LOAD).length, loads.length, `${loads.length} PT_LOAD segments`);

    const text = elf.section('.text')!;
    t.equal(elf.vaddrToFileOffset(text.addr), text.offset, '.text address maps to its file offset');
    t.equal(elf.fileOffsetToVaddr(text.offset), text.addr, 'and back');
    t.same(elf.read(text.addr, 16), readFileSync(bin).subarray(text.offset, text.offset + 16), 'read(vaddr) reads the file there');
    const bss = elf.section('.bss')!;
    t.equal(elf.vaddrToFileOffset(bss.addr + 64), undefined, '.bss has no file offset');

    if (kind === 'stripped') {
      t.equal(elf.symbol('main.main'), undefined, 'stripped: no symbols');
      t.equal(elf.hasSymtab, false, 'no .symtab');
    } else {
      const nm = nmFuncs(version, bin);
      t.equal(elf.symbol('main.main')?.value, nm.get('main.main'), 'main.main symbol as go tool nm says');
      t.equal(elf.symbol('runtime.newproc1')?.value, nm.get('runtime.newproc1'), 'runtime.newproc1 too');
    }
  });
}

t.test('rejects what it cannot read', async (t) => {
  t.throws(() => ElfFile.open('/etc/hostname'), /not an ELF file/);
  const elf32 = Buffer.from(readFileSync(process.execPath).subarray(0, 4096));
  elf32[4] = 1;
  t.throws(() => ElfFile.fromBuffer('x32', elf32), /x32: 32-bit ELF; only 64-bit is supported/);
  const be = Buffer.from(readFileSync(process.execPath).subarray(0, 4096));
  be[5] = 2;
  t.throws(() => ElfFile.fromBuffer('be', be), /big-endian/);
});
