// What reading every goroutine's stack from outside costs the traced process, and itself: a Go program parks N
// goroutines (100k; test/fixtures/stacks -many N) and answers "ping" on stdin. Rounds alternate a quiet phase
// and a phase during which a fresh Node process (stacks-child.mjs, bundled as the image runs the agent) dumps
// every goroutine, as `goroscope dump` does; the ping round trips of both phases are compared (p50, p99, max),
// and with a control phase where a process only burns a CPU for as long as a dump takes.
// For scale, the program also times its own runtime.Stack(buf, true), which stops the world while it writes.
import { join } from 'node:path';
import { build as esbuild } from 'esbuild';
import { buildStacksFixture } from '../../test/lib/stacks-fixture.ts';
import { figure, startProcess, median, repoRoot, round, sleep, type BenchContext, type Child, type Figure } from './lib.ts';

interface ChildResult {
  openMs: number;
  readMs: number;
  goroutines: number;
  states: Record<string, number>;
  bytesRead: number;
  reads: number;
  retried: number;
  textBytes: number;
  maxRssKb: number;
  rssBefore: number;
  heapUsedAfter: number;
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN;
};

/** Ping round trips (ms) until `until` resolves. */
async function pingWhile(fixture: Child, until: Promise<unknown>): Promise<number[]> {
  let done = false;
  void until.finally(() => (done = true));
  const rtts: number[] = [];
  while (!done) {
    const t0 = performance.now();
    await fixture.command('ping', /^PONG$/m, 30_000);
    rtts.push(performance.now() - t0);
    await sleep(2);
  }
  return rtts;
}

