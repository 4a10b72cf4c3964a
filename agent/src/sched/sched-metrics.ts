// The scheduler's Prometheus metrics, per traced process: run-queue latency and system call time as
// histograms (from the SchedTable's own histograms at scrape time: nothing is observed per run), runs by what
// made the goroutine runnable, yields, preemptions, thread and P switches.
import { Counter, type Registry } from 'prom-client';
import type { LatencyHistogram } from './latency-histogram.ts';
import type { TracedProcess } from '../tracer/goroutine-tracer.ts';
import { histogramMetric } from '../metrics/histogram-metric.ts';
import { processCounter, type LabelledProcess } from '../metrics/process-counter.ts';
import { runnableCauseName, RunnableCause } from './sched-table.ts';

const SECONDS_BUCKETS = [1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

type Labelled = { pid: string; exe: string };

/** A histogram metric read from each process's LatencyHistogram (ns) when scraped, in seconds. */
function histogramFrom(name: string, help: string, each: () => Array<[Labelled, LatencyHistogram]>) {
  const boundsNs = SECONDS_BUCKETS.map((s) => s * 1e9);
  return histogramMetric(name, help, SECONDS_BUCKETS, () =>
    each().map(([labels, h]) => ({ labels, cumulative: h.cumulative(boundsNs), count: h.count, sum: h.sumNs / 1e9 })));
}

/** Registers the scheduler metrics; procs() lists the traced processes with their pid label. */
export function registerSchedMetrics(r: Registry, procs: () => LabelledProcess[]): void {
  const labelled = (pick: (p: TracedProcess) => LatencyHistogram) => () =>
    procs().filter(({ proc }) => pick(proc).count > 0).map(({ proc, pid }): [Labelled, LatencyHistogram] => [{ pid, exe: proc.info.exe }, pick(proc)]);
  r.registerMetric(
    histogramFrom(
      'goroscope_sched_run_queue_latency_seconds',
      'Run-queue latency: from a goroutine becoming runnable to running (runtime.execute), per process; while the scheduler probes were on.',
      labelled((p) => p.sched.runQueue),
    ) as never,
  );
  r.registerMetric(
    histogramFrom('goroscope_sched_syscall_seconds', 'Time in system calls (and cgo calls), entersyscall to exitsyscall, per process.', labelled((p) => p.sched.syscallTime)) as never,
  );
  new Counter({
    name: 'goroscope_sched_runs_total',
    help: 'Goroutines started running (runtime.execute), by what made them runnable (unknown: not seen).',
    labelNames: ['pid', 'exe', 'cause'],
    registers: [r],
    collect() {
      this.reset();
      for (const { proc, pid } of procs()) {
        for (const [cause, n] of Object.entries(proc.sched.counters.byCause)) {
          if (n > 0 && cause !== runnableCauseName(RunnableCause.preemptParked)) this.inc({ pid, exe: proc.info.exe, cause }, n);
        }
      }
    },
  });
  const counter = (name: string, help: string, pick: (p: TracedProcess) => number) => processCounter(r, procs, name, help, pick);
  counter('goroscope_sched_preemptions_total', 'Goroutines preempted by the scheduler (time slice, GC request) or suspended in place for the GC.', (p) => p.sched.counters.preemptions);
  counter('goroscope_sched_yields_total', 'runtime.Gosched calls.', (p) => p.sched.counters.yields);
  counter('goroscope_sched_thread_switches_total', 'Runs of a goroutine on another thread (M) than its run before.', (p) => p.sched.counters.threadSwitches);
  counter('goroscope_sched_p_switches_total', 'Runs of a goroutine on another P than its run before.', (p) => p.sched.counters.pSwitches);
}
