// The agent's pipeline, two ways:
//  1. records/s decoded and applied on one core: synthetic batches of 56-byte goroutine_event records (a
//     create/park/ready/exit mix over a steady population) fed through the tracer's own batch handler
//     (GoroutineTracer.applyBatch: forEachGoroutineEvent + GoroutineTable updates), plus a decode-only pass;
//  2. lost records at a fixed offered rate through the real kernel path: a rate-controlled ping-pong fixture
//     with every probe attached, the reader running, events applied.
import { goroutineEventLayout, GoroutineEventKind } from '../../agent/src/events/goroutine-event.ts';
import { ev, forEachGoroutineEvent } from '../../agent/src/events/goroutine-event.ts';
import { GoroutineTable } from '../../agent/src/model/goroutine-table.ts';
import { GoroutineTracer, type TracedProcess } from '../../agent/src/tracer/goroutine-tracer.ts';
import { buildFixture, figure, startProcess, median, round, type BenchContext, type Figure } from './lib.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

const SIZE = goroutineEventLayout.size;
const F = goroutineEventLayout.fields;
/** What the native reader hands JavaScript: 256 KiB batches of whole records (agent/native/bridge.c). */
const BATCH_RECORDS = Math.floor((256 * 1024) / SIZE);

/**
 * The tracer applies a batch in a private method; the bench calls that same method so the measured path is
 * the real one (no copy of it here). A rename shows up as this error, and in test/bench/bench-smoke.test.ts.
 */
function batchHandler(tracer: GoroutineTracer): (batch: Buffer) => void {
  // The reader's path (tracer/tracer.ts): applyBatch returns the records it held and the tracer counts them.
  const fn = (tracer as unknown as { applyBatch?: (b: Buffer) => number }).applyBatch;
  if (typeof fn !== 'function') throw new Error('GoroutineTracer.applyBatch is gone: update scripts/bench/pipeline.ts');
  return (b) => {
    tracer.records += fn.call(tracer, b);
  };
}

export interface SyntheticStream {
  batches: Buffer[];
  records: number;
  mix: Record<'create' | 'park' | 'ready' | 'exit', number>;
}

/**
 * A realistic stream for one process: `population` goroutines are created first, then parks and readies
 * dominate (a parked goroutine is readied by a running one), with a little churn (`churn` of the records are
 * creates and as many exits, so the population stays near its size). Deterministic (xorshift PRNG).
 */
