// Traces the goroutine lifecycle of Go processes: one BPF object and ring buffer for all of them, a
// runtime layout per Go version in a BPF array map, uprobes per process, a goroutine table per process.
import { percpuCounters, u32Key } from '../bpf/bridge.ts';
import { openEventsSource, type EventTransport } from '../bpf/events-source.ts';
import { deleteProcessEntries } from '../bpf/detacher.ts';
import {
  encodeGoidEpoch,
  encodeRuntimeLayout,
  ev,
  forEachGoroutineEvent,
  goroutineEventLayout,
  GOID_EPOCH_SLOTS,
  GoroutineProbe,
  MAX_RUNTIME_LAYOUTS,
  PROBE_KINDS,
} from '../events/goroutine-event.ts';
import { argRegister, type RuntimeLayout } from '../gobinary/layouts.ts';
import type { InventoryResult } from '../inventory/allgs.ts';
import { GoroutineScanner, LifecycleCounts, type Scannable, type ScanOptions } from '../inventory/scanner.ts';
import { applyGoroutineRecord } from '../model/goroutine-records.ts';
import { GoroutineTable, type TraceOptions } from '../model/goroutine-table.ts';
import { cookieFor, planGoroutineProbes, type GoroutineProbeName, type ProbeSite } from '../probes/goroutine-probes.ts';
import { ProcessError, ProcessMemory } from '../proc/process.ts';
import { GRID_MS, monoNowNs } from './clock.ts';
import { SchedTable } from '../sched/sched-table.ts';
import type { Target } from './target.ts';
import { LayoutSlots, Tracer, type ProcessTracer } from './tracer.ts';
import { LayoutHits } from './layout-hits.ts';

/** Sees every record after it is applied: the record's kind, and the batch view to read it with `ev`. */
export type RecordVisitor = (p: TracedProcess, kind: number, v: DataView, at: number) => void;

export interface TracerOptions {
  /** Bytes of the goroutine ring buffer (a power of two, a multiple of the page size). */
  ringBytes?: number;
  /** The reader drains the ring buffer every pollMs (the BPF side never wakes it). */
  pollMs?: number;
  maxGoroutinesPerProcess?: number;
  /** How goroutines are cut into traces and spans (units of work, long parks, report intervals). */
  trace?: Partial<TraceOptions>;
  /** Ring buffer (5.8+) or perf event arrays; auto picks what the kernel has (GOROSCOPE_EVENT_TRANSPORT). */
  transport?: EventTransport | 'auto';
  /** How often each process's goroutine list is re-read (inventory/scanner.ts); false: only at attach. */
  scan?: ScanOptions | false;
}

export interface AttachOptions {
  /** Which probes to attach; all by default. */
  probes?: GoroutineProbeName[];
  /**
   * Planned but left off: the overhead governor switches them on when its first window starts (setProbes), once
   * the agent's event loop is free to end that window on time; on from here, they ran at full cost through the
   * rest of the attach (the other tracers' analyses: 0.2-3 s on a loaded machine).
   */
  off?: boolean;
}

export interface TracedProcess extends Target {
  layoutId: number;
  table: GoroutineTable;
  /** What the scheduler did with its goroutines (the 'run' and 'syscall' probes). */
  sched: SchedTable;
  sites: ProbeSite[];
  links: Map<ProbeSite, number>;
  /** The scheduler window in the cookies of each scheduler class's ('run', 'syscall') current attachment. */
  schedWindows: Partial<Record<GoroutineProbeName, number>>;
  attachedAt: number;
  /** What the inventory found at attach (the goroutines themselves went into the table). */
  inventory: InventoryResult & { at: number; preexisting: number };
  /** Its memory and counts for the scans of its goroutine list. */
  scan: Scannable;
  /** No probe of it has been on since this time (CLOCK_MONOTONIC ns; undefined while one is, or is being let go
   * of): once the reader has applied every record stamped before it, no record of this process can still come. */
  quietSince: number | undefined;
  /** Detaches of its probes the kernel has not finished. */
  detaching: number;
}

/** What attach puts on when the caller does not say: the lifecycle and the scheduler (run, syscall), or the
 * lifecycle alone with GOROSCOPE_SCHED_PROBES=off (the overhead bench's comparison). */
