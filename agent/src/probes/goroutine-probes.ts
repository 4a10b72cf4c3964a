// Where each goroutine probe goes in one Go binary, and with which BPF cookie.
//
// Site choice (../shared/FACTS.md): a uprobe on an instruction the kernel must single-step costs two traps
// (~5.5 us here); on one it emulates, one (~0.9 us). Go's prologue is `CMPQ SP, 16(R14); JBE morestack;
// PUSHQ BP`: every argument register is still intact at the jump and at the push. Kernels that emulate PUSH
// (6.11+) get the push: past the check, so a hit is always a real call and the program reads nothing to
// decide. Older kernels get the jump: when the check fails, morestack re-runs the function from its entry
// and the jump is hit again, so the BPF program evaluates the same comparison and keeps only the hit that
// goes on (cookie bit "stack check").
import { GoroutineProbe, probeCookie, type CookieOptions } from '../events/goroutine-event.ts';
import { release as osRelease } from 'node:os';
import { findProbeSites, type GoBinary } from '../gobinary/index.ts';

/** Probe classes, each attached and detached as one: 'run' is the scheduler's (execute and the places a
 * goroutine becomes runnable), 'syscall' entering and leaving system calls. */
export type GoroutineProbeName = 'create' | 'creator' | 'park' | 'ready' | 'exit' | 'run' | 'syscall';

export interface ProbeSite {
  probe: GoroutineProbeName;
  /** The BPF program (bpf/goroutines.bpf.c). */
  program: string;
  symbol: string;
  vaddr: number;
  fileOffset: number;
  /** 'after-stack-check' (the body's first instruction, one trap where the kernel emulates PUSH),
   * 'stack-check-jump' (one trap, evaluates the check), 'entry' (fallback), 'call' (a CALL instruction:
   * one trap), 'ret' (two traps). */
  kind: 'after-stack-check' | 'stack-check-jump' | 'entry' | 'call' | 'ret';
  cookie: CookieOptions;
  probeIndex: number;
}

interface Spec {
  probe: GoroutineProbeName;
  program: string;
  symbol: string;
  probeIndex: number;
}

const ENTRY_SPECS: Spec[] = [
  { probe: 'park', program: 'gopark', symbol: 'runtime.gopark', probeIndex: GoroutineProbe.gopark },
  // goready is inlined by recent compilers; ready() is its body and also catches the GC's own wakeups.
  { probe: 'ready', program: 'ready', symbol: 'runtime.ready', probeIndex: GoroutineProbe.ready },
  { probe: 'exit', program: 'goexit1', symbol: 'runtime.goexit1', probeIndex: GoroutineProbe.goexit1 },
];

export class ProbeSiteError extends Error {}

const PUSH_RBP = 0x55;

/**
 * Whether the kernel emulates `PUSH %rbp` in a uprobe (Linux 6.11 and later): then the body's first
 * instruction costs one trap, like the jump, and needs no stack-check evaluation at all: morestack re-runs
 * the check, never the body's first instruction twice. GOROSCOPE_PROBE_SITE=jump|push overrides.
 */
export function kernelEmulatesPush(release = osRelease()): boolean {
  const forced = process.env.GOROSCOPE_PROBE_SITE;
  if (forced === 'jump') return false;
  if (forced === 'push') return true;
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m !== null && (Number(m[1]) > 6 || (Number(m[1]) === 6 && Number(m[2]) >= 11));
}

function entrySite(bin: GoBinary, spec: Spec): ProbeSite {
  const f = bin.func(spec.symbol);
  if (!f) throw new ProbeSiteError(`${bin.path}: ${spec.symbol} not found (Go ${bin.goVersion})`);
  const sites = findProbeSites(bin.elf.read(f.entry, f.end - f.entry), f.entry);
  const sc = sites.stackCheck;
  if (sc && sc.jump === 'jbe' && kernelEmulatesPush()) {
    // JBE goes to morestack; falling through means the check passed and the body starts here.
    const body = sites.boundaries[sites.boundaries.indexOf(sc.jumpAddr) + 1];
    if (body !== undefined && bin.elf.read(body, 1)[0] === PUSH_RBP) {
      return { ...spec, vaddr: body, fileOffset: bin.fileOffset(body), kind: 'after-stack-check', cookie: { stackCheck: false } };
    }
  }
  if (sc && (sc.compared === 'rsp' || sc.compared === 'r12')) {
    return {
      ...spec,
      vaddr: sc.jumpAddr,
      fileOffset: bin.fileOffset(sc.jumpAddr),
      kind: 'stack-check-jump',
      cookie: { stackCheck: true },
    };
  }
  // No recognisable stack check (a NOSPLIT function, or a prologue we do not know): the entry is always safe.
  // Without a check there is no morestack re-entry to filter.
  return { ...spec, vaddr: f.entry, fileOffset: f.fileOffset, kind: 'entry', cookie: { stackCheck: false } };
}

/**
 * The scheduler's sites ('run'): runtime.execute, where a goroutine starts running, first (the agent attaches
 * in this order, so no stamp is set while nothing takes them), then where goroutines become runnable, each
 * stamping it for execute: ready (woken), the go statement's queueing, goschedImpl (Gosched and every
 * preemption), exitsyscall0 / exitsyscallNoP (queued back from a system call), injectglist (batches from the
 * network poller). preemptPark counts the GC's in-place suspensions. Sites whose function a Go version lacks
 * are left out. Then the system call hooks ('syscall'): entersyscall, entersyscallblock and exitsyscall are
 * nosplit: their first instruction is PUSHQ BP, emulated (one trap) on 6.11+.
 */
