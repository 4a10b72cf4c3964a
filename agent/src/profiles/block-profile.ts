// The blocking (off-CPU) profile over a window, for every wait reason (not only the sync and channel waits Go's
// own block profile covers), from outside: contentions/count and delay/nanoseconds by the stack a goroutine
// waited at.
//
// Two sources, each for what it knows. The park and ready probes say exactly when each wait began and ended
// and why; stack scans (every goroutine read from memory, as `goroscope dump` does, every scan interval) say
// where it waited. A wait seen by a scan is charged to that stack with its exact duration. A wait shorter than
// the scan interval may end before any scan sees it: it is charged, exactly, to a frame that says so
// ("[wait not caught by a stack scan]") under its wait reason, so totals stay exact while stacks cover the
// waits that matter. Waits already going on when the window opens are seen by the first scan and count for the
// time inside the window (they began before it, so they add no contention). System calls are not parks: they
// come from the scans alone (their delay is known to a scan interval). With parks sampled (a share p of
// goroutines), each recorded park stands for 1/p of them: contentions and delay are scaled by 1/p, and the
// profile says so.
import { PERIOD, SAMPLE_TYPES, mergeSamples, type ProfileData, type ProfileFrame, type ProfileSample } from '../../../collector/src/protocol/pprof.ts';
import { ev, GoroutineEventKind } from '../events/goroutine-event.ts';
import { isSystemGoroutine, waitReasonString } from '../gobinary/layouts.ts';
import type { ProcessMemory } from '../proc/process.ts';
import type { StackTarget } from '../stacks/dump.ts';
import { readGoroutineStacks, type GoroutineStack } from '../stacks/read-goroutines.ts';
import { profileFrames } from './goroutine-profile.ts';
import { GoidMap } from '../model/goid-map.ts';

interface OpenWait {
  /** Monotonic ns. */
  start: number;
  reason: string;
  state: 'waiting' | 'syscall';
  /** 1/p for a sampled park, 1 for what a scan found. */
  weight: number;
  source: 'event' | 'scan';
  /** Where it waits, once a scan has seen it: stack key and frames. */
  stack?: { key: string; frames: ProfileFrame[] };
  /** For scan-found waits: what must stay the same for it to be the same wait. */
  identity?: string;
}

interface Acc {
  frames: ProfileFrame[];
  labels: Record<string, string>;
  contentions: number;
  delay: number;
}

export const UNCAUGHT_FRAME: ProfileFrame = { function: '[wait not caught by a stack scan]', file: '', line: 0 };

export interface BlockProfilerOptions {
  /** Monotonic ns the window opens and closes (records after it are left out). */
  startNs: number;
  endNs: number;
  /** Share of goroutines whose parks are recorded (1: all). */
  parkSampling: number;
}

export class BlockProfiler {
  private readonly open = new GoidMap<OpenWait>();
  private readonly acc = new Map<string, Acc>();
  private readonly stacks = new Map<string, ProfileFrame[]>();
  private scans = 0;
  private scanMs = 0;
  parks = 0;
  caught = 0;
  private first = true;

  constructor(
    private readonly target: StackTarget,
    private readonly opts: BlockProfilerOptions,
  ) {}

  /** A park record: the goroutine waits from ts, for this reason. */
  onPark(goid: number, reason: number, ts: number): void {
    if (ts < this.opts.startNs || ts >= this.opts.endNs) return;
    const prev = this.open.get(goid);
    if (prev) this.close(prev, ts); // it ran in between (also out of a system call)
    this.parks++;
    // A park's wait reuses one that closed (parks come at the rate of records): an object per park was most of
    // what this profile allocated.
    const w = prev ?? this.spare.pop() ?? { start: 0, reason: '', state: 'waiting', weight: 1, source: 'event', stack: undefined, identity: undefined };
    w.start = ts;
    w.reason = waitReasonString(this.target.layout, reason);
    w.state = 'waiting';
    w.weight = 1 / this.opts.parkSampling;
    w.source = 'event';
    w.stack = undefined;
    w.identity = undefined;
    if (!prev) this.open.set(goid, w);
  }

  /** Closed waits, for reuse by the next parks. */
  private readonly spare: OpenWait[] = [];
  /** The accumulators of waits no scan caught, by reason (the usual close: no key string made for it). */
  private readonly uncaught = new Map<string, Acc>();

  /** Evidence the goroutine runs at ts (it was readied, or it acted: created, readied another, exited). */
  onRun(goid: number, ts: number): void {
    const w = this.open.get(goid);
    if (!w || w.state === 'syscall') return;
    this.close(w, ts);
    this.open.delete(goid);
    if (this.spare.length < 1024) this.spare.push(w);
  }

  /** A record of the goroutine tracer (bpf/goroutines.bpf.c): its parks, and the evidence that goroutines run again. */
  onRecord(kind: number, v: DataView, at: number): void {
    const ts = ev.tsNs(v, at);
    if (kind === GoroutineEventKind.park) this.onPark(ev.goid(v, at), ev.waitReason(v, at), ts);
    else if (kind === GoroutineEventKind.ready) {
      this.onRun(ev.goid(v, at), ts);
      this.onRun(ev.otherGoid(v, at), ts);
    } else if (kind === GoroutineEventKind.create) this.onRun(ev.otherGoid(v, at), ts);
    else if (kind === GoroutineEventKind.exit) this.onRun(ev.goid(v, at), ts);
  }

  /** Reads every goroutine's stack: where open waits are, and which waits ended or began since the last scan. */
  scan(mem: ProcessMemory, nowNs: number): void {
    this.beginObserve();
    readGoroutineStacks(mem, this.target, (g) => this.observeOne(g, nowNs));
    this.endObserve(nowNs);
  }

