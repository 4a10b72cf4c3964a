// The goroutine table fed the events the probes deliver, in the orders they arrive in: blocked time counted once
// (also when a goroutine exits while recorded as parked), units of work decided at creation, long parks with the
// goroutine that woke them, report intervals of long-lived goroutines. The lifecycle tests run the same table
// against real Go programs; here each case is one the programs cannot produce on demand.
import t from 'tap';
import { GoroutineTable, GStatus } from '../../agent/src/model/goroutine-table.ts';

const S = 1e9; // ns
const CHAN_RECEIVE = 14;

t.test('a goroutine that exits while recorded as parked counts its park once', async (t) => {
  const table = new GoroutineTable();
  table.onCreate(10, 1, 0x1000, 0x2000, 0);
  table.onPark(10, CHAN_RECEIVE, 1 * S);
  // Its ready was not seen (the park/ready probes were off): the exit ends the park.
  table.onExit(10, 13 * S);
  const [gone] = table.recentlyExited();
  t.equal(gone.state, 'dead');
  t.equal(gone.blockedNs, 12 * S, 'blocked 12 s, not 24');
  t.same([...gone.blockedByReason], [[CHAN_RECEIVE, 12 * S]], 'all of it under its wait reason, no invented "unknown" total');
  t.equal(gone.waitReason, null);
});

t.test('a park and its ready: blocked time once, a long park kept with its waker', async (t) => {
  const table = new GoroutineTable({ trace: { parkSpanMinMs: 1000, segmentMs: 60_000 } });
  table.onCreate(20, 1, 0, 0, 0);
  table.onCreate(21, 20, 0, 0, 0.1 * S);
  table.onPark(20, CHAN_RECEIVE, 0.2 * S);
  table.onReady(20, 21, 1.7 * S);
  table.onPark(20, CHAN_RECEIVE, 2 * S);
  table.onReady(20, 21, 2.1 * S); // short: not kept
  const row = table.get(20, 3 * S)!;
  t.equal(row.blockedNs, 1.6 * S);
  t.equal(row.state, 'runnable');
  const parks = table.takeLongParks(20);
  t.same(parks, [{ reason: CHAN_RECEIVE, from: 0.2 * S, to: 1.7 * S, waker: { goid: 21, root: 20, segment: 0 } }]);
  t.same(table.takeLongParks(20), [], 'handed over once');
});

t.test('units of work: a young creator\'s children join its trace, an established one\'s start their own', async (t) => {
  const table = new GoroutineTable({ trace: { unitRootAgeMs: 1000, maxJoinedChildren: 2 } });
  table.addPreexisting({ goid: 1, gAddr: 0, parentGoid: null, status: GStatus.waiting, waitReason: CHAN_RECEIVE, gopc: 0, startPc: 0, waitingSince: null }, 0);
  table.onCreate(30, 1, 0, 0, 5 * S); // by a goroutine from before the agent: a root
  table.onCreate(31, 30, 0, 0, 5.5 * S); // by a young goroutine: joins
  table.onCreate(32, 31, 0, 0, 5.6 * S); // grandchild: joins the same trace
  table.onCreate(33, 30, 0, 0, 5.7 * S); // a second child
  table.onCreate(34, 30, 0, 0, 5.8 * S); // past maxJoinedChildren: its own
  table.onCreate(35, 30, 0, 0, 6.5 * S); // by a creator a second and a half old: its own
  const root = (g: number) => table.get(g, 7 * S)!.root;
  t.same([30, 31, 32, 33, 34, 35].map(root), [30, 30, 30, 30, 34, 35]);
  // A root's creator is known where it was: the preexisting goroutine's span at that time.
  t.same(table.placeAt(1, 5 * S), { goid: 1, root: 1, segment: 0 });
});

t.test('a parent that exits before its child is kept for the child\'s trace', async (t) => {
  const table = new GoroutineTable({ exitedRetention: 2 });
  table.onCreate(40, 1, 0, 0, 0);
  table.onCreate(41, 40, 0, 0, 0.1 * S);
  table.onExit(40, 0.2 * S);
  for (let g = 100; g < 110; g++) { table.onCreate(g, 1, 0, 0, 0.3 * S); table.onExit(g, 0.4 * S); } // pushes 40 out of the ring
  const parent = table.lookup(40, 2 * S);
  t.ok(parent && 'exitedAt' in parent, 'still known after leaving the ring of recent exits');
  t.equal(parent!.root, 40);
  t.ok(table.markShipped(40));
  t.equal(table.lookup(40, 2 * S)!.shipped, true);
});

t.test('report intervals: a long-lived goroutine\'s spans end every segmentMs', async (t) => {
  const table = new GoroutineTable({ trace: { segmentMs: 10_000, unitRootAgeMs: 1000 } });
  table.onCreate(50, 1, 0, 0, 0);
  table.onCreate(51, 1, 0, 0, 25 * S);
  t.same([...table.segmentsEnded(0, 9 * S)], [], 'none before the first interval ends');
  t.same([...table.segmentsEnded(9 * S, 21 * S)], [{ goid: 50, segment: 0 }, { goid: 50, segment: 1 }], 'every interval that ended since');
  t.same([...table.segmentsEnded(21 * S, 36 * S)], [{ goid: 50, segment: 2 }, { goid: 51, segment: 0 }]);
  t.same(table.placeAt(50, 35 * S), { goid: 50, root: 50, segment: 3 });
});

