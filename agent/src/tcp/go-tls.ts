// Where a Go binary keeps the current g in thread-local storage (amd64), read from its own code.
//
// Go code loads g with `MOVQ FS:off, R14` (the local-exec TLS model: internal linking, and external linking
// of executables), or, in PIE and other initial-exec builds, `MOVQ $off, R14; MOVQ FS:(R14), R14` or
// `MOVQ off(RIP), R14; MOVQ FS:(R14), R14` with the offset in a GOT slot. The runtime does this at hundreds
// of places (every ABI wrapper, morestack, systemstack...), so the most common offset is the answer.
import type { GoBinary } from '../gobinary/index.ts';

export interface TlsGOffset {
  offset: number;
  /** How it was found: 'code' (decoded from instructions), or 'default' when nothing matched. */
  source: 'code' | 'default';
  /** How many loads agreed. */
  votes: number;
}

const FS = 0x64;

/** Bytes of .text read at once: the section (tens of MB in a big service) is never held whole. */
const CHUNK = 1 << 20;
/**
 * Reading stops once one offset has this many votes and ten times any other's: the runtime, whose code comes
 * first in Go's text, loads g at hundreds of places, so a big service is decided in its first MiBs.
 */
const DECIDED = 64;
/** 64 4c 8b 34 25 d32: MOVQ FS:d32, R14 (ModRM 0x34 = [SIB], SIB 0x25 = disp32, no base/index). */
const FS_DISP32 = Buffer.from([0x64, 0x4c, 0x8b, 0x34, 0x25]);
/** 64 4d 8b 36: MOVQ FS:(R14), R14, preceded by the offset's load into R14. */
const FS_R14 = Buffer.from([0x64, 0x4d, 0x8b, 0x36]);

function decided(votes: Map<number, number>): boolean {
  const [first = 0, second = 0] = [...votes.values()].sort((a, b) => b - a);
  return first >= DECIDED && first >= 10 * second;
}

export function findTlsGOffset(bin: GoBinary): TlsGOffset {
  const text = bin.elf.section('.text');
  if (!text) return { offset: -8, source: 'default', votes: 0 };
  const votes = new Map<number, number>();
  const vote = (off: number): void => {
    votes.set(off, (votes.get(off) ?? 0) + 1);
  };
  // Each chunk is read with the 7 bytes before it (the offset's load precedes MOVQ FS:(R14)) and the 8 after (an
  // instruction starting at its last bytes runs past it); a match is counted in the chunk it starts in.
  for (let start = 0; start < text.size && !decided(votes); start += CHUNK) {
    const from = Math.max(0, start - 7);
    const code = bin.elf.readAt(text.offset + from, Math.min(text.size, start + CHUNK + 8) - from);
    const first = start - from;
    const end = Math.min(text.size, start + CHUNK) - from;
    for (let i = code.indexOf(FS_DISP32, first); i >= 0 && i < end; i = code.indexOf(FS_DISP32, i + FS_DISP32.length)) {
      if (i + 9 <= code.length) vote(code.readInt32LE(i + 5));
    }
    for (let i = code.indexOf(FS_R14, first); i >= 0 && i < end; i = code.indexOf(FS_R14, i + 1)) {
      if (from + i < 7) continue;
      // 49 c7 c6 imm32: MOVQ $imm32, R14
      if (code[i - 7] === 0x49 && code[i - 6] === 0xc7 && code[i - 5] === 0xc6) {
        vote(code.readInt32LE(i - 4));
        continue;
      }
      // 4c 8b 35 rel32: MOVQ rel32(RIP), R14: the offset sits in a GOT slot, filled in the file when the
      // link resolved it (a TPOFF relocation left for the loader leaves 0 here: not counted).
      if (code[i - 7] === 0x4c && code[i - 6] === 0x8b && code[i - 5] === 0x35) {
        const rip = text.addr + from + i; // the next instruction's address
        const slot = rip + code.readInt32LE(i - 4);
        try {
          const v = Number(bin.elf.read(slot, 8).readBigInt64LE(0));
          if (v < 0 && v > -65536) vote(v);
        } catch {
          /* not file-backed */
        }
      }
    }
  }
  let best = -8;
  let bestVotes = 0;
  for (const [off, v] of votes) {
    if (v > bestVotes) {
      best = off;
      bestVotes = v;
    }
  }
  return bestVotes ? { offset: best, source: 'code', votes: bestVotes } : { offset: -8, source: 'default', votes: 0 };
}