export const DEFAULT_PROBES: GoroutineProbeName[] =
  process.env.GOROSCOPE_SCHED_PROBES === 'off' ? ['create', 'park', 'ready', 'exit'] : ['create', 'park', 'ready', 'exit', 'run', 'syscall'];

/** The scheduler's probe classes: their programs' cookies carry a window (bpf/cookie.h). */
const SCHED_CLASSES = ['run', 'syscall'] as const;

/** The reader's longest wait while no goroutine probe is on (ms), and while one is (in polls: syncReaderIdle). */
const QUIET_IDLE_MS = GRID_MS;
const ACTIVE_IDLE_POLLS = 4;

const CREATOR_FROM_ENTRY = 1; // runtime_layout.flags: reserved for the BPF side

/** The BPF programs read these arguments from fixed registers; a Go version that moved one is refused. */
function checkArgumentRegisters(layout: RuntimeLayout): void {
  const expected: Array<[Parameters<typeof argRegister>[1], string, string]> = [
    ['gopark', 'reason', 'RCX'],
    ['ready', 'gp', 'RAX'],
    ['newproc1', 'callergp', 'RBX'],
  ];
  for (const [fn, param, reg] of expected) {
    const got = argRegister(layout, fn, param);
    if (got !== reg) throw new Error(`Go ${layout.goVersion}: runtime.${fn}(${param}) arrives in ${got}, the probes read ${reg}`);
  }
}

/** A process's records applied so far, as hits (what splits a shared layout's counters among its processes). */
function appliedHits(proc: TracedProcess): number {
  const c = proc.table.counters;
  const s = proc.sched.counters;
  return c.created + c.exited + c.parked + c.readied + 2 * s.runs + s.yields + s.preemptions + 2 * s.syscalls;
}

export class GoroutineTracer extends Tracer<TracedProcess> implements ProcessTracer<TracedProcess, AttachOptions> {
  private readonly layouts: LayoutSlots;
  private readonly opts: Required<Omit<TracerOptions, 'transport' | 'scan'>>;
  /** Re-reads each process's goroutine list (undefined: only the inventory at attach). */
  readonly scanner?: GoroutineScanner;
  private onRecord?: RecordVisitor;
  /** Each process's probe hits from the BPF counters: [creation + exit, park + ready + scheduler]. */
  private readonly layoutHits = new LayoutHits((id) => {
    const h = this.hits(id);
    return [h.newproc1Entry + h.newproc1Ret + h.goexit1, h.gopark + h.ready + h.execute + h.runnable + h.syscall];
  }, 2, (pid) => {
    const proc = this.procs.get(pid);
    return proc ? appliedHits(proc) : 0;
  });

  constructor(opts: TracerOptions = {}) {
    const o = {
      ringBytes: opts.ringBytes ?? 4 << 20,
      pollMs: opts.pollMs ?? 10,
      maxGoroutinesPerProcess: opts.maxGoroutinesPerProcess ?? 2_000_000,
      trace: opts.trace ?? {},
    };
    const source = openEventsSource({
      object: 'goroutines',
      map: 'goroutine_events',
      recordSize: goroutineEventLayout.size,
      ringBytes: o.ringBytes,
      perfWakeupBytes: 0, // like the ring: never woken, drained every pollMs
      transport: opts.transport,
      perProcessMaps: ['creator_by_thread'],
    });
    super(source, o.pollMs);
    this.opts = o;
    this.layouts = new LayoutSlots(this.bpf, 'runtime_layouts', MAX_RUNTIME_LAYOUTS);
    if (opts.scan !== false) {
      this.scanner = new GoroutineScanner({
        applyDelayMs: 3 * this.opts.pollMs,
        appliedThroughNs: (pid) => this.appliedThroughNs(pid),
        requestRecords: () => this.reader.requestDrain(),
        ...opts.scan,
      });
    }
    this.reader.setIdleMs(QUIET_IDLE_MS);
  }

  /** Starts draining the ring buffer; batches are applied to the tables as they arrive. */
  override start(onRecord?: RecordVisitor): void {
    if (this.reading) return;
    this.onRecord = onRecord;
    super.start();
  }

