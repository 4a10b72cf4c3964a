// Creation and exit counts from the runtime's own goroutine-id generator (sched.goidgen less the Ps' unused
// ids), with every goroutine probe on and with none: exact against the goroutines the program started and, on
// Go 1.26+, against the runtime's own /sched/goroutines-created:goroutines.
import { openTarget } from '../../agent/src/tracer/target.ts';
import t from 'tap';
import { join } from 'node:path';
import { layoutForBinary } from '../../agent/src/gobinary/layouts.ts';
import { GoroutineTracer } from '../../agent/src/tracer/goroutine-tracer.ts';
import type { GoroutineProbeName } from '../../agent/src/probes/goroutine-probes.ts';
import { openGoBinary } from '../../agent/src/gobinary/index.ts';
import { goidgenFromCode } from '../../agent/src/gobinary/goidgen.ts';
import { availableParallelism } from 'node:os';
import { bpfUnavailable } from '../lib/bpf.ts';
import { goBuild, repoRoot } from '../lib/go.ts';
import { PopulationProcess } from '../lib/population.ts';

const noBpf = await bpfUnavailable();
const src = join(repoRoot, 'test', 'fixtures', 'states');
const N = 1000;

for (const version of ['1.19', 'local']) {
  let binary = '';
  let skip: string | false = false;
  try {
    binary = goBuild({ srcDir: src, version, name: 'states' });
  } catch (e) {
    skip = `cannot build with Go ${version}: ${(e as Error).message.split('\n')[0]}`;
  }

  t.test(`Go ${version}: sched.goidgen and runtime.allp from the symbol table`, { skip }, async (t) => {
    const bin = openGoBinary(binary);
    const { layout } = layoutForBinary(bin);
    const loc = bin.goidgen(layout)!;
    t.equal(loc.goidgen, bin.elf.symbol('runtime.sched')!.value + layout.sched.fields.goidgen.offset, 'runtime.sched + goidgen\'s offset');
    t.equal(loc.allp, bin.elf.symbol('runtime.allp')!.value, 'runtime.allp');
    t.equal(goidgenFromCode(bin.elf, bin.pclntab), loc.goidgen, "from newproc1's code (LEA, then LOCK XADDQ of 16) as for a stripped binary: the same");
  });

  t.test(`Go ${version} stripped, no probe: creations within 16 ids per P`, { skip: skip || (noBpf ?? false), timeout: 60_000 }, async (t) => {
    const stripped = goBuild({ srcDir: src, version, kind: 'stripped', name: 'states' });
    const prog = await PopulationProcess.start(stripped);
    t.teardown(() => prog.kill());
    const tracer = new GoroutineTracer({ scan: false });
    t.teardown(() => tracer.close());
    tracer.start();
    const proc = tracer.attach(openTarget(prog.pid), { probes: [] });
    t.equal(proc.binary.goidgen(proc.layout)?.source, 'code', 'goidgen from the code');
    await prog.command(`spawn ${N}`, /^SPAWNED \d+\nCOUNT (-?\d+)$/m);
    tracer.scanNow(prog.pid);
    const c = proc.scan.counts.sinceAttach();
    t.equal(c?.exact, false, 'not exact: no runtime.allp');
    const ps = availableParallelism();
    t.ok(c && Math.abs(c.created - N) <= 16 * ps, `created ${c?.created} for ${N}: within 16 x ${ps} Ps`);
  });

  const cases: Array<[string, GoroutineProbeName[]]> = [['every probe on', ['create', 'park', 'ready', 'exit']], ['no probe', []]];
  for (const [name, probes] of cases) {
    t.test(`Go ${version}, ${name}: creations and exits from memory are exact`, { skip: skip || (noBpf ?? false), timeout: 60_000 }, async (t) => {
      const prog = await PopulationProcess.start(binary);
      t.teardown(() => prog.kill());
      const tracer = new GoroutineTracer({ scan: false });
      t.teardown(() => tracer.close());
      tracer.start();
      const runtimeBefore = Number((await prog.command('count', /^COUNT (-?\d+)$/m))[1]);
      const proc = tracer.attach(openTarget(prog.pid), { probes });
      t.equal(proc.scan.counts.sinceAttach()?.created, 0, 'none at attach');
      const m = await prog.command(`spawn ${N}`, /^SPAWNED \d+\nCOUNT (-?\d+)$/m);
      const runtimeAfter = Number(m[1]);
      // The spawned goroutines are done once SPAWNED is out, but may not have left goexit yet: a few reads.
      let c = null;
      for (let i = 0; i < 50; i++) {
        tracer.scanNow(prog.pid);
        c = proc.scan.counts.sinceAttach();
        if (c && c.exited >= N) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      t.ok(c?.exact, 'every P\'s id cache read (runtime.allp)');
      t.equal(c?.created, N, `created: the ${N} the program started`);
      t.equal(c?.exited, N, 'exited: all of them');
      if (runtimeAfter >= 0) t.equal(c?.created, runtimeAfter - runtimeBefore, "the runtime's own /sched/goroutines-created:goroutines agrees");
      else t.comment(`Go ${version} has no /sched/goroutines-created:goroutines; the program's own count is the oracle`);
      if (probes.includes('create')) {
        await tracer.drain();
        t.equal(proc.table.counters.created, N, 'and the creation probe saw as many');
      }
    });
  }
}
