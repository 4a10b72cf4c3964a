// What the request probes cost a Go net/http server per request, where the machine is too loaded for whole runs
// to compare (the http bench's untraced server alone varied 2x between runs at load average 15+): one server
// (GOMAXPROCS=1 on its own CPU) under one constant-rate load for the whole bench, and short windows that take
// turns, in rotating order, between no probes, the end of a request at finishRequest's entry (the tracer's
// choice) and at ServeHTTP's RETs (the fallback). Its CPU per window is the sum over its threads of
// /proc/PID/task/*/schedstat (ns), divided by the requests it answered (its write calls, /proc/PID/io); each round pairs a
// traced window with the untraced one next to it, and the figure is the median over rounds.
import { readFileSync } from 'node:fs';
import { HttpTracer } from '../../agent/src/http/http-tracer.ts';
import { processRunNs } from '../../agent/src/overhead/governor.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';
import { BEYLA_NS_PER_REQUEST, buildVegeta, CONNECTIONS, OTHER_CPU, SERVER_CPU } from './http-load.ts';
import { buildFixture, figure, median, round, sleep, startProcess, type BenchContext, type Child, type Figure } from './lib.ts';

type Mode = 'none' | 'done' | 'ret';
const MODES: Mode[] = ['none', 'done', 'ret'];