export async function runStacks(ctx: BenchContext, goroutines?: number): Promise<Figure[]> {
  const bench = 'stacks';
  const n = goroutines ?? (ctx.quick ? 5_000 : 100_000);
  const rounds = ctx.quick ? 1 : 3;
  const binary = buildStacksFixture(ctx.goVersion, 'default');
  const fixture = startProcess(binary, ['-many', String(n), '-nodump'], 'stacks fixture');
  try {
    await fixture.until(/^READY$/m, 600_000);
    const script = join(repoRoot, 'build', 'bench', 'stacks-child.mjs');
    await esbuild({
      entryPoints: [join(repoRoot, 'scripts', 'bench', 'stacks-child.ts')],
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      packages: 'external',
      outfile: script,
      logLevel: 'warning',
    });
    const quiet: number[] = [];
    const during: number[] = [];
    // Control: a process that only burns a CPU for as long as a dump takes. On 2 shared cores the dumper's CPU
    // alone delays the traced process; what the dump adds beyond that is its reads of the process.
    const burning: number[] = [];
    const results: ChildResult[] = [];
    for (let r = 0; r < rounds; r++) {
      const child = startProcess(process.execPath, [script, String(fixture.pid)], 'stacks-child', { cwd: repoRoot });
      const result = child.until(/^RESULT (.*)$/m, 600_000);
      during.push(...(await pingWhile(fixture, result)));
      results.push(JSON.parse((await result)[1]) as ChildResult);
      await child.stop('SIGKILL');
      const took = results[results.length - 1].readMs;
      quiet.push(...(await pingWhile(fixture, sleep(Math.max(2000, took)))));
      const burner = startProcess(process.execPath, ['-e', `const end = Date.now() + ${Math.round(took)}; while (Date.now() < end) {} console.log('BURNT')`], 'cpu burner');
      burning.push(...(await pingWhile(fixture, burner.until(/^BURNT$/m, 600_000))));
      await burner.stop('SIGKILL');
    }
    const self: number[] = [];
    for (let r = 0; r < rounds; r++) self.push(Number((await fixture.command('selfdump', /^SELFDUMP ns=(\d+) bytes=\d+$/m, 600_000))[1]) / 1e6);

    const last = results[results.length - 1];
    const count = last.goroutines;
    const cmd = `${ctx.invocation} # test/fixtures/stacks -many ${n} (Go ${ctx.goVersion}); node build/bench/stacks-child.mjs <pid> (scripts/bench/stacks-child.ts bundled): openStackTarget + streamDump (what goroscope dump runs), ${rounds} rounds, ping round trips on the fixture's stdin meanwhile and in quiet phases`;
    const p = (xs: number[], q: number) => round(quantile(xs, q), 2);
    const out: Figure[] = [
      figure({ id: `${bench}.goroutines`, bench, label: 'goroutines read per dump', value: count, unit: 'goroutines', command: cmd, note: `stack states: ${JSON.stringify(last.states)}; ${last.retried} re-read because they moved` }),
      figure({ id: `${bench}.dump.ms`, bench, label: "the dump: read + walk + symbolize + format every stack in Go's traceback text (median of rounds)", value: round(median(results.map((x) => x.readMs))), unit: 'ms', command: cmd, samples: results.map((x) => round(x.readMs)) }),
      figure({ id: `${bench}.dump.per_goroutine`, bench, label: 'the dump per goroutine', value: round((median(results.map((x) => x.readMs)) * 1e6) / count, 0), unit: 'ns/goroutine', command: cmd }),
      figure({ id: `${bench}.dump.bytes_read`, bench, label: 'bytes read from the process', value: round(last.bytesRead / 2 ** 20), unit: 'MiB', command: cmd, note: `${last.reads} batched reads (process_vm_readv)` }),
      figure({ id: `${bench}.dump.max_rss`, bench, label: 'peak RSS of the dumping process', value: round(last.maxRssKb / 1024), unit: 'MiB', command: cmd, note: `RSS before the dump ${round(last.rssBefore / 2 ** 20)} MiB; text ${round(last.textBytes / 2 ** 20)} MiB` }),
      figure({ id: `${bench}.ping.quiet.p50`, bench, label: 'traced process ping round trip, quiet: p50', value: p(quiet, 0.5), unit: 'ms', command: cmd, note: `${quiet.length} pings` }),
      figure({ id: `${bench}.ping.quiet.p99`, bench, label: 'quiet: p99', value: p(quiet, 0.99), unit: 'ms', command: cmd }),
      figure({ id: `${bench}.ping.quiet.max`, bench, label: 'quiet: max', value: p(quiet, 1), unit: 'ms', command: cmd }),
      figure({ id: `${bench}.ping.dump.p50`, bench, label: 'traced process ping round trip during a dump: p50', value: p(during, 0.5), unit: 'ms', command: cmd, note: `${during.length} pings` }),
      figure({ id: `${bench}.ping.dump.p99`, bench, label: 'during a dump: p99', value: p(during, 0.99), unit: 'ms', command: cmd }),
      figure({ id: `${bench}.ping.dump.max`, bench, label: 'during a dump: max', value: p(during, 1), unit: 'ms', command: cmd }),
      figure({ id: `${bench}.ping.p99_ratio`, bench, label: 'p99 round trip during a dump / quiet', value: round(quantile(during, 0.99) / quantile(quiet, 0.99), 2), unit: 'x', command: cmd }),
      figure({ id: `${bench}.ping.burn.p50`, bench, label: 'control, a process only burning a CPU as long as a dump: p50', value: p(burning, 0.5), unit: 'ms', command: cmd, note: `${burning.length} pings` }),
      figure({ id: `${bench}.ping.burn.p99`, bench, label: 'control: p99', value: p(burning, 0.99), unit: 'ms', command: cmd }),
      figure({ id: `${bench}.ping.burn.max`, bench, label: 'control: max', value: p(burning, 1), unit: 'ms', command: cmd }),
      figure({ id: `${bench}.ping.p99_vs_burn`, bench, label: 'p99 round trip during a dump / during the CPU burner', value: round(quantile(during, 0.99) / quantile(burning, 0.99), 2), unit: 'x', command: cmd }),
      figure({ id: `${bench}.self_dump.stw_ms`, bench, label: "for scale: the program's own runtime.Stack(buf, true), which stops the world while it runs", value: round(median(self), 1), unit: 'ms', command: cmd, samples: self.map((x) => round(x, 1)) }),
    ];
    ctx.log(`stacks: ${count} goroutines read in ${last.readMs.toFixed(0)} ms; ping p99 quiet ${p(quiet, 0.99)} ms, during ${p(during, 0.99)} ms, burner ${p(burning, 0.99)} ms; runtime.Stack ${round(median(self), 1)} ms`);
    return out;
  } finally {
    fixture.send('quit');
    await fixture.stop('SIGKILL', 2000);
  }
}
