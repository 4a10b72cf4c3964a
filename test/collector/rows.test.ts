// Protocol 2's rows (collector/src/protocol/row-layout.ts, rows.gen.ts): the generated encoders and decoders are what
// the record schemas say now (a schema changed without `npm run gen:rows` fails here), every kind of record goes
// through rows and back as it was, and the collector's row validation takes and refuses what its object validation
// (the records' own schemas, the oracle) takes and refuses, field by field.
import t from 'tap';
import { readFileSync } from 'node:fs';
import type { AgentRecord } from '../../collector/src/protocol/records.ts';
import { parseAgentMessage } from '../../collector/src/protocol/validate.ts';
import { fromRow, toRow } from '../../collector/src/protocol/rows.gen.ts';
import { rowLayouts } from '../../collector/src/protocol/row-layout.ts';
import { recordsOf } from '../../collector/src/protocol/rows.ts';
import { generateRows, rowsFile } from '../../scripts/gen-rows.ts';
import { conn, fatal, gor, leak, pause, proc, rowBatch, T0, win } from './helpers.ts';

t.test('rows.gen.ts is what the record schemas say (else: npm run gen:rows)', async (t) => {
  t.equal(readFileSync(rowsFile, 'utf8'), generateRows());
});

const place = { goid: 9, root: 1, segment: 2 };
const loc = { function: 'main.worker', file: '/src/w.go', line: 7 };
const buckets = { count: 3, sumNs: 3000, maxNs: 1500, buckets: { 0: 1, 12: 2 } };
/** A record of every kind with every optional field, then the same without them. */
const full: AgentRecord[] = [
  proc(10, { serviceVersion: 'v1.2.3' }),
  gor(10, 5, {
    startLocation: loc, parkCoverage: 0.25,
    trace: { root: 1, segment: 2, from: T0, to: T0 + 10, creator: place, parked: { waitReason: 'select', from: T0 + 5 } },
    longParks: [{ waitReason: 'chan receive', from: T0, to: T0 + 9, segment: 0, segmentFrom: T0, waker: place }, { waitReason: null, from: T0, to: T0 + 1, segment: 1, segmentFrom: T0, waker: null }],
    sched: { runs: 4, runsTimed: 3, runnableNs: 100, maxRunnableNs: 60, yields: 1, preemptions: 0, syscalls: 2, syscallNs: 50, tid: 77, p: null, threadSwitches: 1, pSwitches: 0 },
  }),
  conn(10, 40000, { servedBy: 12, trace: { parent: place, links: [place, { goid: 3, root: 3, segment: 0 }], segment: 1, from: T0, to: T0 + 5 } }),
  win(10, 0),
  leak(10, 42, { stack: [loc, { ...loc, line: 8 }], goroutine: place }),
  pause(10, 5),
  fatal(10),
  { kind: 'stack', id: 3, frames: [loc] },
  { kind: 'profile', pid: 10, profile: 'block', from: T0, to: T0 + 1000, samples: [{ stack: 3, values: [2, 500], labels: { a: 'b' } }], comments: ['c'] },
  {
    kind: 'request', pid: 10, goid: 5, protocol: 'http/1.1', method: 'GET', route: 'GET /items/{id}', path: '/items/1', status: 200, startedAt: T0,
    durationNs: 1000, requestBytes: -1, responseBytes: 5, parkedNs: 400, parkedByReason: { 'IO wait': 400 },
    parks: [{ waitReason: 'IO wait', from: T0, durationNs: 400, resumedUnseen: true, wakerGoid: 0 }],
    traceParent: { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331' }, weight: 1,
    sched: { runningNs: 500, runnableNs: 100, syscallNs: 10, runs: 2, preemptions: 0 },
  },
  {
    kind: 'sched', pid: 10, from: T0, to: T0 + 1000, runs: 5, runsTimed: 4, yields: 0, preemptions: 1, preemptParks: 0, syscalls: 2, syscallNs: 30,
    threadSwitches: 1, pSwitches: 1, byCause: { ready: 4 }, threads: 2, ps: 2, runQueue: buckets, syscallTime: buckets,
    sites: [{ createdBy: loc, runQueue: buckets }, { createdBy: null, runQueue: buckets }],
  },
];
const optional = new Map(rowLayouts.map((l) => [l.kind, l.layout.fields.filter((f) => f.optional).map((f) => f.name)]));
const bare = full.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !optional.get(r.kind)!.includes(k))) as AgentRecord);

