// The goroutine lifecycle, end to end: real BPF programs in the real kernel against a real Go program.
// Oracle: the program's own runtime.Stack(buf, true) dump and the operations it performed.
import t from 'tap';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GoroutineTracer, type RecordVisitor } from '../../agent/src/tracer/goroutine-tracer.ts';
import type { EventTransport } from '../../agent/src/bpf/events-source.ts';
import { ev, GoroutineEventKind } from '../../agent/src/events/goroutine-event.ts';
import { waitReasonString } from '../../agent/src/gobinary/layouts.ts';
import { buildSnapshot, goroutineRecord } from '../../agent/src/snapshot/snapshot.ts';
import { monoNowNs } from '../../agent/src/tracer/clock.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { buildPopulation, PopulationProcess } from '../lib/population.ts';
import { buildRoot, goVersionOf, newestGo, tableToolchains, type BuildKind } from '../lib/go.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

const noBpf = await bpfUnavailable();
if (noBpf) t.comment(`SKIPPING lifecycle tests: ${noBpf}`);

// The version x build-kind matrix. CI runs a representative subset; GOROSCOPE_MATRIX=full runs every cell
// (scripts/matrix.sh): each toolchain of the layout table (Go 1.20+ fetched through GOTOOLCHAIN) and the machine's.
// GOROSCOPE_MATRIX=1.27.4 (a comma-separated list) runs every kind of those versions.
const kinds: BuildKind[] = ['default', 'stripped', 'pie', 'static', 'cgo'];
const matrixEnv = process.env.GOROSCOPE_MATRIX;
const fullVersions = matrixEnv === 'full' ? [...tableToolchains, 'local'] : matrixEnv ? matrixEnv.split(',') : [];
const ciCells: Array<[string, BuildKind]> = [
  ...kinds.map((k) => ['local', k] as [string, BuildKind]),
  ['1.19', 'default'],
  ['1.19', 'stripped'],
  ['1.22.12', 'static'],
  ['1.24.13', 'pie'],
  // The newest release: stripped, it runs on the table alone.
  [newestGo, 'default'],
  [newestGo, 'stripped'],
];
// The perf-buffer transport (kernels before 5.8) on top: the same checks, records through per-CPU buffers.
const perfCells: Array<[string, BuildKind]> = [['local', 'default'], ['1.19', 'default']];
const cells: Array<{ version: string; kind: BuildKind; transport: EventTransport; why?: string }> = [
  ...(matrixEnv ? fullVersions.flatMap((v) => kinds.map((k) => [v, k] as [string, BuildKind])) : ciCells).map(
    ([version, kind]) => ({ version, kind, transport: 'ringbuf' as EventTransport }),
  ),
  ...(matrixEnv && matrixEnv !== 'full' ? [] : perfCells).map(([version, kind]) => ({ version, kind, transport: 'perf' as EventTransport })),
].map((c) => ({
  ...c,
  why: c.version === '1.19' && !existsSync('/usr/lib/go-1.19/bin/go') ? "Go 1.19 is not installed (Debian's golang-1.19-go)" : undefined,
}));
/** Cell -> pass/fail/skip, printed at the end and written to build/matrix.md. */
const matrix = new Map<string, string>();

const WORKERS = 40;
const SLEEPS = 25;
const CHURN = 500;

// Every build first: tap starts the first test as soon as it is defined, and a build (synchronous, minutes for
// a cold toolchain) between two definitions would block the event loop under that test's running program
// and its timers, failing it with a timeout although the program had answered.
const builds = cells.map((cell) => {
  if (noBpf ?? cell.why) return { skip: noBpf ?? cell.why, binary: '' };
  try {
    return { binary: buildPopulation(cell.version, cell.kind) };
  } catch (e) {
    return { skip: `cannot build with Go ${cell.version} (${cell.kind}): ${(e as Error).message.split('\n')[0]}`, binary: '' };
  }
});

