// GC cycle assembly and pause timing fed record batches built with the generated layout's encoder (bpf/runtime.h
// -> runtime.bpf.ts), no kernel: the orders the gc-pauses test cannot force (a mark termination that restarts
// the world and stops it again, a cycle whose end was missed, an implausible Go time, a panic's value).
import t from 'tap';
import { encode } from '../../agent/src/events/layout.ts';
import { forEachRuntimeEvent, GoKind, RtFlag, RuntimeEventKind, runtimeEventLayout } from '../../agent/src/events/runtime-event.ts';
import { RuntimeEvents, type RuntimeEvent } from '../../agent/src/runtime/runtime-events.ts';

type Fields = Parameters<typeof encode<typeof runtimeEventLayout>>[1];
const STW_REASONS = ['unknown', 'GC mark termination', 'GC sweep termination', 'write heap dump', 'goroutine profile'];
const SWEEP = 2;
const MARK = 1;
const PROFILE = 4;
const US = 1000;

function record(f: Fields, text?: { msg?: string; reason?: string }): Buffer {
  const b = encode(runtimeEventLayout, {
    pid: 7,
    ...f,
    ...(text?.msg !== undefined ? { msg_len: text.msg.length, msg_full_len: text.msg.length } : {}),
    ...(text?.reason !== undefined ? { reason_len: text.reason.length } : {}),
  });
  if (text?.msg) b.write(text.msg, runtimeEventLayout.fields.msg.offset);
  if (text?.reason) b.write(text.reason, runtimeEventLayout.fields.reason.offset);
  return b;
}

/** A stop-the-world record as the restart's RET writes it: Go's own start and end, and the probes' times. */
const pause = (reason: number, stopAt: number, goStart: number, goNow: number, retAt: number): Buffer =>
  record({ kind: RuntimeEventKind.stw, stw_reason: reason, start_ns: stopAt, go_start_ns: goStart, go_now_ns: goNow, ts_ns: retAt, goid: 1 });
const markTermination = (numgc: number, at: number): Buffer =>
  record({ kind: RuntimeEventKind.gcMarkTermination, value: numgc, flags: RtFlag.numgc, ts_ns: at });

function feed(model: RuntimeEvents, records: Buffer[]): RuntimeEvent[] {
  const out: RuntimeEvent[] = [];
  forEachRuntimeEvent(Buffer.concat(records), (r) => model.apply(r, (e) => out.push(e)));
  return out;
}

t.test('a GC cycle: sweep termination, mark termination, pauses from the runtime\'s own start and end', async (t) => {
  const m = new RuntimeEvents(7, STW_REASONS, true);
  const out = feed(m, [
    pause(SWEEP, 1000 * US, 1010 * US, 1050 * US, 1300 * US),
    markTermination(41, 5000 * US),
    pause(MARK, 5100 * US, 5110 * US, 5200 * US, 5900 * US),
  ]);
  t.equal(out.length, 3, 'two pauses, then the cycle');
  t.match(out[0], { reason: 'GC sweep termination', gc: true, startNs: 1010 * US, endNs: 1050 * US, durationNs: 40 * US, untilReturnNs: 290 * US, stopEnteredNs: 1000 * US });
  t.match(out[2], { numgc: 42, seq: 1, startNs: 1010 * US, endNs: 5200 * US, pauseNs: 130 * US, pauses: 2 });
  t.same(m.lastPauses.map((p) => p.cycle), [42, 42], 'each pause knows its cycle');
  const s = m.summary();
  t.equal(s.gcPauses.count, 2);
  t.equal(s.cycles.count, 1);
  t.same(s.pauseReasons, { 'GC sweep termination': 1, 'GC mark termination': 1 });
});

t.test('mark done restarting the world to find more work is not the end of the cycle', async (t) => {
  const m = new RuntimeEvents(7, STW_REASONS, true);
  const out = feed(m, [
    pause(SWEEP, 1 * US, 10 * US, 30 * US, 40 * US),
    pause(MARK, 100 * US, 110 * US, 120 * US, 130 * US), // gcMarkDone stopped, found work, restarted
    markTermination(9, 200 * US),
    pause(MARK, 210 * US, 220 * US, 250 * US, 260 * US),
  ]);
  const cycles = out.filter((e) => 'seq' in e);
  t.equal(cycles.length, 1);
  t.match(cycles[0], { numgc: 10, pauses: 3, pauseNs: 20 * US + 10 * US + 30 * US });
});

