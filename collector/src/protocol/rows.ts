// A batch's records as rows (protocol 2) and back, kind by kind in recordSchemas' order (a process before its
// goroutines). The collector keeps a batch as rows from parse to the writer thread (store/batch-codec.ts reads them);
// objects are made only where something wants them (a live stream, the OTLP export, a collector of protocol 1).
import type { AgentRecord, RowsByKind } from './records.ts';
import { rowLayouts } from './row-layout.ts';
import { fromRow, toRow } from './rows.gen.ts';

type Kind = AgentRecord['kind'];

export function rowsOf(records: readonly AgentRecord[]): RowsByKind {
  const rows: RowsByKind = {};
  for (const r of records) (rows[r.kind] ??= []).push((toRow[r.kind] as (r: AgentRecord) => unknown[])(r));
  return rows;
}

export function recordsOf(rows: RowsByKind, except?: Kind): AgentRecord[] {
  const records: AgentRecord[] = [];
  for (const { kind } of rowLayouts) {
    const these = rows[kind];
    if (!these || kind === except) continue;
    const decode = fromRow[kind] as (row: unknown[]) => AgentRecord;
    for (let i = 0; i < these.length; i++) records.push(decode(these[i]));
  }
  return records;
}

export function rowCount(rows: RowsByKind): number {
  let n = 0;
  for (const kind in rows) n += rows[kind as Kind]!.length;
  return n;
}