for (const [i, cell] of cells.entries()) {
  const name = `Go ${cell.version} ${cell.kind}${cell.transport === 'perf' ? ' (perf buffers)' : ''}`;
  // The support matrix is about binaries: the perf cells are extra and stay out of it.
  const results = cell.transport === 'perf' ? new Map<string, string>() : matrix;
  const { binary, skip } = builds[i];
  results.set(`${cell.version}|${cell.kind}`, skip ? 'skip' : 'fail');
  // A cell takes a few seconds; a probe that never fires must fail it, not hold up the run.
  t.test(name, { skip: skip ?? false, timeout: 90_000 }, async (t) => {
    t.teardown(() => {
      if (t.passing()) results.set(`${cell.version}|${cell.kind}`, 'pass');
    });
    const prog = await PopulationProcess.start(binary);
    t.teardown(() => prog.kill());
    const tracer = new GoroutineTracer({ ringBytes: 4 << 20, transport: cell.transport });
    t.teardown(() => tracer.close());
    t.equal(tracer.transport, cell.transport, `records through the ${cell.transport} transport`);
    // Every park's wait reason, per goroutine, straight from the records.
    const parksOf = new Map<number, string[]>();
    const visit: RecordVisitor = (p, kind, v, at) => {
      if (kind !== GoroutineEventKind.park) return;
      const goid = ev.goid(v, at);
      const list = parksOf.get(goid) ?? [];
      list.push(waitReasonString(p.layout, ev.waitReason(v, at)));
      parksOf.set(goid, list);
    };
    tracer.start(visit);
    const proc = tracer.attach(openTarget(prog.pid));

    await t.test('the inventory at attach agrees with the runtime dump', async (t) => {
      const dump = await prog.dump();
      const now = monoNowNs();
      const ours = new Map(
        [...proc.table.rows(now)].map((r) => goroutineRecord(proc, r, now)).filter((g) => !g.system).map((g) => [g.goid, g]),
      );
      // The goroutine printing the dump is running then; it is the main goroutine, blocked reading stdin at attach.
      const oracle = dump.filter((g) => g.state !== 'running');
      t.ok(oracle.length >= 20, `the dump lists the population (${oracle.length} blocked goroutines)`);
      // One row per goroutine, as the dump tells it and as the inventory tells it.
      const fromDump = oracle.map((g) => ({
        goid: g.goid,
        state: g.state,
        createdBy: g.createdBy?.function ?? null,
        site: g.createdBy ? `${g.createdBy.file}:${g.createdBy.line}` : null,
        parentGoid: g.parentGoid ?? ours.get(g.goid)?.parentGoid ?? null, // Go 1.19 dumps print no parent
        preexisting: true,
      }));
      const fromAgent = oracle.map((g) => {
        const mine = ours.get(g.goid);
        return {
          goid: g.goid,
          state: mine ? (mine.waitReason ?? mine.state) : 'MISSING',
          createdBy: mine?.createdBy?.function ?? null,
          site: mine?.createdBy ? `${mine.createdBy.file}:${mine.createdBy.line}` : null,
          parentGoid: mine?.parentGoid ?? null,
          preexisting: mine?.preexisting ?? false,
        };
      });
      t.same(fromAgent, fromDump, 'each goroutine: wait reason, creating function, creation site, parent');
      const running = dump.filter((g) => g.state === 'running').map((g) => g.goid);
      const extra = [...ours.values()]
        .filter((g) => g.preexisting && !oracle.some((o) => o.goid === g.goid) && !running.includes(g.goid))
        .map((g) => `${g.goid} [${g.waitReason ?? g.state}] ${g.startFunction}`);
      t.same(extra, [], 'no user goroutine that the dump does not list');
      // Totals by wait reason and by creating function, as an SRE reads them.
      const count = (xs: string[]) => xs.reduce<Record<string, number>>((m, k) => ((m[k] = (m[k] ?? 0) + 1), m), {});
      const mineOf = oracle.map((g) => ours.get(g.goid)).filter((g) => g !== undefined);
      t.same(count(mineOf.map((g) => g.waitReason ?? g.state)), count(oracle.map((g) => g.state)), 'totals by wait reason');
      t.same(count(mineOf.map((g) => g.createdBy?.function ?? '')), count(oracle.map((g) => g.createdBy?.function ?? '')), 'totals by creating function');
    });

    await t.test('every creation, park, ready and exit while attached is seen', async (t) => {
      const before = { ...proc.table.counters };
      await prog.command(`work ${WORKERS} ${SLEEPS}`, /^WORK DONE .*$/m);
      await prog.command(`churn ${CHURN}`, /^CHURN DONE .*$/m);
      await tracer.drain();
      tracer.start(visit);
      const exited = proc.table.recentlyExited().map((r) => ({ row: r, g: goroutineRecord(proc, r, r.exitedAt) }));
      const workers = exited.filter((x) => x.g.createdBy?.function === 'main.runWork');
      const churners = exited.filter((x) => x.g.createdBy?.function === 'main.runChurn');
      t.equal(workers.length, WORKERS, `${WORKERS} workers created and exited`);
      t.equal(churners.length, CHURN, `${CHURN} churners created and exited`);
      const others = new Map<string, number>();
      for (const { row, g } of workers) {
        // Each worker sleeps SLEEPS times; the runtime may park it for its own reasons too (a GC assist).
        const reasons = parksOf.get(g.goid) ?? [];
        const sleeps = reasons.filter((r) => r === 'sleep').length;
        for (const r of reasons) if (r !== 'sleep') others.set(r, (others.get(r) ?? 0) + 1);
        if (sleeps !== SLEEPS || row.parkCount !== reasons.length || row.readyCount !== row.parkCount) {
          t.fail(`worker ${g.goid}: ${sleeps} sleep parks of ${reasons.length} (${row.parkCount} in the table), ${row.readyCount} readies; expected ${SLEEPS} sleeps, a ready per park`);
        }
        // `go worker(...)` starts at main.worker, or at a wrapper the compiler names after runWork.
        if (!/^main\.(worker|runWork\.(gowrap|func)\d+)$/.test(g.startFunction ?? '')) t.fail(`worker ${g.goid} starts at ${g.startFunction}`);
        if ((g.blockedByReason.sleep ?? 0) < SLEEPS * 1e6 * 0.9) t.fail(`worker ${g.goid} blocked ${g.blockedByReason.sleep}ns in sleep`);
      }
      const sleepParks = workers.reduce((n, x) => n + (parksOf.get(x.g.goid) ?? []).filter((r) => r === 'sleep').length, 0);
      t.equal(sleepParks, WORKERS * SLEEPS, 'worker sleep parks');
      t.equal(
        workers.reduce((n, x) => n + x.row.readyCount, 0),
        workers.reduce((n, x) => n + x.row.parkCount, 0),
        'a ready for every worker park',
      );
      if (others.size) t.comment(`runtime's own parks of workers: ${JSON.stringify(Object.fromEntries(others))}`);
      t.ok(workers.every((x) => x.row.createdAt !== null && x.row.exitedAt > x.row.createdAt!), 'created before exited');
      const c = proc.table.counters;
      t.ok(c.created - before.created >= WORKERS + CHURN, 'creation count covers the work');
      t.ok(c.exited - before.exited >= WORKERS + CHURN, 'exit count covers the work');
      t.equal(tracer.lostTotal(), 0, 'no record lost');
      t.comment(`events: ${JSON.stringify(c)}; lost ${tracer.lostTotal()}`);
    });

    await t.test('the snapshot carries the totals and event counts', async (t) => {
      const snap = buildSnapshot(proc, { lost: tracer.lostTotal() });
      t.match(snap.goVersion, /^go1\.\d+/);
      t.ok(snap.totals.byWaitReason['chan receive'] >= 6, 'chan receive counted');
      t.ok(snap.totals.byCreationSite.some((s) => s.function === 'main.spawnPopulation'), 'creation sites listed');
      t.ok(snap.events.created >= WORKERS + CHURN && snap.events.exited >= WORKERS + CHURN, 'events counted');
      t.equal(snap.events.lost, 0);
      t.ok(snap.probes.every((p) => p.attached), 'every probe attached');
      // The scheduler's nosplit hooks (entersyscall, exitsyscall) have no stack check: their entry is PUSHQ BP.
      // preemptPark (systemstack: checks stackguard1) is rare enough to sit on its entry. The scheduler's stamp
      // of a new goroutine shares the creation probe's CALL site.
      t.ok(
        snap.probes
          .filter((p) => p.probe !== 'create' && !(p.site === 'entry' && (p.probe === 'syscall' || p.probe === 'run')))
          .every((p) => p.site === 'stack-check-jump' || p.site === 'after-stack-check' || (p.site === 'call' && p.probe === 'run')),
        `entry probes sit on an emulated site around the stack check (${snap.probes.map((p) => p.site).join(', ')})`,
      );
    });

    await tracer.close();
    const bye = await prog.quit();
    t.match(bye, /^BYE checksum=[0-9a-f]+$/);
  });
}

