// Runtime layouts: the committed JSON must match what the generator produces now, and Go's own goroutine dumps
// must agree with it (wait-reason strings, statuses, which goroutines are system goroutines).
//
// By default the Go checks run for the local toolchain, Go 1.19 and the newest release in the table (downloaded
// through GOTOOLCHAIN when missing); LAYOUTS_TEST_ALL_GO=1 also runs the dump oracle with every toolchain in the table.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { goBuild, goVersionOf, newestGo, repoRoot, tableToolchains } from '../lib/go.ts';
import {
  argRegister,
  dumpState,
  isSystemGoroutine,
  knownGoVersions,
  layoutFor,
  parseGoVersion,
  statusName,
  waitReasonString,
  type RuntimeLayout,
} from '../../agent/src/gobinary/layouts.ts';

const jsonPath = join(repoRoot, 'agent/src/gobinary/runtime-layouts.json');
const committed = JSON.parse(readFileSync(jsonPath, 'utf8')) as { schema: number; versions: Record<string, RuntimeLayout> };
const fixtureDir = join(repoRoot, 'test/gobinary/fixtures/layoutcheck');
const generatorDir = join(repoRoot, 'scripts/runtime-layouts');

/** Why a toolchain cannot be used here, or undefined when it can. */
function unavailable(version: string): string | undefined {
  try {
    goVersionOf(version);
    return undefined;
  } catch (err) {
    return `Go toolchain ${version} is not available: ${String((err as Error).message).split('\n')[0]}`;
  }
}

const localMissing = unavailable('local');
const go119Missing = unavailable('1.19');
const newestMissing = unavailable(newestGo);

t.test('committed JSON equals a fresh generation', { skip: localMissing ?? false }, async (t) => {
  // One toolchain per minor version (the generator refuses two): the newest unless the machine's Go is of its minor.
  const minorOf = (v: string) => /^go(1\.\d+)/.exec(goVersionOf(v))?.[1];
  const newest = !newestMissing && minorOf(newestGo) !== minorOf('local');
  const versions = ['local', ...(go119Missing ? [] : ['1.19']), ...(newest ? [newestGo] : [])];
  if (go119Missing) t.comment(`SKIPPING Go 1.19 regeneration: ${go119Missing}`);
  if (newestMissing) t.comment(`SKIPPING Go ${newestGo} regeneration: ${newestMissing}`);
  const out = execFileSync('go', ['run', '.', '-out', '-', ...versions], {
    cwd: generatorDir,
    env: { ...process.env, GOTOOLCHAIN: 'local', GOFLAGS: '-buildvcs=false' },
    encoding: 'utf8',
    timeout: 240_000,
    maxBuffer: 64 << 20,
  });
  const fresh = JSON.parse(out) as { schema: number; versions: Record<string, RuntimeLayout> };
  t.equal(fresh.schema, committed.schema, 'schema');
  t.equal(Object.keys(fresh.versions).length, versions.length, 'one entry per toolchain');
  for (const [minor, entry] of Object.entries(fresh.versions)) {
    const old = committed.versions[minor];
    if (!old) {
      t.fail(`Go ${minor} (${entry.toolchain}) has no entry in runtime-layouts.json; run scripts/runtime-layouts/generate.sh`);
      continue;
    }
    if (old.toolchain !== entry.toolchain) {
      // Same minor, other patch release (the table uses the newest patch): all but the toolchain must agree.
      t.comment(`Go ${minor}: JSON made with ${old.toolchain}, regenerated with ${entry.toolchain}; comparing all but the toolchain`);
    }
    t.same({ ...entry, toolchain: old.toolchain }, old, `Go ${minor}: regenerated entry equals the committed one`);
  }
});

