// `goroscope doctor`: every check of this node, tried for real, and for a pid the Go version and probe sites,
// checked against what Go's own tools say of the same binary (`go version`, `go tool nm`).
import t from 'tap';
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { bpfUnavailable } from '../lib/bpf.ts';
import { goCommand, repoRoot } from '../lib/go.ts';
import { buildPopulation, PopulationProcess } from '../lib/population.ts';
import { checkCapabilities, checkKernel, checkTracefs, type Check } from '../../agent/src/doctor/checks.ts';

const run = promisify(execFile);
const noBpf = await bpfUnavailable();
const goroscope = join(repoRoot, 'bin', 'goroscope.js');
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !/TAP/i.test(k)));

async function doctor(args: string[]): Promise<{ code: number; checks: Check[]; stderr: string }> {
  try {
    const r = await run(process.execPath, [goroscope, 'doctor', '--json', ...args], { env: cleanEnv, timeout: 60_000 });
    return { code: 0, checks: JSON.parse(r.stdout).checks, stderr: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, checks: x.stdout ? JSON.parse(x.stdout).checks : [], stderr: x.stderr };
  }
}

t.test('the checks read the kernel version, capabilities and tracefs as an operator would', async (t) => {
  t.match(checkKernel('5.4.0-150-generic'), { status: 'warn', detail: /no BPF ring buffer before 5\.8/ });
  t.match(checkKernel('5.10.0'), { status: 'warn', detail: /cookies from 5\.15/, fix: /5\.15/ });
  t.match(checkKernel('6.8.0'), { status: 'pass', detail: /stack-check jump/ });
  t.match(checkKernel('6.11.0'), { status: 'pass', detail: /PUSH is emulated/ });
  const bit = (...caps: number[]) => caps.reduce((a, c) => a | (1n << BigInt(c)), 0n);
  t.match(checkCapabilities(bit(38, 39, 19, 21), [6, 18]), { status: 'pass' });
  t.match(checkCapabilities(bit(38, 39, 19), [6, 8]), { status: 'pass', detail: /private tracefs/ });
  t.match(checkCapabilities(bit(38, 39, 19), [6, 16], false), { status: 'fail', fix: /CAP_SYS_ADMIN \(perf uprobes need it since Linux 6\.16/ });
  t.match(checkCapabilities(bit(38, 39, 19), [6, 16], true), { status: 'pass' }, 'uprobe multi-links need no CAP_SYS_ADMIN');
  t.match(checkCapabilities(bit(19), [6, 8]), { status: 'fail', fix: /CAP_BPF and CAP_PERFMON/ });
  t.match(checkCapabilities(bit(38, 39), [6, 8]), { status: 'warn', fix: /CAP_SYS_PTRACE/ });
  t.match(checkTracefs({ kind: 'none', reason: 'tracefs is not mounted and the agent lacks CAP_SYS_ADMIN to mount it' }), { status: 'warn', fix: /mount -t tracefs/ });
  t.match(checkTracefs({ kind: 'mounted', root: '/sys/kernel/tracing' }), { status: 'pass' });
});

t.test('doctor on this node: every part tried for real', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const r = await doctor([]);
  t.equal(r.code, 0, `no check failed: ${JSON.stringify(r.checks)}`);
  const names = r.checks.map((c) => c.name);
  for (const n of ['kernel', 'BTF', 'capabilities', 'tracefs', 'cgroup', 'native bridge', 'BPF ring buffer', 'goroutine probes', 'runtime probes', 'TCP tracepoints']) {
    t.ok(names.includes(n), `checks ${n}`);
  }
  for (const c of r.checks) t.ok(c.status === 'pass' || c.status === 'warn', `${c.name}: ${c.status} ${c.detail}`);
  t.match(r.checks.find((c) => c.name === 'goroutine probes'), { status: 'pass', detail: /uprobe with a BPF cookie attaches/ });
});

t.test('doctor --pid: the Go version and probe sites Go itself reports', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const bin = buildPopulation();
  const prog = await PopulationProcess.start(bin);
  t.teardown(() => prog.kill());
  const r = await doctor(['--pid', String(prog.pid)]);
  t.equal(r.code, 0, r.stderr);
  const { cmd, env } = goCommand();
  const goVersion = /: (go\S+)/.exec(execFileSync(cmd, ['version', bin], { env, encoding: 'utf8' }))![1];
  t.match(r.checks.find((c) => c.name === 'process'), { status: 'pass', detail: new RegExp(`pid ${prog.pid}: .*population \\(${goVersion}\\)`) });
  t.match(r.checks.find((c) => c.name === 'runtime layout'), { status: 'pass', detail: /DWARF, exact/ });
  // Each site lies inside its function as `go tool nm -size` places it.
  const nm = execFileSync(cmd, ['tool', 'nm', '-size', bin], { env, encoding: 'utf8' });
  const fn = (name: string) => {
    const m = new RegExp(`^\\s*([0-9a-f]+)\\s+(\\d+) T ${name.replace(/[.*]/g, '\\$&')}$`, 'm').exec(nm)!;
    return { start: parseInt(m[1], 16), end: parseInt(m[1], 16) + Number(m[2]) };
  };
  for (const [probe, symbol] of [['park', 'runtime.gopark'], ['ready', 'runtime.ready'], ['exit', 'runtime.goexit1'], ['create', 'runtime.newproc.func1']]) {
    const c = r.checks.find((x) => x.name === `probe ${probe}`);
    const m = /^(\S+) at 0x([0-9a-f]+)/.exec(c?.detail ?? '');
    t.ok(m, `probe ${probe}: ${c?.detail}`);
    if (!m) continue;
    t.equal(m[1], symbol);
    const at = parseInt(m[2], 16);
    const f = fn(symbol);
    t.ok(at >= f.start && at < f.end, `${symbol}: site 0x${at.toString(16)} inside [0x${f.start.toString(16)}, 0x${f.end.toString(16)})`);
  }
  t.match(r.checks.find((c) => c.name === 'allgs'), { status: 'pass' });
  t.match(r.checks.find((c) => c.name === 'request probes'), { status: 'pass', detail: 'no net/http or grpc-go server in this binary' });
});

t.test('doctor --pid of no process: one failed check, exit 1', { skip: noBpf ?? false, timeout: 90_000 }, async (t) => {
  const r = await doctor(['--pid', '999999']);
  t.equal(r.code, 1);
  t.match(r.checks.find((c) => c.name === 'process'), { status: 'fail', detail: 'no process with pid 999999' });
  t.notMatch(r.stderr, /\bat .*:\d+:\d+/, 'no stack trace');
});