/** write(2) calls of a process so far (/proc/PID/io syscw): the hello server answers each request with one. */
function writeCalls(pid: number): number {
  return Number(/^syscw: (\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? NaN);
}

export async function runRequestCost(ctx: BenchContext): Promise<Figure[]> {
  const bench = 'request-cost';
  const rounds = ctx.quick ? 3 : 30;
  const windowMs = ctx.quick ? 1000 : 2000;
  const settleMs = 300;
  const rate = Number(process.env.BENCH_REQUEST_RATE ?? 2000);
  const binary = buildFixture('httpserver', ctx.goVersion);
  const vegetaBin = buildVegeta();
  const server = startProcess('taskset', ['-c', SERVER_CPU, binary], 'httpserver', { env: { ...process.env, GOMAXPROCS: '1' } });
  const tracer = new HttpTracer({ lastN: 1 });
  const totalS = Math.ceil((rounds * MODES.length * (windowMs + settleMs + 200)) / 1000) + 10;
  let attack: Child | undefined;
  const per: Record<Mode, number[]> = { none: [], done: [], ret: [] };
  const hits: Record<Exclude<Mode, 'none'>, number[]> = { done: [], ret: [] };
  let dropped = 0;
  try {
    const port = Number((await server.until(/^LISTEN (\d+)$/m, 30_000))[1]);
    const pid = server.pid;
    tracer.start();
    const target = openTarget(pid);
    attack = startProcess('taskset', ['-c', OTHER_CPU, vegetaBin, 'attack', `-rate=${rate}/s`, `-duration=${totalS}s`, '-timeout=5s',
      `-connections=${CONNECTIONS}`, `-max-connections=${CONNECTIONS}`, '-output=/dev/null'], 'vegeta attack');
    attack.child.stdin.end(`GET http://127.0.0.1:${port}/\n`);
    await sleep(2000); // warm-up: connections, GC sizing
    for (let r = 0; r < rounds; r++) {
      const order = MODES.map((_, i) => MODES[(i + r) % MODES.length]);
      const round: Partial<Record<Mode, { ns: number; hits?: number }>> = {};
      for (const mode of order) {
        let layoutId = -1;
        if (mode !== 'none') {
          const proc = tracer.attach(target, { end: mode === 'ret' ? 'ret' : 'auto' });
          if (proc.end !== mode) throw new Error(`asked for the end at ${mode}, got ${proc.end}: ${proc.skipped.join('; ')}`);
          layoutId = proc.layoutId;
        }
        await sleep(settleMs);
        const h0 = layoutId >= 0 ? tracer.hits(layoutId) : undefined;
        const c0 = processRunNs(pid) ?? NaN;
        const w0 = writeCalls(pid);
        await sleep(windowMs);
        const c1 = processRunNs(pid) ?? NaN;
        const sent = writeCalls(pid) - w0;
        // --quick (the smoke test: a few rounds, a figure wanted whatever the load) keeps any window with requests.
        const least = ctx.quick ? 1 : (rate * windowMs) / 1000 / 2;
        const w: { ns: number; hits?: number } = { ns: sent >= least ? (c1 - c0) / sent : NaN };
        if (h0) {
          const h1 = tracer.hits(layoutId);
          w.hits = Object.keys(h1).reduce((a, k) => a + h1[k] - h0[k], 0) / sent;
        }
        round[mode] = w;
        if (mode !== 'none') await tracer.detach(pid);
      }
      // A window where the load generator (on the other, shared CPU) fell below half its rate measures the machine,
      // not the probes: its round is left out, and counted.
      const line = MODES.map((m) => `${m} ${Math.round(round[m]!.ns)}`).join(', ');
      if (MODES.some((m) => !Number.isFinite(round[m]!.ns))) {
        dropped++;
        ctx.log(`request-cost round ${r + 1}/${rounds}: left out (a window under half the rate): ${line}`);
        continue;
      }
      for (const m of MODES) per[m].push(round[m]!.ns);
      hits.done.push(round.done!.hits!);
      hits.ret.push(round.ret!.hits!);
      ctx.log(`request-cost round ${r + 1}/${rounds}: ns CPU/request ${line}`);
    }
  } finally {
    await attack?.stop('SIGINT', 5000);
    await tracer.close().catch(() => {});
    await server.stop('SIGKILL');
  }
  const command = `${ctx.invocation} # bench httpserver (Go ${ctx.goVersion}) GOMAXPROCS=1 taskset -c ${SERVER_CPU}; ${'vegeta'} attack -rate=${rate}/s ` +
    `-connections=${CONNECTIONS} for the whole run; ${rounds} rounds of ${windowMs} ms windows (none, end at finishRequest, end at the RETs; rotating order; ${settleMs} ms after each attach); HttpTracer.attach(pid, { end }) in the bench process; server CPU from /proc/PID/task/*/schedstat, requests from /proc/PID/io syscw; rounds with a window under half the rate left out`;
  const out: Figure[] = [];
  out.push(figure({ id: `${bench}.ns_per_req.none`, bench, label: 'server CPU per request, no probes (request-cost windows)', value: Math.round(median(per.none)), unit: 'ns CPU/req', command, samples: per.none.map(Math.round), note: `${per.none.length} rounds, ${dropped} left out (the load fell under half its rate)` }));
  for (const mode of ['done', 'ret'] as const) {
    const added = per[mode].map((x, i) => x - per.none[i]);
    const label = mode === 'done' ? 'ServeHTTP entry + finishRequest entry' : 'ServeHTTP entry + RET';
    out.push(figure({
      id: `${bench}.added_ns_per_req.${mode}`, bench, label: `request probes (${label}): server CPU added per request, paired with the untraced window of the round`,
      value: Math.round(median(added)), unit: 'ns CPU/req', command, samples: added.map(Math.round),
      note: `${round(median(hits[mode]), 2)} probe hits per request; Beyla publishes ~${BEYLA_NS_PER_REQUEST} ns per request: ${round(median(added) / BEYLA_NS_PER_REQUEST, 2)}x (this VM's uprobe trap is ~3x bare metal's, FACTS.md)`,
    }));
  }
  const ratio = per.done.map((x, i) => (x - per.none[i]) / (per.ret[i] - per.none[i]));
  out.push(figure({ id: `${bench}.ratio.done_over_ret`, bench, label: 'request probes: added CPU per request, end at finishRequest / end at the RETs (per round)', value: round(median(ratio), 2), unit: 'x', command, samples: ratio.map((x) => round(x, 2)) }));
  return out;
}
