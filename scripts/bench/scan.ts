// What re-reading a process's goroutine list costs the agent (agent/src/inventory/): a Go program parks N
// goroutines (test/fixtures/stacks -many N), and this process scans it as the agent's scanner does (allgs, then
// every g's state fields in batched process_vm_readv), repeatedly; the agent CPU per scan and per goroutine
// (process.cpuUsage around the scans, user + system), and the interval the scanner's policy gives for it alone;
// rounds interleave the read as the agent does it (neighbouring gs in one range) with one iovec per g.
import { GoroutineScanner, LifecycleCounts } from '../../agent/src/inventory/scanner.ts';
import { scanGoroutines } from '../../agent/src/inventory/allgs.ts';
import { layoutForBinary } from '../../agent/src/gobinary/layouts.ts';
import { GoroutineTable } from '../../agent/src/model/goroutine-table.ts';
import { ProcessMemory } from '../../agent/src/proc/process.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';
import { buildStacksFixture } from '../../test/lib/stacks-fixture.ts';
import { figure, startProcess, median, round, type BenchContext, type Figure } from './lib.ts';

export async function runScan(ctx: BenchContext): Promise<Figure[]> {
  const bench = 'scan';
  const sizes = ctx.quick ? [1_000, 5_000] : [1_000, 10_000, 100_000];
  const binary = buildStacksFixture(ctx.goVersion, 'default');
  const figures: Figure[] = [];
  const policy = new GoroutineScanner();
  for (const n of sizes) {
    const fixture = startProcess(binary, ['-many', String(n), '-nodump'], 'stacks fixture');
    try {
      await fixture.until(/^READY$/m, 600_000);
      const target = openTarget(fixture.pid);
      const { layout } = layoutForBinary(target.binary);
      const scannable = {
        pid: fixture.pid,
        binary: target.binary,
        layout,
        bias: target.bias,
        table: new GoroutineTable(),
        mem: new ProcessMemory(fixture.pid),
        counts: new LifecycleCounts(),
      };
      const rounds = ctx.quick ? 5 : 20;
      const cpu: number[] = [];
      const perG: number[] = []; // the same read with one iovec per g (mergeGap -1), interleaved
      const apply: number[] = [];
      let goroutines = 0;
      let bytes = 0;
      let reads = 0;
      GoroutineScanner.scanNow(scannable); // the inventory at attach
      for (let r = 0; r < rounds; r++) {
        const p0 = process.cpuUsage();
        scanGoroutines(scannable.mem, scannable, { mergeGap: -1 });
        const p1 = process.cpuUsage(p0);
        perG.push((p1.user + p1.system) / 1e3);
        const c0 = process.cpuUsage();
        const result = scanGoroutines(scannable.mem, scannable);
        const c1 = process.cpuUsage(c0);
        scannable.table.applyScan(result.goroutines, Number(process.hrtime.bigint()));
        const c2 = process.cpuUsage(c0);
        cpu.push((c1.user + c1.system) / 1e3);
        apply.push((c2.user + c2.system - c1.user - c1.system) / 1e3);
        goroutines = result.allgs;
        bytes = result.bytesRead;
        reads = result.reads;
      }
      scannable.mem.close();
      const ms = median(cpu);
      const applyMs = median(apply);
      const cmd = `${ctx.invocation} (scan: ${n} parked goroutines, ${rounds} scans)`;
      const interval = Math.min(policy.maxIntervalMs, Math.max(policy.minIntervalMs, (ms + applyMs) / policy.budget));
      figures.push(
        figure({ id: `${bench}.${n}.read_ms`, bench, label: `scan of ${n} goroutines: read allgs and every g (agent CPU, median)`, value: round(ms, 2), unit: 'ms', command: cmd, samples: cpu.map((x) => round(x, 2)), note: `${goroutines} in allgs; ${round(bytes / 1024)} KiB in ${reads} reads` }),
        figure({ id: `${bench}.${n}.read_ms.iovec_per_g`, bench, label: 'the same read with one iovec per g instead of neighbouring gs in one (interleaved)', value: round(median(perG), 2), unit: 'ms', command: cmd, samples: perG.map((x) => round(x, 2)) }),
        figure({ id: `${bench}.${n}.apply_ms`, bench, label: `applying it to the goroutine table (agent CPU, median)`, value: round(applyMs, 2), unit: 'ms', command: cmd, samples: apply.map((x) => round(x, 2)) }),
        figure({ id: `${bench}.${n}.per_goroutine`, bench, label: 'read + apply per goroutine', value: round(((ms + applyMs) * 1e3) / goroutines, 2), unit: 'us/goroutine', command: cmd }),
        figure({ id: `${bench}.${n}.interval`, bench, label: `scan interval the policy gives it alone (1% of a core, 250 ms..30 s)`, value: round(interval), unit: 'ms', command: cmd }),
      );
    } finally {
      await fixture.stop('SIGKILL');
    }
  }
  return figures;
}
