// What /proc says about a process: its executable, its start time, where its binary is mapped, its memory.
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import { loadAddon } from '../bpf/bridge.ts';

/** A one-line reason why a pid cannot be traced. */
export class ProcessError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProcessError';
  }
}

export interface ProcessInfo {
  pid: number;
  /** The executable as the process sees it (may be inside its container's root). */
  exe: string;
  /** A path to the same file that works from here, also across mount namespaces and after deletion. */
  exeLink: string;
  comm: string;
  /** /proc/PID/stat field 22: clock ticks since boot; (pid, startTime) names a process across pid reuse. */
  startTime: number;
}

function explain(pid: number, e: unknown, what: string): never {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ESRCH') throw new ProcessError(`no process with pid ${pid}`);
  if (code === 'EACCES' || code === 'EPERM') {
    throw new ProcessError(`not permitted to ${what} of pid ${pid} (run as root, or with CAP_SYS_PTRACE and CAP_BPF)`);
  }
  throw new ProcessError(`cannot ${what} of pid ${pid}: ${(e as Error).message}`);
}

export function inspectProcess(pid: number): ProcessInfo {
  if (!Number.isInteger(pid) || pid <= 0) throw new ProcessError(`invalid pid ${pid}`);
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (e) {
    explain(pid, e, 'read the status');
  }
  // comm may hold spaces and parentheses: the fields after it start at the last ')'.
  const close = stat.lastIndexOf(')');
  const comm = stat.slice(stat.indexOf('(') + 1, close);
  const rest = stat.slice(close + 2).split(' ');
  if (rest[0] === 'Z') throw new ProcessError(`process ${pid} has exited (zombie)`);
  const startTime = Number(rest[19]);
  let exe: string;
  try {
    exe = readlinkSync(`/proc/${pid}/exe`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new ProcessError(`process ${pid} has no executable (a kernel thread?)`);
    explain(pid, e, 'read the executable');
  }
  return { pid, exe, exeLink: `/proc/${pid}/exe`, comm, startTime };
}

/**
 * Whether the process that had this start time still runs: false once it is gone, a zombie (its probes have
 * nothing left to watch), or its pid belongs to another process. One read of /proc/PID/stat.
 */
export function processRunning(pid: number, startTime: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return rest[0] !== 'Z' && rest[0] !== 'X' && Number(rest[19]) === startTime;
}

export interface Mapping {
  start: number;
  end: number;
  offset: number;
  perms: string;
  path: string;
}

export function readMappings(pid: number): Mapping[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch (e) {
    explain(pid, e, 'read the memory map');
  }
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \d+\s*(.*)$/.exec(line);
    if (m) out.push({ start: parseInt(m[1], 16), end: parseInt(m[2], 16), perms: m[3], offset: parseInt(m[4], 16), path: m[5] });
  }
  return out;
}

/**
 * The load bias of the main executable: runtime address = link-time address + bias. Zero for a
 * non-PIE binary; for PIE the kernel picks it.
 */
export function loadBias(pid: number, exe: string, firstLoadVaddr: number, firstLoadOffset: number): number {
  const maps = readMappings(pid).filter((m) => m.path === exe || m.path === `${exe} (deleted)`);
  const first = maps.find((m) => m.offset === (firstLoadOffset & ~0xfff));
  if (!first) return 0;
  return first.start - (firstLoadVaddr & ~0xfff);
}

/** Reads another process's memory through /proc/PID/mem (needs ptrace access: root or CAP_SYS_PTRACE). */
export class ProcessMemory {
  private fd: number;

  constructor(readonly pid: number) {
    try {
      this.fd = openSync(`/proc/${pid}/mem`, 'r');
    } catch (e) {
      explain(pid, e, 'read the memory');
    }
  }

  /** Reads len bytes at addr; fewer when part of the range is unmapped. */
  read(addr: number, len: number, into?: Buffer): Buffer {
    const buf = into && into.length >= len ? into : Buffer.alloc(len);
    let got = 0;
    try {
      got = readSync(this.fd, buf, 0, len, addr);
    } catch {
      got = 0;
    }
    return buf.subarray(0, got);
  }

  /**
   * Reads many ranges in as few system calls as it can (process_vm_readv through the native bridge, else one
   * pread of /proc/PID/mem each). Range i lands in out right after range i-1 (lens[i] bytes reserved for it);
   * returns how many bytes of each range were read (fewer where memory is unmapped).
   */
  readMany(addrs: Float64Array, lens: Uint32Array, out: Buffer): Int32Array {
    if (this.batched === undefined) {
      try {
        const addon = loadAddon();
        this.batched = typeof addon.readMemory === 'function' ? addon.readMemory : null;
      } catch {
        this.batched = null;
      }
    }
    if (this.batched) {
      const got = this.batched(this.pid, addrs, lens, out);
      // process_vm_readv needs the same ptrace access as /proc/PID/mem, but a seccomp filter may refuse it alone.
      if (!(addrs.length > 0 && got.every((n) => n === 0) && this.read(addrs[0], 1).length === 1)) return got;
      this.batched = null;
    }
    const got = new Int32Array(addrs.length);
    let pos = 0;
    for (let i = 0; i < addrs.length; i++) {
      got[i] = this.read(addrs[i], lens[i], out.subarray(pos, pos + lens[i])).length;
      pos += lens[i];
    }
    return got;
  }

  private batched?: ((pid: number, addrs: Float64Array, lens: Uint32Array, out: Buffer) => Int32Array) | null;

  u64(addr: number): number | undefined {
    const b = this.read(addr, 8);
    return b.length === 8 ? b.readUInt32LE(0) + b.readUInt32LE(4) * 0x1_0000_0000 : undefined;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Every pid on the machine (in this pid namespace). */
export function listPids(): number[] {
  return readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number);
}
