// Server requests of Go processes: net/http (HTTP/1 and HTTP/2) and grpc-go, one BPF object (bpf/http.bpf.c)
// and ring buffer for all processes, a layout per build (read from its DWARF), uprobes per process
// (http-probes.ts). Each request is tied to the goroutine that served it; fed the goroutine tracer's park and
// ready records (onGoroutineRecord), it says how long that goroutine parked inside the request, and why.
import { percpuCounters } from '../bpf/bridge.ts';
import { deleteProcessEntries, processKeys } from '../bpf/detacher.ts';
import { openEventsSource, type EventTransport } from '../bpf/events-source.ts';
import { goAbiReg } from '../events/goabi.ts';
import { ev, GoroutineEventKind } from '../events/goroutine-event.ts';
import {
  decodeHttpEvent,
  encodeHttpLayout,
  forEachHttpEvent,
  HTTP_FIELD_ABSENT,
  HTTP_MAX_LAYOUTS,
  HTTP_PROBE_KINDS,
  httpEventLayout,
  HttpProbe,
  type HttpEventRecord,
} from '../events/http-event.ts';
import { waitReasonString, type RuntimeLayout } from '../gobinary/layouts.ts';
import { ProcessError } from '../proc/process.ts';
import { monoNowNs, monoToWallMs } from '../tracer/clock.ts';
import type { Target } from '../tracer/target.ts';
import { LayoutSlots, Tracer, type ProcessTracer } from '../tracer/tracer.ts';
import { LayoutHits } from '../tracer/layout-hits.ts';
import { HTTP_FUNCS, httpLayoutFor, type HttpLayout } from './http-layout.ts';
import { httpCookie, planHttpProbes, type HttpEnd, type HttpPlanOptions, type HttpProbeSite } from './http-probes.ts';
import { RunnableCause } from '../events/goroutines.bpf.ts';
import { RequestWaits, type RequestSchedSummary } from './request-waits.ts';

export interface HttpTracerOptions {
  transport?: EventTransport | 'auto';
  ringBytes?: number;
  pollMs?: number;
  /** How long after a request's end to settle it: the goroutine events of its time must have been read. */
  settleNs?: number;
  /** Recent requests kept per process. */
  lastN?: number;
}

/** A wait of the serving goroutine inside a request. */
export interface RequestPark {
  reason: string;
  startNs: number;
  durationNs: number;
  /** Ended without a ready (an IO wait the netpoller ended): its end is where the goroutine was next seen. */
  resumedUnseen: boolean;
  wakerGoid: number;
}

/** One request (or gRPC call), settled. */
export interface ServerRequest extends HttpEventRecord {
  durationNs: number;
  wallMs: number;
  /** A bounded label for metrics: the route (pattern), the gRPC method, or "unmatched". */
  routeLabel: string;
  /** The serving goroutine's parks inside it; null when its park/ready events were not being read. */
  parked: { totalNs: number; byReason: Record<string, number>; parks: RequestPark[]; truncated: boolean } | null;
  /**
   * Its time split: running (on a thread, system calls included), runnable (in a run queue) and parked (`parked`),
   * with its runs and preemptions inside it; null when the scheduler probes' records were not being read, or some
   * of those inside it were dropped (bounded per goroutine).
   */
  sched: RequestSched | null;
}

export interface RequestSched {
  runningNs: number;
  runnableNs: number;
  syscallNs: number;
  runs: number;
  preemptions: number;
}

export interface HttpProcess extends Target {
  pid: number;
  /** Offsets in net/http and grpc-go's structs, and their argument registers (from the binary's DWARF). */
  httpLayout: HttpLayout;
  layoutId: number;
  sites: HttpProbeSite[];
  /** Where an HTTP request's end is probed (null: no net/http probe). */
  end: HttpEnd | null;
  skipped: string[];
  links: number[];
  attachedAtNs: number;
  /** Park/ready records of this process are fed in: parks inside requests are known. */
  waits: RequestWaits | null;
  /** The last lastN to 2 x lastN requests settled. */
  requests: ServerRequest[];
  seen: number;
  /** The probes' hits so far, in emulated-hit equivalents (HIT_EQUIVALENTS): the overhead budget counts them. */
  hitEquivalents: number;
}

