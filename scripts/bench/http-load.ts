// A Go net/http hello world under wrk on loopback, side by side: no agent; goroscope with every probe
// (--full: reader running, events applied); goroscope with only the create and exit probes (what the
// duty-cycled default keeps on while parks are off); the default agent (overhead budget 2%, the governor
// duty-cycling park/ready); the request probes alone (net/http's ServeHTTP entry and RETs: the cost per request,
// beside Beyla's published ~500 ns per request); Go's runtime/trace on (the anchor). A fresh server per run, the
// configurations interleaved (forward, then backward order), medians of the repetitions and per-repetition
// paired losses.
import { existsSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calibrateHitCost, type Calibration } from '../../agent/src/overhead/calibrate.ts';
import { OverheadGovernor, processCpuNs } from '../../agent/src/overhead/governor.ts';
import { GoroutineTracer } from '../../agent/src/tracer/goroutine-tracer.ts';
import { HttpTracer } from '../../agent/src/http/http-tracer.ts';
import type { GoroutineProbeName } from '../../agent/src/probes/goroutine-probes.ts';
import { buildFixture, figure, LineProcess, median, round, runCommand, sleep, type BenchContext, type Figure } from './lib.ts';

type ConfigName = 'none' | 'full' | 'create_exit' | 'budget' | 'requests' | 'trace';

interface Config {
  name: ConfigName;
  label: string;
  probes?: GoroutineProbeName[];
  budget?: number;
  /** The request probes (HttpTracer) alone. */
  requests?: boolean;
  trace?: boolean;
}

/** Grafana Beyla's published cost of its Go HTTP server probes, per request: the anchor for ours. */
const BEYLA_NS_PER_REQUEST = 500;

const CONFIGS: Config[] = [
  { name: 'none', label: 'no agent' },
  { name: 'full', label: 'goroscope, every probe (--full)', probes: ['create', 'park', 'ready', 'exit'] },
  { name: 'create_exit', label: 'goroscope, create + exit probes only', probes: ['create', 'exit'] },
  { name: 'budget', label: 'goroscope default (overhead budget 2%)', probes: ['create', 'park', 'ready', 'exit'], budget: 0.02 },
  { name: 'requests', label: 'goroscope request probes only (ServeHTTP entry + RETs)', requests: true },
  { name: 'trace', label: 'Go runtime/trace on', trace: true },
];

interface RunResult {
  rps: number;
  /** The server's CPU time (utime + stime from /proc/PID/stat) per request: the probes' cost lands there. */
  serverCpuUsPerReq: number;
  /** The agent's (this Node process's) CPU per request. */
  agentCpuUsPerReq?: number;
  p50Ms?: number;
  p99Ms?: number;
  records?: number;
  lost?: number;
  agentCpuPct?: number;
  parkCoverage?: number;
  traceBytes?: number;
}