t.test('an accepting goroutine: the goroutine it started for a connection is found', async (t) => {
  const table = new GoroutineTable();
  table.onCreate(60, 1, 0, 0, 0);
  table.markAcceptor(60);
  table.onCreate(61, 60, 0, 0, 1 * S);
  table.onCreate(62, 60, 0, 0, 2 * S);
  t.equal(table.startedAfter(60, 1.9 * S), 62);
  t.equal(table.startedAfter(60, 0.99 * S), 61);
  t.equal(table.startedAfter(60, 5 * S), null, 'none within the window');
});

t.test('state from the newest of (last scan, last event)', async (t) => {
  const SELECT = 9;
  const scanned = (goid: number, status: number, waitReason: number | null = null) => ({ goid, gAddr: 0x100 * goid, parentGoid: 1, status, waitReason, gopc: 0x1000, startPc: 0x2000, waitingSince: null });
  const table = new GoroutineTable();
  table.onCreate(30, 1, 0x1000, 0x2000, 0);
  table.onCreate(31, 1, 0x1000, 0x2000, 0);
  table.onPark(30, CHAN_RECEIVE, 1 * S);
  // Park/ready off from here: the runtime says 30 runs now, 31 waits in select, and 40 exists unseen.
  table.applyScan([scanned(30, GStatus.running), scanned(31, GStatus.waiting, SELECT), scanned(40, GStatus.waiting, CHAN_RECEIVE)], 5 * S);
  t.equal(table.get(30, 6 * S)!.state, 'running', 'a scan newer than the park wins');
  t.equal(table.get(30, 6 * S)!.blockedNs, 4 * S, 'the park the probes saw ends at the scan, counted once');
  t.same([table.get(31, 6 * S)!.state, table.get(31, 6 * S)!.waitReason], ['waiting', SELECT], 'waiting in select from memory');
  t.equal(table.get(31, 6 * S)!.blockedNs, 0, 'a wait only a scan saw adds no blocked time (events only)');
  t.equal(table.get(40, 6 * S)!.createdAt, null, 'a goroutine first seen by a scan: creation unseen');
  t.equal(table.counters.foundByScan, 1);
  // An event older than the scan arrives late: it does not undo it. A newer one wins.
  table.onPark(30, CHAN_RECEIVE, 4 * S);
  t.equal(table.get(30, 6 * S)!.state, 'running', 'an older event never overwrites a scan');
  table.onPark(31, CHAN_RECEIVE, 7 * S);
  table.applyScan([scanned(30, GStatus.running), scanned(31, GStatus.waiting, SELECT), scanned(40, GStatus.waiting, CHAN_RECEIVE)], 6.5 * S);
  t.same([table.get(31, 8 * S)!.state, table.get(31, 8 * S)!.waitReason], ['waiting', CHAN_RECEIVE], 'an event newer than the scan is kept');
  // 40 exits with no exit probe: the next complete scan ends it, an incomplete one does not.
  table.applyScan([scanned(30, GStatus.running), scanned(31, GStatus.waiting, SELECT)], 9 * S, false);
  t.ok(table.has(40), 'a scan with unreadable gs ends nobody');
  table.applyScan([scanned(30, GStatus.running), scanned(31, GStatus.waiting, SELECT)], 10 * S);
  t.notOk(table.has(40), 'gone from the runtime\'s list: exited');
  t.equal(table.counters.endedByScan, 1);
  t.equal(table.recentlyExited().at(-1)!.goid, 40);
  // Its exit record arrives late: not a second exit.
  table.onExit(40, 9.5 * S);
  t.equal(table.recentlyExited().filter((g) => g.goid === 40).length, 1, 'one exit');
  // And a goroutine created after the scan began is not ended by it.
  table.onCreate(50, 1, 0, 0, 11 * S);
  table.applyScan([scanned(30, GStatus.running), scanned(31, GStatus.waiting, SELECT)], 10.5 * S);
  t.ok(table.has(50), 'created after the scan\'s reads began: kept');
});

