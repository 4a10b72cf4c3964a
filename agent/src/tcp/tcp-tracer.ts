// TCP connections of every process on the node, from bpf/tcp.bpf.c: one BPF object, one ring buffer, a
// connection table keyed by struct sock, per-peer aggregates over a sliding window, and the connections that
// existed before the agent started, seeded from the kernel's socket table. Which of the object's programs are
// loaded (BTF-typed or classic tracepoints; no syscall hook, or raw or per-syscall ones) is decided in
// attach-plan.ts and reported by attachMode. Each traced Go process also gets one uprobe (go-owner.ts) that
// tells who accepted each of its connections.
import type { ConnectionRecord } from '../../../collector/src/protocol/records.ts';
import { percpuCounters, u32Key } from '../bpf/bridge.ts';
import { openEventsSource, type EventTransport, type EventsSource } from '../bpf/events-source.ts';
import { tracefsAccess, tracepointIds, TracefsUnavailable, type TracefsAccess } from '../bpf/tracefs.ts';
import { encodeTcpProcessLayout, forEachTcpEvent, tcpEv, TcpEventKind, tcpEventLayout, TcpRole, TcpStat } from '../events/tcp-event.ts';
import type { GoBinary } from '../gobinary/index.ts';
import { layoutForBinary } from '../gobinary/layouts.ts';
import { monoToWallMs } from '../tracer/clock.ts';
import type { Target } from '../tracer/target.ts';
import { Tracer, type ProcessTracer } from '../tracer/tracer.ts';
import {
  ALL_PROGRAMS,
  GO_OWNER_PROGRAM,
  hasKernelBtf,
  planFor,
  preferredPlan,
  resolveChoice,
  vmlinuxBtf,
  type AttachPlan,
  type EventPrograms,
  type SyscallPrograms,
} from './attach-plan.ts';
import { ConnectionTable, tupleKey, type Connection } from './connection-table.ts';
import { acceptSite } from './go-owner.ts';
import { findTlsGOffset } from './go-tls.ts';
import { PeerStats, type PeerAggregate } from './peer-stats.ts';
import { seedSockets } from './seed.ts';

export interface TcpTracerOptions {
  /** Ring buffer (5.8+) or perf event arrays; auto picks what the kernel has (GOROSCOPE_EVENT_TRANSPORT). */
  transport?: EventTransport | 'auto';
  /** Bytes of the ring buffer (a power of two, a multiple of the page size). */
  ringBytes?: number;
  /** The BPF side wakes the reader only when this much is waiting; the reader also drains every pollMs. */
  wakeupBytes?: number;
  pollMs?: number;
  /** Entries of the BPF owner map (struct sock -> owner), an LRU. */
  /** Go processes whose goroutine layout the BPF side holds at once (default 4096). */
  maxGoProcesses?: number;
  maxOwners?: number;
  maxOpenConnections?: number;
  maxClosedPerProcess?: number;
  maxPeers?: number;
  peerWindowMs?: number;
  /** Share of retransmit records kept, in (0, 1] (default 1). Counts per connection stay exact. */
  retransmitSampling?: number;
  /** Seed the connections that exist at start() from the socket table (default true). */
  seed?: boolean;
  /** Network namespaces to seed from besides the agent's own: those of these pids. */
  seedPids?: number[];
  /**
   * The event programs: BTF-typed raw tracepoints (no tracefs) or classic tracepoints. auto (the default)
   * takes BTF where the kernel has it (/sys/kernel/btf/vmlinux). Also GOROSCOPE_TCP_PROGRAMS.
   */
  programs?: EventPrograms | 'auto';
  /**
   * Syscall hooks on connect/accept exits: none (the default: accept owners of Go processes come from a uprobe
   * in their accept), auto (--tcp-syscall-hooks: the best this node allows), or the raw sys_exit tracepoint or the
   * classic per-syscall ones. Also GOROSCOPE_TCP_SYSCALLS.
   */
  syscalls?: SyscallPrograms | 'auto';
}

