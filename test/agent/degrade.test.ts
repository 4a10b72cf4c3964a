// Degrade, never die: each part of `goroscope agent` that cannot start (its BPF programs refused, its port taken,
// no API server) is said once, in one line with its fix and no stack trace, and the rest goes on: goroutines of a
// real Go program still reach a real collector. Each case breaks one part for real: a corrupt BPF object in a copy
// of the install (GOROSCOPE_HOME), a port another socket holds, a kubeconfig whose API server is not there.
import t, { type Test } from 'tap';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { bpfUnavailable } from '../lib/bpf.ts';
import { startChild, type Child } from '../lib/child.ts';
import { repoRoot } from '../lib/go.ts';
import { buildPopulation, PopulationProcess } from '../lib/population.ts';
import { api, INGEST_TOKEN, tempDir, testCollector } from '../collector/helpers.ts';

const noBpf = await bpfUnavailable();
const goroscope = join(repoRoot, 'bin', 'goroscope.js');
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !/TAP/i.test(k)));

/** The agent command; its log lines (stdout and stderr) come in no fixed order, so waits use find(). */
function startAgent(t: Test, args: string[], env: Record<string, string> = {}): Child {
  return startChild(process.execPath, [goroscope, 'agent', ...args], { env: { ...cleanEnv, ...env, GOROSCOPE_INGEST_TOKEN: INGEST_TOKEN }, what: 'agent', mergeStderr: true, timeoutMs: 60_000, t });
}

/** A copy of the install (links to the real files) whose BPF object `broken` is not a BPF object. */
function installWithBrokenObject(t: Test, broken: string): string {
  const home = tempDir(t);
  for (const f of ['package.json', 'agent', 'build', 'node_modules']) symlinkSync(join(repoRoot, f), join(home, f));
  mkdirSync(join(home, 'bpf', '.output'), { recursive: true });
  for (const o of ['goroutines', 'runtime', 'tcp']) {
    if (o === broken) writeFileSync(join(home, 'bpf', '.output', `${o}.bpf.o`), 'not an ELF file\n');
    else symlinkSync(join(repoRoot, 'bpf', '.output', `${o}.bpf.o`), join(home, 'bpf', '.output', `${o}.bpf.o`));
  }
  return home;
}

/** The agent's log has exactly one line matching `re`, and no stack trace anywhere. */
function saidOnce(t: Test, log: string, re: RegExp, what: string): void {
  const lines = log.split('\n').filter((l) => re.test(l));
  t.equal(lines.length, 1, `${what}: said in one line: ${lines.join(' | ') || log}`);
  t.notMatch(log, /^\s+at .*\(.*:\d+:\d+\)$/m, 'no stack trace');
}

async function goroutinesStored(collector: { url: string }, pid: number, ms = 20_000): Promise<number> {
  const end = Date.now() + ms;
  for (;;) {
    const r = await api(collector, `/api/v1/goroutines?pid=${pid}&limit=100`);
    if (r.status === 200 && r.body.items.length) return r.body.items.length;
    if (Date.now() > end) return 0;
    await new Promise((res) => setTimeout(res, 200));
  }
}

async function metricsOf(url: string): Promise<string> {
  return (await fetch(url)).text();
}

const setup = async (t: Test) => {
  const collector = await testCollector(t);
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const base = ['--collector', collector.url.replace(/^http/, 'ws'), '--pid', String(prog.pid), '--spool-dir', join(tempDir(t), 'spool'), '--overhead-budget', '2%'];
  return { collector, prog, base };
};

t.test('TCP programs refused: goroutines still traced, TCP said down once', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const { collector, prog, base } = await setup(t);
  const home = installWithBrokenObject(t, 'tcp');
  const agent = startAgent(t, [...base, '--metrics-listen', '127.0.0.1:0'], { GOROSCOPE_HOME: home });
  await agent.find(new RegExp(`tracing pid ${prog.pid} `));
  const metrics = (await agent.find(/metrics on http:\S+/))[0].replace('metrics on ', '');
  t.ok((await goroutinesStored(collector, prog.pid)) > 0, 'goroutines reach the collector');
  saidOnce(t, agent.out, /no TCP connections: /, 'TCP');
  const m = await metricsOf(metrics);
  t.match(m, /goroscope_agent_part_up\{part="tcp"\} 0/);
  t.match(m, /goroscope_agent_part_up\{part="goroutines"\} 1/);
  t.match(m, /goroscope_agent_part_info\{part="tcp",detail="no TCP connections: [^"]+"\} 1/);
  t.match(m, new RegExp(`goroscope_traced_processes 1`));
});