t.test('every kind of record goes through rows and back as it was', async (t) => {
  t.same(new Set(full.map((r) => r.kind)), new Set(rowLayouts.map((l) => l.kind)), 'the samples hold every kind');
  for (const records of [full, bare]) {
    const objects = parseAgentMessage(JSON.stringify({ type: 'batch', agentId: 'a', seq: 1, records }));
    t.ok(objects.ok, `the object batch is valid: ${objects.ok || objects.error}`);
    const parsed = parseAgentMessage(rowBatch('a', 1, records));
    t.ok(parsed.ok, `the row batch is valid: ${parsed.ok || parsed.error}`);
    if (parsed.ok && parsed.kind === 'batch') {
      // Kinds come back in recordSchemas' order; each record exactly as sent (toRow then fromRow, through JSON).
      const byKind = (rs: AgentRecord[]) => rowLayouts.flatMap((l) => rs.filter((r) => r.kind === l.kind));
      t.ok('rows' in parsed.message, 'kept as rows');
      if ('rows' in parsed.message) t.strictSame(recordsOf(parsed.message.rows), byKind(records));
    }
    for (const r of records) t.strictSame((fromRow[r.kind] as (row: unknown[]) => AgentRecord)(JSON.parse(JSON.stringify((toRow[r.kind] as (r: AgentRecord) => unknown[])(r)))), r, `${r.kind} round-trips`);
  }
  const g = toRow.goroutine(gor(1, 2));
  t.equal(g.length, rowLayouts.find((l) => l.kind === 'goroutine')!.layout.minItems, 'absent optional fields at the end are left off');
  t.ok(rowBatch('a', 1, full).length < JSON.stringify({ type: 'batch', agentId: 'a', seq: 1, records: full }).length * 0.75, 'rows are smaller');
});

/** Every field, nested ones too, as [path, setter]. */
function mutations(r: unknown, path: string[] = []): Array<[string, (v: unknown) => unknown]> {
  if (typeof r !== 'object' || r === null) return [];
  const out: Array<[string, (v: unknown) => unknown]> = [];
  for (const k of Object.keys(r)) {
    if (path.length === 0 && k === 'kind') continue;
    const set = (v: unknown) => {
      const copy = structuredClone(r) as Record<string, unknown>;
      copy[k] = v;
      return copy;
    };
    out.push([[...path, k].join('.'), set]);
    for (const [p, inner] of mutations((r as Record<string, unknown>)[k], [...path, k])) out.push([p, (v) => set(inner(v))]);
  }
  return out;
}

t.test('rows are refused exactly when the same records as objects are', async (t) => {
  const wrong: unknown[] = ['x', -1, 1.5, 2 ** 60, true, {}, [], 'a'.repeat(5000)];
  let cases = 0;
  let refused = 0;
  for (const r of full) {
    for (const [path, set] of mutations(r)) {
      for (const v of wrong) {
        const m = set(v) as AgentRecord;
        const asObject = parseAgentMessage(JSON.stringify({ type: 'batch', agentId: 'a', seq: 1, records: [m] })).ok;
        let asRow: boolean;
        try {
          asRow = parseAgentMessage(rowBatch('a', 1, [m])).ok;
        } catch {
          asRow = false; // the encoder could not even make a row of it (a closed object that is not one)
        }
        cases++;
        if (!asObject) refused++;
        if (asRow !== asObject) t.fail(`${r.kind}.${path} = ${JSON.stringify(v).slice(0, 20)}: objects ${asObject ? 'take' : 'refuse'} it, rows ${asRow ? 'take' : 'refuse'} it`);
      }
    }
  }
  t.ok(cases > 1000 && refused > cases / 2 && refused < cases, `${cases} cases, ${refused} refused`);
});
