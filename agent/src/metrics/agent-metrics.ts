// The agent's Prometheus metrics (prom-client, its own registry). Cardinality stays bounded: goroutine
// gauges are per process x state x wait reason (a Go version has ~40 wait reasons), leak suspects per
// process x creation function, and processes beyond maxProcesses are summed under pid="other".
import { createServer, type Server } from 'node:http';
import { hostname } from 'node:os';
import { formatListenAddress, listenOn, parseListenAddress } from '../../../collector/src/net/listen-address.ts';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CycleRecord, FatalRecord, PauseRecord, RuntimeEventsTracer, RuntimeProcess } from '../runtime/runtime-tracer.ts';
import type { LeakDetector } from '../analysis/leaks.ts';
import type { AgentProfiles } from '../profiles/agent-profiles.ts';
import type { StackTable } from '../stacks/stack-table.ts';
import type { GoroutineTracer, TracedProcess } from '../tracer/goroutine-tracer.ts';
import type { OverheadGovernor } from '../overhead/governor.ts';
import { goroutineRecord } from '../snapshot/snapshot.ts';
import { registerSchedMetrics } from '../sched/sched-metrics.ts';
import { processCounter } from './process-counter.ts';
import { monoNowNs } from '../tracer/clock.ts';
import { binaryCacheStats, type BinaryCacheStats } from '../gobinary/index.ts';
import type { Shipper } from '../ship/shipper.ts';
import type { TcpTotals } from '../agent/connection-changes.ts';
import type { Parts } from '../health/parts.ts';

export interface AgentMetricsSources {
  /** Absent when the goroutine probes could not start (parts says why). */
  tracer?: GoroutineTracer;
  /** The agent's parts: which run, and why the others do not. */
  parts?: Parts;
  /** Per-process TCP totals (agent/src/agent/connection-changes.ts). */
  tcpTotals?: Map<number, TcpTotals>;
  /** What the trace model left out: report-interval records past the per-process cap (RecordBuilder). */
  segmentReportsDropped?: () => number;
  runtime?: RuntimeEventsTracer;
  /** The other record sources, for the count of records read. */
  tcp?: { records: number; lost?(): Record<string, number> };
  requests?: { records: number };
  leaks?: LeakDetector;
  shipper?: Shipper;
  /** The overhead budget's governor: its estimate of what the probes cost each process. */
  governor?: OverheadGovernor;
  /** The per-interval stack reads (agent/src/profiles/agent-profiles.ts) and the stack table they send through. */
  stacks?: { table: StackTable; profiles: AgentProfiles };
  maxProcesses?: number;
}

export class AgentMetrics {
  readonly registry = new Registry();
  private server?: Server;

