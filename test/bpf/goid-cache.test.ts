// While the exit probe is on, the park, ready and scheduler programs take a goroutine's goid from a cache keyed by its g
// (bpf/goroutines.bpf.c, "The goid of a g, cached"): an exit empties its g's slot before the runtime can reuse the
// g, and the agent gives the process a new epoch each time the exit probe comes back on, so no goid cached before
// a spell of unseen exits is ever used. Oracle: test/fixtures/wakers's waves, each goroutine telling its goid from
// its own stack trace; the runtime hands the gs of one wave's (ended) goroutines to the next wave's. A park or
// ready (or a scheduler record: run, yield, system call) of a later wave that names a goroutine of an earlier one
// would be a stale cached goid. Waves run with the
// exit probe on, off (exits unseen while gs are reused, and goids read from memory), on again, and on; then the
// waker pairs, whose every waker comes through the cache.
import t from 'tap';
import { ev, GoroutineEventKind } from '../../agent/src/events/goroutine-event.ts';
import { eachGoVersion, sleep, tracedGo } from '../runtime/helpers.ts';

const WAVE = 300;
const PAIRS = 8;
const ROUNDS = 1000;

interface Rec {
  kind: number;
  goid: number;
  other: number;
  g: number;
}

t.test('a reused g never carries the goid of a goroutine that had it before', async (t) => {
  await eachGoVersion(t, 'wakers', ['local', '1.22.12'], async (t, bin) => {
    const recs: Rec[] = [];
    const { tracer, p } = await tracedGo(t, bin, ['park', 'ready', 'exit', 'run', 'syscall'], (_proc, kind, v, at) => {
      if (kind !== GoroutineEventKind.create && kind !== GoroutineEventKind.exit) {
        recs.push({ kind, goid: Number(ev.goid(v, at)), other: Number(ev.otherGoid(v, at)), g: ev.gAddr(v, at) });
      }
    });

    const ended = new Set<number>(); // goroutines of the waves done so far: all have ended
    const gsOfEnded = new Set<number>();
    let reusedGs = 0;
    for (const [i, exitOn] of [true, false, true, true].entries()) {
      await tracer.setProbes(p.pid, 'exit', exitOn);
      const from = p.out.length;
      const first = recs.length;
      p.send(`wave ${WAVE}`);
      await p.until(/^WAVE DONE$/m, 60_000);
      await sleep(50); // the reader drains every 10 ms
      await tracer.drain();
      const ids = new Set([...p.out.slice(from).matchAll(/^WAVE goid=(\d+)$/gm)].map((m) => Number(m[1])));
      t.equal(ids.size, WAVE, `wave ${i + 1} (exit probe ${exitOn ? 'on' : 'off'}): every goroutine told its goid`);
      const mine = recs.slice(first).filter((r) => ids.has(r.goid));
      const stale = recs.slice(first).filter((r) => ended.has(r.goid) || ended.has(r.other));
      t.ok(mine.length >= WAVE, `wave ${i + 1}: its goroutines' parks and readies were recorded (${mine.length})`);
      t.same(stale.slice(0, 5), [], `wave ${i + 1}: no park, ready, run, yield or system call names a goroutine of an earlier wave`);
      reusedGs += new Set(mine.filter((r) => gsOfEnded.has(r.g)).map((r) => r.g)).size;
      for (const r of mine) gsOfEnded.add(r.g);
      for (const id of ids) ended.add(id);
    }
    // Otherwise the waves proved nothing about reuse.
    t.ok(reusedGs > 0, `later waves ran on gs of earlier ones (${reusedGs} reused gs)`);

    // Every waker comes from the cache (the readier is the pair's other side, which parked before).
    const from = p.out.length;
    const first = recs.length;
    p.send(`pairs ${PAIRS} ${ROUNDS}`);
    await p.until(/^PAIRS DONE$/m, 60_000);
    await sleep(50);
    await tracer.drain();
    const partner = new Map<number, number>();
    for (const m of p.out.slice(from).matchAll(/^PAIR \d+ a=(\d+) b=(\d+)$/gm)) {
      partner.set(Number(m[1]), Number(m[2]));
      partner.set(Number(m[2]), Number(m[1]));
    }
    t.equal(partner.size, 2 * PAIRS, 'every goroutine of the pairs told its goid');
    const readies = recs.slice(first).filter((r) => r.kind === GoroutineEventKind.ready && partner.has(r.goid));
    const byPartner = readies.filter((r) => r.other === partner.get(r.goid)).length;
    const wrong = readies.filter((r) => r.other !== partner.get(r.goid) && partner.has(r.other));
    t.equal(byPartner, 2 * PAIRS * ROUNDS, "every hand-off's ready names the partner");
    t.same(wrong.slice(0, 5), [], 'no ready names another goroutine of the pairs');
    t.equal(tracer.lostTotal(), 0, 'no record lost');
  });
});
