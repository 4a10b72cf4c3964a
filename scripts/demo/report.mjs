// One frame of the demo: what the collector has learned about the sample service, from its API, and which parts
// of the agent are down (from the agent's /metrics). Exits 2 when the collector has nothing yet.
// Usage: node scripts/demo/report.mjs API_URL METRICS_URL PID [COLLECTOR_METRICS_URL]
// With the collector's /metrics (the demo passes it when it exports to OTLP_ENDPOINT): the spans it exported.
const [api, metrics, pid, collectorMetrics] = process.argv.slice(2);

async function get(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status} ${await r.text()}`);
  return r;
}
const json = async (path) => (await get(`${api}${path}`)).json();
const site = (c) => (c ? `${c.function} ${(c.file ?? '?').split('/').slice(-2).join('/')}:${c.line ?? '?'}` : '?');
const lines = [];

async function main() {

const sites = await json(`/goroutines/summary?by=createdBy&pid=${pid}&limit=6`);
lines.push('goroutines by creation site (live / seen):');
for (const g of sites.groups) lines.push(`  ${String(g.live).padStart(6)} / ${String(g.goroutines).padEnd(6)} ${site(g.createdBy)}`);
const reasons = await json(`/goroutines/summary?by=waitReason&state=waiting&pid=${pid}&limit=5`);
lines.push(`waiting: ${reasons.groups.map((g) => `${g.waitReason} ${g.live}`).join(', ') || 'none yet'}`);

const conns = await json(`/connections?pid=${pid}&limit=4`);
const open = await json(`/connections?pid=${pid}&state=established&limit=1000`);
lines.push(`TCP connections: ${open.items.length} established now; the newest:`);
for (const c of conns.items.slice(0, 4)) {
  lines.push(`  ${c.role.padEnd(6)} ${`${c.localAddress}:${c.localPort}`.padEnd(22)} -> ${`${c.peerAddress}:${c.peerPort}`.padEnd(22)} ${c.state.padEnd(11)} sent ${c.bytesSent} recv ${c.bytesReceived}${c.goid ? ` goroutine ${c.goid}` : ''}${c.preexisting ? ' (open before the agent came)' : ''}`);
}

const leaks = await json(`/leaks?pid=${pid}`);
lines.push(`leak suspects: ${leaks.items.length || 'none yet (a group needs to grow for a while)'}`);
for (const l of leaks.items.slice(0, 3)) lines.push(`  ${l.suspect}: ${Math.round(l.count)} goroutines of ${l.startFunction ?? '?'} created at ${site(l.createdBy)}, ${l.waitReason ?? ''}`);

try {
  const text = await (await get(metrics)).text();
  const up = new Map([...text.matchAll(/^goroscope_agent_part_up\{part="([^"]+)"\} (\d)$/gm)].map((m) => [m[1], m[2] === '1']));
  const details = new Map([...text.matchAll(/^goroscope_agent_part_info\{part="([^"]+)",detail="([^"]*)"\} 1$/gm)].map((m) => [m[1], m[2]]));
  lines.push(`agent parts: ${[...up].map(([p, ok]) => `${p} ${ok ? 'up' : 'down'}`).join(', ')}`);
  for (const [p, d] of details) lines.push(`  ${p}: ${d}`);
} catch (e) {
  lines.push(`agent metrics unreadable: ${e.message}`);
}
if (collectorMetrics) {
  const text = await (await get(collectorMetrics)).text();
  const n = (name) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
  lines.push(`spans exported over OTLP: ${n('goroscope_collector_export_spans_total')} (failed ${n('goroscope_collector_export_failed_spans_total')}, dropped ${n('goroscope_collector_export_dropped_spans_total')})`);
}
console.log(lines.join('\n'));
return sites.groups.length ? 0 : 2;
}

main().then((code) => process.exit(code), (e) => {
  console.log(`${lines.join('\n')}\ncollector API: ${e.message}`);
  process.exit(1);
});
