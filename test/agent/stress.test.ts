// Stress with every probe attached: deep stack growth while parking, panic and recover, runtime.Goexit, 100k
// goroutines at once, forced GCs. The traced program must not notice (same output, clean exit) and every
// creation and exit must be counted exactly, by creation site.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { GoroutineTracer, type RecordVisitor } from '../../agent/src/tracer/goroutine-tracer.ts';
import { RuntimeEventsTracer } from '../../agent/src/runtime/runtime-tracer.ts';
import { ev, GoroutineEventKind } from '../../agent/src/events/goroutine-event.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { goBuild, repoRoot } from '../lib/go.ts';

const noBpf = await bpfUnavailable();
const expected: Record<string, number> = {
  'main.phaseDeep': 200,
  'main.phasePanic': 1000,
  'main.phaseGoexit': 1000,
  'main.phaseMany': 100_000,
};

async function run(binary: string, trace: boolean) {
  const child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const rl = createInterface({ input: child.stdout! });
  const waitFor = (want: string) => new Promise<void>((resolve) => {
    const on = (l: string) => {
      lines.push(l);
      if (l === want) {
        rl.off('line', on);
        resolve();
      }
    };
    rl.on('line', on);
  });
  await waitFor('READY');
  const created = new Map<string, number>();
  const exited = new Map<string, number>();
  const siteOf = new Map<number, string>();
  const tracer = trace ? new GoroutineTracer() : undefined;
  const runtime = trace ? new RuntimeEventsTracer() : undefined;
  const visit: RecordVisitor = (p, kind, v, at) => {
    if (kind === GoroutineEventKind.create) {
      const site = p.binary.symbolizer.callSite(ev.pc(v, at) - p.bias)?.function ?? '?';
      siteOf.set(ev.goid(v, at), site);
      created.set(site, (created.get(site) ?? 0) + 1);
    } else if (kind === GoroutineEventKind.exit) {
      const site = siteOf.get(ev.goid(v, at));
      if (site) exited.set(site, (exited.get(site) ?? 0) + 1);
    }
  };
  tracer?.start(visit);
  runtime?.start();
  if (tracer) {
    tracer.attach(child.pid!);
    runtime!.attach(child.pid!);
  }
  const done = waitFor('DONE');
  child.stdin!.write('go\n');
  await done;
  child.stdin!.end();
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  await tracer?.drain();
  await runtime?.drain();
  const lost = tracer?.lostTotal() ?? 0;
  const gcPauses = runtime?.summary(child.pid!)?.gcPauses.count ?? 0;
  await runtime?.close();
  await tracer?.close();
  return { lines, code, created, exited, lost, gcPauses };
}

for (const version of ['local', '1.19']) {
  const skip = noBpf ?? (version === '1.19' && !existsSync('/usr/lib/go-1.19/bin/go') ? 'Go 1.19 is not installed' : false);
  t.test(`Go ${version}: the traced program never notices, and every creation and exit is counted`, { skip }, async (t) => {
    const binary = goBuild({ srcDir: join(repoRoot, 'test', 'fixtures', 'stress'), version, name: 'stress' });
    const plain = await run(binary, false);
    const traced = await run(binary, true);
    t.equal(traced.code, 0, 'clean exit under tracing');
    t.same(traced.lines, plain.lines, 'identical output');
    t.equal(traced.lost, 0, 'no record lost');
    for (const [site, n] of Object.entries(expected)) {
      t.equal(traced.created.get(site), n, `${site}: ${n} created`);
      t.equal(traced.exited.get(site), n, `${site}: ${n} exited (including runtime.Goexit and recovered panics)`);
    }
    t.ok(traced.gcPauses >= 10, `forced GCs seen (${traced.gcPauses} GC pauses)`);
  });
}
