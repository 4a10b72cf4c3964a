// Which TCP programs the agent picks, from what the node allows (attach-plan.ts, tracefs.ts): pure decisions,
// checked without a kernel. The programs themselves are tested in programs.test.ts and no-tracefs.test.ts.
import t from 'tap';
import { hasCapSysAdmin, type TracefsAccess } from '../../agent/src/bpf/tracefs.ts';
import { ALL_PROGRAMS, CLASSIC_SYSCALL_PROGRAMS, EVENT_PROGRAMS, planFor, preferredPlan, resolveChoice } from '../../agent/src/tcp/attach-plan.ts';

const mounted: TracefsAccess = { kind: 'mounted', root: '/sys/kernel/tracing' };
const mountable: TracefsAccess = { kind: 'private-mount' };
const none: TracefsAccess = { kind: 'none', reason: 'tracefs is not mounted and the agent lacks CAP_SYS_ADMIN to mount it' };

t.test('the preferred plan for each kind of node', async (t) => {
  const pick = (btf: boolean, access: TracefsAccess, choice = {}) => {
    const p = preferredPlan(choice, btf, access);
    return `${p.events}/${p.syscalls}`;
  };
  // No syscall hook unless asked for: any of them slows every syscall of every process on the node.
  t.equal(pick(true, mounted), 'btf/none', 'BTF: no syscall hook, whatever tracefs allows');
  t.equal(pick(true, none), 'btf/none', 'BTF, no tracefs');
  t.equal(pick(false, mounted), 'classic/none', 'no BTF: classic tracepoints, no syscall hook');
  // Asked for (--tcp-syscall-hooks): the classic per-syscall tracepoints cost less per syscall than a program
  // on every syscall's exit (scripts/bench/tcp-attach.ts), so they are taken whenever their ids can be had.
  const hooks = { syscalls: 'auto' as const };
  t.equal(pick(true, mounted, hooks), 'btf/classic', 'hooks, BTF, tracefs mounted');
  t.equal(pick(true, mountable, hooks), 'btf/classic', 'hooks, BTF, tracefs mountable (CAP_SYS_ADMIN)');
  t.equal(pick(true, none, hooks), 'btf/raw', 'hooks, BTF, no tracefs and no right to mount it (no CAP_SYS_ADMIN, or mount denied): nothing needs tracefs');
  t.equal(pick(false, mounted, hooks), 'classic/classic', 'hooks, no BTF: classic tracepoints');
  t.equal(pick(false, none, hooks), 'classic/classic', 'hooks, no BTF and no tracefs: classic still (the tracer then says what it needs)');
  t.equal(pick(true, mounted, { events: 'classic', syscalls: 'auto' }), 'classic/classic', 'forced classic');
  t.equal(pick(true, mounted, { syscalls: 'raw' }), 'btf/raw', 'forced raw syscalls');
  t.throws(() => pick(true, mounted, { events: 'classic', syscalls: 'raw' }), /needs the BTF events path/, 'raw syscalls are BTF-typed');
});

t.test('a plan loads one program per event and one syscall path', async (t) => {
  for (const events of ['btf', 'classic'] as const) {
    for (const syscalls of ['none', 'raw', 'classic'] as const) {
      if (events === 'classic' && syscalls === 'raw') continue;
      const p = planFor(events, syscalls);
      const syscallPrograms = { none: 0, raw: 1, classic: CLASSIC_SYSCALL_PROGRAMS.length }[syscalls];
      t.equal(p.programs.length, EVENT_PROGRAMS.length + syscallPrograms, `${events}/${syscalls}: program count`);
      t.ok(p.programs.every((x) => ALL_PROGRAMS.includes(x)), 'every program is in the object');
      t.same([...p.tracepoints.keys()].sort(), p.programs.filter((x) => x.endsWith('_tp')).sort(), 'classic programs, and only they, are attached by tracepoint id');
    }
  }
});

t.test('choices from the environment, and a clear error for a wrong one', async (t) => {
  const saved = { ...process.env };
  t.teardown(() => {
    process.env = saved;
  });
  delete process.env.GOROSCOPE_TCP_PROGRAMS;
  delete process.env.GOROSCOPE_TCP_SYSCALLS;
  t.same(resolveChoice(), { events: 'auto', syscalls: 'none' }, 'by default: no syscall hook');
  process.env.GOROSCOPE_TCP_PROGRAMS = 'classic';
  process.env.GOROSCOPE_TCP_SYSCALLS = 'raw';
  t.same(resolveChoice(), { events: 'classic', syscalls: 'raw' });
  t.same(resolveChoice({ events: 'btf' }), { events: 'btf', syscalls: 'raw' }, 'an option wins over the environment');
  process.env.GOROSCOPE_TCP_PROGRAMS = 'kprobe';
  t.throws(() => resolveChoice(), /unknown TCP programs "kprobe" \(GOROSCOPE_TCP_PROGRAMS\): use auto, btf or classic/);
});

t.test('CAP_SYS_ADMIN from /proc/self/status', async (t) => {
  t.equal(hasCapSysAdmin('CapEff:\t000001fffeffffff\n'), true, 'root');
  t.equal(hasCapSysAdmin('CapEff:\t000001fffedfffff\n'), false, 'root without CAP_SYS_ADMIN');
  t.equal(hasCapSysAdmin('CapEff:\t000000c000080000\n'), false, 'BPF, PERFMON, SYS_PTRACE only');
  t.equal(hasCapSysAdmin(''), false, 'unreadable');
});
