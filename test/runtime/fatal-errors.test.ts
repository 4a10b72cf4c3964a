// Real Go programs that die, traced by real uprobes: the reason is captured with the right pid and goroutine,
// kept after the process is gone, and the programs die exactly as they do untraced.
import t from 'tap';
import { RuntimeEventsTracer } from '../../agent/src/runtime/runtime-tracer.ts';
import type { Child } from '../lib/child.ts';
import { eachGoVersion, goVersions, sleep, startGo } from './helpers.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

interface Death {
  code: number | null;
  signal: string | null;
  out: string;
  /** The line on stderr that says what the runtime died of. Not always the first: when the address space cannot be
   *  reserved, the runtime prints "runtime: out of memory: cannot allocate ..." before "fatal error: out of memory",
   *  and whether it can depends on the machine's memory and overcommit. */
  first: string;
  /** The goroutine stderr shows running, when there is one. */
  running: number | null;
  readyGoid: number;
  pid: number;
}

/** Runs the program in `mode` until it dies; with `addressSpaceKiB`, under that limit (`ulimit -v`). */
async function die(bin: string, mode: string, addressSpaceKiB?: number, beforeGo?: (p: Child) => void): Promise<Death> {
  const p = addressSpaceKiB
    ? startGo('/bin/sh', ['-c', `ulimit -v ${addressSpaceKiB} && exec "$0" "$@"`, bin, mode])
    : startGo(bin, [mode]);
  const ready = await p.until(/^READY (\d+)$/m);
  beforeGo?.(p);
  p.send('go');
  const { code, signal } = await p.exit();
  const running = /^goroutine (\d+) \[running\]:$/m.exec(p.err);
  return {
    code,
    signal,
    out: p.out,
    first: /^(?:fatal error|panic): .*$/m.exec(p.err)?.[0] ?? p.err.split('\n')[0],
    running: running ? Number(running[1]) : null,
    readyGoid: Number(ready[1]),
    pid: p.pid,
  };
}

const MODES: Array<{ name?: string; mode: string; addressSpaceKiB?: number; text: RegExp; kind: 'fatal error' | 'panic'; fn: string[] }> = [
  { mode: 'mapwrite', text: /^fatal error: concurrent map writes$/, kind: 'fatal error', fn: ['runtime.fatal', 'runtime.throw'] },
  { mode: 'deadlock', text: /^fatal error: all goroutines are asleep - deadlock!$/, kind: 'fatal error', fn: ['runtime.fatal', 'runtime.throw'] },
  { mode: 'oom', text: /^fatal error: (runtime: )?out of memory$/, kind: 'fatal error', fn: ['runtime.throw'] },
  // The other way out of memory: the heap cannot even reserve the address space ("runtime: out of memory: cannot
  // allocate ..." comes first), as on a machine with little memory and strict overcommit.
  { name: 'oom, no address space', mode: 'oom', addressSpaceKiB: 3_000_000, text: /^fatal error: out of memory$/, kind: 'fatal error', fn: ['runtime.throw'] },
  { mode: 'panic', text: /^panic: goroscope test panic in goroutine \d+$/, kind: 'panic', fn: ['runtime.fatalpanic'] },
  { mode: 'panicerr', text: /^panic: goroscope test error: disk on fire$/, kind: 'panic', fn: ['runtime.fatalpanic'] },
];

t.test('fatal errors', async (t) => {
  await eachGoVersion(t, 'crash', goVersions, async (t, bin) => {
    const tracer = new RuntimeEventsTracer();
    t.teardown(() => tracer.close());
    tracer.start();

    for (const m of MODES) {
      await t.test(m.name ?? m.mode, { timeout: 90_000 }, async (t) => {
        const base = await die(bin, m.mode, m.addressSpaceKiB);
        t.match(base.first, m.text, `untraced, it dies saying: ${base.first}`);
        t.equal(base.code, 2, 'untraced, exit code 2');

        const traced = await die(bin, m.mode, m.addressSpaceKiB, (p) => tracer.attach(openTarget(p.pid)));
        await sleep(50);
        tracer.detach(traced.pid); // the process is gone; what it said must stay
        t.equal(traced.code, base.code, `traced, the same exit code (${traced.code})`);
        t.equal(traced.signal, base.signal, 'traced, the same signal');
        // A goroutine's id depends on how many the runtime had started by then, which varies run to run.
        const noGoid = (x: string) => x.replace(/^READY \d+$/m, 'READY N').replace(/goroutine \d+/g, 'goroutine N');
        t.equal(noGoid(traced.out), noGoid(base.out), 'traced, the same stdout (goroutine ids aside)');
        if (m.mode === 'oom' && !m.addressSpaceKiB) {
          // Which of Go's two out-of-memory lines a run meets (reserving address space or mapping it) depends on the
          // machine's free memory at that moment, which other processes change between the two runs (seen in CI).
          t.match(traced.first, m.text, `traced, it dies of running out of memory too: ${traced.first}`);
        } else {
          t.equal(noGoid(traced.first), noGoid(base.first), 'traced, the same fatal line on stderr (goroutine ids aside)');
        }

        const s = tracer.summary(traced.pid);
        t.ok(s && !s.attached, 'kept after the process exited and was detached');
        const fatal = s!.fatal;
        t.ok(fatal.length >= 1, `${fatal.length} fatal record(s)`);
        const f = fatal[0];
        t.equal(f.pid, traced.pid, 'the right pid');
        t.equal(f.kind, m.kind, f.kind);
        t.ok(m.fn.includes(f.function), `caught in ${f.function}`);
        t.equal(f.text, traced.first, `the message matches stderr: ${f.text}`);
        t.notOk(f.truncated, 'not cut');
        if (traced.running !== null) {
          if (m.mode === 'mapwrite') {
            // Both writers can detect the race and throw; stderr shows whichever took the print lock first.
            t.ok(fatal.some((x) => x.goid === traced.running), `the goroutine stderr shows running (${traced.running}) threw (records: ${fatal.map((x) => x.goid)})`);
          } else {
            t.equal(f.goid, traced.running, `the goroutine stderr shows running (${traced.running})`);
          }
        }
        if (m.mode === 'deadlock') {
          // checkdead runs on a thread's g0 with no user goroutine on it: stderr shows none running either.
          t.equal(traced.running, null, 'stderr shows no running goroutine');
          t.ok(f.onSystemStack && f.goid === 0, 'reported from the system stack, no goroutine');
        } else if (m.mode !== 'mapwrite') {
          t.equal(f.goid, traced.readyGoid, `the goroutine the program named (${traced.readyGoid})`);
        }
        if (m.mode === 'oom') {
          // Mapping the reserved heap fails on the system stack; reserving it fails on the goroutine's own.
          if (traced.first === 'fatal error: runtime: out of memory') t.ok(f.onSystemStack, 'thrown on the system stack, attributed to the allocating goroutine');
          else t.notOk(f.onSystemStack, 'thrown on the allocating goroutine\'s own stack');
        }
        t.same(JSON.parse(JSON.stringify(f)), f, 'JSON-ready');
      });
    }
    t.same(Object.values(tracer.lost()).filter((n) => n > 0), [], 'nothing lost');
    t.equal(tracer.strayRecords, 0, 'no stray records');
  }, 300_000);
});
