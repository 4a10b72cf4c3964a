// A process's goroutine model fed record batches built with the generated layout's encoder (bpf/goroutines.h ->
// goroutines.bpf.ts), as the ring hands them to the tracer, no kernel: the lifecycle, the scheduler's records,
// and the merge with scans of the runtime's list (an event older than the last scan never overwrites it).
import t from 'tap';
import { encode } from '../../agent/src/events/layout.ts';
import { ev, forEachGoroutineEvent, GoroutineEventKind, goroutineEventLayout } from '../../agent/src/events/goroutine-event.ts';
import { RunnableCause } from '../../agent/src/events/goroutines.bpf.ts';
import { applyGoroutineRecord, type GoroutineModel } from '../../agent/src/model/goroutine-records.ts';
import { GoroutineTable, GStatus } from '../../agent/src/model/goroutine-table.ts';
import { SchedTable } from '../../agent/src/sched/sched-table.ts';

const S = 1e9; // ns
const PID = 4242;
// Go's waitReason values (runtime/runtime2.go): the table keeps the number, the layout names it.
const CHAN_RECEIVE = 14;
const SELECT = 9;

type Fields = Parameters<typeof encode<typeof goroutineEventLayout>>[1];
const K = GoroutineEventKind;
/** One struct goroutine_event as bpf/goroutines.bpf.c writes it. */
const rec = (kind: number, ts: number, f: Fields): Buffer => encode(goroutineEventLayout, { pid: PID, tid: PID, kind, ts_ns: ts, ...f });
const create = (goid: number, parent: number, ts: number) => rec(K.create, ts, { goid, other_goid: parent, pc: 0x4a1000 + parent, start_pc: 0x4b2000, g_addr: 0xc000_0000 + goid * 0x100 });
const park = (goid: number, reason: number, ts: number) => rec(K.park, ts, { goid, wait_reason: reason, g_addr: 0xc000_0000 + goid * 0x100 });
const ready = (goid: number, waker: number, ts: number) => rec(K.ready, ts, { goid, other_goid: waker });
const exit = (goid: number, ts: number) => rec(K.exit, ts, { goid });

function model(): GoroutineModel {
  return { table: new GoroutineTable(), sched: new SchedTable() };
}

/** Applies one batch as the tracer does; returns how many records it held and how many were of unknown kinds. */
function apply(m: GoroutineModel, records: Buffer[]): { records: number; unknown: number } {
  let unknown = 0;
  const n = forEachGoroutineEvent(Buffer.concat(records), (v, at) => {
    if (!applyGoroutineRecord(m, ev.kind(v, at), v, at)) unknown++;
  });
  return { records: n, unknown };
}

t.test('create, park, ready, exit: the lifecycle from one batch, walked by stride', async (t) => {
  const m = model();
  const got = apply(m, [create(10, 1, 1 * S), create(11, 10, 1.5 * S), park(10, CHAN_RECEIVE, 2 * S), ready(10, 11, 5 * S)]);
  t.same(got, { records: 4, unknown: 0 });
  const g = m.table.get(10, 6 * S)!;
  t.match(g, { goid: 10, parentGoid: 1, state: 'runnable', gopc: 0x4a1001, startPc: 0x4b2000, createdAt: 1 * S, parkCount: 1, readyCount: 1, blockedNs: 3 * S, gAddr: 0xc000_0a00 });
  t.same([...g.blockedByReason], [[CHAN_RECEIVE, 3 * S]]);
  t.equal(m.table.get(11, 6 * S)!.parentGoid, 10, 'created by 10');
  apply(m, [exit(11, 7 * S)]);
  t.notOk(m.table.has(11), 'gone from the live table at its exit');
  t.match(m.table.recentlyExited(), [{ goid: 11, exitedAt: 7 * S, state: 'dead' }]);
  t.match(m.table.counters, { created: 2, parked: 1, readied: 1, exited: 1 });
});

t.test('an exit while recorded as parked counts the park once', async (t) => {
  const m = model();
  // The park/ready probes were off when it was readied: its exit ends the park.
  apply(m, [create(20, 1, 0), park(20, CHAN_RECEIVE, 1 * S), exit(20, 13 * S)]);
  const [gone] = m.table.recentlyExited();
  t.equal(gone.blockedNs, 12 * S, 'blocked 12 s, not 24');
  t.same([...gone.blockedByReason], [[CHAN_RECEIVE, 12 * S]]);
  t.equal(gone.waitReason, null);
});

