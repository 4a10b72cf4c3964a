// The runtime layout read from a binary's own DWARF (dwarf.ts, dwarf-layout.ts) against the committed table,
// which scripts/runtime-layouts made with Go's own debug/dwarf from each toolchain: for every toolchain in the
// table (and the local one), the population program's default build must give the table entry's structs,
// functions, wait reasons and statuses. Also: stripped binaries fall back to the table; Go's compressed DWARF
// (v4 before 1.25, v5 from 1.25), the same sections uncompressed and as legacy .zdebug_*, all read the same;
// the DWARF 5 forms Go does not emit, on a hand-made unit; a piece missing from DWARF falls back to the table.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync, inflateSync } from 'node:zlib';
import { newestGo, repoRoot, tableToolchains, type BuildKind } from '../lib/go.ts';
import { buildPopulation } from '../lib/population.ts';
import { openGoBinary } from '../../agent/src/gobinary/index.ts';
import { ElfFile } from '../../agent/src/gobinary/elf.ts';
import { DW_AT, DwarfData, DwarfIndex, debugSection, staticAddress, structMembers, typeName, typeSize } from '../../agent/src/gobinary/dwarf.ts';
import { layoutFromDwarf } from '../../agent/src/gobinary/dwarf-layout.ts';
import { layoutFor, layoutForBinary, type RuntimeLayout } from '../../agent/src/gobinary/layouts.ts';

const table = (JSON.parse(readFileSync(join(repoRoot, 'agent/src/gobinary/runtime-layouts.json'), 'utf8')) as {
  versions: Record<string, RuntimeLayout>;
}).versions;

/** What DWARF gives, compared with the table. */
const FROM_DWARF = ['g', 'm', 'p', 'panic', 'mstats', 'work', 'functions', 'waitReasonNames', 'waitReasonStrings', 'statuses',
  'statusStrings', 'stwReasonStrings', 'scanBit'] as const;
/** What always comes from the table entry passed as base. */
const FROM_BASE = ['intArgRegisters', 'waitReasonUnknown', 'statusUnknown', 'waitReasonStatuses', 'systemGoroutines'] as const;

const SHF_COMPRESSED = 0x800;

// GOROSCOPE_MATRIX=full: each table entry's own toolchain (Debian's for 1.19) and the machine's; a list
// (GOROSCOPE_MATRIX=1.27.4): those. Otherwise the toolchains the lifecycle tests use in CI (DWARF 4 and, with
// the local Go and the newest, DWARF 5).
const matrixEnv = process.env.GOROSCOPE_MATRIX;
const VERSIONS =
  matrixEnv === 'full' ? [...tableToolchains, 'local'] : matrixEnv ? matrixEnv.split(',') : ['1.19', '1.22.12', '1.24.13', 'local', newestGo];

function build(version: string, kind: BuildKind = 'default'): { path?: string; why?: string } {
  try {
    return { path: buildPopulation(version, kind) };
  } catch (e) {
    return { why: `cannot build the population program with Go ${version} (${kind}) here: ${(e as Error).message.split('\n')[0]}` };
  }
}

const minorOf = (goVersion: string): string => /^go(1\.\d+)/.exec(goVersion)![1];
const built = new Map<string, string>(); // version -> default build, for the tests below