/** How the TCP programs were attached: for logs, /metrics, the snapshot and `goroscope doctor`. */
export interface TcpAttachMode {
  /** sock/tcp/sched events: BTF-typed raw tracepoints (tp_btf), or classic tracepoints */
  events: EventPrograms;
  /** connect/accept exits: none (no syscall hook), the raw sys_exit tracepoint, or syscalls:sys_{enter,exit}_* */
  syscalls: SyscallPrograms;
  /** Where the classic tracepoints' ids came from: a mounted tracefs, or one mounted in a private namespace. */
  tracefs: 'mounted' | 'private-mount' | 'not needed';
  /** The programs attached. */
  programs: string[];
  /** Why a preferred path was not taken, one line each (nothing is lost: another path does the same). */
  notes: string[];
}

/** One line, e.g. "tp_btf events, classic syscall tracepoints (tracefs ids: private-mount)". */
export function describeAttachMode(m: TcpAttachMode): string {
  const events = m.events === 'btf' ? 'tp_btf events' : 'classic tracepoint events';
  const syscalls =
    m.syscalls === 'none' ? 'no syscall hooks: accept owners from Go\'s accept'
    : m.syscalls === 'raw' ? 'raw sys_exit for connect/accept'
    : 'classic syscall tracepoints for connect/accept';
  const ids = m.tracefs === 'not needed' ? 'no tracefs needed' : `tracefs ids: ${m.tracefs}`;
  return `${events}, ${syscalls} (${ids})${m.notes.length ? `; ${m.notes.join('; ')}` : ''}`;
}

export interface GoProcessLayout {
  /** g is at fsbase + tlsGOffset */
  tlsGOffset: number;
  /** goid's offset in the g */
  goidOffset: number;
}

const tlsOffsets = new WeakMap<GoBinary, number>();

/** Where a Go binary keeps the running goroutine (TLS slot) and its id (offset in the g); read once per binary. */
export function tcpLayoutOf(bin: GoBinary): GoProcessLayout {
  let tlsGOffset = tlsOffsets.get(bin);
  if (tlsGOffset === undefined) tlsOffsets.set(bin, (tlsGOffset = findTlsGOffset(bin).offset));
  return { tlsGOffset, goidOffset: layoutForBinary(bin).layout.g.fields.goid.offset };
}

/** A Go process whose connections carry goroutine ids. */
export interface TcpProcess extends Target {
  goLayout: GoProcessLayout;
  /** The uprobe that learns who accepted each connection (go-owner.ts); none when `ownerSkipped` says why. */
  links: number[];
  ownerSkipped: string | null;
  /** Connections it accepted since attach: each one hit of that uprobe, always on (the governor charges it). */
  accepts: number;
}

/** retransmit_keep for a sampling share: records are kept when a random u32 is below it (all at 1). */
export function retransmitKeep(share: number): Buffer {
  if (!(share > 0 && share <= 1)) throw new Error(`retransmit sampling must be in (0, 1], got ${share}`);
  const b = Buffer.alloc(4);
  b.writeUInt32LE(share >= 1 ? 0xffffffff : Math.floor(share * 2 ** 32));
  return b;
}

/**
 * Loads the object with the programs of the best plan this node allows. BTF programs where the kernel has
 * BTF; classic ones need tracepoint ids (tracefs.ts), and when those cannot be had on a kernel without
 * BTF, TCP cannot be traced: the error says in one line what would fix it.
 */
