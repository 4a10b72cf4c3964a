// Stacks end to end: the agent reads two real Go processes' stacks, ships them through its stack table (each
// stack once, ids in the profile records) over real WebSocket to a real collector on a real SQLite file, and the
// collector serves one profile per process, per node (both merged), over a time range, as pprof that
// `go tool pprof` reads and as JSON; a leak suspect comes with its parked stack.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCollector } from '../../collector/src/server.ts';
import { startAgent } from '../../agent/src/agent/run.ts';
import type { AgentRecord } from '../../collector/src/protocol/records.ts';
import { StackTable } from '../../agent/src/stacks/stack-table.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { goToolPprof, parseRaw } from '../lib/pprof.ts';
import { buildStacksFixture, StacksProcess } from '../lib/stacks-fixture.ts';

const noBpf = await bpfUnavailable();

t.test('the stack table sends each stack once and stays bounded', async (t) => {
  const table = new StackTable(3);
  const out: AgentRecord[] = [];
  const f = (n: string) => [{ function: n, file: 'x.go', line: 1 }];
  const a = table.intern(f('a'), out);
  t.equal(table.intern(f('a'), out), a, 'same stack, same id');
  t.equal(out.length, 1, 'sent once');
  table.intern(f('b'), out);
  table.intern(f('c'), out);
  table.intern(f('a'), out); // a is now the most recently used
  table.intern(f('d'), out); // b goes
  t.equal(table.size, 3, 'bounded');
  t.equal(table.evicted, 1);
  const b2 = table.intern(f('b'), out);
  t.ok(b2 > a, 'a forgotten stack comes back under a new id');
  t.equal(out.filter((r) => r.kind === 'stack').length, 5, 'and is sent again');
});

t.test('profiles and leak stacks through the collector', { skip: noBpf ?? false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-profiles-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const collector = await startCollector({ listen: '127.0.0.1:0', db: join(dir, 'goroscope.db'), ingestToken: 'in', apiToken: 'api' });
  t.teardown(() => collector.close());
  const bin = buildStacksFixture('local', 'default');
  const one = (await StacksProcess.start(bin, ['-block'])).proc;
  t.teardown(() => one.kill());
  const two = (await StacksProcess.start(bin, ['-leak', '100000', '-every', '20ms'])).proc;
  t.teardown(() => two.kill());

  const since = Date.now();
  const agent = await startAgent({
    collector: collector.url.replace(/^http/, 'ws'),
    token: 'in',
    node: 'stacks-node',
    pids: [one.pid, two.pid],
    overheadBudget: 0.02,
    full: true,
    tcp: false,
    spoolDir: join(dir, 'spool'),
    intervalMs: 200,
    scanMs: 200,
    profileIntervalMs: 1000,
    leakSampleMs: 400,
    leaks: { minAgeMs: 300, minCount: 5, history: 5 },
    log: (m) => t.comment(m),
  });
  t.teardown(() => agent.stop());
  const api = (path: string) => fetch(`${collector.url}/api/v1${path}`, { headers: { authorization: 'Bearer api' } });
  const get = async (path: string) => {
    const r = await api(path);
    t.equal(r.status, 200, `GET ${path}`);
    return r;
  };
  const count = (p: any, fn: string) => p.samples.filter((s: any) => s.frames.some((f: any) => f.function === fn)).reduce((a: number, s: any) => a + s.values[0], 0);
  const received = (block: any) => block.samples.filter((s: any) => s.frames.some((f: any) => f.function === 'main.tickedReceiver') && s.labels['wait reason'] === 'chan receive');
  // A profile a second, leaks sampled every 400 ms, once the agent attached: 4.5 s on a quiet machine. A loaded one
  // attaches and profiles later, so what is checked below is waited for (a minute at most), not a fixed time.
  const shipped = async () => {
    await agent.flush();
    await collector.idle();
    const both = await (await api(`/profiles/goroutine?node=stacks-node&since=${since}&format=json`)).json() as any;
    const block = await (await api(`/profiles/block?pid=${one.pid}&format=json`)).json() as any;
    const leaks = await (await api(`/leaks?pid=${two.pid}`)).json() as any;
    return both.processes === 2 && count(both, 'main.leakOne') >= 20 && received(block).reduce((a: number, s: any) => a + s.values[1], 0) > 0.3e9 &&
      leaks.items?.some((l: any) => l.suspect === 'growing-live');
  };
  await new Promise((r) => setTimeout(r, 4500));
  for (const deadline = Date.now() + 60_000; Date.now() < deadline && !(await shipped());) await new Promise((r) => setTimeout(r, 500));
  t.ok(await agent.flush(), 'every batch acknowledged');
  await collector.idle();

  const g1 = await (await get(`/profiles/goroutine?pid=${one.pid}&format=json`)).json() as any;
  t.equal(g1.processes, 1);
  t.equal(count(g1, 'main.selectForever'), 1, 'one process: its goroutine on main.selectForever');
  const both = await (await get(`/profiles/goroutine?node=stacks-node&since=${since}&format=json`)).json() as any;
  t.equal(both.processes, 2, 'the node: both processes');
  t.equal(count(both, 'main.selectForever'), 2, 'merged: two goroutines on the same stack');
  t.ok(count(both, 'main.leakOne') >= 20, `the leaking goroutines: ${count(both, 'main.leakOne')}`);

  const pprof = Buffer.from(await (await get(`/profiles/goroutine?node=stacks-node`)).arrayBuffer());
  const file = join(dir, 'node.pb.gz');
  writeFileSync(file, pprof);
  const raw = parseRaw(goToolPprof(['-raw'], file));
  t.equal(raw.samples.filter((s) => s.frames.some((f) => f.function === 'main.selectForever')).reduce((a, s) => a + s.values[0], 0), 2, 'go tool pprof reads the merged profile');

  const block = await (await get(`/profiles/block?pid=${one.pid}&format=json`)).json() as any;
  const recv = received(block);
  t.ok(recv.length >= 1, 'blocking windows: the ticked receive on its stack');
  const delay = recv.reduce((a: number, s: any) => a + s.values[1], 0) / 1e9;
  // Scans come every second here, the waits last 300ms: a part of them is caught on its stack, the rest is
  // counted under the frame that says so.
  t.ok(delay > 0.3, `${delay.toFixed(2)}s waited there`);
  t.ok(block.samples.some((s: any) => s.frames[0]?.function === '[wait not caught by a stack scan]'), 'shorter waits under the frame that says so');
  const later = await (await get(`/profiles/block?pid=${one.pid}&since=${Date.now() + 60_000}&format=json`)).json() as any;
  t.equal(later.samples.length, 0, 'a time range after the data: nothing');

  const leaks = await (await get(`/leaks?pid=${two.pid}`)).json() as any;
  const leak = leaks.items.find((l: any) => l.suspect === 'growing-live');
  t.ok(leak, `a leak suspect: ${JSON.stringify(leaks.items.map((l: any) => l.startFunction))}`);
  t.equal(leak?.stack?.[0]?.function, 'main.leakOne', 'with the stack its goroutines are parked at');
  t.equal(agent.shipper!.stats.droppedRecords, 0, 'nothing dropped');
});