for (const version of VERSIONS) {
  const b = build(version);
  if (!b.path) {
    t.test(`Go ${version}`, { skip: b.why! }, async () => {});
    continue;
  }
  built.set(version, b.path);
  t.test(`Go ${version}: the binary's DWARF gives the table entry`, async (t) => {
    const bin = openGoBinary(b.path!);
    const minor = minorOf(bin.goVersion);
    const entry = table[minor];
    if (!entry) {
      t.fail(`${bin.goVersion} has no table entry to compare with`);
      return;
    }
    if (entry.toolchain !== bin.goVersion) t.comment(`table entry made with ${entry.toolchain}, binary built with ${bin.goVersion}`);

    // Go compresses DWARF by default; 1.25 moved to DWARF 5.
    const info = bin.elf.section('.debug_info')!;
    t.ok(info.flags & SHF_COMPRESSED, '.debug_info is SHF_COMPRESSED');
    const t0 = performance.now();
    const r = layoutFromDwarf(bin.elf, entry)!;
    const ms = performance.now() - t0;
    // A figure, not a check (times belong in benchmarks: this machine is shared).
    t.comment(`${bin.goVersion}: ${(bin.elf.size / 1e6).toFixed(1)} MB binary, layout from DWARF in ${ms.toFixed(0)} ms`);
    const versions = new Set(DwarfData.fromElf(bin.elf)!.units.map((u) => u.version));
    t.same([...versions], [Number(minor.split('.')[1]) >= 25 ? 5 : 4], `DWARF version ${[...versions]}`);

    t.same(r.fallbacks, [], 'nothing taken from the table');
    t.equal(r.layout.toolchain, bin.goVersion, 'toolchain from DW_AT_producer');
    t.equal(r.layout.goVersion, minor, 'goVersion');
    for (const k of FROM_DWARF) t.same(r.layout[k], entry[k], `${k} equals the table's`);
    for (const k of FROM_BASE) t.equal(r.layout[k], entry[k], `${k} is the table's`);

    // As for a Go newer than the table: with another version's entry as base, what DWARF gives is unchanged.
    // (Only a parameter's source spelling comes from base when it matches; else it is spelled from DWARF, which
    // cannot tell byte from uint8.)
    const other = Object.values(table).find((e) => e.goVersion !== minor)!;
    const cross = layoutFromDwarf(bin.elf, other)!;
    const spelling = (l: RuntimeLayout) => JSON.parse(JSON.stringify(l.functions).replaceAll('"type":"byte"', '"type":"uint8"'));
    t.same(spelling(cross.layout), spelling(entry), `with Go ${other.goVersion}'s entry as base: same functions`);
    for (const k of FROM_DWARF) if (k !== 'functions') t.same(cross.layout[k], entry[k], `with Go ${other.goVersion}'s entry as base: same ${k}`);
    t.equal(cross.layout.systemGoroutines, other.systemGoroutines, 'the rules come from base');

    const lookup = layoutForBinary(bin);
    t.equal(lookup.source, 'dwarf', 'layoutForBinary: from DWARF');
    t.equal(lookup.exact, true, 'exact');
    t.equal(lookup.note, undefined, 'no note: the table has this minor version');
    t.same(lookup.layout, r.layout, 'the layout read above');
    t.equal(layoutForBinary(bin), lookup, 'cached for the same binary');
    t.equal(layoutForBinary(openGoBinary(b.path!)), lookup, 'and for the same file opened again');
    const elsewhere = ElfFile.fromBuffer('/proc/1/exe', readFileSync(b.path!));
    t.equal(layoutForBinary({ goVersion: bin.goVersion, elf: elsewhere }), lookup, 'and for it at another path (another pid\'s exe)');
  });
}

t.test('PIE and externally linked builds give the table entry too', async (t) => {
  for (const version of ['local', '1.19']) {
    for (const kind of ['pie', 'cgo'] as const) {
      const b = build(version, kind);
      if (!b.path) {
        t.test(`${version} ${kind}`, { skip: b.why! }, async () => {});
        continue;
      }
      const bin = openGoBinary(b.path);
      const entry = table[minorOf(bin.goVersion)];
      const r = layoutFromDwarf(bin.elf, entry)!;
      t.same(r.fallbacks, [], `${version} ${kind}: nothing taken from the table`);
      for (const k of FROM_DWARF) t.same(r.layout[k], entry[k], `${version} ${kind}: ${k} equals the table's`);
    }
  }
});

t.test('stripped binaries use the table', async (t) => {
  for (const version of ['local', '1.19', '1.22.12', newestGo]) {
    const b = build(version, 'stripped');
    if (!b.path) {
      t.test(version, { skip: b.why! }, async () => {});
      continue;
    }
    const bin = openGoBinary(b.path);
    t.equal(bin.elf.section('.debug_info'), undefined, `${version}: no .debug_info`);
    t.equal(layoutFromDwarf(bin.elf, layoutFor(bin.goVersion).layout), undefined, `${version}: layoutFromDwarf gives nothing`);
    const r = layoutForBinary(bin);
    t.equal(r.source, 'table', `${version}: source table`);
    t.equal(r.exact, true, `${version}: exact (the table has Go ${minorOf(bin.goVersion)})`);
    t.equal(r.layout, layoutFor(bin.goVersion).layout, `${version}: the table entry`);
  }
});

