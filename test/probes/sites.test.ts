// Where the goroutine and runtime probes go, for each Go version and build kind, against `go tool objdump`:
// every probe is placed (none skipped), on the instruction the plan names (the PUSHQ BP after the stack check,
// the JBE of the check, the CALL of runqput in newproc's closure, each RET, the entry), at a file offset that
// holds the very bytes objdump printed. Stripped builds (no symbols for objdump) must give the default build's
// plan: -s -w does not touch code.
import t from 'tap';
import { openGoBinary, type GoBinary } from '../../agent/src/gobinary/index.ts';
import { layoutForBinary } from '../../agent/src/gobinary/layouts.ts';
import { planGoroutineProbes } from '../../agent/src/probes/goroutine-probes.ts';
import { planRuntimeProbes } from '../../agent/src/runtime/runtime-probes.ts';
import { buildHello, helloBuilds, objdump, type ObjdumpInsn, objdumpStackCheck } from '../gobinary/fixtures/tools.ts';

const FUNCS = ['gopark', 'ready', 'goexit1', 'newproc1', 'newproc.func1', 'stopTheWorldWithSema', 'startTheWorldWithSema',
  'gcMarkTermination', 'throw', 'fatal', 'fatalpanic', 'execute', 'goschedImpl', 'injectglist', 'preemptPark', 'exitsyscall0',
  'exitsyscallNoP', 'entersyscall', 'entersyscallblock', 'exitsyscall'];

/** The scheduler's sites that are neither past nor on a stack check: the nosplit syscall hooks and preemptPark
 * (their entry), and the new goroutine's stamp on the creation probe's CALL. */
const schedOwnSite = (s: { probe: string; kind: string }) => (s.probe === 'run' || s.probe === 'syscall') && (s.kind === 'entry' || s.kind === 'call' || s.kind === 'ret');

/** Both site choices (GOROSCOPE_PROBE_SITE): past the stack check where the kernel emulates PUSH, else its jump. */
function plans(bin: GoBinary) {
  const out: Record<string, unknown> = {};
  for (const site of ['push', 'jump']) {
    process.env.GOROSCOPE_PROBE_SITE = site;
    out[site] = planGoroutineProbes(bin, { creatorAtEntry: true });
  }
  delete process.env.GOROSCOPE_PROBE_SITE;
  out.runtime = planRuntimeProbes(bin, layoutForBinary(bin).layout);
  return out as { push: ReturnType<typeof planGoroutineProbes>; jump: ReturnType<typeof planGoroutineProbes>; runtime: ReturnType<typeof planRuntimeProbes> };
}

/** Index of the stack check's jump in objdump's listing. */
const stackCheckJump = (insns: ObjdumpInsn[]): number | undefined => objdumpStackCheck(insns)?.index;

