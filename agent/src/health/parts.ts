// The agent is made of parts that start on their own: a part that cannot start (or fails later) is reported
// once, in one line that says why and what would fix it, and the rest runs. The same list is in the log,
// in /metrics (goroscope_agent_part_up) and in the snapshot.
import { explainLine, firstLine } from './explain.ts';

export type PartName = 'goroutines' | 'runtime' | 'requests' | 'tcp' | 'pod-metadata' | 'metrics' | 'otlp';

/** What each part does, for the one line that says it is missing. */
export const partRoles: Record<PartName, string> = {
  goroutines: 'goroutine probes (created, parked, readied, exited)',
  runtime: 'runtime probes (GC pauses, fatal errors)',
  requests: 'request probes (net/http and grpc-go servers)',
  tcp: 'TCP connections',
  'pod-metadata': 'pod names from the API server',
  metrics: 'the Prometheus /metrics listener',
  otlp: 'OTLP export (traces, metrics, logs)',
};

export interface PartState {
  name: PartName;
  up: boolean;
  /** Down: why, in one line, with the fix. Up: how it runs, when that is worth saying (e.g. a fallback). */
  detail?: string;
  /** The error's own first line, for a bug report. */
  error?: string;
}

export class Parts {
  private readonly states = new Map<PartName, PartState>();

  constructor(private readonly log: (line: string) => void) {}

  /** Runs a part's start; a failure is recorded and logged once, and undefined returned. */
  start<T>(name: PartName, fn: () => T): T | undefined {
    try {
      const v = fn();
      this.up(name);
      return v;
    } catch (e) {
      this.fail(name, e);
      return undefined;
    }
  }

  async startAsync<T>(name: PartName, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      const v = await fn();
      this.up(name);
      return v;
    } catch (e) {
      this.fail(name, e);
      return undefined;
    }
  }

  up(name: PartName, detail?: string): void {
    const was = this.states.get(name);
    this.states.set(name, { name, up: true, detail });
    if (was && !was.up) this.log(`${partRoles[name]}: running again`);
    else if (detail && was?.detail !== detail) this.log(`${partRoles[name]}: ${detail}`);
  }

  /** Marks a part down; logs only when its state or reason changed (a retrying part says it once). */
  fail(name: PartName, e: unknown): void {
    const detail = explainLine(`no ${partRoles[name]}`, e);
    const was = this.states.get(name);
    this.states.set(name, { name, up: false, detail, error: firstLine(e) });
    if (!was || was.up || was.detail !== detail) this.log(detail);
  }

  /** Not started on purpose (e.g. --no-tcp): listed as down with that reason, not logged as a failure. */
  off(name: PartName, why: string): void {
    this.states.set(name, { name, up: false, detail: `${partRoles[name]}: off (${why})` });
  }

  state(name: PartName): PartState | undefined {
    return this.states.get(name);
  }

  list(): PartState[] {
    return [...this.states.values()];
  }
}

