// Regenerates agent/src/http/http-layouts.json: net/http's layout (the request probes' offsets and argument
// registers) per Go minor version, for binaries without DWARF. Each entry is read by the agent's own DWARF reader
// (httpLayoutFromDwarf) from a reference build (scripts/http-layouts/server) by that version's toolchain, so the
// table and a binary's own DWARF cannot disagree; test/http/http-layouts.test.ts fails when they do.
//
// Entries are by exact Go version: patch releases change net/http's structs too. A binary whose version has no
// entry uses the two nearest of its minor version when they agree (tableLayout), else it is not traced, and says so.
//
//   node --import tsx scripts/http-layouts/generate.ts            # every toolchain of the runtime layout table, and the machine's
//   node --import tsx scripts/http-layouts/generate.ts 1.27.0     # add or refresh one; other entries are kept
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openGoBinary } from '../../agent/src/gobinary/index.ts';
import { parseGoVersion } from '../../agent/src/gobinary/layouts.ts';
import { HTTP_LAYOUTS_FILE, httpLayoutFromDwarf, netHttpPart, type HttpLayoutFile, type NetHttpLayout } from '../../agent/src/http/http-layout.ts';
import { goBuild, repoRoot, tableToolchains } from '../../test/lib/go.ts';

/** net/http's layout as the reference build of a toolchain ('local', '1.19', '1.N.P') has it. */
export function referenceLayout(version: string): { version: string; layout: NetHttpLayout } {
  const bin = goBuild({ srcDir: join(repoRoot, 'scripts', 'http-layouts', 'server'), version, name: 'http-layout-reference' });
  const b = openGoBinary(bin);
  const l = httpLayoutFromDwarf(b.elf);
  if (!l) throw new Error(`${bin}: no DWARF`);
  if (l.missing.length) throw new Error(`Go ${version}: ${l.missing.join('; ')}`);
  const v = parseGoVersion(b.goVersion);
  if (!v) throw new Error(`${bin}: Go version ${b.goVersion}`);
  return { version: `1.${v.minor}.${v.patch}`, layout: netHttpPart(l) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const versions = process.argv.length > 2 ? process.argv.slice(2) : [...tableToolchains, 'local'];
  const file: HttpLayoutFile = existsSync(HTTP_LAYOUTS_FILE)
    ? (JSON.parse(readFileSync(HTTP_LAYOUTS_FILE, 'utf8')) as HttpLayoutFile)
    : { schema: 1, generatedBy: 'scripts/http-layouts/generate.ts', versions: {} };
  for (const v of versions) {
    const r = referenceLayout(v);
    file.versions[r.version] = r.layout;
    process.stderr.write(`${v}: ${r.version}\n`);
  }
  const key = (k: string) => k.split('.').map(Number).reduce((a, n) => a * 1000 + n, 0);
  const sorted = Object.entries(file.versions).sort((a, b) => key(a[0]) - key(b[0]));
  writeFileSync(HTTP_LAYOUTS_FILE, `${JSON.stringify({ ...file, versions: Object.fromEntries(sorted) }, null, 2)}\n`);
}
