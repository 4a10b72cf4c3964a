// Measures what one park/ready probe hit costs on this node: the calibration ping-pong (agent/calibrate)
// runs with and without the probes, interleaved, and the difference per hit is the cost. A busy machine only
// ever adds time, so each side takes its fastest round. Cached per kernel and CPU for a day: a cost measured
// while the node was busy (4x the quiet one, seen here) is not kept for ever.
//
// The ping-pong writes TOUCH_KIB of memory between round trips, as a busy process works between its parks: a hit
// then costs what it costs a server at saturation, its code and data fetched back into the caches and some of the
// process's own evicted. The tight loop with everything cached measured 0.6-0.85x that here (952-1,003 vs
// 1,120-1,615 ns per hit with 1 MiB written, a loaded machine), and the governor, budgeting by the tight loop's
// figure, let the probes take several times their budget of a saturated hello server (bench/results/overhead:
// 7.1% of its requests per CPU-second for a 2% budget).
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { installRoot } from '../install-root.ts';
import type { GoroutineTracer } from '../tracer/goroutine-tracer.ts';
import { openTarget, releaseTarget, type Target } from '../tracer/target.ts';

export const pingpongBinary = join(installRoot, 'build', 'calibrate', 'pingpong');
/** ../shared/FACTS.md measured ~0.9 us at the stack-check jump; a miss in calibration assumes a bit more. */
export const DEFAULT_HIT_COST_NS = 1500;

export interface Calibration {
  nsPerHit: number;
  source: 'measured' | 'cached' | 'default';
  hitsPerRoundTrip?: number;
  baselineNsPerRoundTrip?: number;
  probedNsPerRoundTrip?: number;
  reason?: string;
}

/** Memory the ping-pong writes between round trips (KiB): more than a core's L2. */
export const TOUCH_KIB = 1024;

const cacheFile = join(tmpdir(), 'goroscope-calibration.json');
const CACHE_MS = 24 * 3600_000;
/** The method is part of the key: a figure measured another way is not reused. */
const machineKey = () => `${release()}|${cpus()[0]?.model ?? ''}|touch ${TOUCH_KIB}`;

export async function calibrateHitCost(tracer: GoroutineTracer, opts: { roundTrips?: number; useCache?: boolean } = {}): Promise<Calibration> {
  if (opts.useCache !== false && existsSync(cacheFile)) {
    try {
      const c = JSON.parse(readFileSync(cacheFile, 'utf8')) as Calibration & { key: string; atMs?: number };
      if (c.key === machineKey() && Date.now() - (c.atMs ?? 0) < CACHE_MS) return { ...c, source: 'cached' };
    } catch {
      /* measure again */
    }
  }
  if (!existsSync(pingpongBinary)) {
    return { nsPerHit: DEFAULT_HIT_COST_NS, source: 'default', reason: `${pingpongBinary} is not built (scripts/setup.sh)` };
  }
  // ~40 us per round trip with the memory written: ~0.2 s per run, ten runs.
  const n = opts.roundTrips ?? 5_000;
  const child = spawn(pingpongBinary, ['-procs', '1', '-touch', String(TOUCH_KIB)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  let gone: Error | undefined;
  child.once('error', (e) => (gone = e));
  /** Its next line, or an error when it ends or says nothing for 30 s: the agent's start never hangs on it. */
  const next = () =>
    new Promise<string>((resolve, reject) => {
      if (gone) return reject(gone);
      const done = (fn: () => void) => {
        clearTimeout(timer);
        lines.off('line', onLine);
        lines.off('close', onClose);
        fn();
      };
      const onLine = (l: string) => done(() => resolve(l));
      const onClose = () => done(() => reject(gone ?? new Error('the calibration ping-pong exited')));
      const timer = setTimeout(() => done(() => reject(new Error('the calibration ping-pong said nothing for 30 s'))), 30_000);
      lines.on('line', onLine);
      lines.once('close', onClose);
    });
  let target: Target | undefined;
  try {
    await next(); // READY
    /** CPU ns per round trip of one run (the ping-pong's own getrusage: on a busy node, wall time also counts
     * the time it waited for a CPU, and its memory writes made that wait long and uneven). */
    const run = async () => {
      child.stdin.write(`run ${n}\n`);
      return Number(/cpu_ns=(\d+)/.exec(await next())?.[1]) / n;
    };
    target = openTarget(child.pid!);
    // The exit probe stays on (the ping-pong's goroutines never exit, so it adds no hit): as in every on-window,
    // the programs then take goids from their cache (bpf/goroutines.bpf.c), and the calibration costs what they do.
    const proc = tracer.attach(target, { probes: ['park', 'ready', 'exit'] });
    const base: number[] = [];
    const probed: number[] = [];
    let hits = 0;
    for (let i = 0; i < 5; i++) {
      // Off means off in the kernel before the baseline runs.
      await Promise.all([tracer.setProbes(child.pid!, 'park', false), tracer.setProbes(child.pid!, 'ready', false)]);
      base.push(await run());
      tracer.setProbes(child.pid!, 'park', true);
      tracer.setProbes(child.pid!, 'ready', true);
      const before = tracer.hits(proc.layoutId);
      probed.push(await run());
      const after = tracer.hits(proc.layoutId);
      hits = after.gopark - before.gopark + (after.ready - before.ready);
    }
    await tracer.detach(child.pid!);
    const hitsPerRoundTrip = hits / n;
    const result: Calibration = {
      nsPerHit: Math.max(1, (Math.min(...probed) - Math.min(...base)) / hitsPerRoundTrip),
      source: 'measured',
      hitsPerRoundTrip,
      baselineNsPerRoundTrip: Math.min(...base),
      probedNsPerRoundTrip: Math.min(...probed),
    };
    try {
      writeFileSync(cacheFile, JSON.stringify({ ...result, key: machineKey(), atMs: Date.now() }));
    } catch {
      /* a read-only tmp only costs a new calibration next time */
    }
    return result;
  } catch (e) {
    return { nsPerHit: DEFAULT_HIT_COST_NS, source: 'default', reason: `calibration failed: ${(e as Error).message}` };
  } finally {
    child.stdin.end('quit\n');
    child.kill();
    if (target) releaseTarget(target); // the ping-pong's binary is not kept once it is gone
  }
}