  /** A scan made by someone else (the agent reads each process once per interval for both profiles). */
  observe(goroutines: Iterable<GoroutineStack>, nowNs: number, readMs = 0): void {
    this.beginObserve();
    for (const g of goroutines) this.observeOne(g, nowNs);
    this.endObserve(nowNs, readMs);
  }

  private seen = new Set<number>();
  private observeStart = 0;

  /** A scan fed one goroutine at a time (beginObserve, observeOne per goroutine, endObserve). */
  beginObserve(): void {
    this.seen = new Set();
    this.observeStart = performance.now();
  }

  observeOne(g: GoroutineStack, nowNs: number): void {
    const S = this.target.layout.statuses;
    const start = this.target.pclntab.funcForPC(g.startPc)?.name;
    if (isSystemGoroutine(this.target.layout, start)) return;
    const waiting = g.status === S._Gwaiting || g.status === S._Gsyscall;
    if (!waiting) return;
    this.seen.add(g.goid);
    const state = g.status === S._Gsyscall ? 'syscall' : 'waiting';
    const reason = state === 'syscall' ? 'syscall' : waitReasonString(this.target.layout, g.waitReason ?? 0);
    const stack = g.stackState === 'ok' ? this.stackOf(g) : undefined;
    const identity = `${state}/${reason}/${stack?.key ?? ''}`;
    let w = this.open.get(g.goid);
    if (w && w.source === 'scan' && w.identity !== identity) {
      this.close(w, nowNs);
      w = undefined;
    }
    if (!w) {
      // Waits found by a scan: those going on when the window opened, and system calls (no probe sees them).
      // A park that began later without its record was not sampled: its sampled peers stand for it.
      if (!this.first && state !== 'syscall') return;
      w = { start: this.first ? this.opts.startNs : nowNs, reason, state, weight: 1, source: 'scan', stack: undefined, identity };
      this.open.set(g.goid, w);
    }
    if (!w.stack && stack && w.reason === reason) {
      w.stack = stack;
      this.caught += w.source === 'event' ? 1 : 0;
    }
  }

  endObserve(nowNs: number, readMs = 0): void {
    const seen = this.seen;
    const t0 = this.observeStart;
    // Open waits whose goroutine no longer waits ended before this scan (a wakeup the probes did not see).
    for (const [goid, w] of this.open) {
      if (!seen.has(goid)) {
        this.close(w, nowNs);
        this.open.delete(goid);
      }
    }
    this.first = false;
    this.scans++;
    this.scanMs += readMs + performance.now() - t0;
  }

  private stackOf(g: GoroutineStack): { key: string; frames: ProfileFrame[] } {
    const key = `${g.pcs.join(',')}/${g.symPCs.join(',')}`;
    let frames = this.stacks.get(key);
    if (!frames) {
      frames = profileFrames(this.target, g);
      this.stacks.set(key, frames);
    }
    return { key, frames };
  }

  private close(w: OpenWait, end: number): void {
    const from = Math.max(w.start, this.opts.startNs);
    end = Math.min(end, this.opts.endNs);
    if (end <= from) return;
    let a: Acc | undefined;
    if (!w.stack && w.state === 'waiting') {
      a = this.uncaught.get(w.reason);
      if (!a) this.uncaught.set(w.reason, (a = this.accOf(w)));
    } else {
      a = this.accOf(w);
    }
    if (w.source === 'event' || (w.source === 'scan' && w.start > this.opts.startNs)) a.contentions += w.weight;
    a.delay += (end - from) * w.weight;
  }

  /** The accumulator of a wait's stack, reason and state. */
  private accOf(w: OpenWait): Acc {
    const key = `${w.stack?.key ?? 'uncaught'}\u0000${w.reason}\u0000${w.state}`;
    let a = this.acc.get(key);
    if (!a) this.acc.set(key, (a = { frames: w.stack?.frames ?? [UNCAUGHT_FRAME], labels: { state: w.state, 'wait reason': w.reason }, contentions: 0, delay: 0 }));
    return a;
  }

  /** Closes every open wait at the window's end (or endNs, when the window closes early) and returns the profile. */
  finish(startMs: number, endNs = this.opts.endNs): ProfileData {
    this.opts.endNs = Math.min(this.opts.endNs, endNs);
    for (const w of this.open.values()) this.close(w, endNs);
    this.open.clear();
    const samples: ProfileSample[] = [...this.acc.values()].map((a) => ({ frames: a.frames, values: [Math.round(a.contentions), Math.round(a.delay)], labels: a.labels }));
    const p = this.opts.parkSampling;
    return {
      kind: 'block',
      sampleTypes: SAMPLE_TYPES.block,
      period: PERIOD.block,
      startMs,
      durationMs: (endNs - this.opts.startNs) / 1e6,
      samples: mergeSamples(samples),
      comments: [
        `goroscope: off-CPU waits of pid ${this.target.pid} (${this.target.binary.goVersion}), every wait reason; delay is time spent waiting inside the window`,
        `${this.parks} parks recorded by the park/ready probes${p < 1 ? `, goroutines sampled at ${(p * 100).toFixed(1)}%: contentions and delay of parks scaled by ${(1 / p).toFixed(2)}` : ' (all goroutines)'}`,
        `${this.scans} stack scans (${(this.scanMs / Math.max(1, this.scans)).toFixed(1)} ms each); ${this.caught} parks seen by a scan carry their stack, shorter ones are under ${UNCAUGHT_FRAME.function}`,
        'waits going on when the window opened count for their time inside it; system calls are timed by the scans',
      ],
    };
  }
}