function openTcpObject(
opts: TcpTracerOptions,
o: { ringBytes: number; wakeupBytes: number; maxOwners: number; maxGoProcesses: number; retransmitSampling: number },
tracepointIdsOut: Map<string, number>,
): { source: EventsSource; plan: AttachPlan; mode: TcpAttachMode } {
  const choice = resolveChoice({ events: opts.programs, syscalls: opts.syscalls });
  const btf = hasKernelBtf();
  const notes: string[] = [];
  const access: TracefsAccess = tracefsAccess();
  let idsFrom: TcpAttachMode['tracefs'] = 'not needed';
  /** Reads the ids of the plan's classic tracepoints (throws TracefsUnavailable when they cannot be had). */
  const resolveIds = (plan: AttachPlan): void => {
    const names = [...new Set(plan.tracepoints.values())];
    if (!names.length) return;
    const got = tracepointIds(names, access);
    for (const [program, tp] of plan.tracepoints) tracepointIdsOut.set(program, got.ids.get(tp)!);
    idsFrom = got.source;
  };
  const load = (plan: AttachPlan): EventsSource =>
    openEventsSource({
      object: 'tcp',
      map: 'tcp_events',
      recordSize: tcpEventLayout.size,
      ringBytes: o.ringBytes,
      perfWakeupBytes: o.wakeupBytes,
      ringWakeupBytes: o.wakeupBytes,
      transport: opts.transport,
      sizes: { tcp_owners: o.maxOwners, tcp_process_layouts: o.maxGoProcesses },
      globals: { retransmit_keep: retransmitKeep(o.retransmitSampling) },
      skipPrograms: ALL_PROGRAMS.filter((p) => !plan.programs.includes(p)),
    });

  let plan = preferredPlan(choice, btf, access);
  if (plan.events === 'classic' && choice.events === 'auto') notes.push(`the kernel has no BTF (${vmlinuxBtf}): classic tracepoints`);
  try {
    resolveIds(plan);
  } catch (e) {
    const unavailable = e instanceof TracefsUnavailable;
    if (plan.events === 'classic') throw unavailable ? new Error(`TCP tracing needs BTF (${vmlinuxBtf}) or tracefs: ${e.message}`) : e;
    if (choice.syscalls === 'classic') throw unavailable ? new Error(`classic syscall tracepoints need tracefs: ${e.message}`) : e;
    // No tracefs is the usual case on a fresh node, and the raw program needs none; anything else is said.
    if (!unavailable) notes.push(`classic syscall tracepoints unavailable (${(e as Error).message.split('\n')[0]}): raw sys_exit`);
    plan = planFor('btf', 'raw');
  }
  let source: EventsSource;
  try {
    source = load(plan);
  } catch (e) {
    // A kernel that has BTF but refuses a tp_btf program (too old for one of them, or a changed tracepoint):
    // the classic programs do the same, given tracefs.
    if (plan.events !== 'btf' || choice.events !== 'auto') throw e;
    const why = (e as Error).message.split('\n')[0];
    const classic = planFor('classic', plan.syscalls === 'none' ? 'none' : 'classic');
    try {
      resolveIds(classic);
    } catch (e2) {
      throw new Error(`TCP tracing: the BTF programs were refused (${why}), and the classic fallback ${(e2 as Error).message}`);
    }
    notes.push(`BTF programs refused (${why}): classic tracepoints`);
    plan = classic;
    source = load(plan);
  }
  const mode: TcpAttachMode = { events: plan.events, syscalls: plan.syscalls, tracefs: idsFrom, programs: plan.programs, notes };
  return { source, plan, mode };
}

export class TcpTracer extends Tracer<TcpProcess> implements ProcessTracer<TcpProcess> {
  readonly table: ConnectionTable;
  readonly peerStats: PeerStats;
  private readonly opts: Required<Omit<TcpTracerOptions, 'seedPids' | 'transport' | 'programs' | 'syscalls'>> & { seedPids: number[] };
  /** Which programs were loaded and how they attach. */
  readonly attachMode: TcpAttachMode;
  private readonly plan: AttachPlan;
  private readonly tracepointIds: Map<string, number>;
  private readonly links: number[] = [];
  private seededListenerKey = -1;