t.test('exits kept as columns read back as the rows they were, and a selection makes rows only of what it keeps', async (t) => {
  const table = new GoroutineTable({ exitedRetention: 3 });
  table.onCreate(60, 1, 0x1000, 0x2000, 1 * S, 0xc000);
  table.onPark(60, CHAN_RECEIVE, 2 * S);
  table.onReady(60, 1, 3 * S);
  table.onExit(60, 4 * S);
  t.same(table.recentlyExited(), [{
    goid: 60, parentGoid: 1, state: 'dead', waitReason: null, gopc: 0x1000, startPc: 0x2000, createdAt: 1 * S, lastParkAt: null,
    lastReadyAt: 3 * S, parkCount: 1, readyCount: 1, blockedNs: 1 * S, blockedByReason: new Map([[CHAN_RECEIVE, 1 * S]]), preexisting: false,
    gAddr: 0xc000, waitingSince: null, root: 60, traceStart: 1 * S, shipped: false, mustShip: false, exitedAt: 4 * S, serial: 1,
    longParks: [{ reason: CHAN_RECEIVE, from: 2 * S, to: 3 * S, waker: null }], // 1 s: a long park; its waker unknown to the table
  }]);
  for (let g = 61; g <= 64; g++) { table.onCreate(g, 1, 0, 0, g * S); table.onExit(g, (g + 0.5) * S); }
  t.same(table.recentlyExited().map((e) => e.goid), [62, 63, 64], 'the newest 3, oldest first');
  t.ok(table.markShipped(63));
  t.notOk(table.markShipped(60), 'pushed out of the ring: no longer known');
  const seen: number[] = [];
  const kept = table.exitedSince(2, (e) => { seen.push(e.exitedAt); return e.shipped; });
  t.same(seen, [62.5 * S, 63.5 * S, 64.5 * S], 'the selection sees every exit since serial 2 still kept');
  t.same(kept.map((e) => [e.goid, e.serial, e.shipped]), [[63, 4, true]]);
  t.equal(table.lastExitSerial, 5);
  t.same(table.exitedSince(5), []);
});

t.test('the exits\' ring grows as exits come, keeping every one, then wraps at exitedRetention', async (t) => {
  const table = new GoroutineTable({ exitedRetention: 1000 });
  // Past its first places (256) and each doubling, then around the ring: 2,500 exits, 1,000 kept.
  for (let g = 1; g <= 2500; g++) {
    table.onCreate(g, 0, 0x10 + g, 0x20 + g, g);
    table.onPark(g, CHAN_RECEIVE, g + 0.25);
    table.onExit(g, g + 0.5);
    if (g === 600) t.same(table.recentlyExited().map((e) => e.goid), Array.from({ length: 600 }, (_, i) => i + 1), 'all 600 kept through two growths, oldest first');
  }
  const kept = table.recentlyExited();
  t.same(kept.map((e) => e.goid), Array.from({ length: 1000 }, (_, i) => i + 1501), 'the newest 1,000, oldest first');
  t.same(kept.map((e) => [e.gopc, e.startPc, e.exitedAt, e.blockedNs]), kept.map((e) => [0x10 + e.goid, 0x20 + e.goid, e.goid + 0.5, 0.25]), 'each with its own columns');
  t.equal(table.lookup(1501, 3000)?.goid, 1501, 'the oldest kept is found by goid');
  t.equal(table.exitedSince(2400).length, 100, 'the exits after serial 2,400');
});

t.test('an exited goroutine is found by goid exactly while its exit is in the ring: slots shared, goids exiting twice, the ring growing and wrapping', async (t) => {
  // 300 places (slots: 512): goids that share a slot (512 apart, and past 2^32), goids exiting again later (a late
  // event made a row again), and goids never seen. Each lookup is held to the newest of the last 300 exits.
  const retention = 300;
  const table = new GoroutineTable({ exitedRetention: retention });
  const exits: Array<[number, number]> = []; // goid, exitedAt: every exit, in order
  let seed = 7;
  const rand = (n: number) => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n);
  const pool = (i: number) => [1000 + i, 1000 + 512 * (i % 5), 2 ** 32 + 1000 + (i % 7), 3 + rand(600)][rand(4)];
  let mismatches = 0;
  let found = 0;
  let checked = 0;
  for (let i = 0; i < 3000; i++) {
    const goid = pool(i);
    if (table.has(goid)) continue;
    table.onCreate(goid, 0, 0x10, 0x20, i);
    table.onExit(goid, i + 0.5);
    exits.push([goid, i + 0.5]);
    // After each exit, every goid of the pool's kinds: the newest exit of it among the ring's, or none.
    if (i % 50 !== 0 && i > 20) continue;
    const ring = exits.slice(-retention);
    for (const g of [goid, 1000 + i - 1, 1000, 1512, 2 ** 32 + 1003, 3 + rand(600), 999_999]) {
      const want = ring.filter(([x]) => x === g).pop()?.[1];
      const got = table.lookup(g, i + 1);
      const at = got && 'exitedAt' in got ? got.exitedAt : undefined;
      if (at !== want) mismatches++;
      if (want !== undefined) found++;
      checked++;
    }
  }
  t.equal(mismatches, 0, `every lookup as the ring says (${checked} lookups, ${found} of exits in the ring)`);
  t.ok(found > 100 && checked - found > 100, 'both kinds looked up often');
  const shippedGoid = exits[exits.length - 1][0];
  t.ok(table.markShipped(shippedGoid), 'the newest exit is marked shipped');
  t.ok(table.lookup(shippedGoid, 4000)?.shipped, 'and read back shipped');
  t.notOk(table.markShipped(999_999), 'a goid never seen is not');
});