  constructor(private readonly src: AgentMetricsSources) {
    const r = this.registry;
    // The agent's own footprint (its budget: ~100 MB idle); prom-client's default Node.js set is left out.
    new Gauge({
      name: 'goroscope_agent_memory_bytes',
      help: "The agent's memory: resident set, V8 heap used, and buffers outside the heap.",
      labelNames: ['kind'],
      registers: [r],
      collect() {
        const m = process.memoryUsage();
        this.set({ kind: 'rss' }, m.rss);
        this.set({ kind: 'heap_used' }, m.heapUsed);
        this.set({ kind: 'external' }, m.external);
      },
    });
    // Analysed Go binaries: one per build, shared by its processes, let go soon after the last exits.
    const binaries = (name: string, help: string, pick: (s: BinaryCacheStats) => number) =>
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          this.set(pick(binaryCacheStats()));
        },
      });
    binaries('goroscope_agent_binaries_cached', 'Go executables analysed and kept (one per build, shared by every process of it).', (s) => s.binaries);
    binaries('goroscope_agent_binary_references', 'Traced processes holding an analysed executable.', (s) => s.references);
    binaries('goroscope_agent_binary_kept_bytes', 'Bytes kept for the analysed executables: their pclntabs and indexes, not the files.', (s) => s.keptBytes);
    new Counter({
      name: 'goroscope_agent_binary_analyses_total',
      help: 'Go executables analysed since the agent started (a build is analysed once while it is kept).',
      registers: [r],
      collect() {
        this.reset();
        this.inc(binaryCacheStats().analyses);
      },
    });
    const maxProcesses = src.maxProcesses ?? 200;
    r.registerMetric(this.gcPause);
    r.registerMetric(this.stwPause);
    r.registerMetric(this.fatal);
    r.registerMetric(this.otlpExported);
    r.registerMetric(this.otlpFailures);
    const procLabel = (pid: number, i: number) => (i < maxProcesses ? String(pid) : 'other');
    const traced = () => src.tracer?.processes() ?? [];
    registerSchedMetrics(r, () => traced().slice(0, maxProcesses).map((proc, i) => ({ proc, pid: procLabel(proc.info.pid, i) })));

    new Gauge({
      name: 'goroscope_agent_part_up',
      help: "1 when a part of the agent runs, 0 when it could not start or is off; the reason is goroscope_agent_part_info's label.",
      labelNames: ['part'],
      registers: [r],
      collect() {
        this.reset();
        for (const p of src.parts?.list() ?? []) this.set({ part: p.name }, p.up ? 1 : 0);
      },
    });
    new Gauge({
      name: 'goroscope_agent_part_info',
      help: 'Why a part of the agent is down (or how it runs, e.g. a fallback), in one line with its fix.',
      labelNames: ['part', 'detail'],
      registers: [r],
      collect() {
        this.reset();
        for (const p of src.parts?.list() ?? []) if (p.detail) this.set({ part: p.name, detail: p.detail }, 1);
      },
    });

    new Gauge({
      name: 'goroscope_goroutines',
      help: 'Live goroutines by process, state and wait reason (user goroutines; runtime ones under system="true").',
      labelNames: ['pid', 'exe', 'state', 'wait_reason', 'system'],
      registers: [r],
      collect() {
        this.reset();
        const now = monoNowNs();
        traced().forEach((proc, i) => {
          const counts = new Map<string, number>();
          for (const row of proc.table.rows(now)) {
            const g = goroutineRecord(proc, row, now);
            const k = `${g.state}\u0000${g.waitReason ?? ''}\u0000${g.system}`;
            counts.set(k, (counts.get(k) ?? 0) + 1);
          }
          for (const [k, n] of counts) {
            const [state, reason, system] = k.split('\u0000');
            this.inc({ pid: procLabel(proc.info.pid, i), exe: proc.info.exe, state, wait_reason: reason, system }, n);
          }
        });
      },
    });

    const everyTraced = () => traced().map((proc, i) => ({ proc, pid: procLabel(proc.info.pid, i) }));
    const lifecycle = (name: string, help: string, pick: (proc: TracedProcess) => number) => processCounter(r, everyTraced, name, help, pick);
    // Creations and exits from the runtime's memory (its goroutine-id generator, allgs) as of the last scan,
    // whatever probes are on, or the probes' counts when those are ahead (records newer than the last scan).
    // Both only grow and neither overcounts, so the larger is the truer.
    lifecycle('goroscope_goroutines_created_total', "Goroutines created while observed (the runtime's goroutine ids, exact within a P's batch of 16 racing the read).", (p) => Math.max(p.scan.counts.sinceAttach()?.created ?? 0, p.table.counters.created));
    lifecycle('goroscope_goroutines_exited_total', 'Goroutines that exited while observed (creations less the growth of the live count).', (p) => Math.max(p.scan.counts.sinceAttach()?.exited ?? 0, p.table.counters.exited));
    lifecycle('goroscope_goroutine_parks_total', 'Parks recorded while the probes were on: sampled by the overhead budget, not scaled (goroscope_probe_coverage_ratio is the share of time sampled).', (p) => p.table.counters.parked);
    lifecycle('goroscope_goroutine_scans_total', "Reads of the runtime's goroutine list (states and counts from memory).", (p) => p.scan.counts.scans);
    lifecycle('goroscope_goroutine_scan_seconds_total', "Agent time spent reading the runtime's goroutine list.", (p) => p.scan.counts.scanNs / 1e9);

    new Gauge({
      name: 'goroscope_probe_coverage_ratio',
      help: 'Share of the observed time the goroutine probes were on (the overhead budget duty-cycles them): figures derived from their events (parks, wakers, blocked time, short-lived goroutines) are a sample of it; 1 under --full.',
      labelNames: ['pid', 'exe'],
      registers: [r],
      collect() {
        this.reset();
        traced().forEach((proc, i) => this.set({ pid: procLabel(proc.info.pid, i), exe: proc.info.exe }, src.governor ? src.governor.coverage(proc.info.pid) : 1));
      },
    });

    new Gauge({
      name: 'goroscope_probe_overhead_ratio',
      help: "Estimated cost of goroscope's probes as a share of the process's CPU at the current duty cycle, by probes (the goroutine and request probes are duty-cycled to the overhead budget together; requests: the request probes, duty-cycled with them; tcp_always_on: TCP's probes that stay on, its accept uprobe in Go processes and, with --tcp-syscall-hooks, its hooks on every system call, charged to the budget first).",
      labelNames: ['pid', 'exe', 'probes'],
      registers: [r],
      collect() {
        this.reset();
        if (!src.governor) return;
        traced().forEach((proc, i) => {
          const est = src.governor!.estimatedOverhead(proc.info.pid);
          if (!est) return;
          const labels = { pid: procLabel(proc.info.pid, i), exe: proc.info.exe };
          this.inc({ ...labels, probes: 'create_exit' }, est.createExit);
          this.inc({ ...labels, probes: 'park_ready' }, est.parkReady);
          if (est.requests > 0) this.inc({ ...labels, probes: 'requests' }, est.requests);
          if (est.alwaysOn > 0) this.inc({ ...labels, probes: 'tcp_always_on' }, est.alwaysOn);
        });
      },
    });

    new Gauge({
      name: 'goroscope_probe_hit_cost_nanoseconds',
      help: "What a probe hit is charged, by process: measured in the process itself (its CPU per byte read and written with the probes on beside off, per hit counted) or, until that is more, the node's calibration (source).",
      labelNames: ['pid', 'exe', 'source'],
      registers: [r],
      collect() {
        this.reset();
        if (!src.governor) return;
        traced().forEach((proc, i) => {
          const cost = src.governor!.hitCost(proc.info.pid);
          if (cost) this.set({ pid: procLabel(proc.info.pid, i), exe: proc.info.exe, source: cost.source }, cost.nsPerHit);
        });
      },
    });

    new Gauge({
      name: 'goroscope_leak_suspects',
      help: 'Goroutines in leak-suspect groups, by process and creation function.',
      labelNames: ['pid', 'exe', 'created_by', 'start_function', 'kind'],
      registers: [r],
      collect() {
        this.reset();
        if (!src.leaks) return;
        traced().forEach((proc, i) => {
          for (const s of src.leaks!.suspects(proc).slice(0, 20)) {
            this.set({ pid: procLabel(proc.info.pid, i), exe: proc.info.exe, created_by: s.createdBy?.function ?? '', start_function: s.startFunction ?? '', kind: s.kind }, s.count);
          }
        });
      },
    });

    const tcpCounter = (name: string, help: string, pick: (t: TcpTotals) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['pid'],
        registers: [r],
        collect() {
          this.reset();
          let i = 0;
          for (const [pid, t] of src.tcpTotals ?? []) this.inc({ pid: procLabel(pid, i++) }, pick(t));
        },
      });
    tcpCounter('goroscope_tcp_connections_opened_total', 'TCP connections opened (connect or accept), by process.', (t) => t.opened);
    tcpCounter('goroscope_tcp_connections_failed_total', 'TCP connections that ended with an error (refused, reset, timed out).', (t) => t.failed);
    tcpCounter('goroscope_tcp_retransmits_total', 'TCP segments retransmitted, by process.', (t) => t.retransmits);
    tcpCounter('goroscope_tcp_resets_total', 'TCP resets sent or received, by process.', (t) => t.resets);

    new Counter({
      name: 'goroscope_trace_dropped_total',
      help: "What the trace model left out, by what: a goroutine's long parks past the ones kept until shipped, report-interval records past the per-process cap.",
      labelNames: ['what'],
      registers: [r],
      collect() {
        this.reset();
        this.inc({ what: 'long_parks' }, traced().reduce((n, p) => n + p.table.counters.longParksDropped, 0));
        this.inc({ what: 'segment_reports' }, src.segmentReportsDropped?.() ?? 0);
      },
    });
    new Counter({
      name: 'goroscope_records_total',
      help: 'Records read from the BPF ring buffers, by source: goroutines (lifecycle and scheduler), runtime (GC pauses, fatal errors), tcp, http (requests).',
      labelNames: ['source'],
      registers: [r],
      collect() {
        this.reset();
        const sources: Array<[string, { records: number } | undefined]> = [['goroutines', src.tracer], ['runtime', src.runtime], ['tcp', src.tcp], ['http', src.requests]];
        for (const [source, t] of sources) if (t) this.inc({ source }, t.records);
      },
    });
    new Counter({
      name: 'goroscope_records_lost_total',
      help: 'Records the BPF programs could not write (ring buffer full), by source (goroutines, runtime, tcp) and probe. Requests: goroscope_http_records_lost_total.',
      labelNames: ['source', 'probe'],
      registers: [r],
      collect() {
        this.reset();
        const sources: Array<[string, (() => Record<string, number>) | undefined]> = [
          ['goroutines', src.tracer && (() => src.tracer!.lost())], ['runtime', src.runtime && (() => src.runtime!.lost())],
          ['tcp', src.tcp?.lost && (() => src.tcp!.lost!())]];
        for (const [source, lost] of sources) for (const [probe, n] of Object.entries(lost?.() ?? {})) this.inc({ source, probe }, n);
      },
    });
    new Gauge({
      name: 'goroscope_traced_processes',
      help: 'Go processes being traced.',
      registers: [r],
      collect() {
        this.set(traced().length);
      },
    });
    new Counter({
      name: 'goroscope_ship_dropped_records_total',
      help: 'Records dropped, by reason: spool_full (the collector was away too long), refused (the collector refused their batch), too_big (one record over the collector\'s message limit).',
      labelNames: ['reason'],
      registers: [r],
      collect() {
        this.reset();
        const d = src.shipper?.stats.droppedByReason;
        this.inc({ reason: 'spool_full' }, d?.spoolFull ?? 0);
        this.inc({ reason: 'refused' }, d?.refused ?? 0);
        this.inc({ reason: 'too_big' }, d?.tooBig ?? 0);
      },
    });
    new Counter({
      name: 'goroscope_ship_spool_corrupt_files_total',
      help: 'Spool files that could not be read back at start (set aside in corrupt/; their batches are lost).',
      registers: [r],
      collect() {
        this.reset();
        this.inc(src.shipper?.stats.corruptSpoolFiles ?? 0);
      },
    });
    new Counter({
      name: 'goroscope_ship_epochs_started_total',
      help: 'Times the spool\'s seq counter was lost or unreadable at start, so new batches began a new epoch.',
      registers: [r],
      collect() {
        this.reset();
        this.inc(src.shipper?.stats.counterResets ?? 0);
      },
    });
    new Counter({
      name: 'goroscope_ship_reconnects_total',
      help: 'Times the connection to the collector was lost or could not be made (each is retried, with backoff).',
      registers: [r],
      collect() {
        this.reset();
        this.inc(src.shipper?.stats.reconnects ?? 0);
      },
    });
    new Gauge({
      name: 'goroscope_ship_connected',
      help: '1 while the agent has a welcomed connection to the collector.',
      registers: [r],
      collect() {
        this.set(src.shipper?.stats.connected ? 1 : 0);
      },
    });
    new Counter({
      name: 'goroscope_probes_detached_on_exit_total',
      help: 'Probe links the agent removed the moment their process exited (a pidfd per traced process), by tracer.',
      labelNames: ['tracer'],
      registers: [r],
      collect() {
        this.reset();
        const detached = (bpf: { exitStats(): { detachedLinks: number } } | undefined) => {
          try {
            return bpf?.exitStats().detachedLinks ?? 0;
          } catch {
            return 0; // closed: the agent is stopping
          }
        };
        this.inc({ tracer: 'goroutines' }, detached(src.tracer?.bpf));
        this.inc({ tracer: 'runtime' }, detached(src.runtime?.bpf));
      },
    });
    new Gauge({
      name: 'goroscope_stack_table_entries',
      help: 'Distinct stacks the agent remembers having sent (bounded; the least recently used are forgotten).',
      registers: [r],
      collect() {
        this.set(src.stacks?.table.size ?? 0);
      },
    });
    new Counter({
      name: 'goroscope_stack_table_evictions_total',
      help: 'Stacks forgotten to keep the table bounded (sent again under a new id if they come back).',
      registers: [r],
      collect() {
        this.reset();
        this.inc(src.stacks?.table.evicted ?? 0);
      },
    });
    new Counter({
      name: 'goroscope_stack_read_failures_total',
      help: "Per-interval reads of a process's stacks that failed (the process exited mid-read...): its profiles are missing for that interval.",
      registers: [r],
      collect() {
        this.reset();
        this.inc(src.stacks?.profiles.failures ?? 0);
      },
    });
    new Gauge({
      name: 'goroscope_ship_spooled_bytes',
      help: 'Bytes of batches waiting for the collector.',
      registers: [r],
      collect() {
        this.set(src.shipper?.stats.spooledBytes ?? 0);
      },
    });
  }

  /** What `--otlp-endpoint` export did (agent/src/agent/otlp.ts), by signal. */
  private readonly otlpExported = new Counter({
    name: 'goroscope_agent_otlp_exported_total',
    help: 'Spans, metric data points and log records sent to the OTLP endpoint, by signal.',
    labelNames: ['signal'],
    registers: [],
  });

  private readonly otlpFailures = new Counter({
    name: 'goroscope_agent_otlp_failures_total',
    help: 'OTLP export requests that failed (all signals), and spans dropped: in failed requests, or because the export queue was full.',
    labelNames: ['what'],
    registers: [],
  });

  readonly otlpCounters = {
    exportedSpans: { inc: (n = 1) => this.otlpExported.inc({ signal: 'traces' }, n) },
    exportedMetricPoints: { inc: (n = 1) => this.otlpExported.inc({ signal: 'metrics' }, n) },
    exportedLogRecords: { inc: (n = 1) => this.otlpExported.inc({ signal: 'logs' }, n) },
    exportErrors: { inc: (n = 1) => this.otlpFailures.inc({ what: 'requests' }, n) },
    exportErrorSpans: { inc: (n = 1) => this.otlpFailures.inc({ what: 'spans_in_failed_requests' }, n) },
    exportDroppedSpans: { inc: (n = 1) => this.otlpFailures.inc({ what: 'spans_dropped_queue_full' }, n) },
  };

  /** Fed by the runtime tracer as pauses and fatal errors arrive. */
  onRuntimeEvent(p: RuntimeProcess, e: PauseRecord | CycleRecord | FatalRecord): void {
    const labels = { pid: String(p.pid), exe: p.info.exe };
    if ('durationNs' in e && 'reason' in e) {
      if (e.gc) this.gcPause.observe(labels, e.durationNs / 1e9);
      else this.stwPause.observe({ ...labels, reason: e.reason }, e.durationNs / 1e9);
    } else if ('kind' in e && 'text' in e) {
      this.fatal.inc({ ...labels, kind: e.kind });
    }
  }

  private readonly gcPause = new Histogram({
    name: 'goroscope_gc_pause_seconds',
    help: 'GC stop-the-world pauses (sweep and mark termination), by process.',
    labelNames: ['pid', 'exe'],
    buckets: [1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.5],
    registers: [],
  });

  private readonly stwPause = new Histogram({
    name: 'goroscope_stw_pause_seconds',
    help: 'Other stop-the-world pauses (ReadMemStats, goroutine profiles, ...), by process and reason.',
    labelNames: ['pid', 'exe', 'reason'],
    buckets: [1e-5, 1e-4, 1e-3, 0.01, 0.1, 1],
    registers: [],
  });

  private readonly fatal = new Counter({
    name: 'goroscope_fatal_errors_total',
    help: 'Fatal errors and fatal panics seen in traced processes (the message is in the snapshot and the logs).',
    labelNames: ['pid', 'exe', 'kind'],
    registers: [],
  });

  async text(): Promise<string> {
    return this.registry.metrics();
  }

  /** Where /metrics is served, once listen() has bound it. */
  url?: string;

  /** Serves /metrics on a listen address (collector/src/net/listen-address.ts); resolves with the bound port. */
  async listen(listen: string): Promise<number> {
    const address = parseListenAddress(listen);
    this.server = createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('not found\n');
        return;
      }
      this.text().then(
        (body) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(body),
        (e: Error) => res.writeHead(500).end(`${e.message}\n`),
      );
    });
    const server = this.server;
    // A port in use or an address not of this machine rejects (the agent reports it and runs on without).
    const port = await listenOn(server, address).catch((e: unknown) => {
      this.server = undefined;
      throw e;
    });
    this.url = `http://${formatListenAddress(address, port).replace(/^\*/, hostname())}/metrics`;
    return port;
  }

  close(): void {
    this.server?.close();
  }
}