t.test('the scheduler\'s records: runs with their run-queue time, yields, preemptions, system calls; gone with the exit', async (t) => {
  const m = model();
  apply(m, [
    create(30, 1, 0),
    rec(K.run, 1 * S, { goid: 30, tid: 101, p_id: 0, cause: RunnableCause.created, duration_ns: 40_000 }),
    rec(K.yield, 2 * S, { goid: 30, cause: RunnableCause.yielded }),
    rec(K.run, 2.1 * S, { goid: 30, tid: 102, p_id: 1, cause: RunnableCause.yielded, duration_ns: 60_000 }),
    rec(K.yield, 3 * S, { goid: 30, cause: RunnableCause.preempted }),
    rec(K.run, 3.1 * S, { goid: 30, tid: 102, p_id: 1, cause: RunnableCause.unknown, duration_ns: 0 }),
    rec(K.syscall, 4 * S, { goid: 30, duration_ns: 2_000_000 }),
  ]);
  t.match(m.sched.of(30), { runs: 3, runsTimed: 2, runnableNs: 100_000, maxRunnableNs: 60_000, yields: 1, preemptions: 1, syscalls: 1, syscallNs: 2_000_000, tid: 102, p: 1, threadSwitches: 1, pSwitches: 1 });
  t.match(m.sched.counters.byCause, { created: 1, yielded: 1, unknown: 1 });
  t.equal(m.sched.runQueueBySite.get(0x4a1001)?.summary().count, 2, 'run-queue time by the go statement that created it');
  apply(m, [exit(30, 5 * S)]);
  t.equal(m.sched.size, 0, 'the exit takes it out of the live scheduler table');
  t.equal(m.sched.of(30)?.runs, 3, 'its figures kept for the records built after its exit');
});

t.test('a scan and the records around it: the newest of the two says the state', async (t) => {
  const scanned = (goid: number, status: number, waitReason: number | null = null) =>
    ({ goid, gAddr: 0xc000_0000 + goid * 0x100, parentGoid: 1, status, waitReason, gopc: 0x4a1001, startPc: 0x4b2000, waitingSince: null });
  const m = model();
  apply(m, [create(40, 1, 0), create(41, 1, 0), park(40, CHAN_RECEIVE, 1 * S)]);
  // The runtime's list read at 5 s: 40 runs, 41 waits in select, 42 exists though no record named it.
  m.table.applyScan([scanned(40, GStatus.running), scanned(41, GStatus.waiting, SELECT), scanned(42, GStatus.waiting, CHAN_RECEIVE)], 5 * S);
  t.equal(m.table.get(40, 6 * S)!.state, 'running', 'the scan is newer than the park');
  t.equal(m.table.get(40, 6 * S)!.blockedNs, 4 * S, 'the park ends at the scan, counted once');
  t.equal(m.table.counters.foundByScan, 1, '42 found by the scan');
  // A batch read after the scan holds a park from before it (the ring is drained every pollMs): stale, not applied.
  apply(m, [park(40, CHAN_RECEIVE, 4 * S)]);
  t.equal(m.table.get(40, 6 * S)!.state, 'running', 'an event older than the last scan never overwrites it');
  // One from after the scan wins.
  apply(m, [park(41, CHAN_RECEIVE, 7 * S)]);
  t.same([m.table.get(41, 8 * S)!.state, m.table.get(41, 8 * S)!.waitReason], ['waiting', CHAN_RECEIVE], 'a newer event wins');
  // And a later scan that began before that park does not undo it.
  m.table.applyScan([scanned(40, GStatus.running), scanned(41, GStatus.waiting, SELECT), scanned(42, GStatus.waiting, CHAN_RECEIVE)], 6.5 * S);
  t.equal(m.table.get(41, 8 * S)!.waitReason, CHAN_RECEIVE, 'a scan never undoes a newer event');
  // 42 leaves the runtime's list; its exit record, older than that scan, arrives afterwards: one exit.
  m.table.applyScan([scanned(40, GStatus.running), scanned(41, GStatus.waiting, CHAN_RECEIVE)], 10 * S);
  t.notOk(m.table.has(42));
  apply(m, [exit(42, 9.5 * S)]);
  t.equal(m.table.recentlyExited().filter((g) => g.goid === 42).length, 1, 'ended by the scan, not again by its late record');
  t.equal(m.table.counters.endedByScan, 1);
});

t.test('a record of a kind this agent does not know is refused, not guessed at', async (t) => {
  const m = model();
  const got = apply(m, [create(50, 1, 0), rec(99, 1 * S, { goid: 50 }), park(50, CHAN_RECEIVE, 2 * S)]);
  t.same(got, { records: 3, unknown: 1 });
  t.equal(m.table.get(50, 3 * S)!.state, 'waiting', 'the records around it still applied');
});
