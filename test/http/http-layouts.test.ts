// http-layouts.json (net/http's offsets for stripped binaries) against the DWARF of a reference build by the same
// toolchain, read by the agent's own reader: the table and a binary's own DWARF must agree. CI checks the
// machine's Go and the newest release; HTTP_LAYOUT_TEST_GO=all checks every entry's toolchain.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { HTTP_LAYOUTS_FILE, tableLayout, type HttpLayoutFile } from '../../agent/src/http/http-layout.ts';
import { referenceLayout } from '../../scripts/http-layouts/generate.ts';
import { newestGo, tableToolchains } from '../lib/go.ts';

const file = JSON.parse(readFileSync(HTTP_LAYOUTS_FILE, 'utf8')) as HttpLayoutFile;
const env = process.env.HTTP_LAYOUT_TEST_GO;
const versions = env === 'all' ? tableToolchains : env ? env.split(',') : [...new Set(['local', newestGo])];

t.test('a version between entries', async (t) => {
  const f: HttpLayoutFile = { schema: 1, generatedBy: 'test', versions: {} };
  const a = file.versions[Object.keys(file.versions)[0]];
  const b = { ...a, response: { status: 1, written: 2 } };
  f.versions['1.30.2'] = a;
  f.versions['1.30.6'] = a;
  f.versions['1.30.9'] = b;
  t.same(tableLayout('go1.30.4', f), a, 'between two equal entries: theirs');
  t.match(tableLayout('go1.30.7', f), /not in http-layouts\.json, nor between two of its Go 1\.30 entries that agree \(1\.30\.2, 1\.30\.6, 1\.30\.9\)/, 'between two that differ: none, and why');
  t.type(tableLayout('go1.30.10', f), 'string', 'past the newest: none');
  t.type(tableLayout('go1.31.0', f), 'string', 'an unknown minor: none');
  t.type(tableLayout('devel go1.30-abc', f), 'string', 'a development build: none');
});

for (const version of versions) {
  t.test(`Go ${version}: the table entry is what the reference build's DWARF says`, { timeout: 600_000 }, async (t) => {
    let ref: ReturnType<typeof referenceLayout>;
    try {
      ref = referenceLayout(version);
    } catch (e) {
      const skip = `Go ${version}: the reference build failed: ${(e as Error).message.split('\n')[0]}`;
      console.error(`SKIPPED: ${skip}`);
      t.test(skip, { skip }, async () => {});
      return;
    }
    if (version === 'local' && !file.versions[ref.version]) {
      // A machine whose Go the table does not name: nothing to compare (its stripped binaries say why they are not traced).
      const skip = `the machine's Go ${ref.version} has no entry (add it: node --import tsx scripts/http-layouts/generate.ts local)`;
      console.error(`SKIPPED: ${skip}`);
      t.test(skip, { skip }, async () => {});
      return;
    }
    t.same(file.versions[ref.version], ref.layout, `Go ${ref.version} (regenerate: node --import tsx scripts/http-layouts/generate.ts ${version})`);
  });
}
