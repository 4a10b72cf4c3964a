// `goroscope doctor [--pid PID]`: the node's checks (checks.ts), the BPF parts tried for real, and for a pid
// what goroscope can trace in it. Prints one line per check; exits 1 when a check failed.
import { existsSync } from 'node:fs';
import { loadAddon } from '../bpf/bridge.ts';
import { pingpongBinary } from '../overhead/calibrate.ts';
import { openGoBinary, type GoBinary } from '../gobinary/index.ts';
import { layoutForBinary } from '../gobinary/layouts.ts';
import { cookieFor, planGoroutineProbes } from '../probes/goroutine-probes.ts';
import { planRuntimeProbes } from '../runtime/runtime-probes.ts';
import { HTTP_FUNCS, httpLayoutFor } from '../http/http-layout.ts';
import { planHttpProbes } from '../http/http-probes.ts';
import { findTlsGOffset } from '../tcp/go-tls.ts';
import { openTarget } from '../tracer/target.ts';
import { attempt, failure, checkBtf, checkCapabilities, checkCgroup, checkKernel, checkTracefs, type Check } from './checks.ts';

const hex = (n: number) => `0x${n.toString(16)}`;

/** Loads the goroutine object and attaches one uprobe with a BPF cookie to a Go binary (for our own pid: it never fires). */
async function checkGoroutineProbes(bin: GoBinary | undefined): Promise<Check> {
  const { GoroutineTracer } = await import('../tracer/goroutine-tracer.ts');
  const tracer = new GoroutineTracer();
  try {
    if (!bin) {
      return { name: 'goroutine probes', status: 'warn', detail: 'BPF object loads; no Go binary to try a uprobe on', fix: `build ${pingpongBinary} (scripts/setup.sh) or pass --pid` };
    }
    const layout = layoutForBinary(bin).layout;
    const site = planGoroutineProbes(bin, { creatorAtEntry: !layout.g.fields.parentGoid })[0];
    const link = tracer.bpf.attachUprobe(site.program, bin.path, site.fileOffset, process.pid, cookieFor(site, 0));
    tracer.bpf.detach(link);
    return { name: 'goroutine probes', status: 'pass', detail: `BPF object loads; a uprobe with a BPF cookie attaches (${site.symbol}, ${site.kind}; ${loadAddon().hasUprobeMulti() ? 'uprobe multi-links' : 'perf uprobes'})` };
  } finally {
    await tracer.close();
  }
}

async function checkRuntimeProbes(): Promise<Check> {
  const { RuntimeEventsTracer } = await import('../runtime/runtime-tracer.ts');
  const rt = new RuntimeEventsTracer();
  await rt.close();
  return { name: 'runtime probes', status: 'pass', detail: 'BPF object loads (GC pauses, fatal errors)' };
}

async function checkTcp(): Promise<Check> {
  const { TcpTracer, describeAttachMode } = await import('../tcp/tcp-tracer.ts');
  const tcp = new TcpTracer({ seed: false });
  try {
    tcp.start();
    return { name: 'TCP tracepoints', status: 'pass', detail: `attached: ${describeAttachMode(tcp.attachMode)}` };
  } finally {
    await tcp.close();
  }
}

/** Where the request probes go in this binary, where its offsets come from, and what is left out and why. */
function requestProbesCheck(binary: GoBinary): Check {
  const hasGrpc = binary.func(HTTP_FUNCS.handleStream) !== undefined;
  if (!binary.func(HTTP_FUNCS.serve) && !hasGrpc) return { name: 'request probes', status: 'pass', detail: 'no net/http or grpc-go server in this binary' };
  const layout = httpLayoutFor(binary.elf, binary.goVersion, hasGrpc);
  const plan = planHttpProbes(binary, layout);
  const skipped = plan.skipped.filter((s) => !s.endsWith('no server in this binary'));
  const end = plan.end === 'done' ? "a request's end at finishRequest/handlerDone's entries" : plan.end === 'ret' ? "a request's end at ServeHTTP's RETs (two traps a hit)" : '';
  const from = binary.elf.section('.debug_info') ? "offsets from the binary's DWARF" : "net/http's offsets from http-layouts.json (stripped binary)";
  return {
    name: 'request probes',
    status: skipped.length ? 'warn' : 'pass',
    detail: [`${plan.sites.length} sites`, end, from, ...skipped.map((s) => `not traced: ${s}`)].filter(Boolean).join('; '),
    ...(skipped.length ? { fix: 'a binary with DWARF (not built with -ldflags=-w), or a goroscope whose http-layouts.json knows this Go' } : {}),
  };
}