t.test('every table entry is self-consistent', async (t) => {
  const minors = Object.keys(committed.versions);
  t.same(minors, [...minors].sort((a, b) => Number(a.split('.')[1]) - Number(b.split('.')[1])), 'versions in order');
  t.same(knownGoVersions(), minors, 'knownGoVersions');
  for (const [minor, l] of Object.entries(committed.versions)) {
    t.equal(l.goVersion, minor);
    t.match(l.toolchain, new RegExp(`^go${minor.replace('.', '\\.')}\\.\\d+$`), `${minor}: toolchain`);
    for (const [name, s] of [['g', l.g], ['m', l.m], ['p', l.p]] as const) {
      for (const [f, fl] of Object.entries(s.fields)) {
        if (fl) t.ok(fl.offset >= 0 && fl.offset + fl.size <= s.size, `${minor}: ${name}.${f} inside ${name}`);
      }
    }
    const g = l.g.fields;
    t.equal(g.goid.size, 8, `${minor}: goid is 8 bytes`);
    t.equal(g.goid.type, minor === '1.19' ? 'int64' : 'uint64', `${minor}: goid type`);
    t.equal(g.atomicstatus.size, 4, `${minor}: atomicstatus is 4 bytes`);
    t.equal(g.waitreason.size, 1, `${minor}: waitreason is 1 byte`);
    t.equal(g['stack.hi'].offset, g['stack.lo'].offset + 8, `${minor}: stack.hi follows stack.lo`);
    t.equal(g.parentGoid === null, Number(minor.split('.')[1]) < 21, `${minor}: parentGoid present from 1.21 on`);
    t.equal(l.waitReasonNames.length, l.waitReasonStrings.length, `${minor}: one string per wait reason`);
    t.equal(l.waitReasonNames[0], 'waitReasonZero');
    t.equal(l.statuses._Gscan, 0x1000);
    t.equal(l.statuses._Gwaiting, 4);
    for (const fn of ['newproc1', 'gopark', 'goready', 'ready', 'injectglist'] as const) {
      l.functions[fn].params.forEach((p, i) => t.equal(p.register, l.intArgRegisters[i], `${minor}: ${fn}(${p.name}) in ${l.intArgRegisters[i]}`));
    }
    t.same(l.functions.goexit1.params, [], `${minor}: goexit1 has no parameters`);
    t.equal(argRegister(l, 'newproc1', 'fn'), 'RAX');
    t.equal(argRegister(l, 'newproc1', 'callergp'), 'RBX');
    t.equal(argRegister(l, 'gopark', 'reason'), 'RCX');
    t.equal(argRegister(l, 'ready', 'gp'), 'RAX');
  }
});

t.test('layoutFor and helpers', async (t) => {
  const newest = knownGoVersions().at(-1)!;
  const r = layoutFor('go1.22.3');
  t.equal(r.exact, true);
  t.equal(r.note, undefined);
  t.equal(r.layout.goVersion, '1.22');
  t.equal(layoutFor('go1.19').layout.goVersion, '1.19');
  t.equal(layoutFor('go1.23rc1').layout.goVersion, '1.23');
  t.equal(layoutFor('go1.24.2 X:boringcrypto').exact, true);
  const dev = layoutFor('devel go1.24-abcdef Tue Jan 1 00:00:00 2025 +0000');
  t.equal(dev.layout.goVersion, '1.24');
  t.equal(dev.exact, false);

  const future = layoutFor('go1.99.0');
  t.equal(future.exact, false);
  t.equal(future.layout.goVersion, newest, 'newer than the table: the newest layout');
  t.match(future.note, /best-effort guess/);
  t.notMatch(future.note, /\n/, 'note is one line');
  // The release after the newest in the table (a stripped binary of it; one with DWARF reads its own).
  const next = `go1.${Number(newest.split('.')[1]) + 1}.0`;
  const guess = layoutFor(next);
  t.equal(guess.layout.goVersion, newest, `${next}: the Go ${newest} layout`);
  t.equal(guess.note, `Go 1.${Number(newest.split('.')[1]) + 1} is newer than any known runtime layout; using Go ${newest}'s as a best-effort guess`);

  t.throws(() => layoutFor('go1.18.10'), /not supported.*Go 1\.19 and newer/);
  t.throws(() => layoutFor('go1.2'), /not supported/);
  t.throws(() => layoutFor('banana'), /cannot parse Go version/);
  t.throws(() => layoutFor(''), /cannot parse Go version/);
  t.equal(parseGoVersion('go1.21.13')?.patch, 13);
  t.equal(parseGoVersion('go1.2x'), null);

  const l = layoutFor('go1.26.0').layout;
  t.equal(statusName(l, l.statuses._Gwaiting), 'waiting');
  t.equal(statusName(l, l.statuses._Gscanrunnable), 'runnable', 'scan bit stripped');
  t.equal(statusName(l, 0x77), '???');
  t.equal(waitReasonString(l, 0), '');
  t.equal(waitReasonString(l, 255), 'unknown wait reason');
  const chanRecv = l.waitReasonNames.indexOf('waitReasonChanReceive');
  t.equal(waitReasonString(l, chanRecv), 'chan receive');
  t.equal(dumpState(l, l.statuses._Gwaiting, chanRecv), 'chan receive');
  t.equal(dumpState(l, l.statuses._Gscanwaiting, chanRecv), 'chan receive');
  t.equal(dumpState(l, l.statuses._Gwaiting, 0), 'waiting');
  t.equal(dumpState(l, l.statuses._Grunnable, chanRecv), 'runnable');

  for (const v of knownGoVersions()) {
    const lv = layoutFor(`go${v}.1`).layout;
    t.equal(isSystemGoroutine(lv, 'runtime.main'), false, `${v}: runtime.main is user`);
    t.equal(isSystemGoroutine(lv, 'runtime.forcegchelper'), true, `${v}: forcegchelper is system`);
    t.equal(isSystemGoroutine(lv, 'main.main.func1'), false, `${v}: main.main.func1 is user`);
    t.equal(isSystemGoroutine(lv, undefined), false, `${v}: unknown start is user`);
    const fin = lv.systemGoroutines.conditionalStartFunctions[0].function;
    t.equal(isSystemGoroutine(lv, fin), true, `${v}: idle ${fin} is system`);
    t.equal(isSystemGoroutine(lv, fin, { runningUserCode: true }), false, `${v}: ${fin} running a finalizer is user`);
    t.equal(isSystemGoroutine(lv, fin, { fixed: true }), false, `${v}: ${fin} in fixed mode is user`);
  }
  t.same(layoutFor('go1.19.8').layout.systemGoroutines.conditionalStartFunctions.map((c) => c.function), ['runtime.runfinq']);
  t.same(layoutFor('go1.26.1').layout.systemGoroutines.conditionalStartFunctions.map((c) => c.function), ['runtime.runFinalizers', 'runtime.runCleanups']);
});