  constructor(opts: TcpTracerOptions = {}) {
    const o = {
      ringBytes: opts.ringBytes ?? 4 << 20,
      wakeupBytes: opts.wakeupBytes ?? 256 << 10,
      pollMs: opts.pollMs ?? 10,
      maxOwners: opts.maxOwners ?? 65536,
      maxGoProcesses: opts.maxGoProcesses ?? 4096,
      maxOpenConnections: opts.maxOpenConnections ?? 262_144,
      maxClosedPerProcess: opts.maxClosedPerProcess ?? 4096,
      maxPeers: opts.maxPeers ?? 4096,
      peerWindowMs: opts.peerWindowMs ?? 5000,
      seed: opts.seed ?? true,
      retransmitSampling: opts.retransmitSampling ?? 1,
      seedPids: opts.seedPids ?? [],
    };
    const tracepointIds = new Map<string, number>();
    const opened = openTcpObject(opts, o, tracepointIds);
    super(opened.source, o.pollMs);
    this.opts = o;
    this.tracepointIds = tracepointIds;
    this.plan = opened.plan;
    this.attachMode = opened.mode;
    this.peerStats = new PeerStats({ windowMs: this.opts.peerWindowMs, maxPairs: this.opts.maxPeers });
    this.table = new ConnectionTable({ maxOpen: this.opts.maxOpenConnections, maxClosedPerProcess: this.opts.maxClosedPerProcess, peers: this.peerStats });
  }

  /** Attaches the programs, starts draining, then seeds what already exists (so nothing falls between). */
  override start(): void {
    if (!this.links.length) {
      try {
        for (const p of this.plan.programs) {
          const id = this.tracepointIds.get(p);
          this.links.push(id === undefined ? this.bpf.attach(p) : this.bpf.attachTracepointId(p, id));
        }
      } catch (e) {
        this.detachAll();
        throw e;
      }
    }
    super.start();
    if (this.opts.seed) this.seed([...this.opts.seedPids, ...this.procs.keys()]);
  }

  /**
   * Every connection is traced, Go or not; a Go process attached here also gets the goroutine that opened or
   * accepted each of its connections (the BPF side learns where it keeps its goroutine), and a uprobe in its
   * accept that binds each accepted socket to the accepting goroutine (go-owner.ts).
   */
  attach(target: Target): TcpProcess {
    const pid = target.info.pid;
    if (this.procs.has(pid)) void this.detach(pid); // attached again (a pid reused before its detach): start over
    const goLayout = tcpLayoutOf(target.binary);
    this.bpf.updateElem('tcp_process_layouts', u32Key(pid), encodeTcpProcessLayout(goLayout.tlsGOffset, goLayout.goidOffset));
    const site = target.binary.analysis('tcp-accept-site', () => acceptSite(target.binary));
    const proc: TcpProcess = { ...target, goLayout, links: [], ownerSkipped: typeof site === 'string' ? site : null, accepts: 0 };
    this.procs.set(pid, proc);
    if (typeof site !== 'string') {
      try {
        proc.links.push(this.bpf.attachUprobe(GO_OWNER_PROGRAM, target.info.exeLink, site.fileOffset, pid, 0n));
      } catch (e) {
        void this.detach(pid);
        throw e;
      }
    }
    return proc;
  }

  detach(pid: number): Promise<void> {
    const proc = this.procs.get(pid);
    if (!proc) return Promise.resolve();
    this.procs.delete(pid);
    if (this.closed) return Promise.resolve(); // the object and its links are gone
    // Usually gone already (sched_process_exit deletes it); writing zeros instead would bring it back.
    this.bpf.deleteElem('tcp_process_layouts', u32Key(pid));
    return this.detacher.detach(proc.links.splice(0));
  }

  /** The sockets that exist now, from ss (netlink): connections marked preexisting, listeners apart. */
  seed(pids: number[] = []): number {
    const sockets = seedSockets(pids);
    const listenPorts = new Set<string>();
    for (const s of sockets) if (s.state === 'listen') for (const p of s.pids) listenPorts.add(`${p}|${s.localPort}`);
    const openTuples = new Set<string>();
    for (const c of this.table.open.values()) openTuples.add(tupleKey(c.family, c.localAddress, c.localPort, c.peerAddress, c.peerPort));
    let n = 0;
    for (const s of sockets) {
      if (!s.pids.length || s.state === 'time_wait' || s.state === 'closed') continue;
      const pid = s.pids[0];
      const c: Connection = {
        key: 0,
        pid,
        tid: 0,
        goid: 0,
        comm: '',
        family: s.family,
        role: s.state === 'listen' ? 'listener' : listenPorts.has(`${pid}|${s.localPort}`) ? 'server' : 'client',
        localAddress: s.localAddress,
        localPort: s.localPort,
        peerAddress: s.peerAddress,
        peerPort: s.peerPort,
        state: s.state,
        openedNs: null,
        establishedNs: null,
        closedNs: null,
        // tcp_info has no payload-only counters: an active open's SYN and a FIN are in these, as in ss
        bytesSent: s.bytesAcked,
        bytesReceived: s.bytesReceived,
        kernelBytesAcked: s.bytesAcked,
        kernelBytesReceived: s.bytesReceived,
        payloadTransmitted: 0,
        srttUs: s.srttUs,
        retransmits: s.retransmits,
        resets: 0,
        error: null,
        preexisting: true,
      };
      if (s.state === 'listen') {
        c.key = this.seededListenerKey--;
        this.table.addListener(c);
      } else if (!openTuples.has(tupleKey(c.family, c.localAddress, c.localPort, c.peerAddress, c.peerPort))) {
        this.table.addSeeded(c);
      }
      n++;
    }
    return n;
  }