function pidChecks(pid: number): Check[] {
  const target = openTarget(pid);
  const { binary } = target;
  const out: Check[] = [{ name: 'process', status: 'pass', detail: `pid ${pid}: ${target.info.exe} (${binary.goVersion})` }];
  const found = layoutForBinary(binary);
  out.push({
    name: 'runtime layout',
    status: found.exact ? 'pass' : 'warn',
    detail: `from ${found.source === 'dwarf' ? "the binary's DWARF" : 'the table (stripped binary)'}${found.exact ? ', exact' : ''}${found.note ? `: ${found.note}` : ''}`,
    ...(found.exact ? {} : { fix: 'a binary with DWARF (not built with -ldflags=-w), or a goroscope whose table knows this Go' }),
  });
  const layout = found.layout;
  for (const s of planGoroutineProbes(binary, { creatorAtEntry: !layout.g.fields.parentGoid })) {
    out.push({ name: `probe ${s.probe}`, status: 'pass', detail: `${s.symbol} at ${hex(s.vaddr)} (${s.kind}${s.kind === 'ret' ? ': two traps a hit' : ''})` });
  }
  const rt = planRuntimeProbes(binary, layout);
  out.push({ name: 'runtime probes', status: rt.skipped.length ? 'warn' : 'pass', detail: `${rt.sites.length} sites${rt.skipped.length ? `; left out: ${rt.skipped.map((s) => `${s.probe} (${s.reason})`).join('; ')}` : ''}` });
  out.push(requestProbesCheck(binary));
  const allgs = binary.allgs;
  out.push(
    allgs
      ? { name: 'allgs', status: 'pass', detail: `at ${hex(allgs.addr)} (from ${allgs.source === 'symtab' ? 'the symbol table' : `the code of ${allgs.from}`}): goroutines from before attach are read` }
      : { name: 'allgs', status: 'fail', detail: 'runtime.allgs not found: goroutines that existed before attach are not seen', fix: 'report this binary (Go version, build flags)' },
  );
  const tls = findTlsGOffset(binary);
  out.push({ name: 'TLS g slot', status: tls.source === 'code' ? 'pass' : 'warn', detail: `fs${tls.offset} (${tls.source === 'code' ? `${tls.votes} loads agree` : 'default: not found in the code'})` });
  return out;
}

export async function doctorChecks(opts: { pid?: number } = {}): Promise<Check[]> {
  let uprobeMulti = false;
  try {
    uprobeMulti = loadAddon().hasUprobeMulti();
  } catch {
    /* no bridge: its own check below says so */
  }
  const checks: Check[] = [checkKernel(), checkBtf(), checkCapabilities(undefined, undefined, uprobeMulti), checkTracefs(), checkCgroup()];
  checks.push(
    await attempt('native bridge', () => {
      const addon = loadAddon();
      return { name: 'native bridge', status: 'pass', detail: `libbpf ${addon.libbpfVersion()}` };
    }),
  );
  checks.push(
    await attempt('BPF ring buffer', () =>
      loadAddon().hasRingbuf()
        ? { name: 'BPF ring buffer', status: 'pass', detail: 'records leave the kernel through ring buffers' }
        : { name: 'BPF ring buffer', status: 'warn', detail: 'none (kernel before 5.8): perf buffers are used instead', fix: 'Linux 5.8 or newer' },
    ),
  );
  let bin: GoBinary | undefined;
  let pidFailed: Check | undefined;
  if (opts.pid !== undefined) {
    try {
      bin = openTarget(opts.pid).binary;
    } catch (e) {
      pidFailed = { name: 'process', status: 'fail', detail: (e as Error).message };
    }
  } else if (existsSync(pingpongBinary)) {
    bin = openGoBinary(pingpongBinary);
  }
  checks.push(await attempt('goroutine probes', () => checkGoroutineProbes(bin)));
  checks.push(await attempt('runtime probes', checkRuntimeProbes));
  checks.push(await attempt('TCP tracepoints', checkTcp));
  if (pidFailed) checks.push(pidFailed);
  else if (opts.pid !== undefined) {
    try {
      checks.push(...pidChecks(opts.pid));
    } catch (e) {
      checks.push(failure('probe sites', e));
    }
  }
  return checks;
}

export function formatChecks(checks: Check[]): string {
  const width = Math.max(...checks.map((c) => c.name.length));
  return checks
    .map((c) => `${c.status.padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}${c.fix ? `\n${' '.repeat(width + 8)}fix: ${c.fix}` : ''}`)
    .join('\n');
}

export async function runDoctor(opts: { pid?: number; json?: boolean }): Promise<number> {
  const checks = await doctorChecks(opts);
  process.stdout.write(opts.json ? `${JSON.stringify({ checks })}\n` : `${formatChecks(checks)}\n`);
  return checks.some((c) => c.status === 'fail') ? 1 : 0;
}
