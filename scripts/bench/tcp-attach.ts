// What bpf/tcp.bpf.c costs the node, and how it is best attached, measured side by side (configurations
// interleaved, forward then backward, round after round; medians):
//
// 1. Syscalls: what every syscall of every process on the node pays. The default plan hooks none (its
//    tracepoints are TCP's own); --tcp-syscall-hooks adds the connect/accept exits: the classic per-syscall
//    tracepoints (syscalls:sys_{enter,exit}_{connect,accept,accept4}: tracefs for their ids) or the raw sys_exit
//    tracepoint (tp_btf, no tracefs, but a program run on every syscall of the node). A loop of getppid(2)
//    (fixtures/syscalls) under: nothing; the default plan; the classic tracepoints; an empty raw sys_exit
//    program; goroscope's raw sys_exit program (filters by syscall number). Both kinds of hook put every thread
//    on the syscall slow path (the kernel's sys_enter/sys_exit tracepoints are what the per-syscall events hang
//    off).
// 2. The lifecycle tracepoint, sock:inet_sock_set_state, per hit: tp_btf against classic, empty programs and
//    goroscope's, under listen+shutdown of one socket (2 hits each, fixtures/syscalls `listen`) and under
//    connection churn (fixtures/syscalls `churn`: connect, accept, reset, on one thread), with the kernel's own run time of each program
//    (kernel.bpf_stats_enabled) in a separate pass.
// 3. Accept's owner per connection, in a Go program (fixtures/syscalls `netchurn`: net.Dial, Listener.Accept,
//    reset): nothing; the default plan with the go_accept uprobe in the program's accept; and with the classic
//    syscall hooks as well.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { openBpfObject, u32Key, type BpfObject } from '../../agent/src/bpf/bridge.ts';
import { tracepointIds } from '../../agent/src/bpf/tracefs.ts';
import { encodeTcpProcessLayout, tcpEventLayout } from '../../agent/src/events/tcp-event.ts';
import { openGoBinary } from '../../agent/src/gobinary/index.ts';
import { CLASSIC_SYSCALL_PROGRAMS, EVENT_PROGRAMS, GO_OWNER_PROGRAM, RAW_SYSCALL_PROGRAMS } from '../../agent/src/tcp/attach-plan.ts';
import { acceptSite } from '../../agent/src/tcp/go-owner.ts';
import { tcpLayoutOf } from '../../agent/src/tcp/tcp-tracer.ts';
import { buildFixture, enableBpfStats, figure, median, ownProgStats, progDelta, round, runCommand, startProcess, type BenchContext, type Figure } from './lib.ts';

interface Config {
  name: string;
  label: string;
  /** Attaches; returns what detaches. */
  attach: () => () => void;
  /** Programs whose kernel run time this configuration exercises. */
  programs: string[];
}

/** Alternates the order of the configurations each round (forward, backward). */
function interleaved<T>(xs: T[], round: number): T[] {
  return round % 2 ? [...xs].reverse() : xs;
}

/** The fixture's NS_PER_OP (wall) and CPU_NS_PER_OP (its thread's CPU time: what the programs add, without
 * the waits for a CPU that a busy machine adds). */
function loopResult({ stdout }: { stdout: string }): { wall: number; cpu: number } {
  const m = /NS_PER_OP ([\d.]+) CPU_NS_PER_OP ([\d.]+)/.exec(stdout);
  if (!m) throw new Error(`fixtures/syscalls: unexpected output ${stdout}`);
  return { wall: Number(m[1]), cpu: Number(m[2]) };
}

/**
 * Syscall tracepoints other processes hold now (/proc/PID/fdinfo of their BPF links): while any is attached,
 * every thread is on the syscall slow path already, and "nothing attached" is not a clean baseline.
 */
function othersSyscallHooks(): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) !== 'anon_inode:bpf_link') continue;
        const tp = /^tp_name:\s*(sys_\w+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1];
        if (tp) found.push(`${tp} (pid ${pid})`);
      } catch {
        /* gone meanwhile */
      }
    }
  }
  return found;
}

function attachAll(bpf: BpfObject, attachOne: (p: string) => number, programs: string[]): () => void {
  const links = programs.map(attachOne);
  return () => links.forEach((l) => bpf.detach(l));
}

