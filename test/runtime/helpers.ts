// Shared by the runtime-event tests: which Go toolchains to run, building the fixtures, running a Go program
// with stdin/stdout/stderr captured.
import { basename, join } from 'node:path';
import type { Test } from 'tap';
import { bpfUnavailable } from '../lib/bpf.ts';
import { startChild, type Child, type Teardown } from '../lib/child.ts';
import { goBuild, goVersionOf, newestGo, repoRoot, tableToolchains } from '../lib/go.ts';
import { GoroutineTracer, type RecordVisitor } from '../../agent/src/tracer/goroutine-tracer.ts';
import type { GoroutineProbeName } from '../../agent/src/probes/goroutine-probes.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

/** The machine's Go, 1.19 and the newest release in the table; every toolchain of the table with
 * RUNTIME_TEST_ALL_GO=1; or the comma-separated list in RUNTIME_TEST_GO (e.g. 1.27.4). */
export const goVersions = process.env.RUNTIME_TEST_GO
  ? process.env.RUNTIME_TEST_GO.split(',')
  : process.env.RUNTIME_TEST_ALL_GO
    ? ['local', ...tableToolchains]
    : ['local', '1.19', newestGo];

export function buildFixture(name: string, version: string): { bin?: string; skip?: string; goVersion?: string } {
  try {
    const bin = goBuild({ srcDir: join(repoRoot, 'test', 'fixtures', name), version, name });
    return { bin, goVersion: goVersionOf(version) };
  } catch (e) {
    const skip = `Go toolchain ${version} is not available here, so ${name} cannot be built: ${(e as Error).message.split('\n')[0]}`;
    console.error(`SKIPPED: ${skip}`); // loudly
    return { skip };
  }
}

/**
 * A subtest per Go version, with `fixture` built by that toolchain (a version that cannot build it is a skipped
 * subtest saying why); every subtest is skipped, loudly, where BPF cannot load.
 */
export async function eachGoVersion(
  t: Test,
  fixture: string,
  versions: readonly string[],
  body: (t: Test, bin: string, goVersion: string) => Promise<void>,
  timeoutMs = 120_000,
): Promise<void> {
  const why = await bpfUnavailable();
  if (why) {
    t.test(why, { skip: why }, async () => {});
    return;
  }
  for (const version of versions) {
    await t.test(`Go ${version}`, { timeout: timeoutMs }, async (t) => {
      const { bin, skip, goVersion } = buildFixture(fixture, version);
      if (!bin) {
        t.test(skip!, { skip: skip! }, async () => {});
        return;
      }
      t.comment(`toolchain ${goVersion}`);
      await body(t, bin, goVersion!);
    });
  }
}

/** Starts a Go program with its stdio piped (test/lib/child.ts); each wait has a minute at most, a toolchain's
 * binaries being slow to start on a loaded machine. */
export function startGo(bin: string, args: string[] = [], t?: Teardown): Child {
  return startChild(bin, args, { what: `${basename(bin)} ${args.join(' ')}`.trim(), timeoutMs: 60_000, t });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A Go program of the tests started (READY once it takes commands) and traced by a goroutine tracer of its own
 * (16 MiB ring) with `probes`, each record handed to `onRecord`; both end with the test.
 */
export async function tracedGo(t: Test, bin: string, probes: GoroutineProbeName[], onRecord: RecordVisitor): Promise<{ tracer: GoroutineTracer; p: Child }> {
  const tracer = new GoroutineTracer({ ringBytes: 16 << 20 });
  t.teardown(() => tracer.close());
  const p = startGo(bin, [], t);
  await p.until(/^READY$/m);
  tracer.start(onRecord);
  tracer.attach(openTarget(p.pid), { probes });
  return { tracer, p };
}
