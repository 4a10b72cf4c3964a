// The Go toolchain version recorded by the linker in the .go.buildinfo blob (see Go's debug/buildinfo).
import { ElfFile, u64 } from './elf.ts';

const MAGIC = Buffer.from('\xff Go buildinf:', 'latin1');
const HEADER_SIZE = 32;
const FLAG_BIG_ENDIAN = 1;
const FLAG_VERSION_INLINE = 2; // Go 1.18+: strings follow the header as varint-prefixed bytes

/** The Go version (e.g. "go1.26.8") or undefined when the file carries no Go build info. */
export function goVersion(elf: ElfFile): string | undefined {
  const header = findBuildInfoHeader(elf);
  return header === undefined ? undefined : parseVersion(elf, header);
}

/** What the linker recorded about the main module (`go version -m` prints the same). */
export interface MainModule {
  path: string | null;
  /** The module version: a tag or pseudo-version, or "(devel)" when the build had no version control facts. */
  version: string | null;
  vcsRevision: string | null;
  vcsModified: boolean;
  /** The Go build ID (a hash of the build's inputs and output), from the .note.go.buildid note. */
  buildId: string | null;
}

export function mainModule(elf: ElfFile): MainModule {
  const out: MainModule = { path: null, version: null, vcsRevision: null, vcsModified: false, buildId: goBuildId(elf) };
  const off = findBuildInfoHeader(elf);
  if (off === undefined || !(elf.readAt(off + 15, 1)[0] & FLAG_VERSION_INLINE)) return out;
  const version = readVarint(elf, off + HEADER_SIZE);
  const modinfo = readVarint(elf, version.end);
  for (const line of modinfo.text.split('\n')) {
    const f = line.split('\t');
    if (f[0] === 'mod' && f.length >= 3) {
      out.path = f[1];
      out.version = f[2];
    } else if (f[0] === 'build' && f[1]?.startsWith('vcs.revision=')) out.vcsRevision = f[1].slice('vcs.revision='.length);
    else if (f[0] === 'build' && f[1] === 'vcs.modified=true') out.vcsModified = true;
  }
  return out;
}

/**
 * What names this build as service.version: the module's version when it has one, else its VCS revision, else
 * the Go build ID (the same binary gives the same id); null when the binary records none of these.
 */
export function serviceVersion(m: MainModule): string | null {
  if (m.version && m.version !== '(devel)') return m.version;
  if (m.vcsRevision) return `${m.vcsRevision.slice(0, 12)}${m.vcsModified ? '-dirty' : ''}`;
  if (m.buildId) return `(devel) ${m.buildId.split('/').pop()}`;
  return null;
}

/** The .note.go.buildid note: namesz 4, descsz, type 4, "Go\0\0", then the id. */
export function goBuildId(elf: ElfFile): string | null {
  const s = elf.section('.note.go.buildid');
  if (!s || s.size > 4096 || s.offset + s.size > elf.size) return null;
  const d = elf.sectionData(s);
  if (d.length < 16 || d.readUInt32LE(0) !== 4 || d.readUInt32LE(8) !== 4 || d.toString('latin1', 12, 15) !== 'Go\0') return null;
  const n = d.readUInt32LE(4);
  return n > 0 && 16 + n <= d.length ? d.toString('utf8', 16, 16 + n) : null;
}

/** File offset of the build info header: from the section, else by scanning (section headers may be gone). */
function findBuildInfoHeader(elf: ElfFile): number | undefined {
  const s = elf.section('.go.buildinfo');
  if (s && s.offset + HEADER_SIZE <= elf.size && elf.readAt(s.offset, MAGIC.length).equals(MAGIC)) return s.offset;
  // The linker aligns the blob to 16 bytes; file offsets and vaddrs agree modulo the page size.
  for (const i of elf.find(MAGIC, 0, elf.size, 16)) {
    if (i + HEADER_SIZE <= elf.size) return i;
  }
  return undefined;
}

function parseVersion(elf: ElfFile, off: number): string | undefined {
  const d = elf.readAt(off, HEADER_SIZE);
  const ptrSize = d[14];
  const flags = d[15];
  if (flags & FLAG_VERSION_INLINE) {
    const v = readVarint(elf, off + HEADER_SIZE).text;
    return v || undefined;
  }
  // Before Go 1.18: two pointers to Go string headers {ptr, len}: the version, then the module info.
  if (ptrSize !== 8 || flags & FLAG_BIG_ENDIAN) return undefined;
  try {
    const strHeader = u64(d, 16);
    const hdr = elf.read(strHeader, 16);
    const ptr = u64(hdr, 0);
    const len = u64(hdr, 8);
    if (len === 0 || len > 1024) return undefined;
    return elf.read(ptr, len).toString('utf8');
  } catch {
    return undefined;
  }
}

/** A varint-length-prefixed string at a file offset, and where it ends. */
function readVarint(elf: ElfFile, off: number): { text: string; end: number } {
  const head = elf.readAt(off, Math.min(5, elf.size - off));
  let len = 0;
  let shift = 0;
  let i = 0;
  for (; i < head.length; i++) {
    const b = head[i];
    len += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) break;
  }
  if (i === head.length) return { text: '', end: off + i };
  const start = off + i + 1;
  if (len > 1 << 20 || start + len > elf.size) return { text: '', end: start };
  return { text: elf.readAt(start, len).toString('utf8'), end: start + len };
}