  private layoutId(layout: RuntimeLayout): number {
    const f = layout.g.fields;
    return this.layouts.idOf(encodeRuntimeLayout({
      g_goid: f.goid.offset,
      g_parent_goid: f.parentGoid ? f.parentGoid.offset : 0,
      g_gopc: f.gopc.offset,
      g_startpc: f.startpc.offset,
      g_m: f.m.offset,
      m_curg: layout.m.fields.curg.offset,
      flags: f.parentGoid ? 0 : CREATOR_FROM_ENTRY,
      m_p: layout.m.fields.p.offset,
      p_id: layout.p.fields.id.offset,
      g_schedlink: f.schedlink.offset,
    }));
  }

  /**
   * Attaches to a running Go process: probes first, then the inventory of the goroutines that already exist,
   * so nothing falls between the two (an event for a goroutine the inventory also lists converges on the
   * event's state, which is the newer).
   */
  attach(target: Target, opts: AttachOptions = {}): TracedProcess {
    const pid = target.info.pid;
    if (this.procs.has(pid)) throw new ProcessError(`pid ${pid} is already traced`);
    const { binary, layout } = target;
    checkArgumentRegisters(layout);
    const layoutId = this.layoutId(layout);
    const want = new Set<GoroutineProbeName>(opts.probes ?? DEFAULT_PROBES);
    const needCreator = want.has('create') && !layout.g.fields.parentGoid;
    if (needCreator) want.add('creator');
    // The plan is the binary's (code decoded once per build); which of its sites go on is this process's.
    const plan = binary.analysis(`goroutine-probes:${needCreator}`, () => planGoroutineProbes(binary, { creatorAtEntry: needCreator }));
    const sites = plan.filter((s) => want.has(s.probe));
    const table = new GoroutineTable({ maxGoroutines: this.opts.maxGoroutinesPerProcess, trace: this.opts.trace });
    const mem = new ProcessMemory(pid);
    const proc: TracedProcess = {
      ...target,
      layoutId,
      table,
      sched: new SchedTable(this.opts.maxGoroutinesPerProcess),
      sites,
      links: new Map(),
      schedWindows: {},
      attachedAt: monoNowNs(),
      inventory: { goroutines: [], allgs: 0, unreadable: 0, dead: 0, ids: null, bytesRead: 0, reads: 0, at: 0, preexisting: 0 },
      scan: { pid, binary, layout, bias: target.bias, table, mem, counts: new LifecycleCounts() },
      quietSince: monoNowNs(),
      detaching: 0,
    };
    // A goroutine a scan finds gone leaves the scheduler's table too (its exit may not have been probed).
    table.onEnded = (goid) => proc.sched.onExit(goid);
    this.procs.set(pid, proc);
    this.layoutHits.add(pid, layoutId);
    try {
      if (!opts.off) {
        for (const c of SCHED_CLASSES) if (want.has(c)) proc.schedWindows[c] = this.nextSchedWindow();
        for (const s of sites) this.attachSite(proc, s);
        if (want.has('exit')) this.setGoidEpoch(proc, true);
      }
      proc.inventory = this.takeInventory(proc);
    } catch (e) {
      void this.detach(pid);
      throw e;
    }
    this.scanner?.add(proc.scan);
    return proc;
  }

  private attachSite(proc: TracedProcess, s: ProbeSite): void {
    if (proc.links.has(s)) return;
    const cookie = cookieFor(s, proc.layoutId, proc.schedWindows[s.probe] ?? 0);
    const link = this.bpf.attachUprobe(s.program, proc.info.exeLink, s.fileOffset, proc.info.pid, cookie);
    proc.links.set(s, link);
    proc.quietSince = undefined;
    this.syncReaderIdle();
  }

  /**
   * The goroutine ring never wakes its reader (bpf/goroutines.bpf.c, submit), so while any probe is on the reader
   * waits at most ACTIVE_IDLE_POLLS polls: a process going from idle to saturation under --full writes ~350k
   * records a second, and the 4 MiB ring holds 65k. With every probe off nothing can flood it, and the reader
   * waits up to QUIET_IDLE_MS (agent/native/reader.c: each of the agent's wake-ups costs the node).
   */
  private syncReaderIdle(): void {
    let on = false;
    for (const p of this.procs.values()) on ||= p.links.size > 0;
    this.reader.setIdleMs(on ? ACTIVE_IDLE_POLLS * this.opts.pollMs : QUIET_IDLE_MS);
  }

