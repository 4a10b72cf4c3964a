// Runs test/fixtures/population, a Go program with a known goroutine population, and talks to it.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { GoroutineTracer, type TracedProcess, type TracerOptions } from '../../agent/src/tracer/goroutine-tracer.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';
import { Child, type Teardown } from './child.ts';
import { goBuild, repoRoot, type BuildKind } from './go.ts';
import { parseGoroutineDump, type DumpGoroutine } from './godump.ts';

export const populationSrc = join(repoRoot, 'test', 'fixtures', 'population');

export function buildPopulation(version = 'local', kind: BuildKind = 'default'): string {
  return goBuild({ srcDir: populationSrc, version, kind, name: 'population' });
}

/** The population program: commands on stdin, replies on stdout, its own goroutine dump on request. */
export class PopulationProcess extends Child {
  /** Starts it and waits for READY (a minute at most: Go toolchains start slowly on a loaded machine). */
  static async start(binary: string, t?: Teardown): Promise<PopulationProcess> {
    const p = new PopulationProcess(spawn(binary, [], { stdio: ['pipe', 'pipe', 'pipe'] }), { what: 'population', timeoutMs: 60_000, t });
    await p.until(/^READY$/m);
    return p;
  }

  /** Every line it printed, but the dumps. */
  printed(): string[] {
    return this.out.replace(/DUMP BEGIN\n[\s\S]*?\nDUMP END\n/g, '').split('\n').filter((l) => l);
  }

  async dump(): Promise<DumpGoroutine[]> {
    const m = await this.command('dump', /DUMP BEGIN\n([\s\S]*?)\nDUMP END\n/);
    return parseGoroutineDump(m[1]);
  }

  /** Asks it to quit; its goodbye line once it exited. */
  async quit(): Promise<string> {
    const m = await this.command('quit', /^BYE .*$/m);
    await this.exit();
    return m[0];
  }
}

/** The population program traced by a goroutine tracer of its own, started and attached; both end with the test. */
export async function tracedPopulation(t: Teardown, opts: TracerOptions = { ringBytes: 4 << 20 }): Promise<{ prog: PopulationProcess; tracer: GoroutineTracer; proc: TracedProcess }> {
  const prog = await PopulationProcess.start(buildPopulation(), t);
  const tracer = new GoroutineTracer(opts);
  t.teardown(() => tracer.close());
  tracer.start();
  return { prog, tracer, proc: tracer.attach(openTarget(prog.pid)) };
}
