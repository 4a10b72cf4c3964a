// One entry point over a Go executable: version, functions with their file offsets (for uprobes), symbolizer, allgs.
import { closeSync, fstatSync, openSync } from 'node:fs';
import { goBuildId, goVersion, mainModule, serviceVersion } from './buildinfo.ts';
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
  /** Source frames of code addresses, inlined calls included (one per binary: its caches serve every process). */
  readonly frames: FrameResolver;
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
  /**
   * What a part of the agent works out from this build (a probe plan, offsets read from DWARF), worked out once
   * and kept while the binary is: every process of the build shares it.
   */
  analysis<T>(key: string, compute: () => T): T;
  /** Bytes kept in memory for this binary: the pclntab and its indexes (not the file). */
  readonly keptBytes: number;
}

/** Opens and analyses a Go executable for the caller alone (commands and tests); see openSharedGoBinary. */
export function openGoBinary(path: string): GoBinary {
  return goBinaryOf(path, elfOf(path, () => ElfFile.open(path)));
}

interface CacheEntry {
  bin: GoBinary;
  /** The keys it is filed under: the file's identity, and its Go build id when it has one. */
  keys: string[];
  /** Processes holding it (openSharedGoBinary less releaseGoBinary). */
  refs: number;
  /** Set while nobody holds it: it is let go when this fires. */
  idle?: NodeJS.Timeout;
}

/** Analysed executables, by file identity (device, inode, size, times) and by Go build id and size. */
const cache = new Map<string, CacheEntry>();
const byBinary = new Map<GoBinary, CacheEntry>();
let analyses = 0;
/**
 * How long an analysis nobody holds is kept: a job that runs its binary again and again (a CronJob, a crash
 * loop) is analysed once, and an agent whose processes all went is back to its idle memory soon after.
 */
export const BINARY_IDLE_MS = 10_000;

/**
 * openGoBinary, shared by every process of one build: a node running many replicas or short-lived jobs of one
 * binary reads and analyses it once and holds it once. Each call takes a reference that releaseGoBinary gives
 * back; once no process holds it (and BINARY_IDLE_MS has passed), it is closed and dropped.
 */
export function openSharedGoBinary(path: string): GoBinary {
  let fd: number | undefined = openSync(path, 'r');
  let entry: CacheEntry | undefined;
  try {
    const st = fstatSync(fd);
    const fileKey = `file:${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    entry = cache.get(fileKey);
    if (!entry) {
      const owned = fd;
      fd = undefined; // the ElfFile has it now (and closes it if the file is not ELF)
      const elf = elfOf(path, () => ElfFile.fromFd(path, owned));
      // A copy of the binary elsewhere (another container's layer) is the same build: the Go build id hashes it.
      const id = goBuildId(elf);
      const idKey = id ? `build:${id}:${st.size}` : undefined;
      entry = idKey === undefined ? undefined : cache.get(idKey);
      if (entry) {
        elf.close();
        entry.keys.push(fileKey);
      } else {
        const bin = goBinaryOf(path, elf);
        analyses++;
        entry = { bin, keys: idKey ? [fileKey, idKey] : [fileKey], refs: 0 };
        byBinary.set(bin, entry);
        for (const k of entry.keys) cache.set(k, entry);
      }
      cache.set(fileKey, entry);
    }
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  entry.refs++;
  if (entry.idle) clearTimeout(entry.idle);
  entry.idle = undefined;
  return entry.bin;
}

/**
 * Gives back a reference openSharedGoBinary took (a traced process exited). When the last goes, the analysis is
 * kept BINARY_IDLE_MS for a process of the same build that may start again, then closed.
 */
export function releaseGoBinary(bin: GoBinary): void {
  const entry = byBinary.get(bin);
  if (!entry || entry.refs === 0) return;
  if (--entry.refs > 0) return;
  entry.idle = setTimeout(() => dropEntry(entry), BINARY_IDLE_MS);
  entry.idle.unref();
}

function dropEntry(entry: CacheEntry): void {
  entry.idle = undefined;
  if (entry.refs > 0 || !byBinary.delete(entry.bin)) return;
  for (const k of entry.keys) if (cache.get(k) === entry) cache.delete(k);
  entry.bin.elf.close();
}

/** What the shared binaries hold now (the agent's /metrics). */
export interface BinaryCacheStats {
  /** Analysed binaries kept. */
  binaries: number;
  /** References processes hold on them. */
  references: number;
  /** Binaries analysed since start (a build is analysed once while it is kept). */
  analyses: number;
  /** Bytes kept for them (pclntabs and indexes). */
  keptBytes: number;
}

export function binaryCacheStats(): BinaryCacheStats {
  let references = 0;
  let keptBytes = 0;
  for (const e of byBinary.values()) {
    references += e.refs;
    keptBytes += e.bin.keptBytes;
  }
  return { binaries: byBinary.size, references, analyses, keptBytes };
}

/** Drops every analysis nobody holds, now (tests; an agent waits BINARY_IDLE_MS). */
export function dropIdleGoBinaries(): void {
  for (const e of [...byBinary.values()]) {
    if (e.refs > 0) continue;
    if (e.idle) clearTimeout(e.idle);
    dropEntry(e);
  }
}

function elfOf(path: string, open: () => ElfFile): ElfFile {
  try {
    return open();
  } catch (e) {
    if (e instanceof ElfFormatError) throw new NotGoBinaryError(path, e.reason);
    throw e; // ENOENT, EACCES...: not ours to reword
  }
}

/** The analysis of an opened file, which then holds it (closed here when it is not a Go program). */
function goBinaryOf(path: string, elf: ElfFile): GoBinary {
  try {
    return analyse(path, elf);
  } catch (e) {
    elf.close();
    throw e;
  }
}

function analyse(path: string, elf: ElfFile): GoBinary {
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
  const framesOf = () => (frames ??= new FrameResolver(elf, pclntab, minor));
  const wrappers = new GoWrappers(elf, pclntab, framesOf);
  const starts = new Map<number, SourceLocation | undefined>();
  const analysed = new Map<string, unknown>();
  let version_: string | null | undefined;
  return {
    path,
    goVersion: version,
    elf,
    pclntab,
    symbolizer,
    get frames() {
      return framesOf();
    },
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
    analysis<T>(key: string, compute: () => T): T {
      if (!analysed.has(key)) analysed.set(key, compute());
      return analysed.get(key) as T;
    },
    get keptBytes() {
      return pclntab.keptBytes;
    },
  };
}
