// Cost of one uprobe hit: a channel ping-pong (each round trip = 2 runtime.gopark + 2 runtime.ready hits)
// measured with no probes, with the `empty` BPF program and with goroscope's real programs, each at the
// functions' first instruction and at the stack-check jump. One fixture process for all configurations:
// probes are attached and detached between runs, and the configurations are interleaved (forward, then
// backward order, round after round), so drift and neighbours' noise fall on all of them alike.
import { cookieFor, type ProbeSite } from '../../agent/src/probes/goroutine-probes.ts';
import { GoroutineTracer, type TracedProcess } from '../../agent/src/tracer/goroutine-tracer.ts';
import {
  buildFixture,
  enableBpfStats,
  figure,
  LineProcess,
  median,
  ownProgStats,
  progDelta,
  round,
  type BenchContext,
  type Figure,
} from './lib.ts';

type ConfigName = 'none' | 'empty_entry' | 'empty_jump' | 'full_jump' | 'full_entry';

interface Config {
  name: ConfigName;
  label: string;
  /** Attaches the configuration's probes; returns what detaches them. */
  attach: () => () => void;
  /** BPF programs whose kernel run time this configuration exercises. */
  programs: string[];
  /** Round trips per run, as a fraction of the base count (entry sites cost ~6x more per hit). */
  scale: number;
}

