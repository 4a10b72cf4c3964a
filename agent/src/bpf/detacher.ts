// Letting go of probes without blocking the agent: the kernel takes a grace period per detach (~0.1 s per
// classic uprobe, one per multi-link), so links go on the bridge's threads, all at once, and the tracer keeps
// the promises until its object closes.
import type { BpfObject } from './bridge.ts';

export class Detacher {
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly bpf: BpfObject) {}

  /** The links are off the object's books at once; resolves when the kernel has let go of them. */
  detach(links: Iterable<number>): Promise<void> {
    const ids = [...links];
    if (ids.length === 0) return Promise.resolve();
    const done: Promise<void> = this.bpf.detachAsync(ids).finally(() => this.pending.delete(done));
    this.pending.add(done);
    return done;
  }

  /** Links still being let go of. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Resolves when every detach so far has finished. */
  async idle(): Promise<void> {
    while (this.pending.size) await Promise.all([...this.pending]);
  }
}

/** The keys of one process in a hash map keyed by pid (u32), by pid_tgid (u64, pid above) or by a struct that
 * starts with the pid. */
export function processKeys(bpf: BpfObject, map: string, pid: number): Buffer[] {
  const keys: Buffer[] = [];
  for (const key of bpf.keys(map)) {
    const keyPid = key.length === 8 ? Number(key.readBigUInt64LE() >> 32n) : key.readUInt32LE();
    if (keyPid === pid) keys.push(key);
  }
  return keys;
}

/** Removes the entries of one process from such a map; how many went. */
export function deleteProcessEntries(bpf: BpfObject, map: string, pid: number): number {
  let n = 0;
  for (const key of processKeys(bpf, map, pid)) if (bpf.deleteElem(map, key)) n++;
  return n;
}
