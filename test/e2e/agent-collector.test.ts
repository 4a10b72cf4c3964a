// The whole path on one machine: a real Go program, the agent with real BPF, a real collector on a real
// SQLite file, over real WebSocket and HTTP. The API must answer what the agent's own snapshot says.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startCollector } from '../../collector/src/server.ts';
import { startAgent } from '../../agent/src/agent/run.ts';
import { buildSnapshot } from '../../agent/src/snapshot/snapshot.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { buildPopulation, PopulationProcess } from '../lib/population.ts';

const noBpf = await bpfUnavailable();

t.test('the API answers what the agent saw', { skip: noBpf ?? false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-e2e-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const collector = await startCollector({ listen: '127.0.0.1:0', db: join(dir, 'goroscope.db'), ingestToken: 'ingest-secret', apiToken: 'api-secret' });
  t.teardown(() => collector.close());
  const prog = await PopulationProcess.start(buildPopulation());
  t.teardown(() => prog.kill());

  const agent = await startAgent({
    collector: collector.url.replace(/^http/, 'ws'),
    token: 'ingest-secret',
    pids: [prog.pid],
    overheadBudget: 0.02,
    full: true,
    spoolDir: join(dir, 'spool'),
    intervalMs: 200,
    scanMs: 200,
    log: (m) => t.comment(m),
  });
  t.teardown(() => agent.stop());
  await prog.command('work 20 5', /^WORK DONE .*$/m);
  await new Promise((r) => setTimeout(r, 1200)); // workers older than a second would ship; these exited young
  t.ok(await agent.flush(), 'every batch acknowledged');
  await collector.idle();

  const api = async (path: string) => {
    const r = await fetch(`${collector.url}/api/v1${path}`, { headers: { authorization: 'Bearer api-secret' } });
    t.equal(r.status, 200, `GET ${path}`);
    return r.json() as Promise<any>;
  };
  t.ok(agent.tracer, `goroutine probes running: ${JSON.stringify(agent.parts.list())}`);
  const proc = agent.tracer!.process(prog.pid)!;
  const snap = buildSnapshot(proc, { lost: 0 });

  const processes = await api(`/processes?pid=${prog.pid}`);
  t.match(processes.items[0], { pid: prog.pid, goVersion: snap.goVersion, exe: snap.exe });

  const page = await api(`/goroutines?pid=${prog.pid}&state=waiting&limit=1000`);
  const fromApi = page.items
    .map((g: any) => ({ goid: g.goid, waitReason: g.waitReason, createdBy: g.createdBy?.function, line: g.createdBy?.line, parentGoid: g.parentGoid }))
    .sort((a: any, b: any) => a.goid - b.goid);
  const fromAgent = snap.goroutines
    .filter((g) => g.state === 'waiting')
    .map((g) => ({ goid: g.goid, waitReason: g.waitReason, createdBy: g.createdBy?.function, line: g.createdBy?.line, parentGoid: g.parentGoid }));
  t.ok(fromAgent.length >= 20, `${fromAgent.length} waiting goroutines`);
  t.same(fromApi, fromAgent, 'waiting goroutines: the API and the snapshot agree');

  const summary = await api(`/goroutines/summary?pid=${prog.pid}&state=waiting&by=waitReason`);
  const byReason = Object.fromEntries(summary.groups.map((g: any) => [g.waitReason, g.live]));
  t.same(byReason, snap.totals.byWaitReason, 'totals by wait reason');

  const windows = await api(`/windows?pid=${prog.pid}`);
  t.ok(windows.items.length >= 1, 'observation windows stored');
  t.equal(agent.shipper!.stats.droppedRecords, 0, 'nothing dropped');
});