const ROUTE_UNMATCHED = 'unmatched';

/** The parks of a request inside which its goroutine never parked. */
const NOT_PARKED: NonNullable<ServerRequest['parked']> = Object.freeze({ totalNs: 0, byReason: Object.freeze({}), parks: Object.freeze([]) as unknown as RequestPark[], truncated: false });

/**
 * What one request costs the process, in hits at an emulated site (what calibrateHitCost measures): an entry is
 * one; a RET is single-stepped, two traps and the copy out of line, ~4.7 emulated hits here (FACTS.md: ~4.5 us
 * against ~0.95 us). An HTTP request ends at an entry ('done') or, in a build where that cannot be probed, at a
 * RET of ServeHTTP; a gRPC call is two entries and a RET. An HTTP request's two programs also run ~0.9 hit more
 * than two park/ready programs do (BPF run time in the hello server under wrk: ServeHTTP's entry 615 ns, its end
 * 1,580 ns, against gopark 440 and ready 530; a hit there is ~1,300 ns): one more.
 */
export const HIT_EQUIVALENTS = { done: { http: 3, grpc: 2 + 4.7 }, ret: { http: 1 + 4.7 + 1, grpc: 2 + 4.7 } } as const;

/** The same by probe, for the BPF programs' counters (a request's probes add up to HIT_EQUIVALENTS): ServeHTTP's
 * entry carries the one more of an HTTP request's two programs. */
const PROBE_HIT_EQUIVALENTS: Record<keyof typeof HttpProbe, number> = { serve: 2, serveRet: 4.7, serveDone: 1, serveHijack: 1, grpcHandle: 1, grpcHandleRet: 4.7, grpcStatus: 1 };

export interface HttpAttachOptions extends HttpPlanOptions {
  /** Park/ready records of this process will be fed in (onGoroutineRecord): requests carry their parks. */
  waits?: boolean;
  /** Planned but left off: the overhead governor switches them on with the goroutine probes (setProbes). */
  off?: boolean;
}

export class HttpTracer extends Tracer<HttpProcess> implements ProcessTracer<HttpProcess, HttpAttachOptions> {
  private readonly opts: Required<Omit<HttpTracerOptions, 'transport'>>;
  private readonly layouts: LayoutSlots;
  private readonly pending: HttpEventRecord[] = [];
  private settleTimer: NodeJS.Timeout | undefined;
  private onRequest?: (p: HttpProcess, r: ServerRequest) => void;
  /** Each process's hits from the BPF counters, in emulated-hit equivalents. */
  private readonly layoutHits = new LayoutHits((id) => {
    const h = this.hits(id);
    let sum = 0;
    for (const k of Object.keys(PROBE_HIT_EQUIVALENTS) as Array<keyof typeof HttpProbe>) sum += h[k] * PROBE_HIT_EQUIVALENTS[k];
    return [sum];
  }, 1, (pid) => this.procs.get(pid)?.hitEquivalents ?? 0);

  constructor(opts: HttpTracerOptions = {}) {
    const o = {
      ringBytes: opts.ringBytes ?? 1 << 22,
      pollMs: opts.pollMs ?? 10,
      settleNs: opts.settleNs ?? 150e6,
      lastN: opts.lastN ?? 4096,
    };
    const source = openEventsSource({
      object: 'http',
      map: 'http_events',
      recordSize: httpEventLayout.size,
      ringBytes: o.ringBytes,
      perfWakeupBytes: 0,
      ringWakeupBytes: 256 << 10,
      transport: opts.transport,
    });
    super(source, o.pollMs);
    this.opts = o;
    this.layouts = new LayoutSlots(this.bpf, 'http_layouts', HTTP_MAX_LAYOUTS);
  }

  override start(onRequest?: (p: HttpProcess, r: ServerRequest) => void): void {
    if (this.reading) return;
    this.onRequest = onRequest;
    super.start();
  }

