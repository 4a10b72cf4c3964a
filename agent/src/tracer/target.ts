// A traced process as every tracer takes it: opened once (is it running, may we read it, is it Go), its
// binary analysed once (shared by the processes of one build, and given back by releaseTarget when the process
// is gone), its runtime layout chosen and its load bias read once. The goroutine, runtime and TCP tracers, the
// stack reader and the commands all take this one Target rather than each reopening the pid.
import { openSharedGoBinary, releaseGoBinary, type GoBinary } from '../gobinary/index.ts';
import { layoutForBinary, type RuntimeLayout } from '../gobinary/layouts.ts';
import { inspectProcess, loadBias, ProcessError, type ProcessInfo } from '../proc/process.ts';

export interface Target {
  info: ProcessInfo;
  binary: GoBinary;
  /** The Go runtime's layout for this binary: from its own DWARF, else the table for its Go version. */
  layout: RuntimeLayout;
  /** The layout is known to fit (DWARF, or the binary's Go minor version is in the table). */
  layoutExact: boolean;
  layoutNote?: string;
  /** Runtime address minus link-time address of the executable (non-zero for PIE). */
  bias: number;
}

/**
 * Checks that a pid is a running Go process we may trace, and opens its binary. Throws a ProcessError with
 * one line an SRE can act on: no such process, not permitted, not a Go program, unsupported Go version.
 */
export function openTarget(pid: number): Target {
  const info = inspectProcess(pid);
  let binary: GoBinary;
  try {
    binary = openSharedGoBinary(info.exeLink);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EACCES' || code === 'EPERM') throw new ProcessError(`not permitted to read the executable of pid ${pid} (run as root, or with CAP_SYS_PTRACE)`);
    if (code === 'ENOENT') throw new ProcessError(`no process with pid ${pid}`);
    if (e instanceof Error && e.name === 'NotGoBinaryError') throw new ProcessError(`pid ${pid} (${info.exe}) is not a Go program`);
    throw e;
  }
  try {
    return targetOf(info, binary);
  } catch (e) {
    releaseGoBinary(binary);
    throw e;
  }
}

/** The process is gone (or will not be traced): its share of the binary's analysis is given back. */
export function releaseTarget(target: Target): void {
  releaseGoBinary(target.binary);
}

/** The target of a process whose binary the caller already holds. */
export function targetOf(info: ProcessInfo, binary: GoBinary): Target {
  let lookup;
  try {
    lookup = layoutForBinary(binary);
  } catch (e) {
    throw new ProcessError(`pid ${info.pid}: ${(e as Error).message}`);
  }
  return {
    info,
    binary,
    layout: lookup.layout,
    layoutExact: lookup.exact,
    ...(lookup.note ? { layoutNote: lookup.note } : {}),
    bias: binaryLoadBias(info, binary),
  };
}

function binaryLoadBias(info: ProcessInfo, binary: GoBinary): number {
  if (!binary.elf.isPIE) return 0;
  const firstLoad = binary.elf.programs.filter((p) => p.type === 1).sort((a, b) => a.vaddr - b.vaddr)[0];
  return loadBias(info.pid, info.exe, firstLoad.vaddr, firstLoad.offset);
}