t.test('traced and untraced runs print the same output', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const binary = buildPopulation('local', 'default');
  const script = [`work ${WORKERS} ${SLEEPS}`, `churn ${CHURN}`, 'work 7 3'];
  const run = async (traced: boolean) => {
    const prog = await PopulationProcess.start(binary);
    const tracer = traced ? new GoroutineTracer({ ringBytes: 4 << 20 }) : undefined;
    tracer?.start();
    tracer?.attach(openTarget(prog.pid));
    for (const cmd of script) await prog.command(cmd, /^(WORK|CHURN) DONE .*$/m);
    await tracer?.close();
    await prog.quit();
    return prog.printed().join('\n');
  };
  const plain = await run(false);
  const traced = await run(true);
  t.equal(traced, plain, 'identical output');
  t.match(plain, /BYE checksum=/);
});

t.teardown(() => {
  if (!matrix.size) return;
  const versions = [...new Set(cells.map((c) => c.version))];
  const label = (v: string) => {
    try {
      return goVersionOf(v).replace(/^go/, '');
    } catch {
      return v;
    }
  };
  const lines = [`| Go | ${kinds.join(' | ')} |`, `|---|${kinds.map(() => '---').join('|')}|`];
  for (const v of versions) lines.push(`| ${label(v)} | ${kinds.map((k) => matrix.get(`${v}|${k}`) ?? '').join(' | ')} |`);
  const table = lines.join('\n');
  mkdirSync(buildRoot, { recursive: true });
  writeFileSync(join(buildRoot, 'matrix.md'), `${table}\n`);
  console.log(`# version x build kind (lifecycle and inventory tests):\n${table.split('\n').map((l) => `# ${l}`).join('\n')}`);
});