  /**
   * Settles every 25 ms while requests wait to be settled, and not at all otherwise: an idle process, or the off
   * part of the overhead budget's duty cycle (most of the time at saturation), wakes the agent for nothing.
   */
  private armSettle(): void {
    if (this.settleTimer || this.pending.length === 0 || this.closed) return;
    this.settleTimer = setTimeout(() => {
      this.settleTimer = undefined;
      this.settle(monoNowNs());
      this.armSettle();
    }, 25);
    this.settleTimer.unref();
  }

  /** Applies what the ring holds and settles every request read; reading goes on. */
  override async drain(): Promise<void> {
    await super.drain();
    this.settle(Infinity);
  }

  private layoutId(g: RuntimeLayout, l: HttpLayout): number {
    const A = HTTP_FIELD_ABSENT;
    return this.layouts.idOf(encodeHttpLayout({
      g_goid: g.g.fields.goid.offset,
      serve_rw_reg: goAbiReg(l.serve?.rwReg),
      serve_req_reg: goAbiReg(l.serve?.reqReg),
      req_method: l.request?.method ?? A,
      req_url: l.request?.url ?? A,
      url_path: l.urlPath ?? A,
      req_proto_major: l.request?.protoMajor ?? A,
      req_proto_minor: l.request?.protoMinor ?? A,
      req_content_length: l.request?.contentLength ?? A,
      req_pattern: l.request?.pattern ?? A,
      resp_status: l.response?.status ?? A,
      resp_written: l.response?.written ?? A,
      h2rw_rws: l.http2?.rws ?? A,
      rws_status: l.http2?.status ?? A,
      rws_wrote_bytes: l.http2?.wroteBytes ?? A,
      grpc_stream_reg: goAbiReg(l.grpc?.streamReg),
      ss_stream: l.grpc?.serverStreamStream ?? A,
      stream_method: l.grpc?.method ?? A,
      status_st_reg: goAbiReg(l.grpc?.statusReg),
      status_s: l.grpc?.statusS ?? A,
      spb_code: l.grpc?.code ?? A,
      req_header: l.headers?.header ?? A,
      map_used: l.headers?.used ?? A,
      map_dir_ptr: l.headers?.dirPtr ?? A,
      map_dir_len: l.headers?.dirLen ?? A,
      table_groups_data: l.headers?.groupsData ?? A,
      table_groups_mask: l.headers?.groupsMask ?? A,
    }));
  }

  /**
   * Attaches the request probes to a running Go process. A binary with no net/http server or grpc-go server, or
   * whose layout is unknown (stripped, and its Go not in http-layouts.json; grpc-go when stripped), gets no probe
   * for it: `skipped` says why. `waits`: park/ready records of
   * this process will be fed in (onGoroutineRecord), so requests carry their goroutine's parks.
   */
  attach(target: Target, opts: HttpAttachOptions = {}): HttpProcess {
    const { info, binary } = target;
    const pid = info.pid;
    const old = this.procs.get(pid);
    if (old && old.links.length) throw new ProcessError(`pid ${pid} is already traced`);
    // Read from DWARF (or the table) and planned once per build: every process of the binary shares them.
    const layout = binary.analysis('http-layout', () => httpLayoutFor(binary.elf, binary.goVersion, binary.func(HTTP_FUNCS.handleStream) !== undefined));
    const plan = binary.analysis(`http-probes:${opts.end ?? ''}`, () => planHttpProbes(binary, layout, opts));
    const layoutId = this.layoutId(target.layout, layout);
    const proc: HttpProcess = {
      ...target,
      pid,
      httpLayout: layout,
      layoutId,
      sites: plan.sites,
      end: plan.end,
      skipped: plan.skipped,
      links: [],
      attachedAtNs: monoNowNs(),
      // Parks are kept only for processes with a server probed: others' would cost the agent for nothing.
      waits: opts.waits && plan.sites.length > 0 ? new RequestWaits() : null,
      requests: [],
      seen: 0,
      hitEquivalents: 0,
    };
    this.procs.set(pid, proc);
    this.layoutHits.add(pid, layoutId);
    this.waitsPid = -1;
    try {
      if (!opts.off) this.attachSites(proc);
    } catch (e) {
      void this.detach(pid);
      throw e;
    }
    return proc;
  }

