// What the stack reader takes from a binary without a second source, checked against one where there is:
// moduledata.gofunc found without symbols (stripped binaries) equals the go:func.* symbol; g.syscallsp and
// g.syscallpc, derived from the end of g.sched, are where the binary's DWARF says; batched reads
// (process_vm_readv) return what /proc/PID/mem does, also for ranges that are not mapped.
import t from 'tap';
import { existsSync } from 'node:fs';
import { openGoBinary } from '../../agent/src/gobinary/index.ts';
import { FrameResolver } from '../../agent/src/gobinary/frames.ts';
import { findModuledata, moduledataGofuncOffset } from '../../agent/src/gobinary/moduledata.ts';
import { DwarfData, DwarfIndex, structMembers } from '../../agent/src/gobinary/dwarf.ts';
import { layoutForBinary, parseGoVersion } from '../../agent/src/gobinary/layouts.ts';
import { gFields } from '../../agent/src/inventory/allgs.ts';
import { ProcessMemory } from '../../agent/src/proc/process.ts';
import { buildStacksFixture, StacksProcess } from '../lib/stacks-fixture.ts';

const versions = ['1.19', '1.22.12', 'local', '1.27.4'].filter((v) => v !== '1.19' || existsSync('/usr/lib/go-1.19/bin/go'));

for (const version of versions) {
  let path = '';
  let skip: string | undefined;
  try {
    path = buildStacksFixture(version, 'default');
  } catch (e) {
    skip = `cannot build with Go ${version}: ${(e as Error).message.split('\n')[0]}`;
  }
  t.test(`Go ${version}: gofunc and syscallsp`, { skip: skip ?? false }, async (t) => {
    const bin = openGoBinary(path);
    const minor = parseGoVersion(bin.goVersion)!.minor;
    const sym = bin.elf.symbol('go:func.*') ?? bin.elf.symbol('go.func.*');
    t.ok(sym, 'the binary names gofunc');
    const md = findModuledata(bin.elf, bin.pclntab.addr, bin.pclntab.addr + bin.pclntab.funcnameOffset);
    t.ok(md, 'moduledata found without symbols');
    t.equal(md?.word(moduledataGofuncOffset(minor)), sym?.value, 'moduledata.gofunc is the go:func.* symbol');
    t.equal(new FrameResolver(bin.elf, bin.pclntab, minor).gofunc, sym?.value);

    const dwarf = DwarfData.fromElf(bin.elf)!;
    const g = new DwarfIndex(dwarf.units.filter((u) => u.name === 'runtime')).struct('runtime.g')!;
    const members = new Map(structMembers(g).map((m) => [m.name, m.offset]));
    const f = gFields(layoutForBinary(bin).layout);
    t.equal(f.syscallSp, members.get('syscallsp'), 'g.syscallsp follows g.sched');
    t.equal(f.syscallPc, members.get('syscallpc'), 'g.syscallpc follows it');
  });
}

t.test('batched reads equal /proc/PID/mem reads', async (t) => {
  const { proc } = await StacksProcess.start(buildStacksFixture('local', 'default'));
  t.teardown(() => proc.kill());
  const mem = new ProcessMemory(proc.pid);
  t.teardown(() => mem.close());
  const maps = (await import('node:fs')).readFileSync(`/proc/${proc.pid}/maps`, 'utf8').split('\n').filter((l) => / r[w-]/.test(l));
  const ranges = maps.slice(0, 4).map((l) => parseInt(l.split('-')[0], 16));
  const addrs = Float64Array.from([...ranges, 0x10, ranges[0] + 100]);
  const lens = Uint32Array.from([64, 4096, 100, 8, 32, 5000]);
  const out = Buffer.alloc(lens.reduce((a, b) => a + b, 0));
  const got = mem.readMany(addrs, lens, out);
  let pos = 0;
  for (let i = 0; i < addrs.length; i++) {
    const one = mem.read(addrs[i], lens[i]);
    t.equal(got[i], one.length, `range ${i}: same length`);
    t.same(out.subarray(pos, pos + got[i]), one, `range ${i}: same bytes`);
    pos += lens[i];
  }
  t.equal(got[4], 0, 'an unmapped range reads nothing');
});
