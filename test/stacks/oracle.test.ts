// The oracle: a Go program prints its own runtime.Stack(buf, true) dump once its goroutines are parked (nested
// calls, inlined helpers, closures, generic functions, method values, deep recursion; blocked in channels,
// select, mutexes, a condition variable, a wait group, sleep, network IO and a system call). goroscope then reads
// the same process from outside: for every goroutine the program's dump shows parked, goroscope's dump must
// have the same block, line for line (header, function, arguments, file:line +offset, created by).
// Per Go version and build kind; CI runs a subset, GOROSCOPE_MATRIX=full every cell (scripts/matrix.sh).
import t from 'tap';
import { existsSync } from 'node:fs';
import { dumpJson, formatDump, openStackTarget, streamDump, takeDump } from '../../agent/src/stacks/dump.ts';
import { ProcessMemory } from '../../agent/src/proc/process.ts';
import { type BuildKind } from '../lib/go.ts';
import { buildStacksFixture, dumpBlocks, StacksProcess } from '../lib/stacks-fixture.ts';

const kinds: BuildKind[] = ['default', 'stripped', 'pie', 'static', 'cgo'];
const fullVersions = ['1.19', '1.22.12', 'local', '1.27.4'];
const ciCells: Array<[string, BuildKind]> = [
  ...kinds.map((k) => ['local', k] as [string, BuildKind]),
  ['1.19', 'default'],
  ['1.19', 'stripped'],
  ['1.27.4', 'default'],
  ['1.27.4', 'stripped'],
];
const cells = process.env.GOROSCOPE_MATRIX === 'full' ? fullVersions.flatMap((v) => kinds.map((k) => [v, k] as [string, BuildKind])) : ciCells;

/** Whether this process may read other processes' memory. */
function noPtrace(): string | undefined {
  try {
    new ProcessMemory(process.pid).close();
    return undefined;
  } catch (e) {
    return `cannot read process memory here: ${(e as Error).message}`;
  }
}
const skipAll = noPtrace();
if (skipAll) t.comment(`SKIPPING stack oracle tests: ${skipAll}`);

const results = new Map<string, string>();

// Every cell is built before the first test starts: tap runs a test as soon as it is defined, and a build
// between two definitions would block the event loop under a running program (its start would time out).
const built = cells.map(([version, kind]) => {
  let binary = '';
  let skip = skipAll ?? (version === '1.19' && !existsSync('/usr/lib/go-1.19/bin/go') ? "Go 1.19 is not installed (Debian's golang-1.19-go)" : undefined);
  if (!skip) {
    try {
      binary = buildStacksFixture(version, kind);
    } catch (e) {
      skip = `cannot build with Go ${version} (${kind}): ${(e as Error).message.split('\n')[0]}`;
    }
  }
  return { version, kind, binary, skip };
});

