// The function a go statement started, not the compiler's wrapper: checked against the binary's own symbol table
// (`go tool nm` lists every wrapper) and the fixture's source, for each form of go statement it has.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openGoBinary } from '../../agent/src/gobinary/index.ts';
import { goBuild, goCommand, newestGo, repoRoot } from '../lib/go.ts';

const src = join(repoRoot, 'test/fixtures/traces');
/** The line of `func handle(` in the fixture's source: where the wrapped function is defined. */
const handleLine = readFileSync(join(src, 'main.go'), 'utf8').split('\n').findIndex((l) => l.startsWith('func handle(')) + 1;

for (const version of ['local', newestGo]) {
  t.test(`gowrap functions resolve to what they call (Go ${version})`, async (t) => {
    const exe = goBuild({ srcDir: src, version });
    const { cmd, env } = goCommand(version);
    const wrappers = execFileSync(cmd, ['tool', 'nm', exe], { env, encoding: 'utf8' })
      .split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f[1] === 'T' && /^main\..*\.gowrap\d+$/.test(f[2])).map((f) => f[2]);
    const bin = openGoBinary(exe);
    if (wrappers.length === 0) {
      // Go 1.27 starts such go statements without a wrapper: the start function is the function itself.
      t.comment(`Go ${version} made no gowrap functions`);
    } else {
      t.equal(wrappers.length, 7, `wrappers in the binary: ${wrappers}`);
      const resolved = Object.fromEntries(wrappers.map((w) => [w, bin.startFunction(bin.pclntab.funcByName(w)!.entry)?.function]));
      // acceptLoop, idle, the client's literal; handle; two fetches and a leak.
      t.same(Object.values(resolved).sort(), ['main.acceptLoop', 'main.fetch', 'main.fetch', 'main.handle', 'main.idle', 'main.leak', 'main.main.func1'], JSON.stringify(resolved));
      const handle = bin.startFunction(bin.pclntab.funcByName('main.acceptLoop.gowrap1')!.entry)!;
      t.match(handle, { function: 'main.handle', file: /test\/fixtures\/traces\/main\.go$/, line: handleLine }, 'where the function is defined');
    }
    const plain = bin.pclntab.funcByName('main.fetch')!;
    t.equal(bin.startFunction(plain.entry)?.function, 'main.fetch', 'a function that is no wrapper is itself');
  });
}
