// The benchmark harness (scripts/bench/run.ts) in its tiny --quick configuration: every figure is in the
// JSON with a unit and a command, the values are sane (counts, consistency), and the Markdown is written.
// No timing thresholds: the figures themselves are for `npm run bench`, on a quiet machine.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Figure } from '../../scripts/bench/lib.ts';
import { bpfUnavailable } from '../lib/bpf.ts';
import { run } from '../lib/child.ts';
import { repoRoot } from '../lib/go.ts';

const noBpf = await bpfUnavailable();
const noWrk = ['/usr/bin/wrk', '/usr/local/bin/wrk'].some((p) => existsSync(p)) ? undefined : 'wrk is not installed';

const EXPECTED = [
  ...['none', 'empty_entry', 'empty_jump', 'full_jump', 'full_entry'].map((c) => `hit-cost.ns_per_round_trip.${c}`),
  ...['none', 'empty_entry', 'empty_jump', 'full_jump', 'full_entry'].map((c) => `hit-cost.cpu_ns_per_round_trip.${c}`),
  ...['empty_entry', 'empty_jump', 'full_jump', 'full_entry'].map((c) => `hit-cost.per_hit.${c}`),
  ...['empty_entry', 'empty_jump', 'full_jump', 'full_entry'].map((c) => `hit-cost.per_hit_cpu.${c}`),
  'hit-cost.ratio_wall.full_over_empty_jump',
  'hit-cost.ratio.full_over_empty_jump',
  'hit-cost.ratio.full_over_empty_entry',
  'hit-cost.ratio.entry_over_jump_empty',
  'hit-cost.ratio.entry_over_jump_full',
  'hit-cost.hits_per_round_trip.full_jump',
  'hit-cost.hits_per_round_trip.full_entry',
  'hit-cost.hits_per_round_trip.sched',
  'hit-cost.per_hit_cpu.sched',
  'hit-cost.sched_added_cpu_per_round_trip',
  'hit-cost.ratio.sched_over_full_jump',
  'hit-cost.agent_cpu_per_hit.full_jump',
  'hit-cost.lost',
  'hit-cost.bpf_run_ns.empty_jump',
  'hit-cost.bpf_run_ns.full_jump',
  'pipeline.records_per_s.applied',
  'pipeline.records_per_s.applied_no_exits',
  'pipeline.records_per_s.decode_only',
  'pipeline.ns_per_record.applied',
  'pipeline.fixed_rate.offered',
  'pipeline.fixed_rate.received',
  'pipeline.fixed_rate.lost',
  'pipeline.fixed_rate.ring_bytes',
  'pipeline.fixed_rate.agent_cpu',
  'memory.goroutines',
  'memory.bytes_per_goroutine.rss',
  'memory.bytes_per_goroutine.held',
  'memory.bytes_per_goroutine.held_table_only',
  'memory.rss.idle',
  'memory.time.attach',
  ...['none', 'default', 'full', 'requests', 'trace', 'flight'].flatMap((c) => [`http.hello.rps.${c}`, `http.hello.server_cpu_us_per_req.${c}`]),
  ...['default', 'full', 'requests', 'trace', 'flight'].flatMap((c) => [`http.hello.loss_pct.${c}`, `http.hello.server_cpu_overhead_pct.${c}`]),
  ...['default', 'full'].map((c) => `http.hello.agent_cpu_pct.${c}`),
  'http.hello.request_probe_ns_per_req',
  ...['ns_per_req.none', 'added_ns_per_req.done', 'added_ns_per_req.ret', 'ratio.done_over_ret'].map((c) => `request-cost.${c}`),
  'http.hello.default_minus_trace_pct',
  ...['none', 'classic', 'raw_empty', 'raw_filter'].map((c) => `tcp-attach.ns_per_syscall.${c}`),
  ...['classic', 'raw_empty', 'raw_filter'].map((c) => `tcp-attach.added_ns_per_syscall.${c}`),
  'tcp-attach.set_state_hits.listen',
  'tcp-attach.set_state_hits.churn',
  ...['none', 'empty_tp', 'empty_btf', 'full_tp', 'full_btf'].flatMap((c) => [`tcp-attach.listen_ns.${c}`, `tcp-attach.churn_us_per_conn.${c}`]),
  ...['empty_tp', 'empty_btf', 'full_tp', 'full_btf'].flatMap((c) => [`tcp-attach.per_hit_ns.${c}`, `tcp-attach.bpf_run_ns.${c}`, `tcp-attach.bpf_run_ns_churn.${c}`]),
  ...['records_per_second', 'ack_p99', 'collector_cpu_writer', 'db_file_max', 'records_total'].map((c) => `collector-ingest.${c}`),
  ...['lost_at_kill', 'lost_batches_at_kill', 'lost_at_end', 'stored_twice', 'acked_records'].map((c) => `collector-crash.${c}`),
  'collector-api.p99',
];

