// Reads that race with the goroutine: pairs of goroutines hand a value back and forth as fast as they can, each
// time through a recursion of another depth, so their stacks change under the reader. Every stack goroscope
// reports as read must be one the program can have (runtime frames, main.bounce 1 to 7 deep, main.churner,
// runtime.goexit; or preempted by a signal anywhere in them, through runtime.asyncPreempt); the others must say
// they were running or moved, never print garbage.
import t from 'tap';
import { openStackTarget, takeDump } from '../../agent/src/stacks/dump.ts';
import { logicalFrames } from '../../agent/src/stacks/traceback.ts';
import { buildStacksFixture, StacksProcess } from '../lib/stacks-fixture.ts';

t.test('stacks that never hold still are read right or reported, never guessed', async (t) => {
  const { proc } = await StacksProcess.start(buildStacksFixture('local', 'default'), ['-churn', '3']);
  t.teardown(() => proc.kill());
  await new Promise((r) => setTimeout(r, 300));
  const target = openStackTarget(proc.pid);
  const states: Record<string, number> = {};
  let retried = 0;
  let bad = 0;
  const shapes = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const d = takeDump(target);
    retried += d.summary.retried;
    for (const g of d.goroutines) {
      // Created in main.startChurn (started through a wrapper closure since Go 1.22: main.startChurn.gowrap1).
      if (target.pclntab.funcForPC(g.gopc)?.name !== 'main.startChurn') continue;
      states[g.stackState] = (states[g.stackState] ?? 0) + 1;
      if (g.stackState !== 'ok') continue;
      const names = logicalFrames(target, g).map((f) => f.function);
      const user = names.filter((n) => !n.startsWith('runtime.') && !n.startsWith('internal/') && !/\.gowrap\d+$/.test(n));
      const depth = user.filter((n) => n === 'main.bounce').length;
      const ok =
        names[names.length - 1] === 'runtime.goexit' &&
        user[user.length - 1] === 'main.churner' &&
        // Parked in a channel operation 1-7 calls deep, or preempted anywhere (asyncPreempt: the loop itself too).
        (depth >= 1 || names.includes('runtime.asyncPreempt')) && depth <= 7 &&
        user.slice(0, depth).every((n) => n === 'main.bounce') &&
        user.length === depth + 1;
      if (!ok) {
        bad++;
        if (bad <= 3) t.fail(`an impossible stack: ${names.join(' < ')}`);
      } else shapes.add(`${depth}`);
    }
  }
  t.equal(bad, 0, 'every stack read is one the program can have');
  t.ok((states.ok ?? 0) > 20, `stacks read: ${JSON.stringify(states)}, ${retried} goroutines re-read because they moved`);
  t.ok(shapes.size >= 3, `at several depths: ${[...shapes].sort().join(', ')}`);
});
