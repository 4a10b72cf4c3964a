// How a validated batch travels from the main thread to the store's writer thread. Goroutine records, nearly all
// of a batch, go as numbers in a Float64Array (handed over, not copied) with their strings in a table, each
// distinct string once; the rest as JSON. Parsing the agent's JSON again in the writer was a fifth of its time
// (scripts/bench, collector-ingest with GOROSCOPE_BENCH_CPU_PROF), copying objects between threads costs more.
// Only what the store keeps of a goroutine record travels (collector/src/store/writer.ts writeGoroutine). Goroutines
// are read from their rows as the agent sent them (protocol 2: protocol/row-layout.ts), never made into objects here.
import type { AgentRecord, GoroutineRecord, RowsByKind } from '../protocol/records.ts';
import { rowLayouts, type RowLayout } from '../protocol/row-layout.ts';
import { recordsOf, rowsOf } from '../protocol/rows.ts';

export interface EncodedBatch {
  strings: string[];
  /** Per goroutine: FIELDS numbers, then its blocked-by-reason pairs (string index, ns). */
  goroutines: Float64Array;
  /** The other records, as JSON. */
  others: string;
}

// pid, goid, parentGoid, state, waitReason, created by (function, file, line), startFunction, createdAt, exitedAt,
// lastParkAt, parkCount, readyCount, blockedNs, preexisting, system, observedAt, number of blocked-by-reason pairs
const FIELDS = 19;
const NONE = -1;

/** Where each field is in a row of this layout. */
const at = (layout: RowLayout) => Object.fromEntries(layout.fields.map((f, i) => [f.name, i])) as Record<string, number>;
const goroutineLayout = rowLayouts.find((l) => l.kind === 'goroutine')!.layout;
const G = at(goroutineLayout);
const L = at(goroutineLayout.fields[G.createdBy].row!);

export function encodeBatch(records: AgentRecord[]): EncodedBatch {
  return encodeRows(rowsOf(records));
}

/** A batch of rows (valid: protocol/validate.ts), encoded. */
export function encodeRows(rows: RowsByKind): EncodedBatch {
  const strings: string[] = [];
  const index = new Map<string, number>();
  const str = (s: string | null): number => {
    if (s === null) return NONE;
    let i = index.get(s);
    if (i === undefined) {
      i = strings.length;
      strings.push(s);
      index.set(s, i);
    }
    return i;
  };
  const goroutines = (rows.goroutine ?? []) as unknown[][];
  // One pass: room for one blocked-by-reason pair a record, grown when a batch has more.
  let out: Float64Array = new Float64Array(goroutines.length * (FIELDS + 2));
  let o = 0;
  const nul = (v: unknown) => (v === null ? NaN : (v as number));
  for (const g of goroutines) {
    if (o + FIELDS > out.length) out = grow(out, o + FIELDS);
    const createdBy = g[G.createdBy] as unknown[] | null;
    out[o++] = g[G.pid] as number;
    out[o++] = g[G.goid] as number;
    out[o++] = nul(g[G.parentGoid]);
    out[o++] = str(g[G.state] as string);
    out[o++] = str(g[G.waitReason] as string | null);
    out[o++] = str(createdBy === null ? null : createdBy[L.function] as string);
    out[o++] = str(createdBy === null ? null : createdBy[L.file] as string);
    out[o++] = createdBy === null ? NONE : createdBy[L.line] as number;
    out[o++] = str(g[G.startFunction] as string | null);
    out[o++] = nul(g[G.createdAt]);
    out[o++] = nul(g[G.exitedAt]);
    out[o++] = nul(g[G.lastParkAt]);
    out[o++] = g[G.parkCount] as number;
    out[o++] = g[G.readyCount] as number;
    out[o++] = g[G.blockedNs] as number;
    out[o++] = g[G.preexisting] ? 1 : 0;
    out[o++] = g[G.system] ? 1 : 0;
    out[o++] = g[G.observedAt] as number;
    const count = o++;
    let pairs = 0;
    const byReason = g[G.blockedByReason] as Record<string, number>;
    for (const reason in byReason) {
      if (o + 2 > out.length) out = grow(out, o + 2);
      out[o++] = str(reason);
      out[o++] = byReason[reason];
      pairs++;
    }
    out[count] = pairs;
  }
  out = out.subarray(0, o);
  return { strings, goroutines: out, others: JSON.stringify(recordsOf(rows, 'goroutine')) };
}

/** A copy with room for at least `need` numbers. */
function grow(a: Float64Array, need: number): Float64Array {
  const b = new Float64Array(Math.max(need, a.length * 2));
  b.set(a);
  return b;
}

/** The records again: the others first (a process before its goroutines), then the goroutines in their order. */
export function decodeBatch(b: EncodedBatch): AgentRecord[] {
  const records: AgentRecord[] = [];
  readBatch(b, (r) => records.push(r));
  return records;
}

/**
 * Each record in decodeBatch's order, one at a time: the writer stores each as it comes, so a group's records are
 * never all alive together (tens of thousands of objects that outlived the young generation made the writer's GC).
 */
export function readBatch(b: EncodedBatch, each: (r: AgentRecord) => void): void {
  for (const r of JSON.parse(b.others) as AgentRecord[]) each(r);
  const s = b.strings;
  const g = b.goroutines;
  const str = (i: number) => (i === NONE ? null : s[i]);
  const num = (v: number) => (Number.isNaN(v) ? null : v);
  for (let o = 0; o < g.length;) {
    const fn = g[o + 5];
    const r: GoroutineRecord = {
      kind: 'goroutine',
      pid: g[o],
      goid: g[o + 1],
      parentGoid: num(g[o + 2]),
      state: s[g[o + 3]] as GoroutineRecord['state'],
      waitReason: str(g[o + 4]),
      createdBy: fn === NONE ? null : { function: s[fn], file: s[g[o + 6]], line: g[o + 7] },
      startFunction: str(g[o + 8]),
      createdAt: num(g[o + 9]),
      exitedAt: num(g[o + 10]),
      lastParkAt: num(g[o + 11]),
      parkCount: g[o + 12],
      readyCount: g[o + 13],
      blockedNs: g[o + 14],
      blockedByReason: {},
      preexisting: g[o + 15] === 1,
      system: g[o + 16] === 1,
      observedAt: g[o + 17],
    };
    const pairs = g[o + 18];
    o += FIELDS;
    for (let k = 0; k < pairs; k++, o += 2) r.blockedByReason[s[g[o]]] = g[o + 1];
    each(r);
  }
}