  /** Retransmit records applied (a sample when retransmitSampling < 1). */
  get retransmitRecords(): number {
    return this.table.retransmitRecords;
  }

  /** Records about sockets with no known owner (closed before accept, or sockets of no traced process). */
  get unowned(): number {
    return this.table.unowned;
  }

  protected applyBatch(batch: Buffer): number {
    return forEachTcpEvent(batch, (v, at) => {
      if (tcpEv.kind(v, at) === TcpEventKind.accept) {
        const proc = this.procs.get(tcpEv.pid(v, at));
        if (proc) proc.accepts++;
      }
      this.table.apply(v, at);
    });
  }

  private toRecord(c: Connection, now: number): ConnectionRecord {
    return {
      kind: 'connection',
      pid: c.pid,
      goid: c.goid ? c.goid : null,
      family: c.family,
      role: c.role === 'server' ? 'server' : 'client',
      localAddress: c.localAddress,
      localPort: c.localPort,
      peerAddress: c.peerAddress,
      peerPort: c.peerPort,
      state: c.state,
      openedAt: c.openedNs === null ? null : monoToWallMs(c.openedNs),
      closedAt: c.closedNs === null ? null : monoToWallMs(c.closedNs),
      bytesSent: c.bytesSent,
      bytesReceived: c.bytesReceived,
      srttUs: c.srttUs,
      retransmits: c.retransmits,
      resets: c.resets,
      error: c.error,
      preexisting: c.preexisting,
      observedAt: now,
    };
  }

  /** Open and recently closed connections (listeners are apart: listeners()). */
  connections(pid?: number): ConnectionRecord[] {
    const now = Date.now();
    return this.table.all(pid).map((c) => this.toRecord(c, now));
  }

  /** The raw table rows, with what ConnectionRecord leaves out (tid, comm, monotonic times, struct sock key). */
  connectionDetails(pid?: number): Connection[] {
    return this.table.all(pid);
  }

  listeners(pid?: number): Connection[] {
    return this.table.listenersOf(pid);
  }

  /** Per address pair, the counts of the sliding window (peerWindowMs) that ends now. */
  peers(): PeerAggregate[] {
    return this.peerStats.snapshot();
  }

  /** Records the BPF side could not write because the ring buffer was full, by event kind. */
  lost(): Record<string, number> {
    return percpuCounters(this.bpf, 'drop_counts', TcpEventKind);
  }

  /** What the BPF side counted besides drops, and what the model forgot to stay bounded. */
  stats(): Record<string, number> {
    return {
      ...percpuCounters(this.bpf, 'tcp_stats', TcpStat),
      records: this.records,
      batches: this.batches,
      unownedRecords: this.table.unowned,
      strayRecords: this.strayRecords + this.table.strayRecords,
      evictedOpen: this.table.evictedOpen,
      evictedClosed: this.table.evictedClosed,
      evictedPeers: this.peerStats.evicted,
    };
  }

  protected override async closeLinks(): Promise<void> {
    this.detachAll();
  }

  private detachAll(): void {
    for (const l of this.links.splice(0)) {
      try {
        this.bpf.detach(l);
      } catch {
        /* gone */
      }
    }
  }
}

export { TcpRole };
