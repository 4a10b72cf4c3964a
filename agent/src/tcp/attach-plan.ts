// Which of bpf/tcp.bpf.c's programs the agent loads and how each is attached. Every event has a BTF-typed
// raw tracepoint program (*_btf: found through the kernel's BTF, no tracefs) and a classic tracepoint
// program (*_tp: attached by an id that only tracefs publishes); both call the same body. Syscall hooks are
// off by default: any of them puts every syscall of every process on the node on the kernel's slow path
// (scripts/bench/tcp-attach.ts), and Go processes have their accept owners from a uprobe in their accept
// instead (GO_OWNER_PROGRAM, attached per traced process). Asked for (--tcp-syscall-hooks), the syscall exits
// (accept's owner in any process, connect failures before a SYN) come either from the raw sys_exit tracepoint
// (one program for every syscall of the node, no tracefs) or from the classic per-syscall tracepoints.
import { existsSync } from 'node:fs';
import type { TracefsAccess } from '../bpf/tracefs.ts';

export type EventPrograms = 'btf' | 'classic';
/** 'none': no syscall hook (the default). */
export type SyscallPrograms = 'none' | 'raw' | 'classic';

/** Each traced event: its two programs, and the classic tracepoint. */
export const EVENT_PROGRAMS = [
  { btf: 'inet_sock_set_state_btf', classic: 'inet_sock_set_state_tp', tracepoint: 'sock/inet_sock_set_state' },
  { btf: 'tcp_retransmit_skb_btf', classic: 'tcp_retransmit_skb_tp', tracepoint: 'tcp/tcp_retransmit_skb' },
  { btf: 'tcp_send_reset_btf', classic: 'tcp_send_reset_tp', tracepoint: 'tcp/tcp_send_reset' },
  { btf: 'tcp_receive_reset_btf', classic: 'tcp_receive_reset_tp', tracepoint: 'tcp/tcp_receive_reset' },
  { btf: 'sched_process_exit_btf', classic: 'sched_process_exit_tp', tracepoint: 'sched/sched_process_exit' },
] as const;

/** The raw syscall path: one program on every syscall's exit, keeping connect, accept and accept4. */
export const RAW_SYSCALL_PROGRAMS = ['syscalls_exit_btf'] as const;

/** The classic syscall path: one tracepoint per syscall and direction. */
export const CLASSIC_SYSCALL_PROGRAMS = [
  { program: 'sys_enter_connect_tp', tracepoint: 'syscalls/sys_enter_connect' },
  { program: 'sys_exit_connect_tp', tracepoint: 'syscalls/sys_exit_connect' },
  { program: 'sys_exit_accept4_tp', tracepoint: 'syscalls/sys_exit_accept4' },
  { program: 'sys_exit_accept_tp', tracepoint: 'syscalls/sys_exit_accept' },
] as const;

/** The uprobe in net.(*netFD).accept: accepted sockets' owners in traced Go processes, any plan (go-owner.ts). */
export const GO_OWNER_PROGRAM = 'go_accept';

/** Every tracepoint program in the object (the plans choose among them; GO_OWNER_PROGRAM is always loaded). */
export const ALL_PROGRAMS: string[] = [
  ...EVENT_PROGRAMS.flatMap((e) => [e.btf, e.classic]),
  ...RAW_SYSCALL_PROGRAMS,
  ...CLASSIC_SYSCALL_PROGRAMS.map((s) => s.program),
];

export const vmlinuxBtf = '/sys/kernel/btf/vmlinux';

export function hasKernelBtf(): boolean {
  return existsSync(vmlinuxBtf);
}

/** What to load and attach. */
export interface AttachPlan {
  events: EventPrograms;
  syscalls: SyscallPrograms;
  /** Programs to load, in attach order; the rest have autoload off. */
  programs: string[];
  /** Classic programs -> their tracepoint ("category/name"): attached by id. */
  tracepoints: Map<string, string>;
}

export function planFor(events: EventPrograms, syscalls: SyscallPrograms): AttachPlan {
  if (events === 'classic' && syscalls === 'raw') throw new Error('the raw syscall program is BTF-typed: it needs the BTF events path');
  const programs: string[] = [];
  const tracepoints = new Map<string, string>();
  for (const e of EVENT_PROGRAMS) {
    if (events === 'btf') programs.push(e.btf);
    else {
      programs.push(e.classic);
      tracepoints.set(e.classic, e.tracepoint);
    }
  }
  if (syscalls === 'raw') programs.push(...RAW_SYSCALL_PROGRAMS);
  else if (syscalls === 'classic') {
    for (const s of CLASSIC_SYSCALL_PROGRAMS) {
      programs.push(s.program);
      tracepoints.set(s.program, s.tracepoint);
    }
  }
  return { events, syscalls, programs, tracepoints };
}

export interface PlanChoice {
  /** 'auto' (default), or forced (GOROSCOPE_TCP_PROGRAMS, or the tracer's options). */
  events?: EventPrograms | 'auto';
  /**
   * Syscall hooks: 'none' (the default), 'auto' (the best path this node allows: --tcp-syscall-hooks), or a
   * path forced (GOROSCOPE_TCP_SYSCALLS, or the tracer's options).
   */
  syscalls?: SyscallPrograms | 'auto';
}

/** The options, then the environment; a clear error for a value that is neither. */
export function resolveChoice(asked: PlanChoice = {}): { events: EventPrograms | 'auto'; syscalls: SyscallPrograms | 'auto' } {
  const events = asked.events ?? (process.env.GOROSCOPE_TCP_PROGRAMS as EventPrograms | 'auto' | undefined) ?? 'auto';
  const syscalls = asked.syscalls ?? (process.env.GOROSCOPE_TCP_SYSCALLS as SyscallPrograms | 'auto' | undefined) ?? 'none';
  if (!['auto', 'btf', 'classic'].includes(events)) throw new Error(`unknown TCP programs "${events}" (GOROSCOPE_TCP_PROGRAMS): use auto, btf or classic`);
  if (!['none', 'auto', 'raw', 'classic'].includes(syscalls)) throw new Error(`unknown TCP syscall programs "${syscalls}" (GOROSCOPE_TCP_SYSCALLS): use none, auto, raw or classic`);
  return { events, syscalls };
}

/**
 * The preferred plan for this node: BTF programs when the kernel has BTF; no syscall hook unless asked for.
 * Asked for ('auto'), the classic per-syscall tracepoints when their ids can be had (tracefs mounted, or
 * mountable privately), the raw sys_exit program otherwise. The order of preference comes from
 * scripts/bench/tcp-attach.ts: see docs/architecture.md.
 */
export function preferredPlan(choice: PlanChoice, btf: boolean, tracefs: TracefsAccess): AttachPlan {
  const c = resolveChoice(choice);
  const events: EventPrograms = c.events === 'auto' ? (btf ? 'btf' : 'classic') : c.events;
  let syscalls: SyscallPrograms;
  if (c.syscalls !== 'auto') syscalls = c.syscalls;
  else if (events === 'classic') syscalls = 'classic';
  else syscalls = tracefs.kind === 'none' ? 'raw' : 'classic';
  return planFor(events, syscalls);
}
