// Probe sites against `go tool objdump`: every address must be an instruction boundary, the stack-check jump and
// the RETs must be where the disassembler says, and the file offsets must hold the very bytes it printed.
import t from 'tap';
import { ElfFile } from '../../agent/src/gobinary/elf.ts';
import { Pclntab } from '../../agent/src/gobinary/pclntab.ts';
import { DECODER_IDLE_MS, decoderLoaded, findProbeSites, ProbeSites } from '../../agent/src/gobinary/x86.ts';
import { buildHello, gnuObjdump, helloBuilds, objdump, ObjdumpInsn, objdumpStackCheck } from './fixtures/tools.ts';
import type { GoFunc } from '../../agent/src/gobinary/pclntab.ts';

const PROBED = ['runtime.newproc1', 'runtime.gopark', 'runtime.goready', 'runtime.goexit1', 'runtime.ready'];
const sites = (elf: ElfFile, f: GoFunc): ProbeSites => findProbeSites(elf.read(f.entry, f.end - f.entry), f.entry);

for (const { version, kind, bin } of helloBuilds(t)) {
  if (kind === 'stripped') {
    // objdump needs symbols; -s -w does not touch code, so the stripped build must give the same sites.
    t.test(`Go ${version} stripped gives the unstripped build's sites`, async (t) => {
      const a = ElfFile.open(bin);
      const b = ElfFile.open(buildHello(version, 'default').path!);
      const ta = Pclntab.fromElf(a);
      const tb = Pclntab.fromElf(b);
      let diffs = 0;
      const fb = tb.funcs();
      ta.funcs().forEach((f, i) => {
        const g = fb[i];
        if (f.name !== g.name || f.entry !== g.entry) return diffs++;
        const [sa, sb] = [sites(a, f), sites(b, g)];
        if (JSON.stringify([sa.boundaries, sa.rets, sa.stackCheck]) !== JSON.stringify([sb.boundaries, sb.rets, sb.stackCheck])) diffs++;
      });
      t.equal(diffs, 0, `all ${ta.funcs().length} functions decode the same`);
    });
    continue;
  }
  t.test(`Go ${version} ${kind}`, async (t) => {
    const elf = ElfFile.open(bin);
    const tab = Pclntab.fromElf(elf);
    // The newest objdump reads all versions (Go 1.19's own prints no lines for PIE builds).
    const dis = objdump('local', bin, '.');
    const byEntry = new Map<number, { name: string; insns: ObjdumpInsn[] }>();
    for (const [name, insns] of dis) if (insns.length) byEntry.set(insns[0].addr, { name, insns });

    let funcs = 0;
    let insnCount = 0;
    const bad: string[] = [];
    const checkDetection: string[] = [];
    // Go's objdump (x/arch x86asm) decodes VEX/EVEX (AVX) code only in part (it prints "?" or wrong lengths):
    // for those few assembly functions, GNU objdump is the oracle instead.
    const gnu = gnuObjdump(bin);
    const viaGnu: string[] = [];
    for (const f of tab.funcs()) {
      let d = byEntry.get(f.entry);
      if (!d) continue;
      funcs++;
      // objdump sizes functions by symbols, so one listing can run on into a following function.
      d = { name: d.name, insns: d.insns.filter((i) => i.addr < f.end) };
      if (d.insns.some((i) => i.text.startsWith('?') || /^(c4|c5|62)/.test(i.bytes))) {
        viaGnu.push(f.name);
        const insns = gnu.filter((i) => i.addr >= f.entry && i.addr < f.end && i.text !== 'int3');
        d = { name: f.name, insns };
      }
      const s = sites(elf, f);
      const last = d.insns[d.insns.length - 1];
      const lastEnd = last.addr + last.bytes.length / 2;
      const ours = s.boundaries.filter((a) => a < lastEnd);
      const theirs = d.insns.map((i) => i.addr);
      insnCount += theirs.length;
      if (ours.join() !== theirs.join()) bad.push(`${f.name}: boundaries differ`);
      // Past objdump's last instruction there may only be INT3 padding up to the next function.
      if (elf.read(lastEnd, f.end - lastEnd).some((b) => b !== 0xcc)) bad.push(`${f.name}: non-padding after the end`);
      const at = new Set(theirs);
      for (const a of [...s.rets, ...(s.stackCheck ? [s.stackCheck.jumpAddr] : []), ...s.ripRefs.map((r) => r.addr)]) {
        if (!at.has(a)) bad.push(`${f.name}: 0x${a.toString(16)} is not an instruction boundary`);
      }
      const rets = d.insns.filter((i) => i.text === 'RET' || i.text === 'ret').map((i) => i.addr);
      if (s.rets.join() !== rets.join()) bad.push(`${f.name}: RETs ${s.rets} vs ${rets}`);
      const sc = objdumpStackCheck(d.insns);
      if (sc?.jumpAddr !== s.stackCheck?.jumpAddr) checkDetection.push(`${f.name}: ${s.stackCheck?.jumpAddr} vs ${sc?.jumpAddr}`);
      // The file offset holds the bytes objdump printed (PT_LOAD translation, PIE and cgo included).
      for (const i of d.insns) {
        const off = elf.vaddrToFileOffset(i.addr)!;
        if (elf.readAt(off, i.bytes.length / 2).toString('hex') !== i.bytes) {
          bad.push(`${f.name}: bytes at file offset of 0x${i.addr.toString(16)}`);
          break;
        }
      }
    }
    t.ok(funcs > 1000, `${funcs} functions compared`);
    t.ok(viaGnu.length < 50, `${viaGnu.length} functions checked with GNU objdump instead: ${viaGnu.join(' ')}`);
    t.same(bad.slice(0, 10), [], `${insnCount} instruction boundaries, RETs, and file bytes equal objdump's`);
    t.same(checkDetection.slice(0, 10), [], 'stack check found exactly where objdump shows one');

    for (const name of PROBED) {
      const f = tab.funcByName(name);
      if (!f) {
        t.notOk([...dis.keys()].includes(name), `${name} is absent from the pclntab and from objdump too`);
        t.comment(`${name} is inlined everywhere in Go ${version}: nothing to probe`);
        continue;
      }
      const s = sites(elf, f);
      const insns = dis.get(name)!;
      const sc = objdumpStackCheck(insns);
      t.ok(sc && s.stackCheck, `${name} has a stack check`);
      t.equal(s.stackCheck?.jumpAddr, sc?.jumpAddr, `${name}: stack-check jump at 0x${sc?.jumpAddr.toString(16)}`);
      t.equal(s.stackCheck?.compared, 'rsp', `${name}: small frame compares SP`);
      t.match(sc?.cmp, /\bSP\b/, `${name}: objdump agrees SP was compared`);
      const rets = insns.filter((i) => i.text === 'RET').map((i) => i.addr);
      t.ok(rets.length > 0, `${name} has RETs`);
      t.same(s.rets, rets, `${name}: RETs at ${rets.map((a) => a.toString(16))}`);
    }

    const big = sites(elf, tab.funcByName('main.bigFrame')!);
    const bigSc = objdumpStackCheck(dis.get('main.bigFrame')!);
    t.equal(big.stackCheck?.compared, 'r12', 'large frame compares R12 (SP minus the frame)');
    t.match(bigSc?.cmp, /R12/, 'objdump agrees R12 was compared');
    t.equal(big.stackCheck?.jumpAddr, bigSc?.jumpAddr, 'large-frame jump address');

    const nosplit = sites(elf, tab.funcByName('runtime.morestack')!);
    t.equal(nosplit.stackCheck, undefined, 'runtime.morestack (NOSPLIT) has no stack check');

    const newproc = tab.funcByName('runtime.newproc')!;
    const main = dis.get('main.main')!;
    const want = main.flatMap((ins, i) => (ins.text === 'CALL runtime.newproc(SB)' ? [{ addr: ins.addr, next: main[i + 1].addr }] : []));
    t.ok(want.length >= 2, `main.main calls runtime.newproc ${want.length} times`);
    t.same(sites(elf, tab.funcByName('main.main')!).callsTo(newproc.entry), want, 'callsTo(runtime.newproc) and the next instructions');
  });
}

// iced-x86 holds ~14 MiB loaded: an agent that decodes only while it analyses a new binary lets it go when idle.
const hello = buildHello('local', 'default');
if (!hello.path) t.test('the decoder is let go once idle', { skip: hello.why! }, async () => {});
else {
  t.test('the decoder is let go once idle, and loaded again by the next decode', async (t) => {
    const elf = ElfFile.open(hello.path!);
    const f = Pclntab.fromElf(elf).funcByName('runtime.gopark')!;
    const plain = (s: ProbeSites) => ({ ...s, callsTo: undefined });
    const first = plain(sites(elf, f));
    t.ok(first.boundaries.length > 10, 'a real decode');
    t.ok(decoderLoaded(), 'loaded by a decode');
    // Dropped between one and two idle periods after the last decode; timers only ever fire late on a busy machine.
    const until = Date.now() + 20 * DECODER_IDLE_MS;
    while (decoderLoaded() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    t.notOk(decoderLoaded(), `let go within ${20 * DECODER_IDLE_MS} ms of the last decode`);
    t.same(plain(sites(elf, f)), first, 'decoded again, the same sites');
    t.ok(decoderLoaded(), 'loaded again');
    elf.close();
  });
}