export async function runTcpAttach(ctx: BenchContext): Promise<Figure[]> {
  const bench = 'tcp-attach';
  const rounds = ctx.quick ? 1 : 7;
  const syscallsN = ctx.quick ? 200_000 : 3_000_000;
  const listenN = ctx.quick ? 5_000 : 100_000;
  const churnN = ctx.quick ? 1_000 : 20_000;
  const syscalls = buildFixture('syscalls', ctx.goVersion);
  const cmd = (what: string) => `${ctx.invocation} (tcp-attach: ${what})`;

  // goroscope's programs, both kinds loaded in one object (the agent loads one kind), and the baselines.
  const tcp = openBpfObject('tcp', { ringSizes: { tcp_events: 8 << 20 } });
  const defaultPrograms = EVENT_PROGRAMS.map((e) => e.btf);
  const empty = openBpfObject('bench/tcp-attach');
  const classicIds = tracepointIds([...CLASSIC_SYSCALL_PROGRAMS.map((s) => s.tracepoint), 'sock/inet_sock_set_state']);
  const id = (tp: string) => classicIds.ids.get(tp)!;
  let records = 0;
  tcp.startReader([{ map: 'tcp_events', recordSize: tcpEventLayout.size }], (_r, b) => (records += b.length / tcpEventLayout.size));
  const figures: Figure[] = [];
  try {
    // ---- 1. syscalls ----
    const sysConfigs: Config[] = [
      { name: 'none', label: 'nothing attached', attach: () => () => {}, programs: [] },
      { name: 'default', label: 'goroscope\'s default plan (TCP tracepoints, no syscall hook)', attach: () => attachAll(tcp, (p) => tcp.attach(p), defaultPrograms), programs: defaultPrograms },
      {
        name: 'classic',
        label: 'classic syscalls:sys_{enter,exit}_{connect,accept,accept4} tracepoints (goroscope\'s)',
        attach: () => attachAll(tcp, (p) => tcp.attachTracepointId(p, id(CLASSIC_SYSCALL_PROGRAMS.find((s) => s.program === p)!.tracepoint)), CLASSIC_SYSCALL_PROGRAMS.map((s) => s.program)),
        programs: CLASSIC_SYSCALL_PROGRAMS.map((s) => s.program),
      },
      { name: 'raw_empty', label: 'raw sys_exit (tp_btf), empty program', attach: () => attachAll(empty, (p) => empty.attach(p), ['empty_sys_exit_btf']), programs: ['empty_sys_exit_btf'] },
      { name: 'raw_filter', label: 'raw sys_exit (tp_btf), goroscope\'s program (keeps connect/accept/accept4)', attach: () => attachAll(tcp, (p) => tcp.attach(p), [...RAW_SYSCALL_PROGRAMS]), programs: [...RAW_SYSCALL_PROGRAMS] },
    ];
    const sysNs = new Map<string, number[]>(sysConfigs.map((c) => [c.name, []]));
    const sysWallNs = new Map<string, number[]>(sysConfigs.map((c) => [c.name, []]));
    for (let r = 0; r < rounds; r++) {
      for (const c of interleaved(sysConfigs, r)) {
        const detach = c.attach();
        try {
          const out = loopResult(await runCommand(syscalls, ['getppid', '-n', String(syscallsN)]));
          sysNs.get(c.name)!.push(out.cpu);
          sysWallNs.get(c.name)!.push(out.wall);
        } finally {
          detach();
        }
      }
    }
    const base = median(sysNs.get('none')!);
    const others = othersSyscallHooks();
    if (others.length) ctx.log(`tcp-attach: other processes hold syscall tracepoints (${others.slice(0, 4).join(', ')}${others.length > 4 ? '...' : ''}): the syscall figures have no clean baseline`);
    const dirty = others.length ? { note: `other processes held syscall tracepoints (${others.length}): every thread was on the slow path in every configuration` } : {};
    for (const c of sysConfigs) {
      const v = median(sysNs.get(c.name)!);
      figures.push(figure({ id: `${bench}.ns_per_syscall.${c.name}`, bench, label: `getppid(2): CPU ns per syscall, ${c.label}`, value: round(v), unit: 'ns', samples: sysNs.get(c.name), command: cmd(`fixtures/syscalls getppid -n ${syscallsN}, ${rounds} rounds`) }));
      figures.push(figure({ id: `${bench}.wall_ns_per_syscall.${c.name}`, bench, label: `getppid(2): wall ns per syscall, ${c.label}`, value: round(median(sysWallNs.get(c.name)!)), unit: 'ns', samples: sysWallNs.get(c.name), command: cmd(`fixtures/syscalls getppid -n ${syscallsN}, ${rounds} rounds`) }));
      if (c.name !== 'none') {
        figures.push(figure({ id: `${bench}.added_ns_per_syscall.${c.name}`, bench, label: `getppid(2): CPU ns added per syscall, ${c.label}`, value: round(v - base), unit: 'ns', command: cmd(`median difference to nothing attached`), ...dirty }));
      }
    }

    // ---- 2. inet_sock_set_state per hit ----
    const stateConfigs: Config[] = [
      { name: 'none', label: 'nothing attached', attach: () => () => {}, programs: [] },
      { name: 'empty_tp', label: 'classic tracepoint, empty program', attach: () => attachAll(empty, (p) => empty.attachTracepointId(p, id('sock/inet_sock_set_state')), ['empty_set_state_tp']), programs: ['empty_set_state_tp'] },
      { name: 'empty_btf', label: 'tp_btf, empty program', attach: () => attachAll(empty, (p) => empty.attach(p), ['empty_set_state_btf']), programs: ['empty_set_state_btf'] },
      { name: 'full_tp', label: 'classic tracepoint, goroscope\'s program', attach: () => attachAll(tcp, (p) => tcp.attachTracepointId(p, id('sock/inet_sock_set_state')), ['inet_sock_set_state_tp']), programs: ['inet_sock_set_state_tp'] },
      { name: 'full_btf', label: 'tp_btf, goroscope\'s program', attach: () => attachAll(tcp, (p) => tcp.attach(p), ['inet_sock_set_state_btf']), programs: ['inet_sock_set_state_btf'] },
    ];
    const listenNs = new Map<string, number[]>(stateConfigs.map((c) => [c.name, []]));
    const churnUs = new Map<string, number[]>(stateConfigs.map((c) => [c.name, []]));
    const churn = async (): Promise<number> => loopResult(await runCommand(syscalls, ['churn', '-n', String(churnN)])).cpu;
    for (let r = 0; r < rounds; r++) {
      for (const c of interleaved(stateConfigs, r)) {
        const detach = c.attach();
        try {
          listenNs.get(c.name)!.push(loopResult(await runCommand(syscalls, ['listen', '-n', String(listenN)])).cpu);
          churnUs.get(c.name)!.push((await churn()) / 1000);
        } finally {
          detach();
        }
      }
    }
    // Hits per operation and the programs' own run time per hit (each workload apart), with the kernel's
    // statistics on: a pass apart, as they add their own cost; interleaved rounds, medians.
    const restore = enableBpfStats();
    const runNs = new Map<string, { listen: number[]; churn: number[] }>();
    const hits = { listen: NaN, churn: NaN };
    if (restore) {
      try {
        const measured = stateConfigs.filter((x) => x.name !== 'none');
        for (let r = 0; r < rounds; r++) {
          for (const c of interleaved(measured, r)) {
            const detach = c.attach();
            try {
              const before = await ownProgStats();
              await runCommand(syscalls, ['listen', '-n', String(listenN)]);
              const mid = await ownProgStats();
              await churn();
              const after = await ownProgStats();
              const l = progDelta(before, mid, c.programs);
              const t = progDelta(mid, after, c.programs);
              const x = runNs.get(c.name) ?? { listen: [], churn: [] };
              x.listen.push(l.runTimeNs / Math.max(1, l.runCnt));
              x.churn.push(t.runTimeNs / Math.max(1, t.runCnt));
              runNs.set(c.name, x);
              if (c.name === 'empty_btf' && r === 0) {
                hits.listen = l.runCnt / (listenN * 1.01); // the loop's warm-up is 1% more
                hits.churn = t.runCnt / (churnN * 1.01);
              }
            } finally {
              detach();
            }
          }
        }
      } finally {
        restore();
      }
    }
    const listenBase = median(listenNs.get('none')!);
    const churnBase = median(churnUs.get('none')!);
    // listen+shutdown makes exactly two changes (CLOSE->LISTEN, LISTEN->CLOSE); the measured count is node-wide
    // and is reported as a check. A connection's hits are measured (both ends, the handshake, the reset).
    const hl = 2;
    figures.push(figure({ id: `${bench}.set_state_hits.listen`, bench, label: 'inet_sock_set_state hits per listen+shutdown', value: round(hits.listen, 2), unit: 'hits', command: cmd('kernel.bpf_stats_enabled run_cnt (node-wide)') }));
    figures.push(figure({ id: `${bench}.set_state_hits.churn`, bench, label: 'inet_sock_set_state hits per connection (both ends)', value: round(hits.churn, 2), unit: 'hits', command: cmd('kernel.bpf_stats_enabled run_cnt (node-wide)') }));
    for (const c of stateConfigs) {
      const l = median(listenNs.get(c.name)!);
      const u = median(churnUs.get(c.name)!);
      figures.push(figure({ id: `${bench}.listen_ns.${c.name}`, bench, label: `listen+shutdown: CPU ns each, ${c.label}`, value: round(l), unit: 'ns', samples: listenNs.get(c.name), command: cmd(`fixtures/syscalls listen -n ${listenN}, ${rounds} rounds`) }));
      figures.push(figure({ id: `${bench}.churn_us_per_conn.${c.name}`, bench, label: `loopback connect+accept+reset: CPU µs per connection, ${c.label}`, value: round(u, 2), unit: 'µs', samples: churnUs.get(c.name), command: cmd(`fixtures/syscalls churn -n ${churnN}, ${rounds} rounds`) }));
      if (c.name === 'none') continue;
      figures.push(figure({ id: `${bench}.per_hit_ns.${c.name}`, bench, label: `inet_sock_set_state: ns per hit (listen loop), ${c.label}`, value: round((l - listenBase) / hl), unit: 'ns', command: cmd('(listen ns - none) / hits per listen') }));
      if (Number.isFinite(hits.churn)) {
        figures.push(figure({ id: `${bench}.per_hit_ns_churn.${c.name}`, bench, label: `inet_sock_set_state: ns per hit (churn), ${c.label}`, value: round(((u - churnBase) * 1000) / hits.churn), unit: 'ns', command: cmd('(µs per connection - none) / hits per connection') }));
      }
      const run = runNs.get(c.name);
      const noStats = run ? {} : { note: 'kernel.bpf_stats_enabled could not be set' };
      figures.push(figure({ id: `${bench}.bpf_run_ns.${c.name}`, bench, label: `inet_sock_set_state: the program's own run time per hit (listen loop), ${c.label}`, value: run ? round(median(run.listen)) : null, unit: 'ns', samples: run?.listen.map((x) => round(x)), command: cmd('kernel.bpf_stats_enabled run_time_ns / run_cnt'), ...noStats }));
      figures.push(figure({ id: `${bench}.bpf_run_ns_churn.${c.name}`, bench, label: `inet_sock_set_state: the program's own run time per hit (churn), ${c.label}`, value: run ? round(median(run.churn)) : null, unit: 'ns', samples: run?.churn.map((x) => round(x)), command: cmd('kernel.bpf_stats_enabled run_time_ns / run_cnt'), ...noStats }));
    }
    // ---- 3. accept's owner in a Go program, per connection ----
    const site = acceptSite(openGoBinary(syscalls));
    if (typeof site === 'string') throw new Error(`fixtures/syscalls: ${site}`);
    const classicHooks = CLASSIC_SYSCALL_PROGRAMS.map((s) => s.program);
    const acceptConfigs: Array<Config & { goAccept: boolean }> = [
      { name: 'none', label: 'nothing attached', attach: () => () => {}, programs: [], goAccept: false },
      { name: 'tracepoints', label: 'the TCP tracepoints alone', attach: () => attachAll(tcp, (p) => tcp.attach(p), defaultPrograms), programs: defaultPrograms, goAccept: false },
      { name: 'default', label: 'default plan: TCP tracepoints and the go_accept uprobe', attach: () => attachAll(tcp, (p) => tcp.attach(p), defaultPrograms), programs: defaultPrograms, goAccept: true },
      {
        name: 'hooks',
        label: 'default plan and the classic syscall hooks (--tcp-syscall-hooks)',
        attach: () => {
          const a = attachAll(tcp, (p) => tcp.attach(p), defaultPrograms);
          const b = attachAll(tcp, (p) => tcp.attachTracepointId(p, id(CLASSIC_SYSCALL_PROGRAMS.find((s) => s.program === p)!.tracepoint)), classicHooks);
          return () => (b(), a());
        },
        programs: [...defaultPrograms, ...classicHooks],
        goAccept: true,
      },
    ];
    const acceptUs = new Map<string, number[]>(acceptConfigs.map((c) => [c.name, []]));
    const layout = tcpLayoutOf(openGoBinary(syscalls));
    /** One run of the loop; with goAccept, the process is registered and the uprobe attached to it first. */
    const netChurn = async (goAccept: boolean): Promise<number> => {
      const p = startProcess(syscalls, ['netchurn', '-n', String(churnN), '-wait'], 'fixtures/syscalls netchurn', { timeoutMs: 120_000 });
      let link = -1;
      try {
        await p.until(/^READY$/m);
        if (goAccept) {
          tcp.updateElem('tcp_process_layouts', u32Key(p.pid), encodeTcpProcessLayout(layout.tlsGOffset, layout.goidOffset));
          link = tcp.attachUprobe(GO_OWNER_PROGRAM, syscalls, site.fileOffset, p.pid, 0n);
        }
        p.send('go');
        const m = await p.until(/^NS_PER_OP [\d.]+ CPU_NS_PER_OP [\d.]+$/m);
        await p.exit();
        return loopResult({ stdout: m[0] }).cpu / 1000;
      } finally {
        p.kill();
        if (link >= 0) tcp.detach(link);
        if (goAccept) tcp.deleteElem('tcp_process_layouts', u32Key(p.pid));
      }
    };
    for (let r = 0; r < rounds; r++) {
      for (const c of interleaved(acceptConfigs, r)) {
        const detach = c.attach();
        try {
          acceptUs.get(c.name)!.push(await netChurn(c.goAccept));
        } finally {
          detach();
        }
      }
    }
    const acceptBase = median(acceptUs.get('none')!);
    for (const c of acceptConfigs) {
      const v = median(acceptUs.get(c.name)!);
      const command = cmd(`fixtures/syscalls netchurn -n ${churnN}, ${rounds} rounds`);
      figures.push(figure({ id: `${bench}.go_accept_us_per_conn.${c.name}`, bench, label: `Go net.Dial+Accept+reset: process CPU µs per connection, ${c.label}`, value: round(v, 2), unit: 'µs', samples: acceptUs.get(c.name), command }));
      if (c.name !== 'none') {
        figures.push(figure({ id: `${bench}.go_accept_added_us_per_conn.${c.name}`, bench, label: `Go net.Dial+Accept+reset: CPU µs added per connection, ${c.label}`, value: round(v - acceptBase, 2), unit: 'µs', command: cmd('median difference to nothing attached') }));
      }
    }
    // go_accept's own: hits per connection (one: accepts only) and its BPF run time per hit, stats on, a pass apart.
    const restoreStats = enableBpfStats();
    if (restoreStats) {
      try {
        const detach = acceptConfigs.find((c) => c.name === 'default')!.attach();
        try {
          const before = await ownProgStats();
          await netChurn(true);
          const d = progDelta(before, await ownProgStats(), [GO_OWNER_PROGRAM]);
          figures.push(figure({ id: `${bench}.go_accept_hits_per_conn`, bench, label: 'go_accept hits per accepted Go connection', value: round(d.runCnt / (churnN * 1.01), 2), unit: 'hits', command: cmd('kernel.bpf_stats_enabled run_cnt') }));
          figures.push(figure({ id: `${bench}.go_accept_bpf_run_ns`, bench, label: "go_accept: the program's own run time per hit", value: round(d.runTimeNs / Math.max(1, d.runCnt)), unit: 'ns', command: cmd('kernel.bpf_stats_enabled run_time_ns / run_cnt') }));
        } finally {
          detach();
        }
      } finally {
        restoreStats();
      }
    }
    ctx.log(`tcp-attach: ${records} records drained`);
  } finally {
    tcp.stopReader();
    tcp.close();
    empty.close();
  }
  return figures;
}

