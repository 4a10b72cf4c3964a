// The agent's /metrics parses as Prometheus text and tells the truth; the alert rules load in promtool;
// `goroscope top` draws its view.
import t from 'tap';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AgentMetrics } from '../../agent/src/metrics/agent-metrics.ts';
import { LeakDetector } from '../../agent/src/analysis/leaks.ts';
import { TcpTracer } from '../../agent/src/tcp/tcp-tracer.ts';
import { buildSnapshot } from '../../agent/src/snapshot/snapshot.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { repoRoot } from '../lib/go.ts';
import { buildPopulation, PopulationProcess, tracedPopulation } from '../lib/population.ts';

const noBpf = await bpfUnavailable();
const promtool = spawnSync('promtool', ['--version']).status === 0 ? 'promtool' : undefined;
const noPromtool = promtool ? false : "promtool is not installed (Debian's prometheus package; scripts/setup.sh installs it)";

t.test('the alert rules load in promtool', { skip: noPromtool }, async (t) => {
  const out = execFileSync('promtool', ['check', 'rules', join(repoRoot, 'deploy', 'prometheus', 'goroscope-alerts.yaml')], { encoding: 'utf8' });
  t.match(out, /SUCCESS: \d+ rules found/);
});

t.test('/metrics', { skip: noBpf ?? noPromtool }, async (t) => {
  const { prog, tracer, proc } = await tracedPopulation(t);
  await prog.command('work 10 3', /^WORK DONE .*$/m);
  await tracer.drain();
  const tcp = new TcpTracer({ seed: false });
  t.teardown(() => tcp.close());
  const metrics = new AgentMetrics({ tracer, tcp, leaks: new LeakDetector() });
  const port = await metrics.listen('127.0.0.1:0');
  t.teardown(() => metrics.close());
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /text\/plain/);
  const text = await res.text();
  const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  t.equal(lint.status, 0, `promtool check metrics: ${lint.stdout}${lint.stderr}`);

  const snap = buildSnapshot(proc, { lost: 0 });
  const value = (name: string, labels: Record<string, string>) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)));
    return line ? Number(line.split(' ').pop()) : undefined;
  };
  for (const [reason, n] of Object.entries(snap.totals.byWaitReason)) {
    t.equal(value('goroscope_goroutines', { pid: String(prog.pid), wait_reason: reason, system: 'false' }), n, `goroutines waiting on ${reason}`);
  }
  t.ok((value('goroscope_goroutines_created_total', { pid: String(prog.pid) }) ?? 0) >= 10, 'creations counted');
  t.equal(value('goroscope_records_lost_total', { source: 'goroutines', probe: 'gopark' }), 0, 'drops are exported, here none');
  const tcpLost = Object.keys(tcp.lost());
  t.ok(tcpLost.length > 0, `the TCP programs count their drops (${tcpLost.join(', ')})`);
  for (const probe of tcpLost) t.equal(value('goroscope_records_lost_total', { source: 'tcp', probe }), 0, `TCP drops exported: ${probe}`);
  t.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
});

t.test('goroscope top draws a frame', { skip: noBpf ?? false }, async (t) => {
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());
  const { stdout } = await promisify(execFile)('env', ['-u', 'NODE_OPTIONS', process.execPath, join(repoRoot, 'bin', 'goroscope.js'), 'top', '--pid', String(prog.pid), '--iterations', '2', '--interval', '300ms', '--full']);
  const frames = stdout.split(/^(?=goroscope top)/m).filter((f) => f.trim());
  t.equal(frames.length, 2, 'two frames');
  t.match(frames[1], /goroscope top +pid \d+/);
  t.match(frames[1], /\nruns\/s \d+  preemptions\/s \d+  syscalls\/s \d+  run queue p50 [\d.]+ms p99 [\d.]+ms  threads \d+ Ps \d+\n/, 'the scheduler line');
  t.match(frames[1], /COUNT +WAIT REASON +AVG BLOCKED +AVG RUNQ +CREATED BY/);
  t.match(frames[1], /\n +2 +sync\.Mutex\.Lock .* main\.spawnPopulation population\/main\.go:\d+/);
});
