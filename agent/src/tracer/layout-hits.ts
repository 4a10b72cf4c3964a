// Probe hits per process from the BPF programs' own counters (hit_counts, per layout and probe), not from the
// records the agent has applied: those lag when the agent falls behind, and an overhead budget charged from them
// finds an on-window cheap exactly when its records pile up (the governor then turns the probes on for longer, and
// the agent falls further behind). A counter is bumped by every trap, recorded or not, at no extra cost per hit.
// Counters are per layout slot, which processes of one toolchain share: a layout's hits are split among its
// processes in proportion to their applied records since the last read (exact for a process that has its layout
// to itself; with several, the split lags as the records do, their sum does not).

/** One layout's counters as running totals, one per class of probe (each weighted by what its hits cost). */
export type LayoutTotals = (layoutId: number) => number[];

interface Member {
  layoutId: number;
  /** Hits given to it so far, by class, and its applied records' count at the last split. */
  hits: number[];
  hint: number;
}

export class LayoutHits {
  private readonly last = new Map<number, number[]>();
  private readonly members = new Map<number, Member>();

  /**
   * `total`: a layout's counters, `classes` long; `applied(pid)`: a process's records applied so far (any unit),
   * which splits a layout's new hits among the processes that share it.
   */
  constructor(private readonly total: LayoutTotals, private readonly classes: number, private readonly applied: (pid: number) => number) {}

  /** Starts counting a process: hits from now on are its (a process added again keeps its count). */
  add(pid: number, layoutId: number): void {
    if (this.members.get(pid)?.layoutId === layoutId) return;
    this.remove(pid);
    if (!this.last.has(layoutId)) this.last.set(layoutId, this.total(layoutId));
    else this.split(layoutId);
    this.members.set(pid, { layoutId, hits: new Array<number>(this.classes).fill(0), hint: this.applied(pid) });
  }

  remove(pid: number): void {
    const m = this.members.get(pid);
    if (!m) return;
    this.members.delete(pid);
    if (![...this.members.values()].some((o) => o.layoutId === m.layoutId)) this.last.delete(m.layoutId);
  }

  /** The process's hits since add(), by class, from its layout's counters; undefined for a process not added. */
  hits(pid: number): readonly number[] | undefined {
    const m = this.members.get(pid);
    if (!m) return undefined;
    this.split(m.layoutId);
    return m.hits;
  }

  private split(layoutId: number): void {
    const now = this.total(layoutId);
    const before = this.last.get(layoutId) ?? now;
    const delta = now.map((x, i) => x - before[i]);
    this.last.set(layoutId, now);
    const sharing: Array<[Member, number]> = [];
    let sum = 0;
    for (const [pid, m] of this.members) {
      if (m.layoutId !== layoutId) continue;
      const h = this.applied(pid);
      const d = Math.max(0, h - m.hint);
      m.hint = Math.max(m.hint, h);
      sharing.push([m, d]);
      sum += d;
    }
    if (!sharing.length) return;
    for (const [m, d] of sharing) {
      const share = sum > 0 ? d / sum : 1 / sharing.length;
      for (let i = 0; i < this.classes; i++) if (delta[i] > 0) m.hits[i] += delta[i] * share;
    }
  }
}