export function synthesize(pid: number, population: number, records: number, churn = 0.04): SyntheticStream {
  let seed = 0x9e3779b9;
  const rnd = () => {
    seed ^= seed << 13;
    seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    return seed / 0x1_0000_0000;
  };
  const live: number[] = [];
  const waiting = new Set<number>();
  const waitingList: number[] = []; // may hold stale entries; checked against `waiting`
  let nextGoid = 1;
  let ts = 1_000_000_000_000;
  const mix = { create: 0, park: 0, ready: 0, exit: 0 };
  const batches: Buffer[] = [];
  let buf = Buffer.alloc(BATCH_RECORDS * SIZE);
  let inBatch = 0;
  const startPcs = Array.from({ length: 64 }, (_, i) => 0x4a0000 + i * 0x140);
  const emit = (kind: number, goid: number, other: number, pc: number, startPc: number, reason: number) => {
    const at = inBatch * SIZE;
    ts += 50 + Math.floor(rnd() * 2000);
    buf.writeBigUInt64LE(BigInt(ts), at + F.ts_ns.offset);
    buf.writeBigUInt64LE(BigInt(goid), at + F.goid.offset);
    buf.writeBigUInt64LE(BigInt(other), at + F.other_goid.offset);
    buf.writeBigUInt64LE(BigInt(pc), at + F.pc.offset);
    buf.writeBigUInt64LE(BigInt(startPc), at + F.start_pc.offset);
    buf.writeUInt32LE(pid, at + F.pid.offset);
    buf.writeUInt32LE(pid + 1 + (goid % 4), at + F.tid.offset);
    buf.writeUInt8(kind, at + F.kind.offset);
    buf.writeUInt8(reason, at + F.wait_reason.offset);
    buf.writeUInt16LE(0, at + F.layout_id.offset);
    const gAddr = (F as Record<string, { offset: number; size: number }>).g_addr;
    if (gAddr) buf.writeBigUInt64LE(BigInt(0xc000000000 + goid * 0x1c0), at + gAddr.offset);
    if (++inBatch === BATCH_RECORDS) {
      batches.push(buf);
      buf = Buffer.alloc(BATCH_RECORDS * SIZE);
      inBatch = 0;
    }
  };
  const randomLive = () => live[Math.floor(rnd() * live.length)];
  const create = () => {
    const goid = nextGoid++;
    const parent = live.length ? randomLive() : 1;
    const site = Math.floor(rnd() * startPcs.length);
    emit(GoroutineEventKind.create, goid, parent, 0x490000 + site * 0x30, startPcs[site], 0);
    live.push(goid);
    mix.create++;
  };
  const reasons = [7, 7, 7, 2, 10, 14, 18, 4]; // a chan-receive heavy spread of wait reasons
  for (let n = 0; n < records; n++) {
    if (live.length < population && (n < population || rnd() < 0.5)) {
      create();
      continue;
    }
    const r = rnd();
    if (r < churn) {
      create();
    } else if (r < 2 * churn && live.length > population / 2) {
      // exit: a goroutine that is running (not parked)
      const i = Math.floor(rnd() * live.length);
      const goid = live[i];
      if (waiting.has(goid)) waiting.delete(goid);
      live[i] = live[live.length - 1];
      live.pop();
      emit(GoroutineEventKind.exit, goid, 0, 0, 0, 0);
      mix.exit++;
    } else if (r < 0.54 && waiting.size < live.length * 0.9) {
      let goid = randomLive();
      for (let k = 0; k < 4 && waiting.has(goid); k++) goid = randomLive();
      if (waiting.has(goid)) {
        n--;
        continue;
      }
      waiting.add(goid);
      waitingList.push(goid);
      emit(GoroutineEventKind.park, goid, 0, 0, 0, reasons[Math.floor(rnd() * reasons.length)]);
      mix.park++;
    } else {
      // ready: the oldest parked goroutine still parked, woken by a random (running) one
      let goid = -1;
      while (waitingList.length) {
        const i = Math.floor(rnd() * Math.min(waitingList.length, 64));
        const g = waitingList[i];
        waitingList[i] = waitingList[waitingList.length - 1];
        waitingList.pop();
        if (waiting.has(g)) {
          goid = g;
          break;
        }
      }
      if (goid < 0) {
        n--;
        continue;
      }
      waiting.delete(goid);
      let waker = randomLive();
      if (waiting.has(waker)) waker = 0; // woken by the runtime (g0)
      emit(GoroutineEventKind.ready, goid, waker, 0, 0, 0);
      mix.ready++;
    }
  }
  if (inBatch) batches.push(buf.subarray(0, inBatch * SIZE));
  return { batches, records, mix };
}