// Section header fields (Elf64_Shdr) and the ELF header fields that locate them.
const SH = { name: 0, flags: 8, offset: 24, size: 32 };
function sectionHeaders(buf: Buffer): { index: number; at: number; name: string }[] {
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const entsize = buf.readUInt16LE(0x3a);
  const count = buf.readUInt16LE(0x3c);
  const strAt = shoff + buf.readUInt16LE(0x3e) * entsize;
  const strOff = Number(buf.readBigUInt64LE(strAt + SH.offset));
  const out = [];
  for (let i = 0; i < count; i++) {
    const at = shoff + i * entsize;
    const n = strOff + buf.readUInt32LE(at + SH.name);
    out.push({ index: i, at, name: buf.toString('latin1', n, buf.indexOf(0, n)) });
  }
  return out;
}

/** A copy of the binary whose compressed .debug_* sections are stored uncompressed, appended to the file. */
function uncompressedCopy(path: string): Buffer {
  let buf = Buffer.from(readFileSync(path));
  for (const s of sectionHeaders(buf)) {
    if (!s.name.startsWith('.debug_') || !(Number(buf.readBigUInt64LE(s.at + SH.flags)) & SHF_COMPRESSED)) continue;
    const off = Number(buf.readBigUInt64LE(s.at + SH.offset));
    const size = Number(buf.readBigUInt64LE(s.at + SH.size));
    const data = inflateSync(buf.subarray(off + 24, off + size));
    const at = buf.length;
    buf = Buffer.concat([buf, data]);
    buf.writeBigUInt64LE(BigInt(at), s.at + SH.offset);
    buf.writeBigUInt64LE(BigInt(data.length), s.at + SH.size);
    buf.writeBigUInt64LE(buf.readBigUInt64LE(s.at + SH.flags) & ~BigInt(SHF_COMPRESSED), s.at + SH.flags);
  }
  return buf;
}

/** A copy as old toolchains wrote it: .zdebug_* sections holding "ZLIB", a big-endian size and the zlib stream. */
function zdebugCopy(path: string): Buffer {
  let buf = Buffer.from(readFileSync(path));
  const headers = sectionHeaders(buf);
  // New names go in a new section name table appended to the file (the old one has no room).
  const shstr = headers[buf.readUInt16LE(0x3e)];
  const oldStrOff = Number(buf.readBigUInt64LE(shstr.at + SH.offset));
  const oldStrSize = Number(buf.readBigUInt64LE(shstr.at + SH.size));
  let names = Buffer.from(buf.subarray(oldStrOff, oldStrOff + oldStrSize));
  const renames: Array<{ at: number; nameOff: number }> = [];
  for (const s of headers) {
    if (!s.name.startsWith('.debug_') || !(Number(buf.readBigUInt64LE(s.at + SH.flags)) & SHF_COMPRESSED)) continue;
    const off = Number(buf.readBigUInt64LE(s.at + SH.offset));
    const size = Number(buf.readBigUInt64LE(s.at + SH.size));
    const fullSize = buf.readBigUInt64LE(off + 8);
    const stream = Buffer.from(buf.subarray(off + 24, off + size));
    // In place: 12 header bytes instead of the Elf64_Chdr's 24.
    buf.write('ZLIB', off, 'latin1');
    buf.writeBigUInt64BE(fullSize, off + 4);
    stream.copy(buf, off + 12);
    buf.writeBigUInt64LE(BigInt(size - 12), s.at + SH.size);
    buf.writeBigUInt64LE(buf.readBigUInt64LE(s.at + SH.flags) & ~BigInt(SHF_COMPRESSED), s.at + SH.flags);
    renames.push({ at: s.at, nameOff: names.length });
    names = Buffer.concat([names, Buffer.from(`.z${s.name.slice(1)}\0`, 'latin1')]);
  }
  const at = buf.length;
  buf = Buffer.concat([buf, names]);
  buf.writeBigUInt64LE(BigInt(at), shstr.at + SH.offset);
  buf.writeBigUInt64LE(BigInt(names.length), shstr.at + SH.size);
  for (const r of renames) buf.writeUInt32LE(r.nameOff, r.at + SH.name);
  return buf;
}

