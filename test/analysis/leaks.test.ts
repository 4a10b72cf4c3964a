// Leak suspects on real leaking Go programs: each leak is found and pinned to its creation site and process;
// a program without leaks reports none.
import t from 'tap';
import { join } from 'node:path';
import { LeakDetector } from '../../agent/src/analysis/leaks.ts';
import { GoroutineTracer } from '../../agent/src/tracer/goroutine-tracer.ts';
import { monoNowNs } from '../../agent/src/tracer/clock.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { startChild } from '../lib/child.ts';
import { goBuild, repoRoot } from '../lib/go.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

const noBpf = await bpfUnavailable();
const binary = () => goBuild({ srcDir: join(repoRoot, 'test', 'fixtures', 'leaky'), name: 'leaky' });

async function observe(mode: string) {
  const child = startChild(binary(), ['-mode', mode, '-every', '50ms'], { what: `leaky -mode ${mode}` });
  await child.until(/^READY$/m);
  const tracer = new GoroutineTracer({ ringBytes: 4 << 20 });
  try {
    tracer.start();
    const proc = tracer.attach(openTarget(child.pid));
    const detector = new LeakDetector({ minAgeMs: 300, minCount: 5, history: 6 });
    // What the detector reports at any point once it has a full history, as an SRE polling it would see it: on
    // a busy machine the program's own timers run late, so one evaluation may miss a leak that the next shows.
    const seen = new Map<string, ReturnType<LeakDetector['suspects']>[number]>();
    for (let i = 0; i < 12; i++) {
      await new Promise((r) => setTimeout(r, 400));
      detector.sample(proc, monoNowNs());
      if (i >= 6) for (const s of detector.suspects(proc)) seen.set(`${s.kind} ${s.startFunction}`, s);
    }
    return { pid: child.pid, suspects: [...seen.values()] };
  } finally {
    await tracer.close();
    child.kill();
  }
}

t.test('a poller on a ticker nobody stops', { skip: noBpf ?? false }, async (t) => {
  const { pid, suspects } = await observe('ticker');
  const s = suspects.find((x) => x.kind === 'growing-live' && x.startFunction === 'main.pollForever');
  t.ok(s, `suspect found: ${JSON.stringify(suspects.map((x) => [x.kind, x.startFunction, x.count]))}`);
  t.equal(s?.pid, pid, 'the right process');
  t.equal(s?.createdBy?.function, 'main.main', 'created in main.main');
  t.match(s?.createdBy?.file, /fixtures\/leaky\/main\.go$/);
  t.equal(s?.waitReason, 'chan receive', 'parked on the ticker channel');
  t.ok(s!.count >= 20 && s!.growthPerMinute > 0, `count ${s?.count}, growing ${s?.growthPerMinute.toFixed(0)}/min`);
  t.equal(s?.verified, 1, "the process's memory confirms them alive");
  t.notOk(suspects.some((x) => x.startFunction === 'main.main.func1'), 'the constant pool is not a suspect');
});

t.test('a goroutine blocked forever on a channel', { skip: noBpf ?? false }, async (t) => {
  const { suspects } = await observe('chan');
  const s = suspects.find((x) => x.kind === 'growing-live' && x.startFunction === 'main.waitForever');
  t.ok(s, `suspect found: ${JSON.stringify(suspects.map((x) => [x.kind, x.startFunction, x.count]))}`);
  t.equal(s?.waitReason, 'chan receive');
  t.equal(s?.createdBy?.function, 'main.main');
});

t.test('a time.AfterFunc that re-arms itself', { skip: noBpf ?? false }, async (t) => {
  const { suspects } = await observe('afterfunc');
  const s = suspects.find((x) => x.kind === 'growing-creation-rate' && /^main\.rearm\.func/.test(x.startFunction ?? ''));
  t.ok(s, `suspect found: ${JSON.stringify(suspects.map((x) => [x.kind, x.startFunction, Math.round(x.count)]))}`);
  t.ok(s!.growthPerMinute > 0);
});

t.test('a healthy program has no suspects', { skip: noBpf ?? false }, async (t) => {
  const { suspects } = await observe('none');
  t.same(suspects.map((x) => [x.kind, x.startFunction]), [], 'no suspects');
});
