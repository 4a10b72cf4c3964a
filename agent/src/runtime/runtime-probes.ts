// Where each runtime-event probe (bpf/runtime.bpf.c) goes in one Go binary, and with which BPF cookie.
//
// Every site is a uprobe on an instruction of the function, never a uretprobe (Go moves goroutine stacks):
//   stop       runtime.stopTheWorldWithSema  the jump after the stack check (one emulated trap; args intact)
//   start      runtime.startTheWorldWithSema the jump after the stack check, Go 1.22+: its worldStop argument
//                                            holds the start the runtime accounts the pause from
//   startRet   runtime.startTheWorldWithSema every RET: the world runs again, RAX = Go's nanotime at restart
//   markTerm   runtime.gcMarkTermination     the jump after the stack check
//   throw      runtime.throw                 entry (nosplit: no stack check); s string in RAX, RBX
//   fatal      runtime.fatal                 entry (nosplit), same argument; user-caused fatal errors
//   fatalPanic runtime.fatalpanic            entry (nosplit); msgs *_panic in RAX
// These functions are out of line in Go 1.19-1.27 (runtime-layouts.json: symbol true, inlinable false).
import { probeCookie, type CookieOptions } from '../events/goroutine-event.ts';
import { RuntimeProbe, type RuntimeProbeName } from '../events/runtime-event.ts';
import { findProbeSites, type GoBinary } from '../gobinary/index.ts';
import type { ProbedFunction, RuntimeLayout } from '../gobinary/layouts.ts';

export interface RuntimeProbeSite {
  probe: RuntimeProbeName;
  /** The BPF program in bpf/runtime.bpf.c. */
  program: string;
  symbol: string;
  vaddr: number;
  fileOffset: number;
  kind: 'stack-check-jump' | 'entry' | 'ret';
  cookie: CookieOptions;
}

export interface RuntimeProbePlan {
  sites: RuntimeProbeSite[];
  /** Probes that could not be placed in this binary, with why (the rest still work). */
  skipped: Array<{ probe: RuntimeProbeName; reason: string }>;
}

interface Spec {
  probe: RuntimeProbeName;
  program: string;
  fn: ProbedFunction;
  at: 'entry' | 'ret';
  /** The argument the BPF program reads, and where it must arrive. */
  check?: (layout: RuntimeLayout) => string | undefined;
  /** Only for Go versions where this holds (else not placed, and not missed either). */
  applies?: (layout: RuntimeLayout) => boolean;
}

/**
 * The register of startTheWorldWithSema's w.startedStopping (w.start in Go 1.22): the time the runtime accounts
 * the pause from. Go 1.22+ passes a worldStop; before, the pause start was a global (work.pauseStart) taken
 * just before stopTheWorldWithSema was called, so the stop probe's own time is within its trap of it.
 */
export function worldStartRegister(layout: RuntimeLayout) {
  const w = layout.functions.startTheWorldWithSema?.params.find((p) => p.name === 'w');
  return w?.fields?.find((f) => f.name === 'startedStopping' || f.name === 'start')?.register ?? null;
}

/** throw(s string) and fatal(s string): a string as the only argument arrives in RAX (pointer) and RBX (length). */
const stringArg = (fn: ProbedFunction) => (layout: RuntimeLayout): string | undefined => {
  const ps = layout.functions[fn]?.params ?? [];
  return ps.length === 1 && ps[0].type === 'string' ? undefined : `runtime.${fn} does not take (s string) in Go ${layout.goVersion}`;
};

const SPECS: Spec[] = [
  { probe: 'stop', program: 'stw_stop', fn: 'stopTheWorldWithSema', at: 'entry' },
  { probe: 'start', program: 'stw_start', fn: 'startTheWorldWithSema', at: 'entry', applies: (l) => worldStartRegister(l) !== null },
  { probe: 'startRet', program: 'stw_start_ret', fn: 'startTheWorldWithSema', at: 'ret' },
  { probe: 'markTermination', program: 'gc_mark_termination', fn: 'gcMarkTermination', at: 'entry' },
  { probe: 'throw', program: 'rt_throw', fn: 'throw', at: 'entry', check: stringArg('throw') },
  { probe: 'fatal', program: 'rt_fatal', fn: 'fatal', at: 'entry', check: stringArg('fatal') },
  {
    probe: 'fatalPanic',
    program: 'rt_fatalpanic',
    fn: 'fatalpanic',
    at: 'entry',
    check: (layout) => {
      const p = layout.functions.fatalpanic?.params[0];
      return p && p.name === 'msgs' && p.register === 'RAX' ? undefined : `runtime.fatalpanic(msgs) is not in RAX in Go ${layout.goVersion}`;
    },
  },
];

export function planRuntimeProbes(bin: GoBinary, layout: RuntimeLayout, only?: Set<RuntimeProbeName>): RuntimeProbePlan {
  const sites: RuntimeProbeSite[] = [];
  const skipped: RuntimeProbePlan['skipped'] = [];
  for (const spec of SPECS) {
    if (only && !only.has(spec.probe)) continue;
    if (spec.applies && !spec.applies(layout)) continue;
    const symbol = `runtime.${spec.fn}`;
    const why = spec.check?.(layout);
    if (why) {
      skipped.push({ probe: spec.probe, reason: why });
      continue;
    }
    const f = bin.func(symbol);
    if (!f) {
      skipped.push({ probe: spec.probe, reason: `${symbol} is not in ${bin.path} (Go ${bin.goVersion})` });
      continue;
    }
    const found = findProbeSites(bin.elf.read(f.entry, f.end - f.entry), f.entry);
    const base = { probe: spec.probe, program: spec.program, symbol };
    if (spec.at === 'ret') {
      if (!found.rets.length) {
        skipped.push({ probe: spec.probe, reason: `${symbol} has no RET instruction` });
        continue;
      }
      for (const ret of found.rets) {
        sites.push({ ...base, vaddr: ret, fileOffset: bin.fileOffset(ret), kind: 'ret', cookie: { stackCheck: false } });
      }
      continue;
    }
    const sc = found.stackCheck;
    if (sc && (sc.compared === 'rsp' || sc.compared === 'r12')) {
      sites.push({
        ...base,
        vaddr: sc.jumpAddr,
        fileOffset: bin.fileOffset(sc.jumpAddr),
        kind: 'stack-check-jump',
        cookie: { stackCheck: true },
      });
    } else {
      // nosplit (throw, fatal, fatalpanic) or an unknown prologue: the entry, where no morestack re-entry exists.
      sites.push({ ...base, vaddr: f.entry, fileOffset: f.fileOffset, kind: 'entry', cookie: { stackCheck: false } });
    }
  }
  return { sites, skipped };
}

export function runtimeCookie(site: RuntimeProbeSite, layoutId: number): bigint {
  return probeCookie(layoutId, RuntimeProbe[site.probe], site.cookie);
}
