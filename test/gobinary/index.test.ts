// openGoBinary: the pieces together, and the one-line refusal of what is not Go.
import t from 'tap';
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { NotGoBinaryError, openGoBinary } from '../../agent/src/gobinary/index.ts';
import { helloBuilds, nmFuncs } from './fixtures/tools.ts';
import { execFileSync } from 'node:child_process';

for (const { version, kind, bin } of helloBuilds(t)) {
  t.test(`Go ${version} ${kind}`, async (t) => {
    const g = openGoBinary(bin);
    t.equal(g.goVersion, execFileSync('go', ['version', bin], { encoding: 'utf8' }).trim().split(': ')[1], 'goVersion');
    const f = g.func('runtime.newproc1')!;
    t.ok(f, 'runtime.newproc1 found');
    t.equal(f.fileOffset, g.elf.vaddrToFileOffset(f.entry), 'fileOffset of the entry');
    t.equal(g.fileOffset(f.entry), f.fileOffset, 'fileOffset(vaddr)');
    if (kind !== 'stripped') t.equal(f.entry, nmFuncs(version, bin).get('runtime.newproc1'), 'entry as go tool nm says');
    t.equal(g.func('main.noSuchFunction'), undefined, 'unknown function: undefined');
    t.throws(() => g.fileOffset(1), /not in the file/, 'unmapped address throws');
    t.equal(g.allgs?.source, kind === 'stripped' ? 'code' : 'symtab', `allgs from ${g.allgs?.source}`);
    t.equal(g.symbolizer.at(g.func('main.main')!.entry)?.function, 'main.main', 'symbolizer');
  });
}

t.test('not Go', async (t) => {
  const node = process.execPath;
  const err = t.throws(() => openGoBinary(node)) as Error;
  t.ok(err instanceof NotGoBinaryError, 'NotGoBinaryError');
  t.equal(err.message, `${node} is not a Go program (no Go build info)`);
  const txt = join(tmpdir(), `goroscope-not-elf-${process.pid}.txt`);
  writeFileSync(txt, 'hello\n');
  t.teardown(() => unlinkSync(txt));
  t.equal((t.throws(() => openGoBinary(txt)) as Error).message, `${txt} is not a Go program (not an ELF file)`);
  t.throws(() => openGoBinary('/no/such/file'), { code: 'ENOENT' }, 'a missing file is not reworded');
});
