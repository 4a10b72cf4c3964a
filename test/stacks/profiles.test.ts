// pprof profiles read from outside, opened with Go's own `go tool pprof` (-raw and -top). The goroutine profile
// must equal the program's own goroutine profile at debug=1 (what /debug/pprof/goroutine?debug=1 serves) for
// the same population: the same stacks with the same counts. The blocking profile must put known waits (a
// receive handed a value every 300ms, a mutex held 400ms at a time) on their stacks with their counts and time.
import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodePprof } from '../../collector/src/protocol/pprof.ts';
import { goroutineProfile } from '../../agent/src/profiles/goroutine-profile.ts';
import { blockProfile } from '../../agent/src/profiles/run.ts';
import { openStackTarget, takeDump } from '../../agent/src/stacks/dump.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { debug1Shown, goToolPprof, parseDebug1, parseRaw, type RawFrame } from '../lib/pprof.ts';
import { buildStacksFixture, StacksProcess } from '../lib/stacks-fixture.ts';

const dir = mkdtempSync(join(tmpdir(), 'goroscope-profiles-'));
const key = (frames: RawFrame[]) => frames.map((f) => `${f.function} ${f.file}:${f.line}`).join(' | ');

t.test('goroutine profile: go tool pprof reads it, and it equals debug=1', async (t) => {
  const { proc } = await StacksProcess.start(buildStacksFixture('local', 'default'));
  t.teardown(() => proc.kill());
  const oracle = parseDebug1((await proc.command('pprof', /PPROF BEGIN\n([\s\S]*?)PPROF END\n/))[1]);
  const file = join(dir, 'goroutine.pb.gz');
  writeFileSync(file, encodePprof(goroutineProfile(takeDump(openStackTarget(proc.pid)))));

  const top = goToolPprof(['-top'], file);
  t.match(top, /Type: goroutine/, 'go tool pprof -top opens it');
  const raw = parseRaw(goToolPprof(['-raw'], file));
  t.equal(raw.sampleTypes, 'goroutine/count');

  // The goroutine that wrote Go's profile is running in it; goroscope sees the same goroutine elsewhere.
  const theirs = new Map<string, number>();
  for (const r of oracle.records) {
    if (r.frames.some((f) => f.function.startsWith('runtime/pprof.'))) continue;
    const k = `${r.pcs} ${key(r.frames)}`;
    theirs.set(k, (theirs.get(k) ?? 0) + r.count);
  }
  const ours = new Map<string, number>();
  for (const s of raw.samples) {
    if (s.frames.some((f) => f.function === 'main.main')) continue;
    const k = `${s.frames.length} ${key(debug1Shown(s.frames))}`;
    ours.set(k, (ours.get(k) ?? 0) + s.values[0]);
  }
  t.ok(theirs.size >= 18, `${theirs.size} distinct stacks in Go's profile`);
  t.same(Object.fromEntries([...ours].sort()), Object.fromEntries([...theirs].sort()), 'same stacks (frame count and frames shown), same counts');
  t.equal([...ours.values()].reduce((a, b) => a + b, 0) + 1, oracle.total, "goroutine counts add up to Go's total (the writer aside)");
  const labelled = raw.samples.find((s) => s.frames.some((f) => f.function === 'main.selectForever'));
  t.same(labelled?.labels, { state: 'waiting', 'wait reason': 'select (no cases)' }, 'labels: state and wait reason');
});

const noBpf = await bpfUnavailable();
t.test('block profile: known waits on their stacks, with counts and time', { skip: noBpf ?? false }, async (t) => {
  const { proc } = await StacksProcess.start(buildStacksFixture('local', 'default'), ['-block']);
  t.teardown(() => proc.kill());
  await new Promise((r) => setTimeout(r, 500));
  const seconds = 3;
  const data = await blockProfile(proc.pid, seconds * 1000, { scanIntervalMs: 100 });
  const file = join(dir, 'block.pb.gz');
  writeFileSync(file, encodePprof(data));
  t.match(goToolPprof(['-top'], file), /Type: delay/, 'go tool pprof -top opens it');
  const raw = parseRaw(goToolPprof(['-raw'], file));
  t.equal(raw.sampleTypes, 'contentions/count delay/nanoseconds');

  const sum = (pred: (fs: RawFrame[]) => boolean, reason: string) => {
    const ss = raw.samples.filter((s) => pred(s.frames) && s.labels['wait reason'] === reason);
    return { contentions: ss.reduce((a, s) => a + s.values[0], 0), delayS: ss.reduce((a, s) => a + s.values[1], 0) / 1e9 };
  };
  const recv = sum((fs) => fs.some((f) => f.function === 'main.tickedReceiver'), 'chan receive');
  t.ok(recv.contentions >= seconds / 0.3 - 3 && recv.contentions <= seconds / 0.3 + 2, `the ticked receive: ${recv.contentions} waits of ~300ms`);
  t.ok(recv.delayS > seconds * 0.85 && recv.delayS <= seconds * 1.01, `waiting ${recv.delayS.toFixed(2)}s of ${seconds}s`);
  const lock = sum((fs) => fs.some((f) => f.function === 'main.contendedLocker'), 'sync.Mutex.Lock');
  t.ok(lock.contentions >= seconds / 0.405 - 3, `the contended lock: ${lock.contentions} waits of ~400ms`);
  t.ok(lock.delayS > seconds * 0.8 && lock.delayS <= seconds * 1.01, `waiting ${lock.delayS.toFixed(2)}s of ${seconds}s`);
  const forever = sum((fs) => fs.some((f) => f.function === 'main.selectForever'), 'select (no cases)');
  t.equal(forever.contentions, 0, 'a wait that began before the window adds no contention');
  t.ok(Math.abs(forever.delayS - seconds) < 0.05, `and counts the whole window: ${forever.delayS.toFixed(3)}s`);
  const sys = sum((fs) => fs.some((f) => f.function === 'main.syscallReader'), 'syscall');
  t.ok(Math.abs(sys.delayS - seconds) < 0.05, `a system call counts too: ${sys.delayS.toFixed(3)}s`);
  t.match(data.comments.join('\n'), /parks recorded/, 'the profile says where its numbers come from');
});
