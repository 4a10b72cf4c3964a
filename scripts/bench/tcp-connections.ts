// What tracing TCP costs per connection: many short connections per second on loopback (test/fixtures/tcpnet
// `loop`: C client goroutines each connect, send 100 bytes, read 100, close abortively; a server in the same
// process accepts), with and without bpf/tcp.bpf.c attached, interleaved in one run. Prints JSON.
//
//   node --import tsx scripts/bench/tcp-connections.ts [--seconds 3] [--conns 4] [--rounds 3]
//
// Each connection makes 2 sockets (client and server end); with the programs attached each emits records
// (connect, established, accept, two closes, a reset): "records/s handled" is what the agent's decoder and
// model applied. "cost per connection" is the difference of wall time per connection, traced minus not:
// it folds in the BPF programs, the ring buffer reader and the model, on this 2-core machine.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { openBpfObject, type BpfObject } from '../../agent/src/bpf/bridge.ts';
import { tracefsAccess, tracepointIds } from '../../agent/src/bpf/tracefs.ts';
import { ALL_PROGRAMS, hasKernelBtf, preferredPlan } from '../../agent/src/tcp/attach-plan.ts';
import { tcpEventLayout } from '../../agent/src/events/tcp-event.ts';
import { TcpTracer } from '../../agent/src/tcp/tcp-tracer.ts';
import { run } from '../../test/lib/child.ts';
import { goBuild, repoRoot } from '../../test/lib/go.ts';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    conns: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
  },
});

/** The programs the agent would load here, attached as it attaches them. */
function attachAsTheAgent(): BpfObject {
  const plan = preferredPlan({}, hasKernelBtf(), tracefsAccess());
  const names = [...new Set(plan.tracepoints.values())];
  const ids = names.length ? tracepointIds(names).ids : new Map<string, number>();
  const bpf = openBpfObject('tcp', { ringSizes: { tcp_events: 8 << 20 }, skipPrograms: ALL_PROGRAMS.filter((p) => !plan.programs.includes(p)) });
  for (const p of plan.programs) {
    const tp = plan.tracepoints.get(p);
    if (tp) bpf.attachTracepointId(p, ids.get(tp)!);
    else bpf.attach(p);
  }
  return bpf;
}

/** Runs the loop without blocking the event loop (the tracer applies batches on it). */
async function loopAsync(bin: string, seconds: number, conns: number): Promise<{ connections: number; failed: number; seconds: number }> {
  const r = await run(bin, ['loop', '-seconds', String(seconds), '-conns', String(conns)], { what: 'tcp loop', check: true, timeoutMs: (seconds + 60) * 1000 });
  const m = /LOOP connections=(\d+) failed=(\d+) seconds=([\d.]+)/.exec(r.stdout);
  if (!m) throw new Error(`tcp loop: ${r.stdout.slice(-500)}`);
  return { connections: Number(m[1]), failed: Number(m[2]), seconds: Number(m[3]) };
}

interface Run {
  traced: boolean;
  mode: 'untraced' | 'bpf-only' | 'tracer';
  connections: number;
  failed: number;
  seconds: number;
  connectionsPerSec: number;
  records?: number;
  recordsPerSec?: number;
  lost?: number;
}

function loopSync(bin: string, seconds: number, conns: number): { connections: number; failed: number; seconds: number } {
  const out = execFileSync(bin, ['loop', '-seconds', String(seconds), '-conns', String(conns)], { encoding: 'utf8' });
  const m = /LOOP connections=(\d+) failed=(\d+) seconds=([\d.]+)/.exec(out);
  if (!m) throw new Error(`unexpected output: ${out}`);
  return { connections: Number(m[1]), failed: Number(m[2]), seconds: Number(m[3]) };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

export async function runTcpConnections(seconds: number, conns: number, rounds: number): Promise<Record<string, unknown>> {
  const bin = goBuild({ srcDir: join(repoRoot, 'test', 'fixtures', 'tcpnet'), name: 'tcpnet' });
  const runs: Run[] = [];
  for (let r = 0; r < rounds; r++) {
    const base = loopSync(bin, seconds, conns);
    runs.push({ traced: false, mode: 'untraced', ...base, connectionsPerSec: base.connections / base.seconds });

    // BPF programs attached and the ring drained, but records only counted: the kernel side's cost.
    {
      const bpf = attachAsTheAgent();
      let records = 0;
      bpf.startReader([{ map: 'tcp_events', recordSize: tcpEventLayout.size }], (_r, b) => (records += b.length / tcpEventLayout.size));
      const res = await loopAsync(bin, seconds, conns);
      await new Promise((r) => setTimeout(r, 100));
      bpf.stopReader();
      await new Promise((r) => setTimeout(r, 50));
      runs.push({ traced: true, mode: 'bpf-only', ...res, connectionsPerSec: res.connections / res.seconds, records, recordsPerSec: records / res.seconds });
      bpf.close();
    }

    // The whole TcpTracer: BPF, reader, decoder, connection table and peer windows.
    const tr = new TcpTracer({ seed: false });
    tr.start();
    const before = tr.records;
    const traced = await loopAsync(bin, seconds, conns);
    await new Promise((r) => setTimeout(r, 100));
    await tr.drain();
    const records = tr.records - before;
    runs.push({
      traced: true,
      mode: 'tracer',
      ...traced,
      connectionsPerSec: traced.connections / traced.seconds,
      records,
      recordsPerSec: records / traced.seconds,
      lost: tr.lostTotal(),
    });
    await tr.close();
  }
  const rate = (mode: Run['mode']): number => median(runs.filter((r) => r.mode === mode).map((r) => r.connectionsPerSec));
  const baseRate = rate('untraced');
  const bpfRate = rate('bpf-only');
  const tracedRate = rate('tracer');
  const recRate = median(runs.filter((r) => r.mode === 'tracer').map((r) => r.recordsPerSec!));
  const us = (r: number): number => Number(((1 / r - 1 / baseRate) * 1e6).toFixed(2));
  return {
    bench: 'tcp-connections',
    command: `node --import tsx scripts/bench/tcp-connections.ts --seconds ${seconds} --conns ${conns} --rounds ${rounds}`,
    workload: `${conns} Go client goroutines, connect + 100 B each way + abortive close, server in the same process, loopback; medians of ${rounds} interleaved rounds`,
    connectionsPerSec: {
      untraced: Math.round(baseRate),
      bpfOnly: Math.round(bpfRate),
      tracer: Math.round(tracedRate),
      ratioBpfOnly: Number((bpfRate / baseRate).toFixed(3)),
      ratioTracer: Number((tracedRate / baseRate).toFixed(3)),
    },
    recordsPerSecHandled: Math.round(recRate),
    recordsPerConnection: Number(median(runs.filter((r) => r.mode === 'tracer').map((r) => r.records! / r.connections)).toFixed(2)),
    costPerConnectionUs: { bpfOnly: us(bpfRate), tracer: us(tracedRate) },
    lost: runs.filter((r) => r.mode === 'tracer').reduce((a, r) => a + r.lost!, 0),
    runs,
  };
}

const res = await runTcpConnections(Number(args.seconds), Number(args.conns), Number(args.rounds));
console.log(JSON.stringify(res, null, 2));