  detach(pid: number): Promise<void> {
    const proc = this.procs.get(pid);
    if (!proc) return Promise.resolve();
    const links = proc.links;
    proc.links = [];
    return this.detacher.detach(links).then(() => {
      if (!this.closed) deleteProcessEntries(this.bpf, 'http_inflight', pid);
    });
  }

  /**
   * Switches a traced process's request probes (the overhead budget's duty cycle). Off leaves nothing behind:
   * its requests in flight are forgotten once the probes are gone (detach), so an end seen in a later window is
   * never paired with a start from an earlier one; it counts as an end with no start.
   */
  setProbes(pid: number, on: boolean): Promise<void> {
    const proc = this.procs.get(pid);
    if (!proc) return Promise.resolve();
    if (!on) return this.detach(pid);
    if (!proc.links.length) this.attachSites(proc);
    return Promise.resolve();
  }

  private attachSites(proc: HttpProcess): void {
    for (const s of proc.sites) proc.links.push(this.bpf.attachUprobe(s.program, proc.info.exeLink, s.fileOffset, proc.pid, httpCookie(s, proc.layoutId)));
  }

  /** Requests in flight that BPF holds for a process (a start seen, its end not yet), once pending detaches are done. */
  async inflight(pid: number): Promise<number> {
    await this.detacher.idle();
    return processKeys(this.bpf, 'http_inflight', pid).length;
  }

  forget(pid: number): void {
    void this.detach(pid);
    this.procs.delete(pid);
    this.layoutHits.remove(pid);
    this.waitsPid = -1;
  }

  /**
   * A process's request probe hits since it was attached, in emulated-hit equivalents, as the BPF programs counted
   * them (whether or not the agent has read their records yet): what the overhead budget charges.
   */
  probeHits(pid: number): number {
    return this.layoutHits.hits(pid)?.[0] ?? 0;
  }

  /** The last process onGoroutineRecord looked up (records come in runs of one process); reset when processes change. */
  private waitsPid = -1;
  private waitsOf: RequestWaits | null = null;

  /** A record of the goroutine tracer (its RecordVisitor): parks and readies of the processes traced here. */
  onGoroutineRecord(pid: number, kind: number, v: DataView, at: number): void {
    if (pid !== this.waitsPid) {
      this.waitsPid = pid;
      this.waitsOf = this.procs.get(pid)?.waits ?? null;
    }
    const w = this.waitsOf;
    if (!w) return;
    const ts = ev.tsNs(v, at);
    switch (kind) {
      case GoroutineEventKind.park:
        w.onPark(ev.goid(v, at), ev.waitReason(v, at), ts);
        break;
      case GoroutineEventKind.ready:
        w.onReady(ev.goid(v, at), ev.otherGoid(v, at), ts);
        break;
      case GoroutineEventKind.create:
        w.onCreate(ev.otherGoid(v, at), ts);
        break;
      case GoroutineEventKind.exit:
        w.onExit(ev.goid(v, at), ts);
        break;
      case GoroutineEventKind.run:
        w.onRun(ev.goid(v, at), ts, ev.cause(v, at) === RunnableCause.unknown ? null : ev.durationNs(v, at));
        break;
      case GoroutineEventKind.yield: {
        const cause = ev.cause(v, at);
        if (cause === RunnableCause.preempted || cause === RunnableCause.preemptParked) w.onPreempt(ev.goid(v, at), ts);
        break;
      }
      case GoroutineEventKind.syscall:
        w.onSyscall(ev.goid(v, at), ts, ev.durationNs(v, at));
        break;
    }
  }

