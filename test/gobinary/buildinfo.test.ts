// Go version from .go.buildinfo against `go version <binary>`.
import t from 'tap';
import { goVersion } from '../../agent/src/gobinary/buildinfo.ts';
import { ElfFile } from '../../agent/src/gobinary/elf.ts';
import { helloBuilds, withoutSectionHeaders } from './fixtures/tools.ts';
import { execFileSync } from 'node:child_process';

for (const { version, kind, bin } of helloBuilds(t)) {
  t.test(`Go ${version} ${kind}`, async (t) => {
    // `go version FILE` prints "FILE: go1.x.y".
    const want = execFileSync('go', ['version', bin], { encoding: 'utf8' }).trim().split(': ')[1];
    t.match(want, /^go1\.\d+/, `go version says ${want}`);
    t.equal(goVersion(ElfFile.open(bin)), want, 'version from the .go.buildinfo section');
    const bare = ElfFile.open(withoutSectionHeaders(bin, version, kind));
    t.equal(bare.section('.go.buildinfo'), undefined, 'copy without section headers');
    t.equal(goVersion(bare), want, 'found by scanning for the magic');
  });
}

t.test('not Go', async (t) => {
  t.equal(goVersion(ElfFile.open(process.execPath)), undefined, `${process.execPath} (node) has no Go build info`);
});
