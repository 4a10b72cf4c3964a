// A real reader of Go dumps: panicparse (github.com/maruel/panicparse/v2, built from the Go module proxy by
// test/tools/panicparse) reads goroscope's dump and the program's own runtime.Stack dump of the same moment, and
// must understand the same goroutines from both: ids, states, every frame (function, file, line), created-by.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { openStackTarget, streamDump } from '../../agent/src/stacks/dump.ts';
import { goBuild, repoRoot } from '../lib/go.ts';
import { buildStacksFixture, StacksProcess } from '../lib/stacks-fixture.ts';

interface PpGoroutine {
  id: number;
  state: string;
  frames: Array<{ function: string; file: string; line: number }>;
  elided: boolean;
  createdBy: Array<{ function: string; file: string; line: number }>;
}

let pp = '';
let skip: string | undefined;
try {
  pp = goBuild({ srcDir: join(repoRoot, 'test', 'tools', 'panicparse'), name: 'panicparse-json' });
} catch (e) {
  skip = `cannot build panicparse from the Go module proxy: ${(e as Error).message.split('\n')[0]}`;
}
const read = (dump: string) => JSON.parse(execFileSync(pp, [], { input: dump, encoding: 'utf8', timeout: 30_000, maxBuffer: 64 << 20 })) as PpGoroutine[];

t.test('panicparse reads goroscope dumps as it reads Go\'s own', { skip: skip ?? false }, async (t) => {
  const { proc, dump } = await StacksProcess.start(buildStacksFixture('local', 'default'));
  t.teardown(() => proc.kill());
  let ours = '';
  streamDump(openStackTarget(proc.pid), (c) => (ours += c));
  const theirs = new Map(read(dump).map((g) => [g.id, g]));
  const mine = new Map(read(ours).map((g) => [g.id, g]));
  let compared = 0;
  for (const [id, g] of theirs) {
    if (g.state === 'running') continue;
    compared++;
    t.same(mine.get(id), g, `goroutine ${id} [${g.state}]`);
  }
  t.ok(compared >= 20, `${compared} goroutines read alike`);
  t.ok([...mine.values()].some((g) => g.elided), 'the elided deep recursion too');
});
