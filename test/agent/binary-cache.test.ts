// One analysis per build: the agent traces several processes of one Go binary; its /metrics show one analysed
// binary held by each of them, the stacks it reads from the last process (through the analysis made for the first)
// equal that program's own runtime.Stack dump, and when they have all exited the analysis is let go (after the idle
// grace, during which a new process of the build reuses it).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BINARY_IDLE_MS } from '../../agent/src/gobinary/index.ts';
import { formatDump, stackTargetFor, takeDump } from '../../agent/src/stacks/dump.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { buildStacksFixture, dumpBlocks, StacksProcess } from '../lib/stacks-fixture.ts';

const noBpf = await bpfUnavailable();
const N = 4;

/** Each goroscope_agent_binar* sample of the agent's /metrics, by name. */
async function cacheMetrics(port: number): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^(goroscope_agent_binar\w+) (\S+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

async function until(what: string, ok: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  for (const end = Date.now() + timeoutMs; !(await ok()); await new Promise((r) => setTimeout(r, 50))) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  }
}

t.test(`${N} processes of one binary share one analysis, let go when they exit`, { skip: noBpf ?? false, timeout: 120_000 }, async (t) => {
  const { startAgent } = await import('../../agent/src/agent/run.ts');
  const binary = buildStacksFixture();
  const started = await Promise.all(Array.from({ length: N }, () => StacksProcess.start(binary)));
  t.teardown(() => started.forEach((s) => s.proc.kill()));
  const pids = started.map((s) => s.proc.pid);
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-binary-cache-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const traced = new Set<number>();
  // No collector listens there: the shipper spools, which this test does not look at.
  const agent = await startAgent({
    collector: 'ws://127.0.0.1:9', pids, full: true, tcp: false, overheadBudget: 0.02, spoolDir: join(dir, 'spool'), scanMs: 200,
    metricsListen: '127.0.0.1:0', profileIntervalMs: 0,
    log: (m) => {
      const pid = Number(/^tracing pid (\d+) /.exec(m)?.[1]);
      if (pid) traced.add(pid);
    },
  });
  t.teardown(() => agent.stop());
  const port = agent.metricsPort!;
  await until(`the agent to trace pids ${pids.join(', ')}`, () => pids.every((p) => traced.has(p)), 30_000);

  const held = await cacheMetrics(port);
  t.equal(held.goroscope_agent_binaries_cached, 1, 'one analysed binary');
  t.equal(held.goroscope_agent_binary_references, N, `held by the ${N} processes`);
  t.equal(held.goroscope_agent_binary_analyses_total, 1, 'analysed once');
  t.ok(held.goroscope_agent_binary_kept_bytes > 0, `${held.goroscope_agent_binary_kept_bytes} bytes kept (pclntab and indexes)`);
  const procs = pids.map((p) => agent.tracer!.process(p)!);
  t.ok(procs.every((p) => p.binary === procs[0].binary), 'every process has the same binary object');

  // Stacks through the shared analysis, from a process it was not made for, against that process's own dump.
  const last = started[N - 1];
  const oracle = dumpBlocks(last.dump);
  const ours = dumpBlocks(formatDump(takeDump(stackTargetFor(procs[N - 1]), { args: true })));
  let compared = 0;
  for (const [goid, lines] of oracle) {
    if (/\[running\]/.test(lines[0])) continue; // the goroutine that printed the dump
    compared++;
    t.same(ours.get(goid), lines, lines[0]);
  }
  t.ok(compared >= 20, `${compared} parked goroutines compared with the program's own dump`);

  for (const s of started) s.proc.kill();
  await until('every process to be let go', async () => (await cacheMetrics(port)).goroscope_agent_binary_references === 0, 10_000);
  const idle = await cacheMetrics(port);
  t.equal(idle.goroscope_agent_binaries_cached, 1, `kept for ${BINARY_IDLE_MS} ms after the last exit`);

  // A process of the same build within the grace: the analysis is reused.
  const again = await StacksProcess.start(binary);
  t.teardown(() => again.proc.kill());
  pids.push(again.proc.pid);
  await until(`the agent to trace pid ${again.proc.pid}`, () => traced.has(again.proc.pid), 30_000);
  const reused = await cacheMetrics(port);
  t.equal(reused.goroscope_agent_binary_analyses_total, 1, 'a new process of the build during the grace: no new analysis');
  t.equal(reused.goroscope_agent_binary_references, 1, 'held by it');

  again.proc.kill();
  await until('the analysis to be let go', async () => (await cacheMetrics(port)).goroscope_agent_binaries_cached === 0, BINARY_IDLE_MS + 15_000);
  const gone = await cacheMetrics(port);
  t.equal(gone.goroscope_agent_binary_references, 0, 'no references');
  t.equal(gone.goroscope_agent_binary_kept_bytes, 0, 'nothing kept');
});
