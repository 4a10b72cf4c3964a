// Cost of one uprobe hit: a channel ping-pong (each round trip = 2 runtime.gopark + 2 runtime.ready hits)
// measured with no probes, with the `empty` BPF program and with goroscope's real programs, each at the
// functions' first instruction and at the stack-check jump. One fixture process for all configurations:
// probes are attached and detached between runs, and the configurations are interleaved (forward, then
// backward order, round after round), so drift and neighbours' noise fall on all of them alike.
import { openTarget } from '../../agent/src/tracer/target.ts';
import { openBpfObject, type BpfObject } from '../../agent/src/bpf/bridge.ts';
import { cookieFor, type GoroutineProbeName, type ProbeSite } from '../../agent/src/probes/goroutine-probes.ts';
import { GoroutineTracer, type TracedProcess } from '../../agent/src/tracer/goroutine-tracer.ts';
import { join } from 'node:path';
import { goBuild, repoRoot } from '../../test/lib/go.ts';
import {
  enableBpfStats,
  figure,
  startProcess,
  median,
  ownProgStats,
  progDelta,
  round,
  type BenchContext,
  type Figure,
} from './lib.ts';

type ConfigName = 'none' | 'empty_entry' | 'empty_jump' | 'full_jump' | 'full_entry' | 'sched' | 'full_sched';

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
  // The agent's own calibration program, built with the bench's Go: the agent and the bench measure alike.
  const binary = goBuild({ srcDir: join(repoRoot, 'agent', 'calibrate', 'pingpong'), version: ctx.goVersion, name: 'bench-pingpong' });
  const prog = startProcess(binary, ['-procs', '1'], 'pingpong');
  const tracer = new GoroutineTracer();
  // The baseline program lives in an object of its own (bpf/bench/hit-cost.bpf.c): the agent never loads it.
  const baseline = openBpfObject('bench/hit-cost');
  let restoreStats: (() => void) | undefined;
  try {
    await prog.until(/^READY$/m);
    tracer.start();
    // The real programs at the jump go through the tracer's own path: attach, then setProbes (the
    // duty-cycling switch) turns them on and off.
    const proc: TracedProcess = tracer.attach(openTarget(prog.pid), { probes: ['park', 'ready', 'exit', 'run'] });
    for (const p of ['park', 'ready', 'exit', 'run'] as const) void tracer.setProbes(prog.pid, p, false);
    const jumpSites = proc.sites.filter((s) => s.probe === 'park' || s.probe === 'ready');
    if (jumpSites.length !== 2) throw new Error(`expected 2 probe sites (park, ready), got ${jumpSites.length}`);
    // The planner's site: the body's first instruction on kernels that emulate PUSH, else the stack-check jump.
    const notEmulated = jumpSites.filter((s) => s.kind !== 'stack-check-jump' && s.kind !== 'after-stack-check');
    if (notEmulated.length) throw new Error(`no emulated site found for ${notEmulated.map((s) => s.symbol).join(', ')}`);
    const siteName = jumpSites[0].kind;
    const entryOf = (s: ProbeSite) => {
      const f = proc.binary.func(s.symbol);
      if (!f) throw new Error(`${s.symbol} not found`);
      return f;
    };
    const exe = proc.info.exeLink;
    const pid = prog.pid;
    const attachAll = (items: Array<{ program: string; fileOffset: number; cookie: bigint }>, obj: BpfObject = tracer.bpf) => {
      const links = items.map((i) => obj.attachUprobe(i.program, exe, i.fileOffset, pid, i.cookie));
      return () => links.forEach((l) => obj.detach(l));
    };
    /** `empty` (bpf/bench) at each site's offset. */
    const emptyAt = (offsetOf: (s: ProbeSite) => number) => () =>
      attachAll(jumpSites.map((s) => ({ program: 'empty', fileOffset: offsetOf(s), cookie: 0n })), baseline);
    /** goroscope's own probes through the tracer's duty-cycling switch: on for the run, off after. The exit probe
     * comes with them, as it does in --full and in every on-window of the default mode: while it is on the
     * programs take goids from their cache (bpf/goroutines.bpf.c). The ping-pong's goroutines never exit. */
    const probesOn = (...classes: GoroutineProbeName[]) => () => {
      const probes = [...classes, 'exit' as const];
      for (const p of probes) void tracer.setProbes(pid, p, true);
      return () => {
        for (const p of probes) void tracer.setProbes(pid, p, false);
      };
    };
    const configs: Config[] = [
      { name: 'none', label: 'no probes', attach: () => () => {}, programs: [], scale: 1 },
      {
        name: 'empty_entry',
        label: '`empty` at function entry',
        attach: emptyAt((s) => entryOf(s).fileOffset),
        programs: ['empty'],
        scale: 0.25,
      },
      {
        name: 'empty_jump',
        label: `\`empty\` at goroscope's site (${siteName})`,
        attach: emptyAt((s) => s.fileOffset),
        programs: ['empty'],
        scale: 1,
      },
      {
        name: 'full_jump',
        label: `goroscope (gopark, ready) at its site (${siteName})`,
        attach: probesOn('park', 'ready'),
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
              // At the entry the check is still ahead: the program evaluates it (SP against stackguard0).
              cookie: cookieFor({ ...s, cookie: { stackCheck: true } }, proc.layoutId),
            })),
          ),
        programs: ['gopark', 'ready'],
        scale: 0.25,
      },
      {
        // The scheduler's probes alone: each round trip runs runtime.execute twice and stamps the two readied
        // goroutines at ready's site: four hits, as for park/ready.
        name: 'sched',
        label: "goroscope's scheduler probes alone (execute, ready's stamp)",
        attach: probesOn('run'),
        programs: ['sched_execute', 'sched_ready'],
        scale: 1,
      },
      {
        name: 'full_sched',
        label: 'goroscope (gopark, ready) and the scheduler probes',
        attach: probesOn('park', 'ready', 'run'),
        programs: ['gopark', 'ready', 'sched_execute', 'sched_ready'],
        scale: 1,
      },
    ];

    const perRt = new Map<ConfigName, number[]>(configs.map((c) => [c.name, []]));
    const cpuPerRt = new Map<ConfigName, number[]>(configs.map((c) => [c.name, []]));
    const hitsPerRt = new Map<ConfigName, number[]>();
    const agentCpuPerHit = new Map<ConfigName, number[]>();
    const runOnce = async (c: Config, count: number): Promise<{ wall: number; cpu: number }> => {
      const detach = c.attach();
      const hitsBefore = tracer.hits(proc.layoutId);
      const cpuBefore = process.cpuUsage();
      let m: RegExpExecArray;
      try {
        m = await prog.command(`run ${count}`, /^RESULT n=(\d+) ns=(\d+) cpu_ns=(\d+) per_rt=([\d.]+)$/m, 300_000);
      } finally {
        detach();
      }
      if (c.name.startsWith('full') || c.name === 'sched') {
        const h = tracer.hits(proc.layoutId);
        const hits = h.gopark - hitsBefore.gopark + h.ready - hitsBefore.ready + h.execute - hitsBefore.execute + h.runnable - hitsBefore.runnable;
        const arr = hitsPerRt.get(c.name) ?? [];
        arr.push(hits / count);
        hitsPerRt.set(c.name, arr);
        const cpu = process.cpuUsage(cpuBefore);
        const cpuArr = agentCpuPerHit.get(c.name) ?? [];
        cpuArr.push(((cpu.user + cpu.system) * 1000) / hits);
        agentCpuPerHit.set(c.name, cpuArr);
      }
      return { wall: Number(m[2]) / count, cpu: Number(m[3]) / count };
    };
    // Timed rounds, with the kernel's BPF statistics off (they add two clock reads to every program run).
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? configs : [...configs].reverse();
      for (const c of order) {
        const t = await runOnce(c, Math.max(1000, Math.round(n * c.scale)));
        perRt.get(c.name)!.push(t.wall);
        cpuPerRt.get(c.name)!.push(t.cpu);
        ctx.log(`hit-cost round ${r + 1}/${rounds} ${c.name}: ${t.wall.toFixed(0)} ns per round trip (${t.cpu.toFixed(0)} ns CPU)`);
      }
    }
    // One more pass with kernel.bpf_stats_enabled on: the BPF programs' own run time, not used for timing.
    const bpfNsPerRun = new Map<string, number>();
    restoreStats = enableBpfStats();
    try {
      if (restoreStats) {
        for (const c of configs.filter((c) => c.programs.length)) {
          const before = await ownProgStats();
          await runOnce(c, Math.max(1000, Math.round(n * c.scale)));
          const after = await ownProgStats();
          for (const p of [c.programs, ...c.programs.map((x) => [x])]) {
            const d = progDelta(before, after, p);
            if (d.runCnt > 0) bpfNsPerRun.set(`${c.name}:${p.join('+')}`, d.runTimeNs / d.runCnt);
          }
        }
      }
    } finally {
      restoreStats?.();
    }
    await tracer.drain();
    const lost = tracer.lostTotal();

    // Per-round paired differences against the same round's no-probe run. Wall time is what the brief's
    // t is; CPU time (getrusage in the fixture) also counts the probes' cost while the process waits for a
    // CPU on a loaded machine, so the ratios are taken from it.
    const perHitOf = (m: Map<ConfigName, number[]>, c: ConfigName) => {
      const none = m.get('none')!;
      return m.get(c)!.map((t, i) => (t - none[i]) / 4);
    };
    const perHit = (c: ConfigName) => perHitOf(cpuPerRt, c);
    const perHitWall = (c: ConfigName) => perHitOf(perRt, c);
    const ratioOf = (f: (c: ConfigName) => number[], a: ConfigName, b: ConfigName) => {
      const pa = f(a);
      const pb = f(b);
      return median(pa.map((x, i) => x / pb[i]));
    };
    const ratio = (a: ConfigName, b: ConfigName) => ratioOf(perHit, a, b);
    const cmd = (c: Config) =>
      `${ctx.invocation} # pingpong -procs 1 (Go ${ctx.goVersion}), "run ${Math.max(1000, Math.round(n * c.scale))}" with ${c.label}; ${rounds} interleaved rounds, median`;
    const out: Figure[] = [];
    for (const c of configs) {
      out.push(
        figure({
          id: `${bench}.ns_per_round_trip.${c.name}`,
          bench,
          label: `ns per round trip (wall), ${c.label}`,
          value: round(median(perRt.get(c.name)!)),
          unit: 'ns/round trip',
          command: cmd(c),
          samples: perRt.get(c.name)!.map((x) => round(x)),
        }),
        figure({
          id: `${bench}.cpu_ns_per_round_trip.${c.name}`,
          bench,
          label: `CPU ns per round trip (getrusage), ${c.label}`,
          value: round(median(cpuPerRt.get(c.name)!)),
          unit: 'ns CPU/round trip',
          command: cmd(c),
          samples: cpuPerRt.get(c.name)!.map((x) => round(x)),
        }),
      );
    }
    // full_sched runs six traps and eight programs a round trip: its figure is what the scheduler adds, below.
    for (const c of configs.filter((c) => c.name !== 'none' && c.name !== 'full_sched')) {
      out.push(
        figure({
          id: `${bench}.per_hit.${c.name}`,
          bench,
          label: `cost per hit (wall), ${c.label} ((t - t_none) / 4)`,
          value: round(median(perHitWall(c.name))),
          unit: 'ns/hit',
          command: cmd(c),
          samples: perHitWall(c.name).map((x) => round(x)),
        }),
        figure({
          id: `${bench}.per_hit_cpu.${c.name}`,
          bench,
          label: `cost per hit (CPU), ${c.label} ((cpu - cpu_none) / 4)`,
          value: round(median(perHit(c.name))),
          unit: 'ns CPU/hit',
          command: cmd(c),
          samples: perHit(c.name).map((x) => round(x)),
        }),
      );
    }
    const base = `${ctx.invocation} # per-round ratio of per-hit CPU costs, median of ${rounds}`;
    const added = cpuPerRt.get('full_sched')!.map((x, i) => x - cpuPerRt.get('full_jump')![i]);
    out.push(
      figure({
        id: `${bench}.sched_added_cpu_per_round_trip`,
        bench,
        label: 'the scheduler probes added to park/ready, CPU per round trip (2 execute hits, 2 stamps on ready\'s trap)',
        value: round(median(added)),
        unit: 'ns CPU/round trip',
        command: cmd(configs.find((x) => x.name === 'full_sched')!),
        samples: added.map((x) => round(x)),
      }),
      figure({
        id: `${bench}.ratio.sched_over_full_jump`,
        bench,
        label: 'scheduler probes / park+ready probes, alone, at their sites (CPU per hit)',
        value: round(ratio('sched', 'full_jump'), 2),
        unit: 'x',
        command: base,
      }),
      figure({
        id: `${bench}.ratio.full_over_empty_jump`,
        bench,
        label: 'goroscope / empty, both at the stack-check jump (CPU per hit)',
        value: round(ratio('full_jump', 'empty_jump'), 2),
        unit: 'x',
        command: base,
        target: { op: '<=', value: 1.3 },
      }),
      figure({
        id: `${bench}.ratio_wall.full_over_empty_jump`,
        bench,
        label: 'goroscope / empty, both at the stack-check jump (wall time per hit)',
        value: round(ratioOf(perHitWall, 'full_jump', 'empty_jump'), 2),
        unit: 'x',
        command: base.replace('CPU', 'wall'),
        target: { op: '<=', value: 1.3 },
      }),
      figure({
        id: `${bench}.ratio.full_over_empty_entry`,
        bench,
        label: 'goroscope / empty, both at the function entry (CPU per hit)',
        value: round(ratio('full_entry', 'empty_entry'), 2),
        unit: 'x',
        command: base,
      }),
      figure({
        id: `${bench}.ratio.entry_over_jump_empty`,
        bench,
        label: 'entry / jump, `empty` program (CPU per hit)',
        value: round(ratio('empty_entry', 'empty_jump'), 2),
        unit: 'x',
        command: base,
      }),
      figure({
        id: `${bench}.ratio.entry_over_jump_full`,
        bench,
        label: 'entry / jump, goroscope programs (CPU per hit)',
        value: round(ratio('full_entry', 'full_jump'), 2),
        unit: 'x',
        command: base,
      }),
    );
    for (const c of ['full_jump', 'full_entry', 'sched'] as const) {
      out.push(
        figure({
          id: `${bench}.hits_per_round_trip.${c}`,
          bench,
          label: `probe hits per round trip counted by BPF (hit_counts), ${c}`,
          value: round(median(hitsPerRt.get(c) ?? []), 2),
          unit: 'hits/round trip',
          command: cmd(configs.find((x) => x.name === c)!),
          note: c === 'sched' ? 'sanity: 4 expected (2 execute + 2 ready stamps)' : 'sanity: 4 expected (2 gopark + 2 ready); a few more come from the runtime itself',
        }),
      );
    }
    out.push(
      figure({
        id: `${bench}.agent_cpu_per_hit.full_jump`,
        bench,
        label: 'agent CPU per recorded hit while the real programs run at the jump (reader thread + decode + table, all Node threads)',
        value: round(median(agentCpuPerHit.get('full_jump') ?? [])),
        unit: 'ns CPU/hit',
        command: `${ctx.invocation} # process.cpuUsage() around each full_jump run / BPF hit_counts delta`,
        note: 'on 2 shared cores this CPU competes with the traced program; part of the full-vs-empty gap',
        samples: (agentCpuPerHit.get('full_jump') ?? []).map((x) => round(x)),
      }),
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
    const statsCmd = `${ctx.invocation} # one extra pass with sysctl kernel.bpf_stats_enabled=1: run_time_ns/run_cnt of our own programs (bpftool -j prog show id N)`;
    const stat = (id: string, label: string, key: string) =>
      figure({
        id: `${bench}.bpf_run_ns.${id}`,
        bench,
        label,
        value: bpfNsPerRun.has(key) ? round(bpfNsPerRun.get(key)!) : null,
        unit: 'ns/run',
        command: statsCmd,
        note: statsNote ?? 'program body only (the trap and uprobe dispatch are not in it); includes the statistics\' own clock reads',
      });
    out.push(
      stat('empty_jump', 'BPF run time per hit, `empty` at the jump', 'empty_jump:empty'),
      stat('empty_entry', 'BPF run time per hit, `empty` at the entry', 'empty_entry:empty'),
      stat('full_jump', 'BPF run time per hit, goroscope programs at the jump (gopark + ready)', 'full_jump:gopark+ready'),
      stat('full_jump.gopark', 'BPF run time per hit, program `gopark` at the jump', 'full_jump:gopark'),
      stat('full_jump.ready', 'BPF run time per hit, program `ready` at the jump', 'full_jump:ready'),
      stat('sched.sched_execute', 'BPF run time per hit, program `sched_execute` (the scheduler probes alone)', 'sched:sched_execute'),
      stat('sched.sched_ready', "BPF run time per hit, program `sched_ready` (ready's stamp; the scheduler probes alone)", 'sched:sched_ready'),
    );
    return out;
  } finally {
    prog.send('quit');
    await prog.stop('SIGKILL', 2000);
    await tracer.close().catch(() => {});
    baseline.close();
  }
}