const SCHED_SPECS: Array<Spec & { optional?: boolean }> = [
  { probe: 'run', program: 'sched_execute', symbol: 'runtime.execute', probeIndex: GoroutineProbe.execute },
  { probe: 'run', program: 'sched_ready', symbol: 'runtime.ready', probeIndex: GoroutineProbe.runnable },
  { probe: 'run', program: 'sched_gosched', symbol: 'runtime.goschedImpl', probeIndex: GoroutineProbe.runnable },
  { probe: 'run', program: 'sched_preempt_park', symbol: 'runtime.preemptPark', probeIndex: GoroutineProbe.runnable, optional: true },
  { probe: 'run', program: 'sched_syscall_queued', symbol: 'runtime.exitsyscall0', probeIndex: GoroutineProbe.runnable, optional: true },
  { probe: 'run', program: 'sched_syscall_queued', symbol: 'runtime.exitsyscallNoP', probeIndex: GoroutineProbe.runnable, optional: true },
  { probe: 'run', program: 'sched_inject', symbol: 'runtime.injectglist', probeIndex: GoroutineProbe.runnable },
  { probe: 'syscall', program: 'sched_exitsyscall', symbol: 'runtime.exitsyscall', probeIndex: GoroutineProbe.syscall },
  { probe: 'syscall', program: 'sched_entersyscall', symbol: 'runtime.entersyscall', probeIndex: GoroutineProbe.syscall },
  { probe: 'syscall', program: 'sched_entersyscall', symbol: 'runtime.entersyscallblock', probeIndex: GoroutineProbe.syscall, optional: true },
];

function schedSites(bin: GoBinary): ProbeSite[] {
  const out: ProbeSite[] = [];
  for (const spec of SCHED_SPECS) {
    const { optional, ...site } = spec;
    if (optional && !bin.func(site.symbol)) continue;
    out.push(entrySite(bin, site));
    // The go statement's queueing, at the same site as the creation probe.
    if (spec.program === 'sched_ready') {
      for (const c of createSites(bin)) {
        out.push({ ...c, probe: 'run', program: c.kind === 'call' ? 'sched_created_runqput' : 'sched_created_ret', probeIndex: GoroutineProbe.runnable });
      }
    }
  }
  return out;
}

/** Every probe site for the goroutine lifecycle and the scheduler in this binary. */
export function planGoroutineProbes(bin: GoBinary, opts: { creatorAtEntry: boolean }): ProbeSite[] {
  const out: ProbeSite[] = ENTRY_SPECS.map((s) => entrySite(bin, s));
  out.push(...createSites(bin));
  if (opts.creatorAtEntry) {
    out.push(entrySite(bin, { probe: 'creator', program: 'newproc1_entry', symbol: 'runtime.newproc1', probeIndex: GoroutineProbe.newproc1Entry }));
  }
  out.push(...schedSites(bin));
  return out;
}

/**
 * Where a new goroutine is seen. `go f()` runs runtime.newproc, whose system-stack closure calls
 * newproc1 and then runqput(pp, newg, next): at that CALL (emulated: one trap) RBX holds the new g. Without
 * that shape, every RET of newproc1 (RAX = the new g; two traps each). The closure is the only caller of
 * newproc1 but for iter.Pull's coroutines (Go 1.23+), which the CALL site does not see.
 */
function createSites(bin: GoBinary): ProbeSite[] {
  const closure = bin.func('runtime.newproc.func1');
  const runqput = bin.func('runtime.runqput');
  const np1 = bin.func('runtime.newproc1');
  if (closure && runqput && np1) {
    const code = findProbeSites(bin.elf.read(closure.entry, closure.end - closure.entry), closure.entry);
    const afterNewproc1 = code.callsTo(np1.entry);
    const calls = code.callsTo(runqput.entry).filter((c) => afterNewproc1.some((n) => n.addr < c.addr));
    if (afterNewproc1.length === 1 && calls.length === 1) {
      const at = calls[0].addr;
      return [{
        probe: 'create',
        program: 'newproc_runqput',
        symbol: 'runtime.newproc.func1',
        probeIndex: GoroutineProbe.newproc1Ret,
        vaddr: at,
        fileOffset: bin.fileOffset(at),
        kind: 'call',
        cookie: { stackCheck: false },
      }];
    }
  }
  return retSites(bin);
}

function retSites(bin: GoBinary): ProbeSite[] {
  const out: ProbeSite[] = [];
  const np = bin.func('runtime.newproc1');
  if (!np) throw new ProbeSiteError(`${bin.path}: runtime.newproc1 not found (Go ${bin.goVersion})`);
  const sites = findProbeSites(bin.elf.read(np.entry, np.end - np.entry), np.entry);
  if (!sites.rets.length) throw new ProbeSiteError(`${bin.path}: runtime.newproc1 has no RET instruction`);
  for (const ret of sites.rets) {
    out.push({
      probe: 'create',
      program: 'newproc1_ret',
      symbol: 'runtime.newproc1',
      probeIndex: GoroutineProbe.newproc1Ret,
      vaddr: ret,
      fileOffset: bin.fileOffset(ret),
      kind: 'ret',
      cookie: { stackCheck: false },
    });
  }
  return out;
}

/** window: the scheduler window of a 'run' or 'syscall' site's attachment (bpf/cookie.h); 0 leaves it idle. */
export function cookieFor(site: ProbeSite, layoutId: number, window = 0): bigint {
  return probeCookie(layoutId, site.probeIndex, site.cookie, window);
}
