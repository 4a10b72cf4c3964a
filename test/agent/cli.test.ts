// The goroscope command as an SRE runs it: JSON and table output, clear errors, and nothing left behind.
import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { bpfUnavailable } from '../lib/bpf.ts';
import { run, startChild } from '../lib/child.ts';
import { repoRoot } from '../lib/go.ts';
import { buildPopulation, PopulationProcess } from '../lib/population.ts';
import { buildBundle } from '../../scripts/build-js.mjs';

const goroscope = join(repoRoot, 'bin', 'goroscope.js');
const noBpf = await bpfUnavailable();
/** The test runner's NODE_OPTIONS would make children write tap's process info (and fail as another user). */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !/TAP/i.test(k)));

async function cli(args: string[], opts: { uid?: number } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  // tap's process-info hook adds NODE_OPTIONS to every child it sees spawned; `env -u` takes it off again so
  // that a child running as another user does not try to write tap's files.
  const cmd = 'env';
  const asUser = opts.uid === undefined ? [] : ['setpriv', `--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups', '--inh-caps=-all'];
  const argv = ['-u', 'NODE_OPTIONS', ...asUser, process.execPath, goroscope, ...args];
  const r = await run(cmd, argv, { env: cleanEnv, timeoutMs: 60_000 });
  return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Ids of the BPF programs a process holds open (from its fdinfo: bpftool here cannot name owners). */
function programsHeldBy(pid: number): number[] {
  const ids: number[] = [];
  let fds: string[] = [];
  try {
    fds = readdirSync(`/proc/${pid}/fdinfo`);
  } catch {
    return ids;
  }
  for (const fd of fds) {
    try {
      const m = /^prog_id:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) ids.push(Number(m[1]));
    } catch {
      /* closed meanwhile */
    }
  }
  return ids;
}

/** Which of these program ids the kernel still has loaded. */
function stillLoaded(ids: number[]): number[] {
  const progs = JSON.parse(execFileSync('bpftool', ['-j', 'prog', 'show'], { encoding: 'utf8' })) as Array<{ id: number }>;
  return progs.map((p) => p.id).filter((id) => ids.includes(id));
}

function uprobeEvents(): string {
  try {
    return readFileSync('/sys/kernel/tracing/uprobe_events', 'utf8');
  } catch {
    return '';
  }
}

/** Waits until the agent has attached (its uprobe links hold programs), then returns the program ids. */
async function heldWhileRunning(pid: number): Promise<number[]> {
  const deadline = Date.now() + 20_000;
  let ids: number[] = [];
  let links = 0;
  while (Date.now() < deadline) {
    ids = programsHeldBy(pid);
    links = readdirSync(`/proc/${pid}/fd`).filter((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:bpf_link' || readlinkSync(`/proc/${pid}/fd/${fd}`) === 'anon_inode:[perf_event]';
      } catch {
        return false;
      }
    }).length;
    if (ids.length >= 4 && links >= 4) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return ids;
}

t.test('bad pids get one clear line and a non-zero exit', { timeout: 90_000 }, async (t) => {
  const gone = await cli(['snapshot', '--pid', '999999', '--duration', '1s']);
  t.not(gone.code, 0);
  t.equal(gone.stderr, 'goroscope: no process with pid 999999\n', 'exactly one line');

  const sleeper = startChild('sleep', ['30'], { t });
  const notGo = await cli(['snapshot', '--pid', String(sleeper.pid), '--duration', '1s']);
  t.not(notGo.code, 0);
  t.match(notGo.stderr, /^goroscope: pid \d+ \(.*sleep\) is not a Go program\n$/);

  const bad = await cli(['snapshot', '--pid', 'abc']);
  t.not(bad.code, 0);
  t.match(bad.stderr, /"abc" is not a pid/);

  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  // The checkout must be readable by that user (a CI clone in a 0700 temp dir is not): else say so, loudly.
  const readable = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'test', '-r', goroscope]).status === 0;
  if (!readable) {
    t.test('a process of another user', { skip: `uid 65534 cannot read ${goroscope} (a parent directory is not open to others)` }, () => {});
    return;
  }
  const denied = await cli(['snapshot', '--pid', String(prog.pid), '--duration', '1s'], { uid: 65534 });
  t.not(denied.code, 0);
  t.match(denied.stderr, /^goroscope: not permitted to .* of pid \d+ \(run as root.*\)\n$/, 'a process of another user');
});

t.test('snapshot --json', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const child = startChild('env', ['-u', 'NODE_OPTIONS', process.execPath, goroscope, 'snapshot', '--pid', String(prog.pid), '--duration', '3s', '--json', '--full'],
    { env: cleanEnv, what: 'snapshot --json', t, timeoutMs: 60_000 });
  await child.inStderr(/observing pid/);
  await prog.command('work 10 5', /^WORK DONE .*$/m);
  const { code } = await child.exit();
  t.equal(code, 0, child.err);
  const r = { stdout: child.out };
  const snap = JSON.parse(r.stdout);
  t.match(snap, {
    goVersion: /^go1\./,
    totals: { byState: Object, byWaitReason: Object, byCreationSite: Array },
    events: { created: Number, parked: Number, readied: Number, exited: Number, lost: 0 },
  });
  t.ok(snap.events.created >= 10 && snap.events.exited >= 10, `events seen: ${JSON.stringify(snap.events)}`);
  const g = snap.goroutines.find((x: { waitReason: string }) => x.waitReason === 'sync.Mutex.Lock');
  t.match(g, {
    goid: Number,
    state: 'waiting',
    waitReason: 'sync.Mutex.Lock',
    createdBy: { function: 'main.spawnPopulation', file: /population\/main\.go$/, line: Number },
    startFunction: 'main.mutexWaiter',
    parentGoid: Number,
    blockedNs: Number,
  });
  t.ok(g.blockedNs > 1e9, 'a goroutine parked through the snapshot was blocked for about its length');
  t.equal(snap.totals.byWaitReason['sync.Mutex.Lock'], 2);
});

t.test('snapshot prints a table', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const r = await cli(['snapshot', '--pid', String(prog.pid), '--duration', '200ms']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /BY WAIT REASON[\s\S]*chan receive[\s\S]*BY CREATION SITE[\s\S]*main\.spawnPopulation/);
  t.match(r.stdout, /GOID +PARENT +STATE/);
});

t.test('the bundle the image runs (npm run build:js) works with plain node, no TypeScript loader', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  // Built inside the checkout (build/), so it finds goroscope's files the way dist/goroscope.mjs does.
  const outfile: string = await buildBundle(join(repoRoot, 'build', 'bundle-test'));
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const r = await run('env', ['-u', 'NODE_OPTIONS', process.execPath, outfile, 'snapshot', '--pid', String(prog.pid), '--duration', '300ms', '--json'], { env: cleanEnv, check: true, timeoutMs: 60_000 });
  const snap = JSON.parse(r.stdout);
  t.equal(snap.totals.byWaitReason['sync.Mutex.Lock'], 2, 'the same snapshot as from the sources');
  t.equal(snap.overhead.mode, 'budget');
  t.ok(snap.overhead.estimatedOverhead === undefined || snap.overhead.estimatedOverhead.total >= 0, 'the estimated probe cost, once measured');
});

t.test('no probe or BPF link remains after the agent exits, also after kill -9', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const before = uprobeEvents();

  // A clean exit.
  const clean = startChild(process.execPath, [goroscope, 'snapshot', '--pid', String(prog.pid), '--duration', '1s'], { env: cleanEnv, what: 'snapshot', t });
  const cleanIds = await heldWhileRunning(clean.pid);
  t.ok(cleanIds.length >= 4, `the agent held ${cleanIds.length} programs`);
  await clean.exit();
  t.same(stillLoaded(cleanIds), [], 'no program left after a clean exit');

  // kill -9 in mid-observation.
  const agent = startChild(process.execPath, [goroscope, 'snapshot', '--pid', String(prog.pid), '--duration', '60s'], { env: cleanEnv, what: 'snapshot (killed)', t });
  const ids = await heldWhileRunning(agent.pid);
  t.ok(ids.length >= 4, `the agent held ${ids.length} programs`);
  await agent.stop('SIGKILL');
  let left = stillLoaded(ids);
  for (let i = 0; i < 50 && left.length; i++) {
    await new Promise((r) => setTimeout(r, 100)); // the kernel frees a program once its last reference drops
    left = stillLoaded(ids);
  }
  t.same(left, [], 'no program left after kill -9');
  const links = JSON.parse(execFileSync('bpftool', ['-j', 'link', 'show'], { encoding: 'utf8' })) as Array<{ prog_id: number }>;
  t.same(links.filter((l) => ids.includes(l.prog_id)), [], 'no BPF link left');
  t.equal(uprobeEvents(), before, 'tracefs uprobe_events unchanged');

  // The traced program never noticed.
  const done = await prog.command('work 5 3', /^WORK DONE .*$/m);
  t.match(done[0], /sum=[0-9a-f]+/);
});