t.test('npm run bench -- --quick', { skip: noBpf ?? noWrk ?? false, timeout: 590_000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'goroscope-bench-smoke-'));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const MEMORY_GOROUTINES = 5000;
  const args = ['--import', 'tsx', 'scripts/bench/run.ts', '--quick', '--out', out, '--memory-goroutines', String(MEMORY_GOROUTINES)];
  const harness = await run(process.execPath, args, { cwd: repoRoot, what: 'bench harness', timeoutMs: 570_000 });
  t.equal(harness.code, 0, `the harness exits 0 (${harness.signal ?? 'no signal'}; stderr tail: ${harness.stderr.slice(-1500)})`);
  const json = JSON.parse(readFileSync(join(out, 'latest.json'), 'utf8')) as { quick: boolean; errors: Record<string, string>; figures: Figure[] };
  t.same(json.errors, {}, 'no benchmark failed');
  t.equal(json.quick, true);
  const md = readFileSync(join(out, 'latest.md'), 'utf8');
  t.match(md, /^# goroscope benchmarks/m, 'latest.md is written');

  const byId = new Map(json.figures.map((f) => [f.id, f]));
  for (const id of EXPECTED) {
    const f = byId.get(id);
    t.ok(f, `figure ${id} is present`);
    if (!f) continue;
    t.ok(typeof f.value === 'number' && Number.isFinite(f.value), `${id} has a value (${f.value})`);
    t.ok(f.unit.length > 0 && f.command.startsWith('npm run bench'), `${id} has a unit and its command`);
    t.ok(md.includes(f.label.replace(/\|/g, '\\|')), `${id} is in latest.md`);
  }
  for (const f of json.figures) {
    if (f.target && f.value !== null) t.type(f.met, 'boolean', `${f.id} is checked against its target`);
  }

  const v = (id: string) => byId.get(id)?.value ?? NaN;
  // Hit cost: every configuration ran, and the BPF side saw 4 hits (2 gopark + 2 ready) per round trip.
  for (const c of ['none', 'empty_entry', 'empty_jump', 'full_jump', 'full_entry']) t.ok(v(`hit-cost.ns_per_round_trip.${c}`) > 0, `${c} ran`);
  for (const c of ['full_jump', 'full_entry', 'sched']) {
    const h = v(`hit-cost.hits_per_round_trip.${c}`);
    t.ok(h >= 3.9 && h <= 6, `${c}: ${h} probe hits per round trip (4 expected)`);
  }
  t.ok(v('hit-cost.bpf_run_ns.full_jump') > 0, 'the kernel reports the programs\' run time');
  // Pipeline: the synthetic stream was applied in full; the kernel path delivered what it did not drop.
  t.ok(v('pipeline.records_per_s.applied') > 0 && v('pipeline.records_per_s.decode_only') > 0, 'throughputs measured');
  const offered = byId.get('pipeline.fixed_rate.offered')!;
  t.ok(v('pipeline.fixed_rate.offered') > 10_000, `events were offered (${offered.value}/s)`);
  t.ok(v('pipeline.fixed_rate.received') + v('pipeline.fixed_rate.lost') <= v('pipeline.fixed_rate.hits'), 'received + lost <= probe hits');
  t.ok(v('pipeline.fixed_rate.received') > 0, 'records arrived through the ring buffer');
  const ring = v('pipeline.fixed_rate.ring_bytes');
  t.ok(ring >= 4096 && (ring & (ring - 1)) === 0, `ring size ${ring} is a power of two`);
  // Memory: the table holds the parked population.
  t.ok(v('memory.goroutines') >= MEMORY_GOROUTINES, `the table holds the ${MEMORY_GOROUTINES} parked goroutines (${v('memory.goroutines')})`);
  t.ok(v('memory.rss.idle') > 0, 'idle RSS measured');
  // TCP attach paths: the loops ran under each configuration, and the kernel counted the lifecycle hits each
  // operation makes (2 per listen+shutdown; a connection's both ends make at least 4). The counts are
  // node-wide: other processes' sockets may add a few.
  const hl = v('tcp-attach.set_state_hits.listen');
  t.ok(hl >= 2 && hl < 2.5, `two inet_sock_set_state hits per listen+shutdown (${hl})`);
  t.ok(v('tcp-attach.set_state_hits.churn') >= 4, `inet_sock_set_state hits per connection: ${v('tcp-attach.set_state_hits.churn')}`);
  t.ok(v('tcp-attach.bpf_run_ns.full_btf') > 0 && v('tcp-attach.bpf_run_ns.full_tp') > 0, "the kernel reports both programs' run time");
  // Collector: many agents acked; killed with SIGKILL mid-run, nothing acked was lost and nothing stored twice.
  t.ok(v('collector-ingest.records_total') > 0 && v('collector-ingest.records_per_second') > 0, 'the simulated agents were acked');
  t.ok(v('collector-crash.acked_records') > 0, 'records acked around the kill');
  for (const id of ['lost_at_kill', 'lost_batches_at_kill', 'lost_at_end', 'stored_twice']) t.equal(v(`collector-crash.${id}`), 0, `collector-crash.${id} is 0`);
  t.ok(v('collector-api.p99') > 0, 'API latency measured');
  // HTTP: every configuration served requests.
  for (const c of ['none', 'default', 'full', 'requests', 'trace', 'flight']) {
    t.ok(v(`http.hello.rps.${c}`) > 0, `http ${c} served requests`);
    t.ok(v(`http.hello.server_cpu_us_per_req.${c}`) > 0, `http ${c}: the server's CPU per request is measured`);
  }
});