export async function runPipeline(ctx: BenchContext): Promise<Figure[]> {
  const bench = 'pipeline';
  const out: Figure[] = [];
  const binary = buildFixture('eventrate', ctx.goVersion);

  // ---- 1. Throughput on one core --------------------------------------------------------------------------
  {
    const population = 10_000;
    const total = ctx.quick ? 200_000 : 3_000_000;
    const reps = ctx.quick ? 2 : 5;
    const prog = startProcess(binary, [], 'eventrate');
    const tracer = new GoroutineTracer();
    try {
      await prog.until(/^READY$/m);
      // A traced process with no probe: the synthetic records carry its pid, so they land in its table.
      const proc: TracedProcess = tracer.attach(openTarget(prog.pid), { probes: [] });
      const apply = batchHandler(tracer);
      const stream = synthesize(prog.pid, population, total);
      ctx.log(`pipeline: synthesized ${stream.records} records in ${stream.batches.length} batches (${JSON.stringify(stream.mix)})`);
      const fresh = () => {
        proc.table = new GoroutineTable({ maxGoroutines: 2_000_000 });
      };
      // Warm-up (JIT), then interleave: full path, decode only, full path, ...
      fresh();
      for (const b of stream.batches.slice(0, Math.min(20, stream.batches.length))) apply(b);
      let sink = 0;
      const decodeOnly = (b: Buffer) =>
        forEachGoroutineEvent(b, (v, at) => {
          sink += ev.goid(v, at) + ev.otherGoid(v, at) + ev.tsNs(v, at) + ev.kind(v, at) + ev.pid(v, at) + ev.waitReason(v, at) + ev.pc(v, at) + ev.startPc(v, at);
        });
      // The same population with parks and readies only (no exits after the initial creates): isolates what
      // exits cost in the table.
      const steady = synthesize(prog.pid, population, total, 0);
      const fullRates: number[] = [];
      const steadyRates: number[] = [];
      const decodeRates: number[] = [];
      const time = (f: (b: Buffer) => void, batches = stream.batches) => {
        const t0 = process.hrtime.bigint();
        for (const b of batches) f(b);
        return Number(process.hrtime.bigint() - t0) / 1e9;
      };
      let finalSize = 0;
      for (let r = 0; r < reps; r++) {
        fresh();
        const before = tracer.records;
        const s = time(apply);
        if (tracer.records - before !== stream.records) throw new Error(`applied ${tracer.records - before} of ${stream.records} records`);
        if (tracer.strayRecords) throw new Error(`${tracer.strayRecords} synthetic records did not find their process`);
        fullRates.push(stream.records / s);
        finalSize = proc.table.size;
        decodeRates.push(stream.records / time(decodeOnly));
        fresh();
        steadyRates.push(steady.records / time(apply, steady.batches));
        ctx.log(`pipeline rep ${r + 1}/${reps}: ${(fullRates.at(-1)! / 1e6).toFixed(2)} M records/s applied, ${(steadyRates.at(-1)! / 1e6).toFixed(2)} M/s without exits, ${(decodeRates.at(-1)! / 1e6).toFixed(2)} M/s decode only`);
      }
      if (sink === -1) ctx.log('unreachable');
      const cmd = `${ctx.invocation} # ${stream.records} synthetic records (${population} goroutines; mix ${JSON.stringify(stream.mix)}) in ${BATCH_RECORDS}-record batches, ${reps} reps, median`;
      out.push(
        figure({
          id: `${bench}.records_per_s.applied`,
          bench,
          label: 'records/s decoded and applied to the goroutine table, one core (GoroutineTracer.applyBatch)',
          value: Math.round(median(fullRates)),
          unit: 'records/s',
          command: cmd,
          samples: fullRates.map((x) => Math.round(x)),
          target: { op: '>=', value: 1_000_000 },
          note: `the tracer's private applyBatch called on the tracer itself (no copy of the code); table ends with ${finalSize} live goroutines`,
        }),
        figure({
          id: `${bench}.records_per_s.applied_no_exits`,
          bench,
          label: 'records/s applied, same population with parks/readies only (no exits)',
          value: Math.round(median(steadyRates)),
          unit: 'records/s',
          command: `${ctx.invocation} # ${steady.records} synthetic records, mix ${JSON.stringify(steady.mix)}, ${reps} reps, median`,
          samples: steadyRates.map((x) => Math.round(x)),
        }),
        figure({
          id: `${bench}.records_per_s.decode_only`,
          bench,
          label: 'records/s decoded only (forEachGoroutineEvent + every field accessor, no table)',
          value: Math.round(median(decodeRates)),
          unit: 'records/s',
          command: cmd,
          samples: decodeRates.map((x) => Math.round(x)),
        }),
        figure({
          id: `${bench}.ns_per_record.applied`,
          bench,
          label: 'CPU per record decoded and applied',
          value: round(1e9 / median(fullRates)),
          unit: 'ns/record',
          command: cmd,
        }),
      );
    } finally {
      await prog.stop('SIGKILL');
      await tracer.close().catch(() => {});
    }
  }

  // ---- 2. Loss at a fixed offered rate, real kernel path ---------------------------------------------------
  {
    const rate = 300_000;
    const seconds = ctx.quick ? 2 : 10;
    const args = ['-rate', String(rate), '-seconds', String(seconds), '-churn', '16'];
    const prog = startProcess(binary, args, 'eventrate');
    const tracer = new GoroutineTracer();
    try {
      await prog.until(/^READY$/m);
      tracer.start();
      const proc = tracer.attach(openTarget(prog.pid)); // every probe
      const ringBytes = tracer.bpf.mapInfo('goroutine_events').maxEntries;
      const sumHits = () => Object.values(tracer.hits(proc.layoutId)).reduce((a, b) => a + b, 0);
      const hits0 = sumHits();
      const rec0 = tracer.records;
      const lost0 = tracer.lostTotal();
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      const m = await prog.command('go', /^DONE roundtrips=(\d+) spawned=(\d+) seconds=([\d.]+) events=(\d+)$/m, (seconds + 60) * 1000);
      const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
      const cpu = process.cpuUsage(cpu0);
      await tracer.drain();
      const hits = sumHits() - hits0;
      const received = tracer.records - rec0;
      const lost = tracer.lostTotal() - lost0;
      const goSeconds = Number(m[3]);
      const caused = Number(m[4]);
      const cmd = `${ctx.invocation} # eventrate ${args.join(' ')} (Go ${ctx.goVersion}), GoroutineTracer (all probes, reader running, ring ${ringBytes} B)`;
      out.push(
        figure({ id: `${bench}.fixed_rate.requested`, bench, label: 'requested event rate', value: rate, unit: 'events/s', command: cmd }),
        figure({
          id: `${bench}.fixed_rate.offered`,
          bench,
          label: 'offered rate: probe hits counted by BPF (hit_counts) per second',
          value: Math.round(hits / goSeconds),
          unit: 'events/s',
          command: cmd,
          note: `the fixture caused ${caused} events on purpose (${Math.round(caused / goSeconds)}/s) in ${goSeconds} s; the rest are the runtime's own`,
        }),
        figure({ id: `${bench}.fixed_rate.hits`, bench, label: 'probe hits (BPF hit_counts)', value: hits, unit: 'hits', command: cmd }),
        figure({ id: `${bench}.fixed_rate.received`, bench, label: 'records received and applied by the agent', value: received, unit: 'records', command: cmd }),
        figure({
          id: `${bench}.fixed_rate.lost`,
          bench,
          label: 'records lost (tracer.lostTotal(): ring buffer full)',
          value: lost,
          unit: 'records',
          command: cmd,
          target: { op: '<=', value: 0 },
        }),
        figure({ id: `${bench}.fixed_rate.ring_bytes`, bench, label: 'ring buffer size used', value: ringBytes, unit: 'bytes', command: cmd }),
        figure({
          id: `${bench}.fixed_rate.agent_cpu`,
          bench,
          label: 'agent CPU while the fixture ran (all Node threads)',
          value: round(((cpu.user + cpu.system) / 1e6 / elapsed) * 100),
          unit: '% of one core',
          command: cmd,
        }),
        figure({
          id: `${bench}.fixed_rate.stray`,
          bench,
          label: 'records that matched no traced process or kind (should be 0)',
          value: tracer.strayRecords,
          unit: 'records',
          command: cmd,
        }),
      );
      ctx.log(`pipeline fixed rate: ${Math.round(hits / goSeconds)} hits/s offered, ${received} received, ${lost} lost, ring ${ringBytes} B`);
    } finally {
      await prog.stop('SIGKILL');
      await tracer.close().catch(() => {});
    }
  }
  return out;
}
