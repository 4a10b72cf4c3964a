// The BPF side's choice of which goroutines' parks and readies to keep (park_sampled in goroutines.bpf.c).

const GOLDEN = 0x9e3779b97f4a7c15n;
const MASK64 = (1n << 64n) - 1n;

/** Whether a goroutine's parks are kept at this sampling rate: the same hash the BPF program computes. */
export function parkSampled(goid: number, rate: number): boolean {
  if (rate >= 1) return true;
  const skip = Math.floor((1 - rate) * 2 ** 32);
  const h = Number(((BigInt(goid) * GOLDEN) & MASK64) >> 32n);
  return h >= skip;
}
