// Leak suspects carry the stack their goroutines are parked at: `goroscope snapshot` of a program that leaks a
// goroutine every 10ms (blocked on a channel nobody sends to) names the leaking site and its parked stack, in
// its JSON `leaks` and in its table, and the suspect's span carries it; a healthy program (a fixed population
// parked for good) shows none.
import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { bpfUnavailable } from '../lib/bpf.ts';
import { repoRoot } from '../lib/go.ts';
import { buildStacksFixture, StacksProcess } from '../lib/stacks-fixture.ts';

const run = promisify(execFile);
const noBpf = await bpfUnavailable();
const cli = join(repoRoot, 'bin', 'goroscope.js');

async function snapshot(pid: number, json: boolean): Promise<string> {
  const args = [cli, 'snapshot', '--pid', String(pid), '--duration', '4s', '--full', '--no-tcp', ...(json ? ['--json'] : [])];
  const { stdout } = await run(process.execPath, args, { timeout: 90_000, maxBuffer: 64 << 20 });
  return stdout;
}

interface Leak {
  kind: string;
  startFunction: string | null;
  createdBy: { function: string; file: string; line: number } | null;
  waitReason: string | null;
  count: number;
  stack: Array<{ function: string; file: string; line: number }> | null;
}

t.test('a leaking program: the site and its parked stack', { skip: noBpf ?? false }, async (t) => {
  const { proc } = await StacksProcess.start(buildStacksFixture('local', 'default'), ['-leak', '100000', '-every', '10ms']);
  t.teardown(() => proc.kill());
  const snap = JSON.parse(await snapshot(proc.pid, true)) as { leaks: Leak[] };
  // `go leakOne(c)` starts main.leakOne, through a wrapper closure since Go 1.22 (main.main.func1.gowrap1).
  const leaking = (l: Leak) => /^main\.(leakOne|main\.func1\.gowrap1)$/.test(l.startFunction ?? '');
  const leak = snap.leaks.find((l) => l.kind === 'growing-live' && leaking(l));
  t.ok(leak, `the leak is a suspect: ${JSON.stringify(snap.leaks.map((l) => [l.kind, l.startFunction, Math.round(l.count)]))}`);
  t.equal(leak?.createdBy?.function, 'main.main.func1', 'created in the loop that leaks');
  t.equal(leak?.waitReason, 'chan receive');
  t.ok((leak?.count ?? 0) >= 20, `${leak?.count} goroutines`);
  t.equal(leak?.stack?.[0]?.function, 'main.leakOne', 'parked in main.leakOne');
  t.match(leak?.stack?.[0]?.file, /fixtures\/stacks\/main\.go$/);
  t.ok((leak?.stack?.[0]?.line ?? 0) > 0, `at line ${leak?.stack?.[0]?.line}`);
  t.notOk(snap.leaks.some((l) => !leaking(l) && l.kind === 'growing-live'), 'the steady population is not a suspect');

  const table = await snapshot(proc.pid, false);
  t.match(table, /LEAK SUSPECTS\n {2}main\.(leakOne|main\.func1\.gowrap1) .*\[chan receive\]/, 'the table has a leak section');
  t.match(table, /parked at \(goroutine \d+\):\n {6}main\.leakOne\n {8}\S+main\.go:\d+/, 'with the parked stack');
});

t.test('a healthy program shows no leak', { skip: noBpf ?? false }, async (t) => {
  const { proc } = await StacksProcess.start(buildStacksFixture('local', 'default'), ['-block']);
  t.teardown(() => proc.kill());
  const snap = JSON.parse(await snapshot(proc.pid, true)) as { leaks: Leak[] };
  t.same(snap.leaks, [], 'no suspects');
});

t.test('a leak suspect span carries the parked stack', async (t) => {
  const { TraceModel } = await import('../../collector/src/otel/trace-model.ts');
  const { processResource } = await import('../../collector/src/otel/spans.ts');
  const p = { node: 'n', pid: 7, startTime: 1, exe: '/bin/svc', goVersion: 'go1.26.8', containerId: null, podName: null, podNamespace: null, podUid: null, podContainer: null, seenAt: 0, serviceVersion: null };
  const stack = [
    { function: 'main.leakOne', file: '/src/main.go', line: 146 },
    { function: 'main.main.func1', file: '/src/main.go', line: 305 },
  ];
  const span = new TraceModel().leakSpan(
    { kind: 'leak', pid: 7, suspect: 'growing-live', createdBy: stack[1], startFunction: 'main.leakOne', waitReason: 'chan receive', count: 500, growthPerMinute: 100, oldestAgeMs: 60_000, since: 1000, observedAt: 61_000, stack },
    p,
    processResource(p),
  );
  t.equal(span.attributes['code.stacktrace'], 'main.leakOne\n\t/src/main.go:146\nmain.main.func1\n\t/src/main.go:305', "the stack, as a dump prints it");
  t.match(span.attributes, { 'code.function.name': 'main.leakOne', 'code.file.path': '/src/main.go', 'code.line.number': 146, 'goroscope.leak.wait_reason': 'chan receive' });
  t.equal(span.name, 'goroutine leak: main.leakOne');
});