t.test('compressed, uncompressed and .zdebug DWARF read the same', async (t) => {
  for (const version of ['1.19', '1.22.12', 'local']) {
    const path = built.get(version);
    if (!path) {
      t.test(version, { skip: `no Go ${version} build (see its skipped test above)` }, async () => {});
      continue;
    }
    const bin = openGoBinary(path);
    const entry = table[minorOf(bin.goVersion)];
    const want = layoutFromDwarf(bin.elf, entry)!.layout;
    const plain = ElfFile.fromBuffer(`${path} (uncompressed)`, uncompressedCopy(path));
    t.notOk(plain.section('.debug_info')!.flags & SHF_COMPRESSED, `${version}: copy is uncompressed`);
    t.same(debugSection(plain, 'info'), debugSection(bin.elf, 'info'), `${version}: same .debug_info bytes`);
    t.same(layoutFromDwarf(plain, entry)?.layout, want, `${version}: uncompressed: same layout`);
    const z = ElfFile.fromBuffer(`${path} (zdebug)`, zdebugCopy(path));
    t.equal(z.section('.debug_info'), undefined, `${version}: copy has no .debug_info`);
    t.ok(z.section('.zdebug_info'), `${version}: but .zdebug_info`);
    t.same(debugSection(z, 'abbrev'), debugSection(bin.elf, 'abbrev'), `${version}: same .debug_abbrev bytes`);
    t.same(layoutFromDwarf(z, entry)?.layout, want, `${version}: .zdebug: same layout`);
  }
});

t.test('a piece missing from DWARF comes from the table, and unreadable DWARF means the table', async (t) => {
  const path = built.get('local');
  if (!path) {
    t.test('local build', { skip: 'no local Go build (see its skipped test above)' }, async () => {});
    return;
  }
  const bin = openGoBinary(path);
  const entry = table[minorOf(bin.goVersion)];
  // Rename runtime.mstats (the struct and its typedef) and runtime.gStatusStrings in the uncompressed DWARF.
  const buf = uncompressedCopy(path);
  const elf = ElfFile.fromBuffer(`${path} (renamed)`, buf);
  const info = elf.section('.debug_info')!;
  for (const [from, to] of [['runtime.mstats\0', 'runtime.mstatz\0'], ['runtime.gStatusStrings\0', 'runtime.gStatusStringz\0']]) {
    let n = 0;
    for (let i = buf.indexOf(from, info.offset, 'latin1'); i >= 0 && i < info.offset + info.size; i = buf.indexOf(from, i + 1, 'latin1')) {
      buf.write(to, i, 'latin1');
      n++;
    }
    t.ok(n > 0, `renamed ${n} ${from.slice(0, -1)}`);
  }
  const r = layoutFromDwarf(elf, entry)!;
  t.same(r.fallbacks, ['runtime.mstats (no DWARF struct)', 'runtime.gStatusStrings (no DWARF variable)'], 'fallbacks listed');
  t.equal(r.layout.mstats, entry.mstats, 'mstats from the table');
  t.equal(r.layout.statusStrings, entry.statusStrings, 'statusStrings from the table');
  t.same(r.layout.g, entry.g, 'the rest from DWARF');
  const lookup = layoutForBinary({ goVersion: bin.goVersion, elf });
  t.equal(lookup.source, 'dwarf');
  t.equal(lookup.exact, true, 'exact: the table entry is the right version');
  t.match(lookup.note, /from Go 1\.\d+'s table entry: runtime\.mstats \(no DWARF struct\), runtime\.gStatusStrings/);

  // An unknown compression type in .debug_info's header: unreadable, so the table. (One byte longer: the cache
  // knows a file by size and Go build ID, and this copy keeps the ID.)
  const bad = Buffer.concat([readFileSync(path), Buffer.alloc(1)]);
  bad.writeUInt32LE(7, bin.elf.section('.debug_info')!.offset);
  const u = layoutForBinary({ goVersion: bin.goVersion, elf: ElfFile.fromBuffer(`${path} (bad)`, bad) });
  t.equal(u.source, 'table');
  t.equal(u.layout, layoutFor(bin.goVersion).layout);
  t.match(u.note, /DWARF is unreadable \(\.debug_info: unknown compression type 7\)/);
});

t.test('a Go minor newer than the table: DWARF is exact, the note says where the rules come from', async (t) => {
  const path = built.get('local');
  if (!path) {
    t.test('local build', { skip: 'no local Go build (see its skipped test above)' }, async () => {});
    return;
  }
  // The same binary, claiming a Go version the table does not have.
  const elf = ElfFile.fromBuffer(`${path} (future)`, readFileSync(path));
  const newest = layoutFor('go1.99.0');
  t.equal(newest.exact, false, 'the table alone would guess');
  const r = layoutForBinary({ goVersion: 'go1.99.0', elf });
  t.equal(r.source, 'dwarf');
  t.equal(r.exact, true);
  t.match(r.note, /^offsets, parameters, wait reasons and statuses from the binary's DWARF; the system-goroutine and dump rules from Go 1\.\d+'s table entry$/);
  t.equal(r.layout.systemGoroutines, newest.layout.systemGoroutines);
});

// ---------------------------------------------------------------------------------------------------
// DWARF 5 forms Go does not emit (strx, line_strp, strp, implicit_const, data16, addrx, rnglistx, loclistx),
// in a hand-made unit wrapped in a minimal ELF file.

const uleb = (n: number): number[] => {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
};
const u32 = (n: number): number[] => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, n >>> 24];
const u64le = (n: number): number[] => [...u32(n), 0, 0, 0, 0];
const cstr = (s: string): number[] => [...Buffer.from(s, 'latin1'), 0];

