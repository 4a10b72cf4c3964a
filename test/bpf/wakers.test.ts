// Who readied whom: the waker of every runtime.ready record is the goroutine that made the call, read by the
// `ready` program from the thread's M (its current goroutine, m.curg, while ready runs on the thread's g0). The
// program keeps each CPU's last thread and M (bpf/goroutines.bpf.c, thread_m); a stale one would name another
// thread's goroutine. Oracle: test/fixtures/wakers, pairs of goroutines that wake only each other, every other
// pair locked to a thread of its own, on four Ps; each goroutine reports its goid from its own stack trace.
// The `sched_execute` program reads the P from the thread's M through the same cache, and keeps each CPU's last
// P id: every run's P is one of the four, and the runs spread over more than one. Readers blocked on pipes, woken
// by the network poller in batches, run with the cause `sched_inject` stamped through the batch's g.schedlink
// list (goid and schedlink read at once).
import t from 'tap';
import { ev, GoroutineEventKind } from '../../agent/src/events/goroutine-event.ts';
import { RunnableCause } from '../../agent/src/sched/sched-table.ts';
import { eachGoVersion, sleep, tracedGo } from '../runtime/helpers.ts';

const PAIRS = 8;
const ROUNDS = 2000;
const READERS = 8;
const PIPE_ROUNDS = 200;

t.test('the waker of each ready is the goroutine that readied it', async (t) => {
  await eachGoVersion(t, 'wakers', ['local', '1.22.12'], async (t, bin) => {
    // Every ready's (readied, waker) pair, as the records tell it.
    const readies: Array<[number, number]> = [];
    const runsOnP = new Map<number, number>();
    const injectedRuns = new Map<number, number>();
    const { tracer, p } = await tracedGo(t, bin, ['park', 'ready', 'run'], (_proc, kind, v, at) => {
      if (kind === GoroutineEventKind.ready) readies.push([Number(ev.goid(v, at)), Number(ev.otherGoid(v, at))]);
      else if (kind === GoroutineEventKind.run) {
        runsOnP.set(ev.pId(v, at), (runsOnP.get(ev.pId(v, at)) ?? 0) + 1);
        if (ev.cause(v, at) === RunnableCause.injected) injectedRuns.set(Number(ev.goid(v, at)), (injectedRuns.get(Number(ev.goid(v, at))) ?? 0) + 1);
      }
    });
    p.send(`pairs ${PAIRS} ${ROUNDS}`);
    const from = p.out.length;
    await p.until(/^PAIRS DONE$/m, 60_000);
    await sleep(100); // the reader drains every 10 ms
    await tracer.drain();
    const partner = new Map<number, number>();
    for (const m of p.out.slice(from).matchAll(/^PAIR \d+ a=(\d+) b=(\d+)$/gm)) {
      partner.set(Number(m[1]), Number(m[2]));
      partner.set(Number(m[2]), Number(m[1]));
    }
    t.equal(partner.size, 2 * PAIRS, 'every goroutine told its goid');
    let byPartner = 0;
    const wrong: string[] = [];
    let other = 0;
    for (const [goid, waker] of readies) {
      if (!partner.has(goid)) continue;
      if (waker === partner.get(goid)) byPartner++;
      else if (partner.has(waker)) wrong.push(`${goid} readied by ${waker}, partner ${partner.get(goid)}`);
      else other++; // the start (main closes the channel), the runtime's own (a GC stack scan's resume)
    }
    t.equal(tracer.lostTotal(), 0, 'no record lost');
    // Each channel hand-off readies exactly one side: the one that waited.
    t.equal(byPartner, 2 * PAIRS * ROUNDS, `every hand-off's ready names the partner (${other} other readies of the pairs)`);
    t.same(wrong.slice(0, 5), [], 'no ready names another goroutine of the pairs');
    const ps = [...runsOnP.keys()].sort();
    t.ok(ps.length >= 2 && ps.every((id) => id < 4), `runs on the four Ps only, on more than one: ${JSON.stringify(Object.fromEntries(runsOnP))}`);

    const fromPipes = p.out.length;
    p.send(`pipes ${READERS} ${PIPE_ROUNDS}`);
    await p.until(/^PIPES DONE$/m, 60_000);
    await sleep(100);
    await tracer.drain();
    const readers = [...p.out.slice(fromPipes).matchAll(/^READER goid=(\d+)$/gm)].map((m) => Number(m[1]));
    t.equal(readers.length, READERS, 'every reader told its goid');
    const injected = readers.reduce((n, g) => n + (injectedRuns.get(g) ?? 0), 0);
    // The poller hands one goroutine of a batch to its thread directly and injects the rest.
    t.ok(injected > 0, `readers run after the poller injected them: ${injected} runs of ${READERS * PIPE_ROUNDS} wakeups`);
  });
});