for (const { version, kind, bin: path } of helloBuilds(t)) {
  if (kind === 'stripped') {
    t.test(`Go ${version} stripped: the default build's probe sites`, async (t) => {
      const dflt = buildHello(version, 'default');
      if (!dflt.path) return t.fail(dflt.why!);
      const bin = openGoBinary(path);
      t.equal(layoutForBinary(bin).source, 'table', 'layout from the table (no DWARF)');
      t.equal(layoutForBinary(bin).exact, true, `the table has ${bin.goVersion}`);
      t.same(plans(bin), plans(openGoBinary(dflt.path)), 'same sites, same offsets, same cookies');
    });
    continue;
  }
  t.test(`Go ${version} ${kind}`, async (t) => {
    const bin = openGoBinary(path);
    const dis = objdump('local', path, `^runtime\\.(${FUNCS.map((f) => f.replace('.', '\\.')).join('|')})$`);
    const insnsOf = (symbol: string): ObjdumpInsn[] => {
      const insns = dis.get(symbol);
      if (!insns?.length) throw new Error(`objdump shows no ${symbol}`);
      const f = bin.func(symbol)!;
      return insns.filter((i) => i.addr < f.end);
    };
    /** The instruction objdump shows at addr in symbol, with a check that the file holds its bytes there. */
    const at = (symbol: string, addr: number, fileOffset: number): ObjdumpInsn | undefined => {
      const i = insnsOf(symbol).find((x) => x.addr === addr);
      if (i) t.equal(bin.elf.readAt(fileOffset, i.bytes.length / 2).toString('hex'), i.bytes, `${symbol}+0x${(addr - bin.func(symbol)!.entry).toString(16)}: file bytes`);
      return i;
    };
    const { push, jump, runtime } = plans(bin);

    for (const s of push.filter((x) => x.probe !== 'create' && !schedOwnSite(x))) {
      const insns = insnsOf(s.symbol);
      const j = stackCheckJump(insns);
      t.ok(j !== undefined, `${s.symbol} has a stack check`);
      if (insns[j! + 1]?.text === 'PUSHQ BP') {
        t.equal(s.kind, 'after-stack-check', `${s.probe}: after the stack check`);
        t.equal(s.vaddr, insns[j! + 1].addr, `${s.probe}: on the PUSHQ BP after the JBE`);
        t.same(s.cookie, { stackCheck: false }, `${s.probe}: no check to evaluate`);
        at(s.symbol, s.vaddr, s.fileOffset);
      } else {
        // Go 1.19/1.20 frames open with SUBQ (single-stepped): the jump is the one-trap site there.
        t.equal(s.kind, 'stack-check-jump', `${s.probe}: the body opens with ${insns[j! + 1]?.text}, so on the JBE`);
        t.same(s, jump.find((x) => x.program === s.program && x.symbol === s.symbol), `${s.program}: as the jump plan`);
      }
    }
    for (const s of jump.filter((x) => x.probe !== 'create' && !schedOwnSite(x))) {
      const insns = insnsOf(s.symbol);
      const j = stackCheckJump(insns)!;
      t.equal(s.kind, 'stack-check-jump', `${s.probe} (jump): on the stack-check jump`);
      t.equal(s.vaddr, insns[j]?.addr, `${s.probe} (jump): objdump's JBE`);
      t.match(at(s.symbol, s.vaddr, s.fileOffset)?.text, /^(JBE|JLS) /);
      t.same(s.cookie, { stackCheck: true }, `${s.probe} (jump): the BPF program evaluates the check`);
    }
    for (const plan of [push, jump]) {
      t.same([...new Set(plan.map((s) => s.probe))].sort(), ['create', 'creator', 'exit', 'park', 'ready', 'run', 'syscall'], 'every goroutine and scheduler probe placed');
      t.same(
        [...new Set(plan.filter((s) => s.probe === 'run' || s.probe === 'syscall').map((s) => s.symbol))].sort(),
        ['runtime.entersyscall', 'runtime.entersyscallblock', 'runtime.execute', 'runtime.exitsyscall', 'runtime.goschedImpl', 'runtime.injectglist',
          'runtime.newproc.func1', 'runtime.preemptPark', 'runtime.ready', bin.func('runtime.exitsyscall0') ? 'runtime.exitsyscall0' : 'runtime.exitsyscallNoP'].sort(),
        'the scheduler at execute, where goroutines become runnable, and the system call hooks',
      );
      for (const s of plan.filter((x) => schedOwnSite(x) && x.kind === 'entry')) {
        const insns = insnsOf(s.symbol);
        t.same([s.vaddr, stackCheckJump(insns)], [insns[0].addr, undefined], `${s.program} in ${s.symbol}: at the entry, which has no stack check`);
        at(s.symbol, s.vaddr, s.fileOffset);
      }
      const create = plan.filter((s) => s.probe === 'create');
      const calls = insnsOf('runtime.newproc.func1').filter((i) => /^CALL runtime\.runqput\(SB\)$/.test(i.text));
      t.equal(calls.length, 1, 'newproc\'s closure calls runqput once');
      t.same(create.map((s) => [s.kind, s.symbol, s.vaddr]), [['call', 'runtime.newproc.func1', calls[0]?.addr]], 'creation: at that CALL');
      t.same(plan.filter((s) => s.program.startsWith('sched_created')).map((s) => [s.kind, s.vaddr]), [['call', calls[0]?.addr]], 'the scheduler\'s stamp of a new goroutine: the same CALL');
      at('runtime.newproc.func1', create[0].vaddr, create[0].fileOffset);
    }

    t.same(runtime.skipped, [], 'no runtime probe skipped');
    // Go 1.22+ hands startTheWorldWithSema the pause's start (worldStop): read at its entry.
    const worldStop = Number(/^go1\.(\d+)/.exec(bin.goVersion)?.[1]) >= 22;
    const expected = ['fatal', 'fatalPanic', 'markTermination', ...(worldStop ? ['start'] : []), 'startRet', 'stop', 'throw'];
    t.same([...new Set(runtime.sites.map((s) => s.probe))].sort(), expected, 'every runtime probe placed');
    for (const s of runtime.sites) {
      const insns = insnsOf(s.symbol);
      const j = stackCheckJump(insns);
      const where = `${s.probe} in ${s.symbol}`;
      if (s.kind === 'ret') t.equal(at(s.symbol, s.vaddr, s.fileOffset)?.text, 'RET', `${where}: a RET`);
      else if (s.kind === 'stack-check-jump') t.equal(s.vaddr, insns[j!]?.addr, `${where}: objdump's JBE`);
      // No g.stackguard0 check (nosplit, or go:systemstack comparing stackguard1): the first instruction.
      else t.same([s.kind, s.vaddr, j], ['entry', insns[0].addr, undefined], `${where}: at the entry, which has no stack check`);
      at(s.symbol, s.vaddr, s.fileOffset);
    }
    const rets = insnsOf('runtime.startTheWorldWithSema').filter((i) => i.text === 'RET').map((i) => i.addr);
    t.same(runtime.sites.filter((s) => s.probe === 'startRet').map((s) => s.vaddr), rets, 'startRet: on every RET of startTheWorldWithSema');
    for (const p of ['throw', 'fatal', 'fatalPanic']) t.equal(runtime.sites.find((s) => s.probe === p)?.kind, 'entry', `${p}: nosplit, at the entry`);
  });
}