function minimalElf(sections: Record<string, Buffer>): Buffer {
  const names = ['', '.shstrtab', ...Object.keys(sections)];
  const shstrtab = Buffer.from(names.map((n) => `${n}\0`).join(''), 'latin1');
  const bodies = [Buffer.alloc(0), shstrtab, ...Object.values(sections)];
  const header = Buffer.alloc(64);
  header.writeUInt32BE(0x7f454c46, 0);
  header[4] = 2; // ELFCLASS64
  header[5] = 1; // little-endian
  header[6] = 1;
  header.writeUInt16LE(1, 16); // ET_REL
  header.writeUInt16LE(62, 18); // x86-64
  let off = 64;
  const offsets = bodies.map((b) => ((off += b.length), off - b.length));
  const shoff = off;
  header.writeBigUInt64LE(BigInt(shoff), 0x28);
  header.writeUInt16LE(64, 0x3a);
  header.writeUInt16LE(bodies.length, 0x3c);
  header.writeUInt16LE(1, 0x3e);
  const shdrs = Buffer.alloc(64 * bodies.length);
  let nameOff = 0;
  bodies.forEach((b, i) => {
    shdrs.writeUInt32LE(nameOff, i * 64);
    nameOff += names[i].length + 1;
    shdrs.writeUInt32LE(i === 1 ? 3 : 1, i * 64 + 4); // SHT_STRTAB / SHT_PROGBITS
    shdrs.writeBigUInt64LE(BigInt(offsets[i]), i * 64 + SH.offset);
    shdrs.writeBigUInt64LE(BigInt(b.length), i * 64 + SH.size);
  });
  return Buffer.concat([header, ...bodies, shdrs]);
}