/** wrk's "Latency Distribution" lines, in ms. */
function latencyMs(out: string, pct: string): number | undefined {
  const m = new RegExp(`^\\s*${pct}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(out);
  if (!m) return undefined;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 's' ? v * 1000 : v;
}

export async function runHttpLoad(ctx: BenchContext): Promise<Figure[]> {
  const bench = 'http';
  const seconds = ctx.quick ? 1 : 10;
  const reps = ctx.quick ? 1 : 3;
  const wrkArgs = (port: number) => ['-t1', '-c32', `-d${seconds}s`, '--latency', `http://127.0.0.1:${port}/`];
  const binary = buildFixture('httpserver', ctx.goVersion);
  // The default agent calibrates its hit cost once per machine (cached), as `goroscope agent` does.
  let calibration: Calibration | undefined;
  {
    const t = new GoroutineTracer();
    try {
      t.start();
      calibration = await calibrateHitCost(t);
    } finally {
      await t.close();
    }
  }
  const results = new Map<ConfigName, RunResult[]>(CONFIGS.map((c) => [c.name, []]));

  const runOne = async (c: Config): Promise<RunResult> => {
    const traceFile = join(tmpdir(), `goroscope-bench-${process.pid}.trace`);
    const server = LineProcess.start(binary, c.trace ? ['-trace', traceFile] : [], 'httpserver');
    let tracer: GoroutineTracer | undefined;
    let governor: OverheadGovernor | undefined;
    let reqTracer: HttpTracer | undefined;
    try {
      const port = Number((await server.until(/^LISTEN (\d+)$/m))[1]);
      const pid = server.pid;
      if (c.probes) {
        tracer = new GoroutineTracer();
        tracer.start();
        const proc = tracer.attach(pid, { probes: c.probes });
        if (c.budget !== undefined) {
          governor = new OverheadGovernor(tracer, { budget: c.budget, nsPerHit: calibration!.nsPerHit, periodMs: 10_000 });
          governor.add(proc);
        }
      }
      if (c.requests) {
        reqTracer = new HttpTracer({ lastN: 1 });
        reqTracer.start();
        const proc = reqTracer.attach(pid);
        if (!proc.sites.length) throw new Error(`no request probes placed: ${proc.skipped.join('; ')}`);
      }
      // Warm-up: connections, GC sizing, and the governor's first measuring window (1 s).
      await runCommand('wrk', ['-t1', '-c32', '-d1s', `http://127.0.0.1:${port}/`]);
      const rec0 = tracer?.records ?? reqTracer?.records ?? 0;
      const cpu0 = process.cpuUsage();
      const server0 = processCpuNs(pid) ?? NaN;
      const t0 = process.hrtime.bigint();
      const { stdout } = await runCommand('wrk', wrkArgs(port), (seconds + 60) * 1000);
      const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
      const serverNs = (processCpuNs(pid) ?? NaN) - server0;
      const cpu = process.cpuUsage(cpu0);
      const rps = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
      const total = /^\s*(\d+) requests in/m.exec(stdout);
      if (!rps || !total) throw new Error(`no Requests/sec in wrk output: ${stdout}`);
      const requests = Number(total[1]);
      const r: RunResult = {
        rps: Number(rps[1]),
        serverCpuUsPerReq: serverNs / 1000 / requests,
        p50Ms: latencyMs(stdout, '50'),
        p99Ms: latencyMs(stdout, '99'),
      };
      if (tracer) {
        r.agentCpuPct = ((cpu.user + cpu.system) / 1e6 / elapsed) * 100;
        r.agentCpuUsPerReq = (cpu.user + cpu.system) / requests;
        if (governor) r.parkCoverage = governor.coverage(pid);
        governor?.stop();
        await tracer.drain();
        r.records = tracer.records - rec0;
        r.lost = tracer.lostTotal();
      }
      if (reqTracer) {
        r.agentCpuPct = ((cpu.user + cpu.system) / 1e6 / elapsed) * 100;
        r.agentCpuUsPerReq = (cpu.user + cpu.system) / requests;
        await reqTracer.drain();
        r.records = reqTracer.records - rec0;
        r.lost = Object.values(reqTracer.lost()).reduce((a, b) => a + b, 0);
      }
      if (c.trace) {
        await server.stop('SIGTERM');
        r.traceBytes = existsSync(traceFile) ? statSync(traceFile).size : 0;
      }
      return r;
    } finally {
      governor?.stop();
      await tracer?.close().catch(() => {});
      await reqTracer?.close().catch(() => {});
      await server.stop();
      rmSync(traceFile, { force: true });
    }
  };

  for (let r = 0; r < reps; r++) {
    const order = r % 2 === 0 ? CONFIGS : [...CONFIGS].reverse();
    for (const c of order) {
      const res = await runOne(c);
      results.get(c.name)!.push(res);
      ctx.log(`http rep ${r + 1}/${reps} ${c.name}: ${Math.round(res.rps)} req/s, server ${res.serverCpuUsPerReq.toFixed(1)} us CPU/req${res.records !== undefined ? `, ${res.records} records, ${res.lost} lost` : ''}`);
      await sleep(200);
    }
  }

  const none = results.get('none')!.map((x) => x.rps);
  const cmdOf = (c: Config) =>
    `${ctx.invocation} # httpserver${c.trace ? ' -trace FILE' : ''} (Go ${ctx.goVersion}) + wrk ${wrkArgs(0).join(' ').replace(':0/', ':PORT/')} after a 1 s warm-up` +
    (c.probes ? `; GoroutineTracer.attach(pid, {probes: [${c.probes.join(', ')}]}), reader running` : '') +
    (c.requests ? '; HttpTracer.attach(pid): net/http.serverHandler.ServeHTTP entry + RETs, reader running' : '') +
    (c.budget !== undefined ? `; OverheadGovernor {budget ${c.budget}, nsPerHit ${round(calibration!.nsPerHit)} (${calibration!.source}), periodMs 10000}` : '') +
    `; ${reps} interleaved reps, median`;
  const out: Figure[] = [];
  for (const c of CONFIGS) {
    const rs = results.get(c.name)!;
    const rps = rs.map((x) => x.rps);
    out.push(
      figure({
        id: `${bench}.rps.${c.name}`,
        bench,
        label: `requests/s, ${c.label}`,
        value: Math.round(median(rps)),
        unit: 'req/s',
        command: cmdOf(c),
        samples: rps.map((x) => Math.round(x)),
        note: `p50 ${round(median(rs.map((x) => x.p50Ms ?? NaN)), 2)} ms, p99 ${round(median(rs.map((x) => x.p99Ms ?? NaN)), 2)} ms`,
      }),
    );
    const cpuReq = rs.map((x) => x.serverCpuUsPerReq);
    out.push(
      figure({
        id: `${bench}.server_cpu_us_per_req.${c.name}`,
        bench,
        label: `server CPU per request (utime+stime), ${c.label}`,
        value: round(median(cpuReq), 2),
        unit: 'us CPU/req',
        command: cmdOf(c),
        samples: cpuReq.map((x) => round(x, 2)),
        note: c.probes ? `agent CPU ${round(median(rs.map((x) => x.agentCpuUsPerReq ?? NaN)), 2)} us/req on top` : undefined,
      }),
    );
    if (c.name !== 'none') {
      const noneCpu = results.get('none')!.map((x) => x.serverCpuUsPerReq);
      const cpuOver = cpuReq.map((x, i) => (x / noneCpu[i] - 1) * 100);
      out.push(
        figure({
          id: `${bench}.server_cpu_overhead_pct.${c.name}`,
          bench,
          label: `server CPU per request vs no agent, ${c.label} (robust to a loaded machine)`,
          value: round(median(cpuOver)),
          unit: '%',
          command: cmdOf(c),
          samples: cpuOver.map((x) => round(x)),
          ...(c.budget !== undefined ? { target: { op: '<=' as const, value: c.budget * 100 } } : {}),
        }),
      );
      const losses = rps.map((x, i) => (1 - x / none[i]) * 100);
      const extra: string[] = [];
      if (c.probes || c.requests) {
        extra.push(`records ${Math.round(median(rs.map((x) => x.records ?? 0)))}/run, lost ${Math.max(...rs.map((x) => x.lost ?? 0))}, agent CPU ${round(median(rs.map((x) => x.agentCpuPct ?? 0)))}% of a core`);
      }
      if (c.budget !== undefined) extra.push(`park/ready probes on ${round(median(rs.map((x) => (x.parkCoverage ?? 0) * 100)))}% of the time (incl. the warm-up's first window)`);
      if (c.trace) extra.push(`trace ${round(median(rs.map((x) => (x.traceBytes ?? 0) / 2 ** 20)))} MiB per run`);
      out.push(
        figure({
          id: `${bench}.loss_pct.${c.name}`,
          bench,
          label: `throughput loss vs no agent, ${c.label}`,
          value: round(median(losses)),
          unit: '%',
          command: cmdOf(c),
          samples: losses.map((x) => round(x)),
          note: extra.join('; ') || undefined,
        }),
      );
    }
  }
  // The request probes' cost per request: the server's extra CPU per request, paired with the no-agent run of the
  // same repetition (2 hits a request: the entry and one RET).
  {
    const noneCpu = results.get('none')!.map((x) => x.serverCpuUsPerReq);
    const c = CONFIGS.find((x) => x.name === 'requests')!;
    const perReq = results.get('requests')!.map((x, i) => (x.serverCpuUsPerReq - noneCpu[i]) * 1000);
    const v = median(perReq);
    out.push(
      figure({
        id: `${bench}.request_probe_ns_per_req`,
        bench,
        label: 'request probes: server CPU added per request (ServeHTTP entry + RET, record written)',
        value: round(v),
        unit: 'ns/req',
        command: cmdOf(c),
        samples: perReq.map((x) => round(x)),
        note: `Beyla publishes ~${BEYLA_NS_PER_REQUEST} ns per request for its Go HTTP probes: ${round(v / BEYLA_NS_PER_REQUEST, 2)}x that here (this VM's uprobe trap is ~3x bare metal's, FACTS.md)`,
      }),
    );
  }
  out.push(
    figure({
      id: `${bench}.calibration_ns_per_hit`,
      bench,
      label: "the default agent's calibrated cost per hit (calibrateHitCost)",
      value: round(calibration!.nsPerHit),
      unit: 'ns/hit',
      command: `${ctx.invocation} # calibrateHitCost(tracer) (${calibration!.source})`,
    }),
  );
  return out;
}