t.test('a cycle whose end was missed is dropped and counted, not merged into the next', async (t) => {
  const m = new RuntimeEvents(7, STW_REASONS, true);
  const out = feed(m, [
    pause(SWEEP, 1 * US, 10 * US, 20 * US, 30 * US),
    // its mark termination was lost (a probe detached, the ring full)
    pause(SWEEP, 1000 * US, 1010 * US, 1020 * US, 1030 * US),
    markTermination(3, 1500 * US),
    pause(MARK, 1600 * US, 1610 * US, 1640 * US, 1650 * US),
  ]);
  const cycles = out.filter((e) => 'seq' in e);
  t.match(cycles, [{ numgc: 4, startNs: 1010 * US, pauses: 2, pauseNs: 40 * US }]);
  t.equal(m.oddRecords, 1);
});

t.test('times the runtime could not have taken fall back to the probes\' own; other stops are no GC', async (t) => {
  const m = new RuntimeEvents(7, STW_REASONS, true);
  const [p] = feed(m, [pause(PROFILE, 100 * US, 50 * US /* before the stop: implausible */, 500 * US /* after the RET */, 400 * US)]);
  t.match(p, { reason: 'goroutine profile', gc: false, startNs: 100 * US, endNs: 400 * US, durationNs: 300 * US });
  t.equal(m.summary().cycles.count, 0);
  t.equal(m.summary().gcPauses.count, 0);
  t.same(feed(m, [record({ kind: RuntimeEventKind.stw, start_ns: 0, ts_ns: 5 })]), [], 'a restart with no stop seen is no pause');
  t.equal(m.oddRecords, 1);
});

t.test('before Go 1.21 the reason is the string stopTheWorld left in m.preemptoff', async (t) => {
  const m = new RuntimeEvents(7, [], false);
  const out = feed(m, [
    record({ kind: RuntimeEventKind.stw, start_ns: 100, go_now_ns: 150, go_start_ns: 90, ts_ns: 200 }, { reason: '' }),
    record({ kind: RuntimeEventKind.stw, start_ns: 300, go_now_ns: 350, ts_ns: 400 }, { reason: 'gcing' }),
    record({ kind: RuntimeEventKind.stw, start_ns: 500, go_now_ns: 550, ts_ns: 600 }, { reason: 'write heap dump' }),
  ]);
  t.match(out.map((e) => ('reason' in e ? e.reason : 'cycle')), ['GC sweep termination', 'GC mark termination', 'write heap dump']);
  t.match(out[0], { startNs: 90, durationNs: 60 }, 'a GC stop starts at work.pauseStart, just before the call');
});

t.test('fatal errors and panics, as the runtime printed them', async (t) => {
  const m = new RuntimeEvents(7, STW_REASONS, true, { windowSamples: 16, windowNs: 60e9, lastN: 4, maxFatalPerProcess: 2 });
  const out = feed(m, [
    record({ kind: RuntimeEventKind.throw, goid: 0, curg_goid: 12, tid: 9, ts_ns: 10 }, { msg: 'concurrent map writes' }),
    record({ kind: RuntimeEventKind.fatalPanic, goid: 5, ts_ns: 20, flags: RtFlag.panicString }, { msg: 'boom' }),
    record({ kind: RuntimeEventKind.fatalPanic, goid: 5, ts_ns: 30, value_kind: GoKind.int, value: 42 }),
  ]);
  t.match(out[0], { kind: 'fatal error', function: 'runtime.throw', text: 'fatal error: concurrent map writes', goid: 12, onSystemStack: true });
  t.match(out[1], { kind: 'panic', text: 'panic: boom', goid: 5, onSystemStack: false });
  t.match(out[2], { kind: 'panic', message: '42', valueKind: GoKind.int });
  t.equal(m.fatal.length, 2, 'bounded per process');
});