for (const { version, kind, binary, skip } of built) {
  const name = `Go ${version} ${kind}`;
  results.set(name, skip ? 'skip' : 'fail');
  t.test(name, { skip: skip ?? false }, async (t) => {
    t.teardown(() => {
      if (t.passing()) results.set(name, 'pass');
    });
    const { proc, dump } = await StacksProcess.start(binary);
    t.teardown(() => proc.kill());
    const oracle = dumpBlocks(dump);
    const target = openStackTarget(proc.pid);
    const d = takeDump(target, { args: true });
    const ours = dumpBlocks(formatDump(d));

    let compared = 0;
    for (const [goid, lines] of oracle) {
      if (/\[running\]/.test(lines[0])) continue; // the goroutine that printed the dump
      compared++;
      t.same(ours.get(goid), lines, lines[0]);
    }
    t.ok(compared >= 20, `${compared} parked goroutines compared`);
    // What `goroscope dump` prints: the same, written batch by batch as it is read.
    let streamed = '';
    streamDump(target, (chunk) => (streamed += chunk));
    const fromStream = dumpBlocks(streamed);
    t.same([...oracle].filter(([, l]) => !/\[running\]/.test(l[0])).map(([g]) => fromStream.get(g)), [...oracle].filter(([, l]) => !/\[running\]/.test(l[0])).map(([, l]) => l), 'the streamed dump too');
    let streamedJson = '';
    streamDump(target, (chunk) => (streamedJson += chunk), { json: true });
    t.equal((JSON.parse(streamedJson) as { goroutines: unknown[] }).goroutines.length, ours.size, 'the streamed JSON parses, with every goroutine');
    const extra = [...ours.keys()].filter((g) => !oracle.has(g));
    t.same(extra, [], 'no goroutine the program does not show');
    t.same(d.goroutines.filter((g) => g.stackState === 'inconsistent').map((g) => [g.goid, g.problem]), [], 'no stack read as inconsistent');

    // The kinds of stack the oracle must have covered, so a passing cell means what it says.
    const text = [...oracle.values()].map((l) => l.join('\n')).join('\n');
    t.match(text, /main\.recvInlined\(\.\.\.\)/, 'an inlined frame');
    t.match(text, /\[syscall\]/, 'a goroutine in a system call');
    t.match(text, /\[IO wait\]/, 'a goroutine in network IO');
    const recursion = [...oracle.values()].map((l) => l.filter((x) => x.startsWith('main.recurse(')).length);
    t.ok(Math.max(...recursion) >= 90 && Math.max(...recursion) < 121, `a stack deeper than the dump prints (${Math.max(...recursion)} of 121 frames)`);
    t.match(text, /main\.waitGeneric\[/, 'a generic function');

    const json = dumpJson(d);
    const inl = json.goroutines.find((g) => g.frames.some((f) => f.function === 'main.recvInlined'));
    const at = inl?.frames.findIndex((f) => f.function === 'main.recvInlined') ?? -1;
    t.same(
      inl?.frames.slice(at, at + 2).map((f) => [f.function, f.inlined, f.pcOffset === null]),
      [
        ['main.recvInlined', true, true],
        ['main.callsInlined', false, false],
      ],
      'JSON: the inlined frame, then its physical caller',
    );
    const deep = json.goroutines.find((g) => g.frames.filter((f) => f.function === 'main.recurse').length > 100);
    t.ok(deep, 'JSON keeps every frame of the deep recursion (121 and more)');
  });
}

t.test('a running goroutine is said to be running, never guessed', { skip: skipAll ?? false }, async (t) => {
  const { proc } = await StacksProcess.start(buildStacksFixture('local', 'default'));
  t.teardown(() => proc.kill());
  await proc.command('spin', /SPINNING\n/);
  const target = openStackTarget(proc.pid);
  // The spinner is running but for the moments the runtime preempts it (a GC, sysmon's 10 ms slice on a loaded
  // machine): a dump then reads its real stack, which must end in main.spinner, never a guess. Dumps until one
  // catches it running (one in 20 at most missed it, under load).
  let d = takeDump(target);
  let spinner = dumpJson(d).goroutines.find((g) => g.startFunction === 'main.spinner');
  for (let i = 0; i < 50 && spinner && spinner.stackState !== 'running'; i++) {
    t.ok(spinner.frames.some((f) => f.function === 'main.spinner'), `caught preempted (${spinner.stackState}): its own stack, through main.spinner`);
    d = takeDump(target);
    spinner = dumpJson(d).goroutines.find((g) => g.startFunction === 'main.spinner');
  }
  t.ok(spinner, 'the spinning goroutine is listed');
  t.equal(spinner?.stackState, 'running');
  t.same(spinner?.frames, [], 'with no frames');
  t.match(formatDump(d), /goroutine \d+ \[running\]:\n\tgoroutine running on other thread; stack unavailable\ncreated by main\.main/, 'as Go prints it');
  await proc.command('stop', /STOPPED\n/);
});

t.teardown(() => {
  const lines = [...results].map(([k, v]) => `${k}: ${v}`);
  t.comment(`stack oracle matrix\n${lines.join('\n')}`);
});
