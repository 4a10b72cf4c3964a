// `goroscope profile --pid PID --type goroutine|block [--duration 30s] -o FILE`: a pprof profile of a running Go
// process, from outside. goroutine: one read of every goroutine's stack. block: every wait over the window, from
// the park/ready probes and stack scans (block-profile.ts).
import { writeFileSync } from 'node:fs';
import { encodePprof, type ProfileData } from '../../../collector/src/protocol/pprof.ts';
import { ProcessMemory } from '../proc/process.ts';
import { openStackTarget, takeDump } from '../stacks/dump.ts';
import { monoNowNs } from '../tracer/clock.ts';
import { openTarget } from '../tracer/target.ts';
import { BlockProfiler } from './block-profile.ts';
import { goroutineProfile } from './goroutine-profile.ts';

export interface ProfileCommand {
  pid: number;
  type: 'goroutine' | 'block';
  /** Window of a block profile, ms. */
  duration: number;
  /** Where the gzipped protobuf goes ("-": stdout). */
  output: string;
  /** Time between stack scans of a block profile, ms. */
  scanInterval?: number;
  /** Share of goroutines whose parks are recorded (block). */
  parkSampling?: number;
}

export async function blockProfile(pid: number, durationMs: number, opts: { scanIntervalMs?: number; parkSampling?: number; log?: (m: string) => void } = {}): Promise<ProfileData> {
  const { GoroutineTracer } = await import('../tracer/goroutine-tracer.ts');
  const target = openTarget(pid);
  const st = openStackTarget(pid, target);
  const tracer = new GoroutineTracer();
  const mem = new ProcessMemory(pid);
  const sampling = opts.parkSampling ?? 1;
  let profiler: BlockProfiler | undefined;
  try {
    tracer.start((p, kind, v, at) => {
      if (profiler && p.info.pid === pid) profiler.onRecord(kind, v, at);
    });
    if (sampling < 1) tracer.setParkSampling(sampling);
    tracer.attach(target);
    const startNs = monoNowNs();
    const startMs = Date.now();
    const endNs = startNs + durationMs * 1e6;
    profiler = new BlockProfiler(st, { startNs, endNs, parkSampling: sampling });
    profiler.scan(mem, startNs);
    const interval = opts.scanIntervalMs ?? 200;
    for (;;) {
      const now = monoNowNs();
      if (now >= endNs) break;
      await new Promise((r) => setTimeout(r, Math.min(interval, (endNs - now) / 1e6)));
      // The ring is drained every 10 ms: let the records up to now arrive before the scan reads the goroutines.
      await new Promise((r) => setTimeout(r, 25));
      profiler.scan(mem, monoNowNs());
    }
    await tracer.drain();
    return profiler.finish(startMs);
  } finally {
    mem.close();
    await tracer.close();
  }
}

export async function runProfile(cmd: ProfileCommand): Promise<void> {
  let data: ProfileData;
  if (cmd.type === 'goroutine') {
    data = goroutineProfile(takeDump(openStackTarget(cmd.pid)));
  } else {
    process.stderr.write(`goroscope: recording every wait of pid ${cmd.pid} for ${cmd.duration / 1000}s\n`);
    data = await blockProfile(cmd.pid, cmd.duration, { scanIntervalMs: cmd.scanInterval, parkSampling: cmd.parkSampling });
  }
  const bytes = encodePprof(data);
  if (cmd.output === '-') process.stdout.write(bytes);
  else writeFileSync(cmd.output, bytes);
  const total = data.samples.reduce((s, x) => s + x.values[0], 0);
  process.stderr.write(`goroscope: ${cmd.type} profile of pid ${cmd.pid}: ${data.samples.length} stacks, ${total} ${data.sampleTypes[0].type}${cmd.output === '-' ? '' : ` -> ${cmd.output}`}\n`);
}