t.test('metrics port taken: goroutines still traced, the listener said down once', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const { collector, prog, base } = await setup(t);
  const holder: Server = createServer();
  await new Promise<void>((r) => holder.listen(0, '127.0.0.1', r));
  t.teardown(() => holder.close());
  const port = (holder.address() as { port: number }).port;
  const agent = startAgent(t, [...base, '--metrics-listen', `127.0.0.1:${port}`]);
  await agent.find(new RegExp(`tracing pid ${prog.pid} `));
  t.ok((await goroutinesStored(collector, prog.pid)) > 0, 'goroutines reach the collector');
  saidOnce(t, agent.out, /no the Prometheus \/metrics listener: the address is already in use/, 'metrics');
});

t.test('no API server: goroutines still traced, pod names said down once', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const { collector, prog, base } = await setup(t);
  // An API server that refuses connections: a port nobody listens on.
  const free: Server = createServer();
  await new Promise<void>((r) => free.listen(0, '127.0.0.1', r));
  const port = (free.address() as { port: number }).port;
  await new Promise((r) => free.close(r));
  const kubeconfig = join(tempDir(t), 'kubeconfig');
  writeFileSync(
    kubeconfig,
    JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'c', cluster: { server: `https://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true } }],
      users: [{ name: 'u', user: { token: 'x' } }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    }),
  );
  const agent = startAgent(t, [...base, '--metrics-listen', '127.0.0.1:0'], { GOROSCOPE_KUBECONFIG: kubeconfig });
  await agent.find(new RegExp(`tracing pid ${prog.pid} `));
  t.ok((await goroutinesStored(collector, prog.pid)) > 0, 'goroutines reach the collector');
  await new Promise((r) => setTimeout(r, 3000)); // the watch retries meanwhile: still one line
  saidOnce(t, agent.out, /no pod names from the API server: /, 'pod metadata');
});

t.test('goroutine probes refused: the runtime probes and the rest still run, said once', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const { prog, base } = await setup(t);
  const home = installWithBrokenObject(t, 'goroutines');
  const agent = startAgent(t, [...base, '--metrics-listen', '127.0.0.1:0'], { GOROSCOPE_HOME: home });
  await agent.find(new RegExp(`tracing pid ${prog.pid} .* without goroutine probes`));
  const metrics = (await agent.find(/metrics on http:\S+/))[0].replace('metrics on ', '');
  saidOnce(t, agent.out, /no goroutine probes /, 'goroutine probes');
  const m = await metricsOf(metrics);
  t.match(m, /goroscope_agent_part_up\{part="goroutines"\} 0/);
  t.match(m, /goroscope_agent_part_up\{part="runtime"\} 1/);
});

t.test('a pid that is not traced gets one line saying why', { skip: noBpf ?? false, timeout: 60_000 }, async (t) => {
  const collector = await testCollector(t);
  const sleeper = startChild('sleep', ['60'], { t });
  const agent = startAgent(t, ['--collector', collector.url.replace(/^http/, 'ws'), '--pid', String(sleeper.pid), '--pid', '999999', '--spool-dir', join(tempDir(t), 'spool'), '--metrics-listen', '127.0.0.1:0', '--no-tcp']);
  await agent.find(/not tracing pid 999999: no process with pid 999999/);
  await agent.find(new RegExp(`not tracing pid ${sleeper.pid}: pid ${sleeper.pid} \\(.*sleep\\) is not a Go program`));
  await new Promise((r) => setTimeout(r, 4500)); // two more scans: still one line each
  saidOnce(t, agent.out, /not tracing pid 999999/, 'a gone pid');
  saidOnce(t, agent.out, new RegExp(`not tracing pid ${sleeper.pid}`), 'a pid that is not Go');
});
