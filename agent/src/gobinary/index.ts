// One entry point over a Go executable: version, functions with their file offsets (for uprobes), symbolizer, allgs.
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { goVersion, mainModule, serviceVersion } from './buildinfo.ts';
import { ElfFile, ElfFormatError } from './elf.ts';
import { Pclntab } from './pclntab.ts';
import { Symbolizer, type SourceLocation } from './symbolize.ts';
import { AllgsLocation, findAllgs } from './allgs.ts';
import { findGoidGen, type GoidGenLocation } from './goidgen.ts';
import type { RuntimeLayout } from './layouts.ts';
import { FrameResolver } from './frames.ts';
import { GoWrappers } from './go-wrappers.ts';

export { ElfFile, ElfFormatError } from './elf.ts';
export { Pclntab } from './pclntab.ts';
export type { GoFunc, FileLine } from './pclntab.ts';
export { Symbolizer } from './symbolize.ts';
export type { SourceLocation } from './symbolize.ts';
export { findProbeSites } from './x86.ts';
export type { ProbeSites, StackCheck, RipRef, CallSite } from './x86.ts';
export { findAllgs, allgsFromCode } from './allgs.ts';
export type { AllgsLocation } from './allgs.ts';
export { goVersion } from './buildinfo.ts';

export class NotGoBinaryError extends Error {
  constructor(readonly path: string, reason: string) {
    super(`${path} is not a Go program (${reason})`);
    this.name = 'NotGoBinaryError';
  }
}

export interface GoFuncLocation {
  name: string;
  entry: number;
  end: number;
  /** File offset of the entry: what a uprobe is attached at. */
  fileOffset: number;
}

export interface GoBinary {
  path: string;
  goVersion: string;
  elf: ElfFile;
  pclntab: Pclntab;
  symbolizer: Symbolizer;
  /**
   * The function a goroutine started at startPc (link-time address) runs, with where it is defined: for a `go`
   * statement's compiler-made wrapper (`pkg.f.gowrap1`), the function it calls (agent/src/gobinary/go-wrappers.ts).
   */
  startFunction(startPc: number): SourceLocation | undefined;
  /** What names this build as OpenTelemetry's service.version (buildinfo.ts serviceVersion). */
  serviceVersion: string | null;
  /** undefined when the function is not in the binary. */
  func(name: string): GoFuncLocation | undefined;
  /** File offset of a code or data address; throws when the address is not backed by the file. */
  fileOffset(vaddr: number): number;
  /** undefined when neither symbols nor code give it away. */
  allgs: AllgsLocation | undefined;
  /** The goroutine-id generator (sched.goidgen, allp); undefined when neither symbols nor code give it away. */
  goidgen(layout: RuntimeLayout): GoidGenLocation | undefined;
}

export function openGoBinary(path: string): GoBinary {
  return goBinaryOf(path, () => ElfFile.open(path));
}

/** Parsed executables by file identity, while a process (or the few most recent opens) holds them. */
const shared = new Map<string, WeakRef<GoBinary>>();
const recent: GoBinary[] = [];
const KEEP_RECENT = 4;

/**
 * openGoBinary, shared by every process of one executable file (device, inode, size, times): a node running
 * many replicas or short-lived jobs of one binary reads and parses it once and holds it in memory once.
 */
export function openSharedGoBinary(path: string): GoBinary {
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    let bin = shared.get(key)?.deref();
    if (!bin) {
      bin = goBinaryOf(path, () => ElfFile.fromBuffer(path, readFileSync(fd)));
      if (shared.size >= 256) for (const [k, ref] of shared) if (!ref.deref()) shared.delete(k);
      shared.set(key, new WeakRef(bin));
    }
    if (!recent.includes(bin)) {
      recent.unshift(bin);
      recent.length = Math.min(recent.length, KEEP_RECENT);
    }
    return bin;
  } finally {
    closeSync(fd);
  }
}

function goBinaryOf(path: string, open: () => ElfFile): GoBinary {
  let elf: ElfFile;
  try {
    elf = open();
  } catch (e) {
    if (e instanceof ElfFormatError) throw new NotGoBinaryError(path, e.reason);
    throw e; // ENOENT, EACCES...: not ours to reword
  }
  if (elf.machine !== 62) throw new NotGoBinaryError(path, `ELF machine ${elf.machine} is not x86-64`);
  const version = goVersion(elf);
  if (!version) throw new NotGoBinaryError(path, 'no Go build info');
  const pclntab = Pclntab.fromElf(elf);
  const fileOffset = (vaddr: number): number => {
    const off = elf.vaddrToFileOffset(vaddr);
    if (off === undefined) throw new Error(`${path}: address 0x${vaddr.toString(16)} is not in the file`);
    return off;
  };
  let allgs: AllgsLocation | undefined | null = null; // null: not computed yet (it decodes code)
  let goidgen: GoidGenLocation | undefined | null = null;
  const symbolizer = new Symbolizer(pclntab);
  const minor = Number(/^go1\.(\d+)/.exec(version)?.[1] ?? 0);
  let frames: FrameResolver | undefined;
  const wrappers = new GoWrappers(elf, pclntab, () => (frames ??= new FrameResolver(elf, pclntab, minor)));
  const starts = new Map<number, SourceLocation | undefined>();
  let version_: string | null | undefined;
  return {
    path,
    goVersion: version,
    elf,
    pclntab,
    symbolizer,
    startFunction(startPc) {
      if (starts.has(startPc)) return starts.get(startPc);
      const at = symbolizer.at(startPc);
      const loc = (at && wrappers.wrapped(startPc)) ?? at;
      if (starts.size >= 4096) starts.delete(starts.keys().next().value!);
      starts.set(startPc, loc);
      return loc;
    },
    func(name) {
      const f = pclntab.funcByName(name);
      return f && { ...f, fileOffset: fileOffset(f.entry) };
    },
    get serviceVersion() {
      if (version_ === undefined) version_ = serviceVersion(mainModule(elf));
      return version_;
    },
    fileOffset,
    get allgs() {
      if (allgs === null) allgs = findAllgs(elf, pclntab);
      return allgs;
    },
    goidgen(layout) {
      if (goidgen === null) goidgen = findGoidGen(elf, pclntab, layout);
      return goidgen;
    },
  };
}