t.test('DWARF 5 indexed and implicit forms', async (t) => {
  // Abbreviations: 1 compile_unit, 2 structure_type, 3 member, 4 base_type, 5 variable.
  const abbrev = Buffer.from([
    1, 0x11, 1, 0x03, 0x25, 0x72, 0x17, 0x73, 0x17, 0x55, 0x23, 0, 0, // name strx1 (before its base), bases, ranges rnglistx
    2, 0x13, 1, 0x03, 0x1f, 0x0b, 0x21, ...[0x18], 0x2000, 0x1e, 0, 0, // name line_strp, byte_size implicit_const 24, data16
    3, 0x0d, 0, 0x03, 0x0e, 0x38, 0x0f, 0x49, 0x13, 0x02, 0x22, 0, 0, // name strp, location udata, type ref4, loclistx
    4, 0x24, 0, 0x03, 0x1a, 0x3e, 0x0b, 0x0b, 0x0b, 0, 0, // name strx, encoding, byte_size
    5, 0x34, 0, 0x03, 0x08, 0x02, 0x18, 0x49, 0x13, 0, 0, // name string, location exprloc, type
    0,
  ].flatMap((b) => (b === 0x2000 ? uleb(0x2000) : [b])));
  const str = Buffer.from([...cstr('x'), ...cstr('runtime'), ...cstr('field'), ...cstr('uint64')]); // offsets 0, 2, 10, 16
  const lineStr = Buffer.from([...cstr('--'), ...cstr('runtime.t')]); // "runtime.t" at 3
  // .debug_str_offsets: an 8-byte header, then the table: [0] -> "runtime", [1] -> "uint64".
  const strOffsets = Buffer.from([...u32(12), 5, 0, 0, 0, ...u32(2), ...u32(16)]);
  const addr = Buffer.from([...u32(12), 5, 0, 8, 0, ...u64le(0x401000)]);
  const dies: number[] = [];
  const cuHeader = 12; // unit_length, version, unit_type, address_size, debug_abbrev_offset
  dies.push(1, 0, ...u32(8), ...u32(8), ...uleb(3)); // CU: strx1 0, str_offsets_base 8, addr_base 8, rnglistx 3
  const structAt = cuHeader + dies.length;
  dies.push(2, ...u32(3), ...Array(16).fill(0xee)); // struct runtime.t, 24 bytes, data16
  const memberAt = cuHeader + dies.length;
  dies.push(3, ...u32(10), ...uleb(8), 0, 0, 0, 0, ...uleb(300)); // member field @8, type patched below, loclistx
  dies.push(0); // end of struct's children
  const baseAt = cuHeader + dies.length;
  dies.push(4, ...uleb(1), 7, 8); // base type uint64
  dies.push(5, ...cstr('runtime.v'), 2, 0xa1, 0, ...u32(baseAt)); // variable at DW_OP_addrx 0
  dies.push(0); // end of the CU's children
  const refAt = memberAt - cuHeader + 1 + 4 + uleb(8).length;
  dies.splice(refAt, 4, ...u32(baseAt));
  const info = Buffer.from([...u32(dies.length + 8), 5, 0, 1, 8, ...u32(0), ...dies]);

  const elf = ElfFile.fromBuffer('synthetic', minimalElf({
    '.debug_info': info, '.debug_abbrev': abbrev, '.debug_str': str, '.debug_line_str': lineStr,
    '.debug_str_offsets': strOffsets, '.debug_addr': addr,
  }));
  const d = DwarfData.fromElf(elf)!;
  t.equal(d.units.length, 1);
  t.equal(d.units[0].version, 5);
  t.equal(d.units[0].name, 'runtime', 'strx1 read before str_offsets_base, resolved after');
  const idx = new DwarfIndex(d.units);
  const st = idx.struct('runtime.t')!;
  t.ok(st, 'struct named through line_strp');
  t.equal(st.offset, structAt);
  t.equal(typeSize(st), 24, 'byte_size from implicit_const');
  const members = structMembers(st);
  t.same(members.map((m) => [m.name, m.offset, typeName(m.type), typeSize(m.type)]), [['field', 8, 'uint64', 8]], 'member after data16; type named through strx');
  t.equal(members[0].type?.offset, baseAt);
  const v = idx.variable('runtime.v')!;
  t.equal(staticAddress(v), 0x401000, 'DW_OP_addrx through .debug_addr');
  t.equal(v.attr(DW_AT.type), baseAt);
});

t.test('section compression helpers', async (t) => {
  // debugSection on an SHF_COMPRESSED section with a wrong size in its header.
  const data = Buffer.from('hello dwarf');
  const z = deflateSync(data);
  const chdr = Buffer.alloc(24);
  chdr.writeUInt32LE(1, 0);
  chdr.writeBigUInt64LE(BigInt(data.length + 1), 8);
  const buf = minimalElf({ '.debug_str': Buffer.concat([chdr, z]) });
  const sh = sectionHeaders(buf).find((s) => s.name === '.debug_str')!;
  buf.writeBigUInt64LE(BigInt(SHF_COMPRESSED), sh.at + SH.flags);
  t.throws(() => debugSection(ElfFile.fromBuffer('x', buf), 'str'), /decompressed to 11 bytes, header says 12/);
  chdr.writeBigUInt64LE(BigInt(data.length), 8);
  const ok = minimalElf({ '.debug_str': Buffer.concat([chdr, z]) });
  ok.writeBigUInt64LE(BigInt(SHF_COMPRESSED), sh.at + SH.flags);
  t.equal(debugSection(ElfFile.fromBuffer('y', ok), 'str')?.toString(), 'hello dwarf');
  t.equal(debugSection(ElfFile.fromBuffer('y', ok), 'info'), undefined, 'absent section');
});