  protected applyBatch(batch: Buffer): number {
    const n = forEachHttpEvent(batch, (view, at) => {
      const r = decodeHttpEvent(batch, view, at);
      const proc = this.procs.get(r.pid);
      if (!proc) {
        this.strayRecords++;
        return;
      }
      proc.hitEquivalents += HIT_EQUIVALENTS[proc.end ?? 'ret'][r.kind];
      this.pending.push(r);
    });
    this.armSettle();
    return n;
  }

  /** Settles the requests that ended settleNs before now (all of them with Infinity). */
  private settle(nowNs: number): void {
    let n = 0;
    while (n < this.pending.length && this.pending[n].endNs + this.opts.settleNs <= nowNs) n++;
    // Records of one ring are in end order per CPU; a later one may have ended earlier: settle by the first's time.
    if (n === 0) return;
    for (const r of this.pending.splice(0, n)) {
      const proc = this.procs.get(r.pid);
      if (!proc) continue;
      const req = this.settleOne(proc, r);
      proc.seen++;
      proc.requests.push(req);
      // Trimmed in one go at twice the bound: a splice per request moved the whole array each time (at 10k
      // requests/s, the agent's largest self time).
      if (proc.requests.length >= 2 * this.opts.lastN) proc.requests.splice(0, proc.requests.length - this.opts.lastN);
      this.onRequest?.(proc, req);
    }
  }

  /** What schedInside fills for the request being settled (copied into its own RequestSched). */
  private readonly schedScratch: RequestSchedSummary = { runnableNs: 0, syscallNs: 0, runs: 0, preemptions: 0, truncated: false };

  private settleOne(proc: HttpProcess, r: HttpEventRecord): ServerRequest {
    let parked: ServerRequest['parked'] = null;
    if (proc.waits) {
      const s = proc.waits.inside(r.goid, r.startNs, r.endNs);
      if (s.parks.length === 0 && !s.truncated) {
        parked = NOT_PARKED; // most requests: one shared value, never written
      } else {
        const byReason: Record<string, number> = {};
        for (const [reason, ns] of s.parkedByReason) {
          const name = waitReasonString(proc.layout, reason) || `waitReason(${reason})`;
          byReason[name] = (byReason[name] ?? 0) + ns;
        }
        parked = {
          totalNs: s.parkedNs,
          byReason,
          parks: s.parks.map((p) => ({
            reason: waitReasonString(proc.layout, p.reason) || `waitReason(${p.reason})`,
            startNs: p.from,
            durationNs: p.to - p.from,
            resumedUnseen: p.resumedUnseen,
            wakerGoid: p.waker,
          })),
          truncated: s.truncated,
        };
      }
    }
    const durationNs = r.endNs - r.startNs;
    const s = parked && proc.waits ? proc.waits.schedInside(r.goid, r.startNs, r.endNs, this.schedScratch) : null;
    const sched: RequestSched | null = s && !s.truncated && parked ? {
      runningNs: Math.max(0, durationNs - parked.totalNs - s.runnableNs),
      runnableNs: s.runnableNs,
      syscallNs: s.syscallNs,
      runs: s.runs,
      preemptions: s.preemptions,
    } : null;
    const routeLabel = r.kind === 'grpc' ? r.path : r.route || ROUTE_UNMATCHED;
    // The decoded record becomes the request (a spread copy of its 18 fields was most of this function's time).
    const req = r as ServerRequest;
    req.durationNs = durationNs;
    req.wallMs = monoToWallMs(r.endNs);
    req.routeLabel = routeLabel;
    req.parked = parked;
    req.sched = sched;
    return req;
  }

  /** Records lost in BPF, by probe: ring buffer full, or an end with no start (attached mid-request). */
  lost(): Record<string, number> {
    return percpuCounters(this.bpf, 'http_drop_counts', HttpProbe);
  }

  hits(layoutId: number): Record<string, number> {
    return percpuCounters(this.bpf, 'http_hit_counts', HttpProbe, layoutId * HTTP_PROBE_KINDS);
  }

  override async close(): Promise<void> {
    await this.drain();
    await super.close();
    clearTimeout(this.settleTimer);
    this.settleTimer = undefined;
  }
}