interface DumpedG {
  id: number;
  state: string;
  frames: string[];
}

/** Parses a goroutine dump ("goroutine 7 [chan receive]:" or at GOTRACEBACK=system "goroutine 7 gp=... m=nil [...]:";
 * Go 1.27+ prints pprof labels after the brackets: "goroutine 7 [select] {k: v}:"). */
function parseDump(text: string): DumpedG[] {
  const gs: DumpedG[] = [];
  let cur: DumpedG | undefined;
  for (const line of text.split('\n')) {
    const h = /^goroutine (\d+)\b[^[]*\[(.*?)\](?: \{.*\})?:$/.exec(line);
    if (h) {
      cur = { id: Number(h[1]), state: h[2], frames: [] };
      gs.push(cur);
      continue;
    }
    if (!cur) continue;
    if (line === '') {
      cur = undefined;
      continue;
    }
    if (line.startsWith('\t') || line.startsWith('created by ') || !line.endsWith(')')) continue;
    const f = /^(.*)\(.*\)$/.exec(line);
    if (f) cur.frames.push(f[1]);
  }
  return gs;
}

/** The state word(s) of a dump header without suffixes such as ", 5 minutes", " (scan)", ", locked to thread". */
function stateCandidates(state: string): string[] {
  const first = state.split(', ')[0];
  const out = [first];
  let s = first;
  for (;;) {
    const m = /^(.*) \((?:scan|leaked|durable)\)$/.exec(s);
    if (!m) break;
    s = m[1];
    out.push(s);
  }
  return out;
}

// Which waitReason constants a goroutine parked in each way may show (older Go versions report semacquire
// for sync primitives).
const roleReasons: Record<string, string[]> = {
  'chan receive': ['waitReasonChanReceive'],
  'chan send': ['waitReasonChanSend'],
  'chan receive (nil chan)': ['waitReasonChanReceiveNilChan'],
  'chan send (nil chan)': ['waitReasonChanSendNilChan'],
  select: ['waitReasonSelect'],
  'select (no cases)': ['waitReasonSelectNoCases'],
  sleep: ['waitReasonSleep'],
  'sync.Mutex.Lock': ['waitReasonSyncMutexLock', 'waitReasonSemacquire'],
  'sync.RWMutex.Lock': ['waitReasonSyncRWMutexLock', 'waitReasonSemacquire'],
  'sync.RWMutex.RLock': ['waitReasonSyncRWMutexRLock', 'waitReasonSemacquire'],
  'sync.WaitGroup.Wait': ['waitReasonSyncWaitGroupWait', 'waitReasonSemacquire'],
  'sync.Cond.Wait': ['waitReasonSyncCondWait'],
  'IO wait': ['waitReasonIOWait'],
};

/** The assertions the oracle uses (a subtest has the same ones as the root). */
type Asserts = Pick<typeof t, 'ok' | 'equal' | 'fail'>;

function dumpOracle(version: string) {
  return async (t: Asserts) => {
    const goVersion = goVersionOf(version);
    const { layout, exact } = layoutFor(goVersion);
    t.ok(exact, `${goVersion} has an exact layout`);
    const bin = goBuild({ srcDir: fixtureDir, version });
    const env = { ...process.env };
    delete env.GOTRACEBACK;
    const res = spawnSync(bin, [], { env, encoding: 'utf8', timeout: 30_000, maxBuffer: 64 << 20 });
    t.equal(res.status, 2, 'fixture ends with its intended panic');
    const stdout = res.stdout;
    const roles = new Map<number, string>();
    for (const m of stdout.matchAll(/^ROLE (\d+) (.+)$/gm)) roles.set(Number(m[1]), m[2]);
    t.equal(roles.size, Object.keys(roleReasons).length, 'every parked goroutine reported');
    const dflt = parseDump(stdout.slice(stdout.indexOf('DUMP default\n'), stdout.indexOf('\nEND\n')));
    const full = parseDump(res.stderr.slice(res.stderr.indexOf('\ngoroutine ')));
    t.ok(dflt.length >= roles.size + 1, 'default dump parsed');
    t.ok(full.length > dflt.length, 'crash dump has more goroutines (system ones)');

    const known = new Set([...layout.waitReasonStrings, ...layout.statusStrings].filter((s) => s !== ''));
    for (const g of [...dflt, ...full]) {
      t.ok(stateCandidates(g.state).some((s) => known.has(s)), `goroutine ${g.id} [${g.state}]: state is a known wait reason or status`);
    }
    // Go's printed string for each parked goroutine maps back to the waitReason constant we expect.
    for (const [id, role] of roles) {
      const g = dflt.find((x) => x.id === id);
      if (!g) {
        t.fail(`goroutine ${id} (${role}) missing from the dump`);
        continue;
      }
      const idx = layout.waitReasonStrings.indexOf(g.state);
      t.ok(idx > 0, `${role}: "${g.state}" is in waitReasonStrings`);
      t.ok(roleReasons[role].includes(layout.waitReasonNames[idx]), `${role}: "${g.state}" is ${layout.waitReasonNames[idx]}, one of ${roleReasons[role].join('/')}`);
      t.equal(dumpState(layout, layout.statuses._Gwaiting, idx), g.state, `${role}: dumpState`);
    }
    // System goroutines: runtime.Stack(buf, true) shows exactly the goroutines isSystemGoroutine calls user.
    const shown = new Set(dflt.map((g) => g.id));
    let systems = 0;
    for (const g of full) {
      const frames = g.frames.filter((f) => f !== 'runtime.goexit');
      const start = frames.at(-1);
      if (!start) continue; // running on another thread: no stack
      const sys = isSystemGoroutine(layout, start);
      if (sys) systems++;
      t.equal(sys, !shown.has(g.id), `goroutine ${g.id} started at ${start}: system=${!shown.has(g.id)}`);
    }
    t.ok(systems >= 2, `saw system goroutines (${systems})`);
    t.ok(full.some((g) => g.frames.at(-1) === 'runtime.goexit' && g.frames.at(-2) === 'runtime.main'), 'main goroutine starts at runtime.main');
  };
}

const oracleVersions = process.env.LAYOUTS_TEST_ALL_GO === '1' ? ['local', ...tableToolchains] : ['local', '1.19', newestGo];
for (const version of oracleVersions) {
  const missing = version === 'local' ? localMissing : version === '1.19' ? go119Missing : version === newestGo ? newestMissing : unavailable(version);
  t.test(`Go's own goroutine dump agrees with the layout (Go ${version})`, { skip: missing ?? false }, dumpOracle(version));
}
