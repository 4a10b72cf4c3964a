// Issue 16, finding 3: per-process BPF map entries were never deleted (the bridge could not), so after as many
// distinct Go processes as a map has slots every new one failed ("Argument list too long"). Here the maps get
// 8 slots and 25 processes come and go: each is traced, and what it leaves behind is checked in the kernel.
import t from 'tap';
import { join } from 'node:path';
import { bpfUnavailable } from '../lib/bpf.ts';
import { startChild } from '../lib/child.ts';
import { goBuild, repoRoot } from '../lib/go.ts';
import { uprobeLinksByPid } from '../lib/links.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

const SLOTS = 8;
const noBpf = await bpfUnavailable();

t.test('every per-process BPF entry and probe goes with its process', { skip: noBpf ?? false }, async (t) => {
  const { loadAddon } = await import('../../agent/src/bpf/bridge.ts');
  const { GoroutineTracer } = await import('../../agent/src/tracer/goroutine-tracer.ts');
  const { RuntimeEventsTracer } = await import('../../agent/src/runtime/runtime-tracer.ts');
  const { TcpTracer } = await import('../../agent/src/tcp/tcp-tracer.ts');
  const multi = loadAddon().hasUprobeMulti() && process.env.GOROSCOPE_UPROBE_LINKS !== 'classic';
  const bin = goBuild({ srcDir: join(repoRoot, 'test/fixtures/churn') });

  const goroutines = new GoroutineTracer();
  goroutines.start();
  const runtime = new RuntimeEventsTracer({ maxTracedProcesses: SLOTS });
  runtime.start();
  let tcp: InstanceType<typeof TcpTracer> | undefined = new TcpTracer({ maxGoProcesses: SLOTS, seed: false });
  try {
    tcp.start();
  } catch (e) {
    t.comment(`TCP part skipped: the TCP tracer cannot start here: ${(e as Error).message.split('\n')[0]}`);
    await tcp.close().catch(() => {});
    tcp = undefined;
  }
  t.teardown(async () => {
    await goroutines.close();
    await runtime.close();
    await tcp?.close();
  });
  if (!multi) t.comment('no uprobe multi-links here: probes are checked through the tracers only');

  const pidsIn = (bpf: { keys(m: string): Buffer[] }, map: string) => bpf.keys(map).map((k) => (k.length === 8 ? Number(k.readBigUInt64LE() >> 32n) : k.readUInt32LE()));
  const dead: number[] = [];
  let attached = 0;
  for (let i = 0; i < 3 * SLOTS + 1; i++) {
    const child = startChild(bin, ['run', '60000'], { what: 'churn run', t });
    await child.until(/^ready$/m);
    const pid = child.pid;
    try {
      const target = openTarget(pid);
      goroutines.attach(target);
      runtime.attach(target);
      tcp?.attach(target);
      attached++;
    } catch (e) {
      t.fail(`process ${i + 1} (pid ${pid}): ${(e as Error).message.split('\n')[0]}`);
    }
    if (multi) t.ok((uprobeLinksByPid().get(pid) ?? 0) > 0, `pid ${pid} has probes`);
    await child.stop('SIGKILL');
    await Promise.all([goroutines.detach(pid), runtime.detach(pid), tcp?.detach(pid)]);
    dead.push(pid);
  }
  t.equal(attached, 3 * SLOTS + 1, `all ${3 * SLOTS + 1} processes traced with ${SLOTS}-slot maps`);
  const left = [
    ...pidsIn(runtime.bpf, 'rt_procs'), ...pidsIn(runtime.bpf, 'stw_pending'), ...pidsIn(goroutines.bpf, 'creator_by_thread'),
    ...(tcp ? pidsIn(tcp.bpf, 'tcp_process_layouts') : []),
  ].filter((p) => dead.includes(p));
  t.same(left, [], 'no BPF map holds an entry of a gone process');
  if (multi) {
    const links = uprobeLinksByPid();
    t.same(dead.filter((p) => links.has(p)), [], 'no uprobe link of a gone process is left (the kernel\'s fdinfo)');
  }
});
