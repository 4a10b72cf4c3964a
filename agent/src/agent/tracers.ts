// The agent's tracers as parts: each starts on its own, and one that cannot start is reported and left out
// (agent/src/health/parts.ts); the overhead governor over the goroutine tracer, with the probe cost calibrated.
import type { AgentOptions } from './run.ts';
import type { AgentProfiles } from '../profiles/agent-profiles.ts';
import type { Parts } from '../health/parts.ts';
import { calibrateHitCost } from '../overhead/calibrate.ts';
import { OverheadGovernor, TCP_HOOK_NS_PER_SYSCALL } from '../overhead/governor.ts';
import { GoroutineTracer } from '../tracer/goroutine-tracer.ts';
import { RuntimeEventsTracer } from '../runtime/runtime-tracer.ts';
import type { TcpTracer } from '../tcp/tcp-tracer.ts';
import { startTcp } from '../tcp/part.ts';
import { HttpTracer } from '../http/http-tracer.ts';
import { DECODER_IDLE_MS } from '../gobinary/x86.ts';
import { TrimAfterQuiet } from './heap-trim.ts';

export interface Tracers {
  tracer?: GoroutineTracer;
  runtime?: RuntimeEventsTracer;
  /** Server requests (net/http, grpc-go). */
  requests?: HttpTracer;
  tcp?: TcpTracer;
}

export function startTracers(opts: AgentOptions, parts: Parts, profiles: AgentProfiles | undefined): Tracers {
  const requests = opts.requests === false ? (parts.off('requests', '--no-requests'), undefined) : parts.start('requests', () => new HttpTracer());
  const tracer = parts.start('goroutines', () => {
    const t = new GoroutineTracer({ trace: opts.trace });
    t.start((p, kind, v, at) => {
      profiles?.onRecord(p, kind, v, at);
      requests?.onGoroutineRecord(p.info.pid, kind, v, at); // the parks inside each request
    });
    return t;
  });
  const runtime = parts.start('runtime', () => new RuntimeEventsTracer());
  // TCP is node-wide: every process's connections, Go or not; Go processes also get their goroutines.
  const tcp = startTcp(parts, opts.tcp !== false, { seedPids: opts.pids, retransmitSampling: opts.retransmitSampling, syscalls: opts.tcpSyscallHooks ? 'auto' : undefined });
  if (tracer && opts.parkSampling !== undefined) tracer.setParkSampling(opts.parkSampling);
  return { tracer, runtime, requests, tcp };
}

/** Keeps each process's probe cost within the budget; in --full mode it only cuts time into windows for the records. */
export async function startGovernor(tracer: GoroutineTracer | undefined, opts: AgentOptions, intervalMs: number, log: (m: string) => void, requests?: HttpTracer, tcp?: TcpTracer) {
  if (!tracer) return undefined;
  const calibration = opts.full ? undefined : await calibrateHitCost(tracer);
  if (calibration) log(`a probe hit costs ${Math.round(calibration.nsPerHit)} ns here (${calibration.source})`);
  // A calibration that ran (none cached: every new pod) analysed the ping-pong's binary and read its records:
  // ~20 MiB of V8 and C heap that nothing would give back before the first attach (106 MiB nothing traced, 84
  // with the calibration cached). Collected once x86.ts has let its decoder go (1-2 s after the last decode).
  if (calibration?.source === 'measured') new TrimAfterQuiet(2 * DECODER_IDLE_MS + 500).poke();
  return new OverheadGovernor(tracer, {
    budget: opts.full ? Infinity : opts.overheadBudget,
    nsPerHit: calibration?.nsPerHit ?? 1,
    periodMs: opts.full ? intervalMs : 10_000,
    requests: requests && { hits: (pid) => requests.probeHits(pid), setProbes: (pid, on) => requests.setProbes(pid, on) },
    // TCP's syscall hooks (--tcp-syscall-hooks), when attached, are always on: their cost comes out of the budget first.
    nsPerSyscall: tcp && tcp.attachMode.syscalls !== 'none' ? TCP_HOOK_NS_PER_SYSCALL : 0,
    // TCP's accept uprobe in each traced Go process stays on: a hit per accepted connection.
    alwaysOnHits: tcp && ((pid) => tcp.process(pid)?.accepts ?? 0),
  });
}