  /** Links of a process let go of: once the kernel is done and none is on, the process is quiet (quietSince). */
  private letGo(proc: TracedProcess, links: number[]): Promise<void> {
    if (!links.length) return Promise.resolve();
    proc.detaching++;
    this.syncReaderIdle();
    return this.detacher.detach(links).finally(() => {
      proc.detaching--;
      if (proc.detaching === 0 && proc.links.size === 0) proc.quietSince = monoNowNs();
    });
  }

  /**
   * Every record of the process stamped before this has been applied (the reader's time), or Infinity once no
   * record of it can still come: its probes were let go of before the reader's time (quietSince), so a scan of
   * it applies at once instead of waiting out the reader's idle wait.
   */
  override appliedThroughNs(pid?: number): number {
    const through = super.appliedThroughNs();
    const quiet = pid === undefined ? undefined : this.procs.get(pid)?.quietSince;
    return quiet !== undefined && through >= quiet ? Infinity : through;
  }

  /**
   * Attaches or detaches one class of probe (the overhead budget duty-cycles park and ready). Resolves when a
   * detach is complete in the kernel (attaching is at once).
   */
  setProbes(pid: number, probe: GoroutineProbeName | readonly GoroutineProbeName[], on: boolean): Promise<void> {
    const proc = this.procs.get(pid);
    if (!proc) return Promise.resolve();
    // Several classes let go of in one detach: each detach is a job on libuv's four threads, and each job waits a
    // grace period, so the classes of separate calls queued behind each other kept hitting ~100 ms longer.
    const probes: readonly GoroutineProbeName[] = typeof probe === 'string' ? [probe] : probe;
    const off: number[] = [];
    let exitSwitched = false;
    // The scheduler's stamps are good only within the window they were set in: a new one in the cookies each time a
    // class comes on (execute is attached first), so no stamp set before is ever taken.
    for (const c of SCHED_CLASSES) {
      if (on && probes.includes(c) && proc.sites.some((s) => s.probe === c && !proc.links.has(s))) proc.schedWindows[c] = this.nextSchedWindow();
    }
    for (const s of proc.sites) {
      // Go < 1.21: the creator probe at newproc1's entry only serves the creation records.
      if (!probes.includes(s.probe) && !(s.probe === 'creator' && probes.includes('create'))) continue;
      const link = proc.links.get(s);
      if (on && link === undefined) {
        this.attachSite(proc, s);
        exitSwitched ||= s.probe === 'exit';
      }
      if (!on && link !== undefined) {
        off.push(link);
        proc.links.delete(s);
        exitSwitched ||= s.probe === 'exit';
      }
    }
    // The goid cache holds only while every exit is seen: a new epoch once the exit probe is on, none before it
    // goes (bpf/goroutines.bpf.c, "The goid of a g, cached").
    if (exitSwitched) this.setGoidEpoch(proc, on);
    return this.letGo(proc, off);
  }

  /** goid_epochs slots (pid % GOID_EPOCH_SLOTS) held, by the pid holding each. */
  private readonly goidEpochSlots = new Map<number, number>();
  /** The last epoch given: never reused, by this or another process (a cached goid names its epoch). */
  private lastGoidEpoch = 0;

  /**
   * Gives a process a new goid cache epoch (on: its exit probe is attached) or none (before that probe is
   * detached, and when the process goes). A process whose slot another holds, or whose binary has iter.Pull's
   * coroutines (they end without goexit1), goes without the cache: every goid is then read from its g.
   */
  private setGoidEpoch(proc: TracedProcess, on: boolean): void {
    const pid = proc.info.pid;
    const slot = pid % GOID_EPOCH_SLOTS;
    const holder = this.goidEpochSlots.get(slot);
    if (holder !== undefined && holder !== pid) return;
    if (!on || !this.procs.has(pid)) {
      if (holder === undefined) return;
      this.bpf.updateElem('goid_epochs', u32Key(slot), encodeGoidEpoch(0, 0));
      if (!this.procs.has(pid)) this.goidEpochSlots.delete(slot);
      return;
    }
    if (proc.binary.func('runtime.coroswitch_m')) return;
    this.goidEpochSlots.set(slot, pid);
    this.lastGoidEpoch = (this.lastGoidEpoch % 0xffffffff) + 1;
    this.bpf.updateElem('goid_epochs', u32Key(slot), encodeGoidEpoch(pid, this.lastGoidEpoch));
  }

  /** The last window given: never reused by another process or attachment (the stamps' slots outlive them). */
  private lastSchedWindow = 0;

