// Stress with every probe attached: deep stack growth while parking, panic and recover, runtime.Goexit, 100k
// goroutines at once, forced GCs. The traced program must not notice (same output, clean exit) and every
// creation and exit must be counted exactly, by creation site.
import t from 'tap';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { GoroutineTracer, type RecordVisitor } from '../../agent/src/tracer/goroutine-tracer.ts';
import { RuntimeEventsTracer } from '../../agent/src/runtime/runtime-tracer.ts';
import { ev, GoroutineEventKind } from '../../agent/src/events/goroutine-event.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { startChild } from '../lib/child.ts';
import type { EventTransport } from '../../agent/src/bpf/events-source.ts';
import { goBuild, repoRoot } from '../lib/go.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

const noBpf = await bpfUnavailable();
const expected: Record<string, number> = {
  'main.phaseDeep': 200,
  'main.phasePanic': 1000,
  'main.phaseGoexit': 1000,
  'main.phaseMany': 100_000,
};

async function run(binary: string, trace: boolean, transport: EventTransport = 'ringbuf') {
  // Minutes at most: 100k goroutines and forced GCs on a large heap, traced, on a loaded machine.
  const child = startChild(binary, [], { what: `stress${trace ? ' (traced)' : ''}`, timeoutMs: 180_000 });
  await child.until(/^READY$/m, 60_000);
  const created = new Map<string, number>();
  const exited = new Map<string, number>();
  const siteOf = new Map<number, string>();
  // Goids are never reused: a creation after the same goroutine's exit means records arrived out of order.
  const exitedGoids = new Set<number>();
  let outOfOrder = 0;
  // The ring holds a whole phase (~650k records of 80-88 bytes for the 100k goroutines, ~55 MB; on the perf path
  // split over the CPUs), so what it asserts (nothing lost, every creation and exit counted) does not depend on
  // when a loaded machine lets the reader thread run: with the default 4 MiB (2 MiB per CPU on the perf path, whose
  // creations all land on one CPU's buffer) records were lost at load ~10. The default's drops are counted and shown.
  const tracer = trace ? new GoroutineTracer({ transport, ringBytes: 64 << 20 }) : undefined;
  const runtime = trace ? new RuntimeEventsTracer({ transport }) : undefined;
  const visit: RecordVisitor = (p, kind, v, at) => {
    if (kind === GoroutineEventKind.create) {
      const site = p.binary.symbolizer.callSite(ev.pc(v, at) - p.bias)?.function ?? '?';
      if (exitedGoids.has(ev.goid(v, at))) outOfOrder++;
      siteOf.set(ev.goid(v, at), site);
      created.set(site, (created.get(site) ?? 0) + 1);
    } else if (kind === GoroutineEventKind.exit) {
      exitedGoids.add(ev.goid(v, at));
      const site = siteOf.get(ev.goid(v, at));
      if (site) exited.set(site, (exited.get(site) ?? 0) + 1);
    }
  };
  tracer?.start(visit);
  runtime?.start();
  if (tracer) {
    tracer.attach(openTarget(child.pid));
    runtime!.attach(openTarget(child.pid));
  }
  await child.command('go', /^DONE$/m);
  const { code } = await child.end();
  await tracer?.drain();
  await runtime?.drain();
  const lost = tracer?.lostTotal() ?? 0;
  const records = tracer?.records ?? 0;
  const gcPauses = runtime?.summary(child.pid)?.gcPauses.count ?? 0;
  await runtime?.close();
  await tracer?.close();
  const lines = child.out.split('\n').filter((l) => l);
  return { lines, code, created, exited, lost, records, gcPauses, outOfOrder };
}

// The perf-buffer transport (kernels before 5.8) too: per-CPU buffers put back in time order, nothing lost.
const cases: Array<[string, EventTransport]> = [['local', 'ringbuf'], ['1.19', 'ringbuf'], ['local', 'perf']];
for (const [version, transport] of cases) {
  const skip = noBpf ?? (version === '1.19' && !existsSync('/usr/lib/go-1.19/bin/go') ? 'Go 1.19 is not installed' : false);
  const via = transport === 'perf' ? ' (perf buffers)' : '';
  t.test(`Go ${version}${via}: the traced program never notices, and every creation and exit is counted`, { skip }, async (t) => {
    const binary = goBuild({ srcDir: join(repoRoot, 'test', 'fixtures', 'stress'), version, name: 'stress' });
    const plain = await run(binary, false);
    const traced = await run(binary, true, transport);
    t.equal(traced.code, 0, 'clean exit under tracing');
    t.same(traced.lines, plain.lines, 'identical output');
    t.equal(traced.lost, 0, `no record lost (${traced.records} records read)`);
    t.equal(traced.outOfOrder, 0, 'no goroutine created after its own exit (records in time order)');
    for (const [site, n] of Object.entries(expected)) {
      t.equal(traced.created.get(site), n, `${site}: ${n} created`);
      t.equal(traced.exited.get(site), n, `${site}: ${n} exited (including runtime.Goexit and recovered panics)`);
    }
    t.ok(traced.gcPauses >= 10, `forced GCs seen (${traced.gcPauses} GC pauses)`);
  });
}
