// A Prometheus counter per traced process, read from the process's own counts when scraped (nothing is counted
// twice: the tables keep the counts, the metric only shows them).
import { Counter, type Registry } from 'prom-client';
import type { TracedProcess } from '../tracer/goroutine-tracer.ts';

/** A traced process and its pid label ("other" for those past the agent's label limit: summed under it). */
export interface LabelledProcess {
  proc: TracedProcess;
  pid: string;
}

export function processCounter(r: Registry, procs: () => LabelledProcess[], name: string, help: string, pick: (p: TracedProcess) => number): Counter {
  return new Counter({
    name,
    help,
    labelNames: ['pid', 'exe'],
    registers: [r],
    collect() {
      this.reset();
      for (const { proc, pid } of procs()) this.inc({ pid, exe: proc.info.exe }, pick(proc));
    },
  });
}
