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

/** File offset of the build info header: from the section, else by scanning (section headers may be gone). */
function findBuildInfoHeader(elf: ElfFile): number | undefined {
  const s = elf.section('.go.buildinfo');
  if (s && elf.data.subarray(s.offset, s.offset + MAGIC.length).equals(MAGIC)) return s.offset;
  // The linker aligns the blob to 16 bytes; file offsets and vaddrs agree modulo the page size.
  for (let i = elf.data.indexOf(MAGIC); i >= 0; i = elf.data.indexOf(MAGIC, i + 1)) {
    if (i % 16 === 0 && i + HEADER_SIZE <= elf.data.length) return i;
  }
  return undefined;
}

function parseVersion(elf: ElfFile, off: number): string | undefined {
  const d = elf.data;
  const ptrSize = d[off + 14];
  const flags = d[off + 15];
  if (flags & FLAG_VERSION_INLINE) {
    const v = readVarintString(d, off + HEADER_SIZE);
    return v || undefined;
  }
  // Before Go 1.18: two pointers to Go string headers {ptr, len}: the version, then the module info.
  if (ptrSize !== 8 || flags & FLAG_BIG_ENDIAN) return undefined;
  try {
    const strHeader = u64(d, off + 16);
    const hdr = elf.read(strHeader, 16);
    const ptr = u64(hdr, 0);
    const len = u64(hdr, 8);
    if (len === 0 || len > 1024) return undefined;
    return elf.read(ptr, len).toString('utf8');
  } catch {
    return undefined;
  }
}

function readVarintString(d: Buffer, off: number): string {
  let len = 0;
  let shift = 0;
  for (let i = 0; i < 5; i++) {
    const b = d[off++];
    if (b === undefined) return '';
    len += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) break;
  }
  if (len > 1024 || off + len > d.length) return '';
  return d.toString('utf8', off, off + len);
}
