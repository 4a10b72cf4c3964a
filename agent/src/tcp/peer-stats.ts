// Per-peer aggregates over a sliding window (5 s by default), keyed by address pair (local, peer), bounded.
// Each pair keeps one bucket per second of the window; a query sums the buckets that are still inside it.

export interface PeerCounts {
  opened: number;
  closed: number;
  bytesSent: number;
  bytesReceived: number;
  retransmits: number;
  resets: number;
  errors: number;
}

export interface PeerAggregate extends PeerCounts {
  localAddress: string;
  peerAddress: string;
  /** The window the counts cover, Unix ms. */
  from: number;
  to: number;
}

type Field = keyof PeerCounts;
const FIELDS: Field[] = ['opened', 'closed', 'bytesSent', 'bytesReceived', 'retransmits', 'resets', 'errors'];

interface Pair {
  localAddress: string;
  peerAddress: string;
  /** second (since the clock's origin) each bucket holds, -1 when empty */
  stamp: Float64Array;
  counts: Float64Array; // buckets x FIELDS
}

export interface PeerStatsOptions {
  windowMs?: number;
  maxPairs?: number;
}

export class PeerStats {
  private readonly pairs = new Map<string, Pair>();
  private readonly buckets: number;
  private readonly bucketMs: number;
  readonly windowMs: number;
  private readonly maxPairs: number;
  /** Pairs dropped (least recently updated first) to stay within maxPairs. */
  evicted = 0;

  constructor(opts: PeerStatsOptions = {}) {
    this.windowMs = opts.windowMs ?? 5000;
    this.maxPairs = opts.maxPairs ?? 4096;
    this.buckets = 5;
    this.bucketMs = this.windowMs / this.buckets;
  }

  /** Adds to one counter of a pair at a time (Unix ms). */
  add(localAddress: string, peerAddress: string, field: Field, n: number, atMs: number): void {
    const key = `${localAddress} ${peerAddress}`;
    let p = this.pairs.get(key);
    if (p) {
      this.pairs.delete(key); // most recently updated last
    } else {
      p = { localAddress, peerAddress, stamp: new Float64Array(this.buckets).fill(-1), counts: new Float64Array(this.buckets * FIELDS.length) };
      if (this.pairs.size >= this.maxPairs) {
        const oldest = this.pairs.keys().next().value as string;
        this.pairs.delete(oldest);
        this.evicted++;
      }
    }
    this.pairs.set(key, p);
    const slot = Math.floor(atMs / this.bucketMs);
    const i = slot % this.buckets;
    if (p.stamp[i] !== slot) {
      p.stamp[i] = slot;
      p.counts.fill(0, i * FIELDS.length, (i + 1) * FIELDS.length);
    }
    p.counts[i * FIELDS.length + FIELDS.indexOf(field)] += n;
  }

  /** The sums over the window that ends now; pairs with nothing inside it are left out (and forgotten). */
  snapshot(nowMs: number = Date.now()): PeerAggregate[] {
    const newest = Math.floor(nowMs / this.bucketMs);
    const oldest = newest - this.buckets + 1;
    const out: PeerAggregate[] = [];
    for (const [key, p] of this.pairs) {
      const agg: PeerAggregate = {
        localAddress: p.localAddress,
        peerAddress: p.peerAddress,
        from: oldest * this.bucketMs,
        to: nowMs,
        opened: 0,
        closed: 0,
        bytesSent: 0,
        bytesReceived: 0,
        retransmits: 0,
        resets: 0,
        errors: 0,
      };
      let any = false;
      for (let i = 0; i < this.buckets; i++) {
        const s = p.stamp[i];
        if (s < oldest || s > newest) continue;
        any = true;
        for (let f = 0; f < FIELDS.length; f++) agg[FIELDS[f]] += p.counts[i * FIELDS.length + f];
      }
      if (any) out.push(agg);
      else this.pairs.delete(key);
    }
    return out;
  }

  get size(): number {
    return this.pairs.size;
  }
}
