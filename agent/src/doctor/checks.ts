// `goroscope doctor`: what this node allows goroscope to do, one check a line with its fix. Each check tries
// the real thing where it can (loads the BPF objects, attaches a uprobe with a cookie, attaches the TCP
// tracepoints) rather than guessing from version numbers.
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { explain, firstLine } from '../health/explain.ts';
import { tracefsAccess, tracefsFix, type TracefsAccess } from '../bpf/tracefs.ts';

export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

export interface Check {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What would fix it (fail and warn). */
  fix?: string;
}

/** A failed check, its error explained with the fix. */
export function failure(name: string, e: unknown): Check {
  const x = explain(e);
  return { name, status: 'fail', detail: x.known ? `${x.why} [${firstLine(e)}]` : x.why, fix: x.fix || undefined };
}

/** A check whose thrown error becomes a fail line with the explained fix. */
export async function attempt(name: string, fn: () => Check | Promise<Check>): Promise<Check> {
  try {
    return await fn();
  } catch (e) {
    return failure(name, e);
  }
}

export function kernelVersion(text = release()): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

const atLeast = (v: [number, number], major: number, minor: number) => v[0] > major || (v[0] === major && v[1] >= minor);

export function checkKernel(text = release()): Check {
  const v = kernelVersion(text);
  if (!atLeast(v, 5, 8)) {
    return { name: 'kernel', status: 'warn', detail: `${text}: no BPF ring buffer before 5.8 (perf buffers are used), no uprobe cookies before 5.15 (no goroutine probes)`, fix: 'Linux 5.15 or newer runs every part' };
  }
  if (!atLeast(v, 5, 15)) {
    return { name: 'kernel', status: 'warn', detail: `${text}: uprobes take BPF cookies from 5.15: goroutine probes cannot run, TCP can`, fix: 'Linux 5.15 or newer for goroutine probes' };
  }
  const push = atLeast(v, 6, 11) ? '; PUSH is emulated (one trap per probe hit after the stack check)' : '; probes sit on the stack-check jump (one trap)';
  return { name: 'kernel', status: 'pass', detail: `${text}: ring buffers, uprobe cookies${push}` };
}

export function checkBtf(path = '/sys/kernel/btf/vmlinux'): Check {
  if (existsSync(path)) return { name: 'BTF', status: 'pass', detail: `${path}: CO-RE relocations and BTF tracepoints` };
  return {
    name: 'BTF',
    status: 'fail',
    detail: `${path} is missing: CO-RE programs cannot be relocated`,
    fix: 'a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since 2021)',
  };
}

/** Effective capabilities of this process, by number. */
export function effectiveCapabilities(status = readFileSync('/proc/self/status', 'utf8')): bigint {
  const m = /^CapEff:\s+([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

const CAP = { SYS_PTRACE: 19, SYS_ADMIN: 21, PERFMON: 38, BPF: 39 } as const;

/** uprobeMulti: the kernel has uprobe multi-links (6.6+), which the agent uses and which need no CAP_SYS_ADMIN. */
export function checkCapabilities(eff = effectiveCapabilities(), kernel = kernelVersion(), uprobeMulti = false): Check {
  const has = (c: number) => (eff >> BigInt(c)) & 1n;
  const names = (Object.keys(CAP) as Array<keyof typeof CAP>).filter((k) => has(CAP[k])).map((k) => `CAP_${k}`);
  const bpfOk = (has(CAP.BPF) && has(CAP.PERFMON)) || has(CAP.SYS_ADMIN);
  // Linux 6.16 (and stable kernels since July 2025) require CAP_SYS_ADMIN for perf uprobes (ba677dbe77af);
  // uprobe multi-links (BPF links, 6.6+), which the agent uses where the kernel has them, do not.
  const uprobesNeedAdmin = atLeast(kernel, 6, 16) && !uprobeMulti;
  const missing: string[] = [];
  if (!bpfOk) missing.push('CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN)');
  if (uprobesNeedAdmin && !has(CAP.SYS_ADMIN)) missing.push('CAP_SYS_ADMIN (perf uprobes need it since Linux 6.16 and this kernel has no uprobe multi-links: without it no goroutine or runtime probes, TCP only)');
  if (!has(CAP.SYS_PTRACE)) missing.push('CAP_SYS_PTRACE (to read Go processes of other users)');
  const detail = `effective: ${names.join(', ') || 'none of CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, CAP_SYS_ADMIN'}`;
  if (missing.length) {
    const fatal = !bpfOk || (uprobesNeedAdmin && !has(CAP.SYS_ADMIN));
    return { name: 'capabilities', status: fatal ? 'fail' : 'warn', detail, fix: `add ${missing.join('; ')}` };
  }
  const admin = has(CAP.SYS_ADMIN) ? '' : ' (without CAP_SYS_ADMIN the agent cannot read classic tracepoint ids from a private tracefs)';
  return { name: 'capabilities', status: 'pass', detail: `${detail}${admin}` };
}

interface Mount {
  source: string;
  target: string;
  type: string;
}

export function mounts(text = readFileSync('/proc/self/mounts', 'utf8')): Mount[] {
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [source, target, type] = l.split(' ');
      return { source, target: target.replace(/\\040/g, ' '), type };
    });
}

export function checkTracefs(access: TracefsAccess = tracefsAccess()): Check {
  if (access.kind === 'mounted') return { name: 'tracefs', status: 'pass', detail: `mounted at ${access.root}` };
  if (access.kind === 'private-mount') {
    return { name: 'tracefs', status: 'pass', detail: "not mounted: classic tracepoint ids are read from a tracefs mounted in a child's private mount namespace (CAP_SYS_ADMIN); the node's mounts stay as they are" };
  }
  return { name: 'tracefs', status: 'warn', detail: `${access.reason}: TCP uses BTF tracepoints and raw syscalls instead`, fix: tracefsFix };
}

export function checkCgroup(all = mounts()): Check {
  const at = all.filter((m) => m.target === '/sys/fs/cgroup' || m.target.startsWith('/sys/fs/cgroup/'));
  if (at.some((m) => m.target === '/sys/fs/cgroup' && m.type === 'cgroup2')) {
    return { name: 'cgroup', status: 'pass', detail: 'v2 (unified): container ids and pods from /proc/PID/cgroup' };
  }
  if (at.some((m) => m.type === 'cgroup')) {
    return { name: 'cgroup', status: 'pass', detail: `v1${at.some((m) => m.type === 'cgroup2') ? ' with a v2 hierarchy (hybrid)' : ''}: container ids from /proc/PID/cgroup` };
  }
  return { name: 'cgroup', status: 'warn', detail: 'no cgroup filesystem under /sys/fs/cgroup: processes are not tied to containers', fix: 'mount the host cgroup filesystem at /sys/fs/cgroup' };
}
