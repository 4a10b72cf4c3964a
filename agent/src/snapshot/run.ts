// `goroscope snapshot`: attach, observe for the duration, detach, print.
import { GoroutineTracer } from '../tracer/goroutine-tracer.ts';
import { openTarget } from '../tracer/target.ts';
import { RuntimeEventsTracer } from '../runtime/runtime-tracer.ts';
import { startTcp } from '../tcp/part.ts';
import { Parts } from '../health/parts.ts';
import { explainLine, UserError } from '../health/explain.ts';
import { calibrateHitCost } from '../overhead/calibrate.ts';
import { OverheadGovernor } from '../overhead/governor.ts';
import { buildSnapshot, formatSnapshot } from './snapshot.ts';
import { monoNowNs } from '../tracer/clock.ts';

export interface SnapshotCommand {
  pid: number;
  duration: number;
  json?: boolean;
  system?: boolean;
  /** Fraction of the process's CPU the probes may cost; ignored with full. */
  overheadBudget: number;
  /** Every probe on for the whole observation. */
  full?: boolean;
  /** Fraction of goroutines whose parks and readies are recorded. */
  parkSampling?: number;
  retransmitSampling?: number;
  /** A live goroutine older than this counts towards its creation site's leak pile (default: a fifth of duration, a minute at most). */
  leakMinAgeMs?: number;
  /** Trace the process's TCP connections (default true). */
  tcp?: boolean;
  /** Hook connect/accept exits (accept owners of non-Go processes, connect failures before a SYN): a cost to every syscall on the node. */
  tcpSyscallHooks?: boolean;
}

/** The goroutine probes are what a snapshot is: without them it stops, in one line with the fix. */
function openGoroutineTracer(): GoroutineTracer {
  try {
    return new GoroutineTracer();
  } catch (e) {
    throw new UserError(explainLine(`cannot trace goroutines`, e));
  }
}

export async function runSnapshot(cmd: SnapshotCommand): Promise<void> {
  // Check the pid before loading anything into the kernel: a wrong pid gets its own clear message.
  const target = openTarget(cmd.pid);
  const parts = new Parts((line) => process.stderr.write(`goroscope: ${line}\n`));
  const tracer = openGoroutineTracer();
  parts.up('goroutines');
  // The runtime probes and TCP are extras: each that cannot start is said in one line and left out.
  const runtime = parts.start('runtime', () => new RuntimeEventsTracer());
  const tcp = startTcp(parts, cmd.tcp !== false, { seedPids: [cmd.pid], retransmitSampling: cmd.retransmitSampling, syscalls: cmd.tcpSyscallHooks ? 'auto' : undefined });
  const stop = () => {
    // Detach at once on Ctrl-C or SIGTERM; the kernel would also clean up if we were killed.
    void tracer.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    tracer.start();
    if (runtime) parts.start('runtime', () => runtime.start());
    tcp?.attach(target);
    if (cmd.parkSampling !== undefined) tracer.setParkSampling(cmd.parkSampling);
    // Calibrate before attaching to the target, so the target never carries the calibration's probes.
    const calibration = cmd.full ? undefined : await calibrateHitCost(tracer);
    let proc;
    try {
      proc = tracer.attach(target);
    } catch (e) {
      throw new UserError(explainLine(`cannot attach to pid ${cmd.pid}`, e));
    }
    if (runtime) parts.start('runtime', () => runtime.attach(target));
    const governor = calibration
      ? new OverheadGovernor(tracer, {
          budget: cmd.overheadBudget,
          nsPerHit: calibration.nsPerHit,
          periodMs: Math.min(10_000, Math.max(1000, cmd.duration / 5)),
        })
      : undefined;
    governor?.add(proc);
    process.stderr.write(`goroscope: observing pid ${cmd.pid} for ${cmd.duration / 1000}s\n`);
    // Leak suspects over the observation: creation sites whose live goroutines keep piling up, judged on ten
    // samples; a goroutine counts once it is a fifth of the observation old (a minute at most).
    const { LeakDetector } = await import('../analysis/leaks.ts');
    const leaks = new LeakDetector({ minAgeMs: cmd.leakMinAgeMs ?? Math.min(60_000, cmd.duration / 5), history: 10 });
    const every = cmd.duration / 10;
    for (let waited = 0; waited < cmd.duration; waited += every) {
      await new Promise((r) => setTimeout(r, every));
      leaks.sample(proc, monoNowNs());
    }
    governor?.stop();
    await tracer.drain();
    await runtime?.drain();
    await tcp?.drain();
    // The last look, from memory: every event recorded before it is applied now, so whichever is newer wins.
    tracer.scanNow(cmd.pid);
    const snap = buildSnapshot(proc, { system: cmd.system, lost: tracer.lostTotal() });
    if (runtime && parts.state('runtime')?.up) snap.runtime = runtime.summary(cmd.pid);
    if (tcp) snap.connections = tcp.connections(cmd.pid);
    snap.parts = parts.list();
    snap.leaks = leaks.suspects(proc);
    snap.overhead = governor
      ? {
          mode: 'budget',
          budget: cmd.overheadBudget,
          nsPerHit: calibration!.nsPerHit,
          calibration: calibration!.source,
          parkCoverage: governor.coverage(cmd.pid),
          estimatedOverhead: governor.estimatedOverhead(cmd.pid),
          parkSampling: tracer.parkSampleRate,
          windows: governor.windows(cmd.pid),
        }
      : { mode: 'full', parkCoverage: 1, parkSampling: tracer.parkSampleRate, windows: [] };
    process.stdout.write(cmd.json ? `${JSON.stringify(snap)}\n` : `${formatSnapshot(snap)}\n`);
  } finally {
    await runtime?.close();
    await tcp?.close();
    await tracer.close();
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
