// What the main thread hands the store's writer thread (collector/src/store/batch-codec.ts): every record the store
// writes comes out as it went in, goroutines with each field the store keeps, nulls, multibyte text and big numbers.
import t from 'tap';
import { decodeBatch, encodeBatch } from '../../collector/src/store/batch-codec.ts';
import type { AgentRecord, GoroutineRecord } from '../../collector/src/protocol/records.ts';
import { conn, fatal, gor, leak, pause, proc, T0, win } from './helpers.ts';

/** The fields of a goroutine record the store keeps (StoreWriter.writeGoroutine). */
const stored = (g: GoroutineRecord) => ({
  kind: g.kind, pid: g.pid, goid: g.goid, parentGoid: g.parentGoid, state: g.state, waitReason: g.waitReason, createdBy: g.createdBy,
  startFunction: g.startFunction, createdAt: g.createdAt, exitedAt: g.exitedAt, lastParkAt: g.lastParkAt, parkCount: g.parkCount,
  readyCount: g.readyCount, blockedNs: g.blockedNs, blockedByReason: g.blockedByReason, preexisting: g.preexisting, system: g.system, observedAt: g.observedAt,
});

t.test('a batch survives the trip to the writer thread', async (t) => {
  const goroutines = [
    gor(10, 1),
    gor(10, 2 ** 53 - 1, { parentGoid: null, waitReason: null, createdBy: null, startFunction: null, createdAt: null, exitedAt: T0 + 0.125, lastParkAt: null, blockedByReason: {} }),
    gor(10, 3, { state: 'running', createdBy: { function: 'main.fünf·λ', file: '/src/é.go', line: 0 }, blockedNs: 2 ** 50, blockedByReason: { 'chan receive': 1, select: 2 ** 50 - 1 }, preexisting: true, system: true }),
    gor(10, 4, { trace: { root: 4, segment: 2, from: T0 }, parkCoverage: 0.5 }), // what the store does not keep stays behind
  ];
  const others: AgentRecord[] = [proc(10), conn(10, 4000), win(10, 0), leak(10, 42), pause(10, 5), fatal(10)];
  const records: AgentRecord[] = [goroutines[0], others[0], goroutines[1], ...others.slice(1), goroutines[2], goroutines[3]];
  const enc = encodeBatch(records);
  const back = structuredClone(enc, { transfer: [enc.goroutines.buffer] }); // as postMessage hands it over
  const out = decodeBatch(back);
  t.same(out.filter((r) => r.kind !== 'goroutine'), others, 'the other records, in their order');
  t.same(out.filter((r) => r.kind === 'goroutine'), goroutines.map(stored), 'goroutines, in their order, with what the store keeps');
  t.equal(new Set(enc.strings).size, enc.strings.length, 'each string once');
});

t.test('a goroutine blocked for many reasons fits however few records share the batch', async (t) => {
  const many = Object.fromEntries(['chan receive', 'chan send', 'select', 'IO wait', 'sleep', 'semacquire'].map((r, i) => [r, (i + 1) * 1000]));
  const goroutines = [gor(10, 1, { blockedByReason: many }), gor(10, 2, { blockedByReason: { select: 5 } })];
  t.same(decodeBatch(encodeBatch(goroutines)), goroutines.map(stored));
});