  private nextSchedWindow(): number {
    this.lastSchedWindow = (this.lastSchedWindow % 0xffffffff) + 1;
    return this.lastSchedWindow;
  }

  private takeInventory(proc: TracedProcess): InventoryResult & { at: number; preexisting: number } {
    if (!proc.binary.allgs) throw new ProcessError(`pid ${proc.info.pid}: cannot find runtime.allgs in ${proc.info.exe}`);
    const { result: inv, at } = GoroutineScanner.read(proc.scan);
    for (const g of inv.goroutines) proc.table.addPreexisting(g, at);
    // The table holds them now; keeping the list too would double the memory per goroutine.
    return { ...inv, goroutines: [], preexisting: inv.goroutines.length, at };
  }

  /**
   * Re-reads a process's goroutine list and applies it at once: call it after drain(), when no event recorded
   * before now can still be on its way (a snapshot's last look). Undefined when the process is gone.
   */
  scanNow(pid: number): InventoryResult | undefined {
    const proc = this.procs.get(pid);
    if (!proc) return undefined;
    try {
      return GoroutineScanner.scanNow(proc.scan);
    } catch {
      return undefined;
    }
  }

  /**
   * Stops tracing a process: it leaves the tracer at once, and the promise resolves when the kernel has let go
   * of its probes and no BPF map holds an entry of it.
   */
  detach(pid: number): Promise<void> {
    const proc = this.procs.get(pid);
    if (!proc) return Promise.resolve();
    this.procs.delete(pid);
    this.layoutHits.remove(pid);
    this.setGoidEpoch(proc, false);
    this.scanner?.remove(pid);
    proc.scan.mem.close();
    const links = [...proc.links.values()];
    proc.links.clear();
    this.syncReaderIdle();
    // Once no probe can run for it: a creation cut short by the exit leaves its creator behind.
    return this.detacher.detach(links).then(() => {
      if (this.closed) return;
      if (!proc.layout.g.fields.parentGoid) deleteProcessEntries(this.bpf, 'creator_by_thread', pid);
    });
  }

  protected applyBatch(batch: Buffer): number {
    // A batch's records are mostly of one process: its lookup is kept while the pid repeats.
    let pid = -1;
    let proc: TracedProcess | undefined;
    return forEachGoroutineEvent(batch, (v, at) => {
      const p = ev.pid(v, at);
      if (p !== pid) {
        pid = p;
        proc = this.procs.get(p);
      }
      const kind = ev.kind(v, at);
      if (!proc || !applyGoroutineRecord(proc, kind, v, at)) {
        this.strayRecords++;
        return;
      }
      this.onRecord?.(proc, kind, v, at);
    });
  }

  /**
   * Keeps the park/ready events of a fraction of goroutines (by a hash of the goid, so a kept goroutine's
   * parks and readies are all seen). 1 keeps all.
   */
  setParkSampling(rate: number): void {
    if (!(rate > 0 && rate <= 1)) throw new Error(`park sampling rate must be in (0, 1], got ${rate}`);
    const skip = Buffer.alloc(4);
    skip.writeUInt32LE(rate >= 1 ? 0 : Math.floor((1 - rate) * 2 ** 32));
    this.bpf.updateElem('park_sample_skip', u32Key(0), skip);
    this.parkSampleRate = rate;
  }

  parkSampleRate = 1;

  /** Records the BPF side could not write because the ring buffer was full, by probe. */
  lost(): Record<string, number> {
    return percpuCounters(this.bpf, 'drop_counts', GoroutineProbe);
  }

  /**
   * A process's probe hits since it was attached, as the BPF programs counted them (every trap, recorded or not,
   * whether or not the agent has read its records yet): creation and exit, and park, ready and the scheduler's.
   */
  probeHits(pid: number): { createExit: number; parkReady: number } | undefined {
    const h = this.layoutHits.hits(pid);
    return h && { createExit: h[0], parkReady: h[1] };
  }

  /** Probe hits (including those that recorded nothing) for one layout, by probe. */
  hits(layoutId: number): Record<string, number> {
    return percpuCounters(this.bpf, 'hit_counts', GoroutineProbe, layoutId * PROBE_KINDS);
  }

  override async close(): Promise<void> {
    this.scanner?.stop();
    await super.close();
  }
}
