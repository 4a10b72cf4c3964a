// The shape every tracer has: one BPF object and its event ring (opened once for all processes), layout slots
// in a BPF array (one per distinct runtime layout), per-process attach and detach, a reader thread draining
// the ring into the tracer's model, and close. A tracer adds only its own job: which probes a process gets,
// and what its records mean (handed to its model: the goroutine table, the connection table, GC cycles).
import { u32Key, type BpfObject } from '../bpf/bridge.ts';
import type { EventsSource, EventTransport } from '../bpf/events-source.ts';
import { Detacher } from '../bpf/detacher.ts';
import { RingReader } from '../bpf/ring-reader.ts';
import type { Target } from './target.ts';

/** What every tracer answers to. P is what it keeps of a traced process; A the options of an attach. */
export interface ProcessTracer<P, A = object> {
  readonly bpf: BpfObject;
  readonly transport: EventTransport;
  /** Starts reading its records (and, for node-wide programs, attaches them). */
  start(): void;
  /** Hands over and applies every record the ring holds now; reading goes on. */
  drain(): Promise<void>;
  /** Takes a process: throws a ProcessError an SRE can act on when it cannot. */
  attach(target: Target, opts?: A): P;
  /** Lets go of a process; resolves when the kernel and the BPF maps hold nothing of it. */
  detach(pid: number): Promise<void>;
  process(pid: number): P | undefined;
  processes(): P[];
  /** Records the BPF side could not write (ring full...), by probe or kind. */
  lost(): Record<string, number>;
  close(): Promise<void>;
}

export abstract class Tracer<P> {
  readonly bpf: BpfObject;
  readonly transport: EventTransport;
  protected readonly procs = new Map<number, P>();
  protected readonly detacher: Detacher;
  protected readonly reader: RingReader;
  protected closed = false;
  records = 0;
  batches = 0;
  /** Records of a process not (or no longer) traced, or of a kind this tracer does not know. */
  strayRecords = 0;

  constructor(source: EventsSource, pollMs: number) {
    this.bpf = source.bpf;
    this.transport = source.transport;
    this.detacher = new Detacher(this.bpf);
    this.reader = new RingReader(this.bpf, source.ring, (b) => {
      this.batches++;
      this.records += this.applyBatch(b);
    }, { pollMs });
  }

  /** Applies one batch of records to the model; returns how many records it held. */
  protected abstract applyBatch(batch: Buffer): number;

  abstract detach(pid: number): Promise<void>;

  abstract lost(): Record<string, number>;

  lostTotal(): number {
    return Object.values(this.lost()).reduce((a, b) => a + b, 0);
  }

  start(): void {
    this.reader.start();
  }

  protected get reading(): boolean {
    return this.reader.reading;
  }

  /** Every record stamped before this (CLOCK_MONOTONIC ns) has been applied to the model (ring-reader.ts). */
  appliedThroughNs(): number {
    return this.reader.appliedThroughNs();
  }

  async drain(): Promise<void> {
    if (!this.reader.reading) return;
    await this.reader.stop();
    this.reader.start();
  }

  process(pid: number): P | undefined {
    return this.procs.get(pid);
  }

  processes(): P[] {
    return [...this.procs.values()];
  }

  /** Stops reading (after applying what the ring holds), lets go of every process, closes the object. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.reader.stop();
    for (const pid of [...this.procs.keys()]) void this.detach(pid);
    await this.detacher.idle();
    await this.closeLinks();
    this.closed = true;
    this.bpf.close();
  }

  /** Node-wide links a tracer holds apart from its processes' (TCP's tracepoints). */
  protected async closeLinks(): Promise<void> {}
}

/**
 * One BPF layout slot per distinct encoded value: binaries of one toolchain share it, and a layout read from
 * DWARF that differs from the table's (a GOEXPERIMENT build) gets its own. Records and cookies carry the id.
 */
export class LayoutSlots {
  private readonly ids = new Map<string, number>();

  constructor(private readonly bpf: BpfObject, private readonly map: string, private readonly max: number) {}

  idOf(value: Buffer): number {
    const key = value.toString('hex');
    let id = this.ids.get(key);
    if (id !== undefined) return id;
    id = this.ids.size;
    if (id >= this.max) throw new Error(`more than ${this.max} Go runtime layouts in use`);
    this.bpf.updateElem(this.map, u32Key(id), value);
    this.ids.set(key, id);
    return id;
  }
}