export async function runHitCost(ctx: BenchContext): Promise<Figure[]> {
  const bench = 'hit-cost';
  const n = ctx.quick ? 20_000 : 200_000;
  const rounds = ctx.quick ? 2 : 5;
  const binary = buildFixture('pingpong', ctx.goVersion);
  const prog = LineProcess.start(binary, ['-procs', '1'], 'pingpong');
  const tracer = new GoroutineTracer();
  const restoreStats = enableBpfStats();
  try {
    await prog.until(/^READY$/m);
    tracer.start();
    // The real programs at the jump go through the tracer's own path: attach, then setProbes (the
    // duty-cycling switch) turns them on and off.
    const proc: TracedProcess = tracer.attach(prog.pid, { probes: ['park', 'ready'] });
    tracer.setProbes(prog.pid, 'park', false);
    tracer.setProbes(prog.pid, 'ready', false);
    const jumpSites = proc.sites.filter((s) => s.probe === 'park' || s.probe === 'ready');
    if (jumpSites.length !== 2) throw new Error(`expected 2 probe sites (park, ready), got ${jumpSites.length}`);
    const notJump = jumpSites.filter((s) => s.kind !== 'stack-check-jump');
    if (notJump.length) throw new Error(`no stack-check jump found for ${notJump.map((s) => s.symbol).join(', ')}`);
    const entryOf = (s: ProbeSite) => {
      const f = proc.binary.func(s.symbol);
      if (!f) throw new Error(`${s.symbol} not found`);
      return f;
    };
    const exe = proc.info.exeLink;
    const pid = prog.pid;
    const attachAll = (items: Array<{ program: string; fileOffset: number; cookie: bigint }>) => {
      const links = items.map((i) => tracer.bpf.attachUprobe(i.program, exe, i.fileOffset, pid, i.cookie));
      return () => links.forEach((l) => tracer.bpf.detach(l));
    };
    const configs: Config[] = [
      { name: 'none', label: 'no probes', attach: () => () => {}, programs: [], scale: 1 },
      {
        name: 'empty_entry',
        label: '`empty` at function entry',
        attach: () => attachAll(jumpSites.map((s) => ({ program: 'empty', fileOffset: entryOf(s).fileOffset, cookie: 0n }))),
        programs: ['empty'],
        scale: 0.25,
      },
      {
        name: 'empty_jump',
        label: '`empty` at stack-check jump',
        attach: () => attachAll(jumpSites.map((s) => ({ program: 'empty', fileOffset: s.fileOffset, cookie: 0n }))),
        programs: ['empty'],
        scale: 1,
      },
      {
        name: 'full_jump',
        label: 'goroscope (gopark, ready) at stack-check jump',
        attach: () => {
          tracer.setProbes(pid, 'park', true);
          tracer.setProbes(pid, 'ready', true);
          return () => {
            tracer.setProbes(pid, 'park', false);
            tracer.setProbes(pid, 'ready', false);
          };
        },
        programs: ['gopark', 'ready'],
        scale: 1,
      },
      {
        name: 'full_entry',
        label: 'goroscope (gopark, ready) at function entry',
        attach: () =>
          attachAll(
            jumpSites.map((s) => ({
              program: s.program,
              fileOffset: entryOf(s).fileOffset,
              // At the entry the stack check has not run yet and there is nothing to filter.
              cookie: cookieFor({ ...s, cookie: { stackCheck: false } }, proc.layoutId),
            })),
          ),
        programs: ['gopark', 'ready'],
        scale: 0.25,
      },
    ];

    const perRt = new Map<ConfigName, number[]>(configs.map((c) => [c.name, []]));
    const bpfNsPerRun = new Map<ConfigName, number[]>();
    const hitsPerRt = new Map<ConfigName, number[]>();
    const progsByConfig = new Map<string, { runTimeNs: number; runCnt: number }>();
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? configs : [...configs].reverse();
      for (const c of order) {
        const count = Math.max(1000, Math.round(n * c.scale));
        const detach = c.attach();
        const before = restoreStats && c.programs.length ? await ownProgStats() : undefined;
        const hitsBefore = tracer.hits(proc.layoutId);
        let m: RegExpExecArray;
        try {
          m = await prog.command(`run ${count}`, /^RESULT n=(\d+) ns=(\d+) per_rt=([\d.]+)$/m, 300_000);
        } finally {
          detach();
        }
        perRt.get(c.name)!.push(Number(m[2]) / count);
        if (before) {
          const after = await ownProgStats();
          const d = progDelta(before, after, c.programs);
          if (d.runCnt > 0) {
            const arr = bpfNsPerRun.get(c.name) ?? [];
            arr.push(d.runTimeNs / d.runCnt);
            bpfNsPerRun.set(c.name, arr);
          }
          // Per program, for the real programs.
          for (const p of c.programs) {
            const one = progDelta(before, after, [p]);
            const key = `${c.name}:${p}`;
            const acc = progsByConfig.get(key) ?? { runTimeNs: 0, runCnt: 0 };
            acc.runTimeNs += one.runTimeNs;
            acc.runCnt += one.runCnt;
            progsByConfig.set(key, acc);
          }
        }
        if (c.name.startsWith('full')) {
          const h = tracer.hits(proc.layoutId);
          const arr = hitsPerRt.get(c.name) ?? [];
          arr.push((h.gopark - hitsBefore.gopark + h.ready - hitsBefore.ready) / count);
          hitsPerRt.set(c.name, arr);
        }
        ctx.log(`hit-cost round ${r + 1}/${rounds} ${c.name}: ${(Number(m[2]) / count).toFixed(0)} ns per round trip`);
      }
    }
    await tracer.drain();
    const lost = tracer.lostTotal();

    // Per-round paired differences against the same round's no-probe run.
    const none = perRt.get('none')!;
    const perHit = (c: ConfigName) => perRt.get(c)!.map((t, i) => (t - none[i]) / 4);
    const ratio = (a: ConfigName, b: ConfigName) => {
      const pa = perHit(a);
      const pb = perHit(b);
      return median(pa.map((x, i) => x / pb[i]));
    };
    const cmd = (c: Config) =>
      `${ctx.invocation} # pingpong -procs 1 (Go ${ctx.goVersion}), "run ${Math.max(1000, Math.round(n * c.scale))}" with ${c.label}; ${rounds} interleaved rounds, median`;
    const out: Figure[] = [];
    for (const c of configs) {
      out.push(
        figure({
          id: `${bench}.ns_per_round_trip.${c.name}`,
          bench,
          label: `ns per round trip, ${c.label}`,
          value: round(median(perRt.get(c.name)!)),
          unit: 'ns/round trip',
          command: cmd(c),
          samples: perRt.get(c.name)!.map((x) => round(x)),
        }),
      );
    }
    for (const c of configs.filter((c) => c.name !== 'none')) {
      out.push(
        figure({
          id: `${bench}.per_hit.${c.name}`,
          bench,
          label: `cost per hit, ${c.label} ((t - t_none) / 4)`,
          value: round(median(perHit(c.name))),
          unit: 'ns/hit',
          command: cmd(c),
          samples: perHit(c.name).map((x) => round(x)),
        }),
      );
    }
    const base = `${ctx.invocation} # per-round ratio of per-hit costs, median of ${rounds}`;
    out.push(
      figure({
        id: `${bench}.ratio.full_over_empty_jump`,
        bench,
        label: 'goroscope / empty, both at the stack-check jump',
        value: round(ratio('full_jump', 'empty_jump'), 2),
        unit: 'x',
        command: base,
        target: { op: '<=', value: 1.3 },
      }),
      figure({
        id: `${bench}.ratio.full_over_empty_entry`,
        bench,
        label: 'goroscope / empty, both at the function entry',
        value: round(ratio('full_entry', 'empty_entry'), 2),
        unit: 'x',
        command: base,
      }),
      figure({
        id: `${bench}.ratio.entry_over_jump_empty`,
        bench,
        label: 'entry / jump, `empty` program',
        value: round(ratio('empty_entry', 'empty_jump'), 2),
        unit: 'x',
        command: base,
      }),
      figure({
        id: `${bench}.ratio.entry_over_jump_full`,
        bench,
        label: 'entry / jump, goroscope programs',
        value: round(ratio('full_entry', 'full_jump'), 2),
        unit: 'x',
        command: base,
      }),
    );
    for (const c of ['full_jump', 'full_entry'] as const) {
      out.push(
        figure({
          id: `${bench}.hits_per_round_trip.${c}`,
          bench,
          label: `probe hits per round trip counted by BPF (hit_counts), ${c}`,
          value: round(median(hitsPerRt.get(c) ?? []), 2),
          unit: 'hits/round trip',
          command: cmd(configs.find((x) => x.name === c)!),
          note: 'sanity: 4 expected (2 gopark + 2 ready); a few more come from the runtime itself',
        }),
      );
    }
    out.push(
      figure({
        id: `${bench}.lost`,
        bench,
        label: 'records lost (ring buffer full) during the real-program runs',
        value: lost,
        unit: 'records',
        command: `${ctx.invocation} # tracer.lostTotal() after all rounds`,
      }),
    );
    const statsNote = restoreStats ? undefined : 'kernel.bpf_stats_enabled could not be turned on: no BPF run-time statistics';
    for (const c of ['empty_jump', 'full_jump'] as const) {
      const v = bpfNsPerRun.get(c);
      out.push(
        figure({
          id: `${bench}.bpf_run_ns.${c}`,
          bench,
          label: `BPF program run time per hit (kernel run_time_ns / run_cnt), ${c}`,
          value: v?.length ? round(median(v)) : null,
          unit: 'ns/run',
          command: `${ctx.invocation} # sysctl kernel.bpf_stats_enabled=1; bpftool -j prog show id <own prog ids> around each run`,
          note: statsNote ?? 'program body only: the trap, the uprobe lookup and the return to user space are not in it',
        }),
      );
    }
    for (const p of ['gopark', 'ready']) {
      const acc = progsByConfig.get(`full_jump:${p}`);
      out.push(
        figure({
          id: `${bench}.bpf_run_ns.program.${p}`,
          bench,
          label: `BPF run time per hit of program \`${p}\` (at the jump)`,
          value: acc && acc.runCnt ? round(acc.runTimeNs / acc.runCnt) : null,
          unit: 'ns/run',
          command: `${ctx.invocation} # sysctl kernel.bpf_stats_enabled=1; bpftool -j prog show id <own prog ids>`,
          note: statsNote,
        }),
      );
    }
    return out;
  } finally {
    restoreStats?.();
    prog.send('quit');
    await prog.stop('SIGKILL', 2000);
    await tracer.close().catch(() => {});
  }
}
