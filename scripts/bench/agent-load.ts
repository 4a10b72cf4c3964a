// Simulated agents speaking the real ingest protocol (collector/src/protocol/records.ts) over real WebSockets:
// hello, welcome, batches with seq, acks. Each keeps a window of batches in flight and, like the real shipper,
// keeps every batch until it is acked: after the collector goes away it reconnects and sends the unacked ones
// again (a batch stored before the crash is acked again as a duplicate, never stored twice).
//
// The records are what a busy node sends: mostly goroutines (new ones, and updates of earlier ones), with
// connections and observation windows. Batches are built as JSON text from templates: a load generator that spent
// its CPU in JSON.stringify would measure itself on a 2-core machine, not the collector. They speak protocol 2
// (records as rows, as the shipper sends them) and protocol 1 (objects) to a collector that refuses 2.
import WebSocket from 'ws';
import { PROTOCOL_VERSION } from '../../collector/src/protocol/records.ts';
import { parseAgentMessage } from '../../collector/src/protocol/validate.ts';
import { recordsOf } from '../../collector/src/protocol/rows.ts';

export interface LoadOptions {
  url: string;
  token: string;
  agents: number;
  /** Records per batch. */
  batch: number;
  /** Batches in flight per agent. */
  window: number;
  /** Stop sending new batches then (ms since the epoch); unacked ones are still waited for. */
  until: number;
  /** Share of goroutine records that update a goroutine sent before (its exit). */
  updateShare?: number;
  /** Called with each acked batch (agent index, records). */
  onAck?: (agent: number, records: number, latencyMs: number) => void;
  log?: (m: string) => void;
}

export interface AgentTally {
  agentId: string;
  pid: number;
  ackedBatches: number;
  ackedRecords: number;
  /**
   * New goroutines acked: goids are handed out in order and an agent's batches are acked in order, so these are
   * goids 1..ackedGoroutines, each of which the collector must have stored.
   */
  ackedGoroutines: number;
  maxAckedGoid: number;
  reconnects: number;
  duplicates: number;
}

const T0 = Date.now() - 600_000;
const REASONS = ['chan receive', 'select', 'IO wait', 'sync.Mutex.Lock', 'sleep', 'semacquire'];

/** One goroutine record as JSON text (the fields and order of GoroutineRecord). */
function goroutineJson(pid: number, goid: number, now: number, exited: boolean): string {
  const site = goid % 200;
  const reason = exited ? null : REASONS[(goid >>> 3) % REASONS.length];
  const created = T0 + (goid % 500_000);
  return `{"kind":"goroutine","pid":${pid},"goid":${goid},"parentGoid":${1 + (goid % 50)},"state":"${exited ? 'dead' : 'waiting'}",` +
    `"waitReason":${reason ? `"${reason}"` : 'null'},"createdBy":{"function":"main.spawner${site}","file":"/src/pkg${site % 20}/file.go","line":${10 + site}},` +
    `"startFunction":"main.worker${site}","createdAt":${created},"exitedAt":${exited ? now : 'null'},"lastParkAt":${reason ? created + 1 : 'null'},` +
    `"parkCount":${goid % 17},"readyCount":${goid % 13},"blockedNs":${(goid % 1000) * 1_000_000},` +
    `"blockedByReason":${reason ? `{"${reason}":${(goid % 1000) * 1_000_000}}` : '{}'},"preexisting":false,"system":false,"observedAt":${now},` +
    `"trace":{"root":${goid},"segment":0,"from":${created}}}`;
}

/** The same goroutine as a row (protocol 2: the fields of GoroutineRecord in its order, createdBy and trace as rows). */
function goroutineRow(pid: number, goid: number, now: number, exited: boolean): string {
  const site = goid % 200;
  const reason = exited ? null : REASONS[(goid >>> 3) % REASONS.length];
  const created = T0 + (goid % 500_000);
  return `[${pid},${goid},${1 + (goid % 50)},"${exited ? 'dead' : 'waiting'}",${reason ? `"${reason}"` : 'null'},["main.spawner${site}","/src/pkg${site % 20}/file.go",${10 + site}],` +
    `"main.worker${site}",${created},${exited ? now : 'null'},${reason ? created + 1 : 'null'},${goid % 17},${goid % 13},${(goid % 1000) * 1_000_000},` +
    `${reason ? `{"${reason}":${(goid % 1000) * 1_000_000}}` : '{}'},false,false,${now},null,[${goid},0,${created}]]`;
}

function connectionRow(pid: number, port: number, now: number): string {
  return `[${pid},${port % 1000},"inet","client","10.0.0.1",${port},"10.0.0.2",5432,"ESTABLISHED",${now - 1000},null,${port * 3},${port * 5},150,0,0,null,false,${now}]`;
}

function processRow(pid: number, now: number): string {
  return `[${pid},${1000 + pid},"/app/svc${pid % 7}","go1.26.8","c${pid}",["svc-${pid}","prod","u${pid}","app"],${now},null]`;
}

/** The templates as rows are what the schemas say (else the collector would refuse every batch): checked once. */
function checkRowTemplates(): void {
  const now = Date.now();
  const text = `{"type":"batch","agentId":"a","seq":0,"rows":{"process":[${processRow(1, now)}],"goroutine":[${goroutineRow(1, 9, now, false)},` +
    `${goroutineRow(1, 9, now, true)}],"connection":[${connectionRow(1, 20_000, now)}]}}`;
  const rows = parseAgentMessage(text);
  if (!rows.ok) throw new Error(`agent-load.ts: the row templates no longer match the record schemas: ${rows.error}`);
  const objects = parseAgentMessage(`{"type":"batch","agentId":"a","seq":0,"records":[${processJson(1, now)},${goroutineJson(1, 9, now, false)},` +
    `${goroutineJson(1, 9, now, true)},${connectionJson(1, 20_000, now)}]}`);
  const records = (m: ReturnType<typeof parseAgentMessage>) =>
    (!m.ok ? m.error : m.kind === 'hello' ? 'hello' : JSON.stringify('rows' in m.message ? recordsOf(m.message.rows) : m.message.records));
  if (records(objects) !== records(rows)) {
    throw new Error('agent-load.ts: the row templates and the object templates say different records');
  }
}

function connectionJson(pid: number, port: number, now: number): string {
  return `{"kind":"connection","pid":${pid},"goid":${port % 1000},"family":"inet","role":"client","localAddress":"10.0.0.1","localPort":${port},` +
    `"peerAddress":"10.0.0.2","peerPort":5432,"state":"ESTABLISHED","openedAt":${now - 1000},"closedAt":null,"bytesSent":${port * 3},` +
    `"bytesReceived":${port * 5},"srttUs":150,"retransmits":0,"resets":0,"error":null,"preexisting":false,"observedAt":${now}}`;
}

function processJson(pid: number, now: number): string {
  return `{"kind":"process","pid":${pid},"startTime":${1000 + pid},"exe":"/app/svc${pid % 7}","goVersion":"go1.26.8","containerId":"c${pid}",` +
    `"pod":{"name":"svc-${pid}","namespace":"prod","uid":"u${pid}","container":"app"},"seenAt":${now},"exitedAt":null}`;
}

/**
 * Starts the agents; they run until `until` and every batch they sent is acked. `tallies` are live (what each has
 * acked so far); `done` resolves with them at the end.
 */
export function startAgents(o: LoadOptions): { tallies: AgentTally[]; done: Promise<AgentTally[]> } {
  checkRowTemplates();
  const tallies = Array.from({ length: o.agents }, (_, i): AgentTally => ({
    agentId: `bench-agent-${i}`, pid: 1000 + i, ackedBatches: 0, ackedRecords: 0, ackedGoroutines: 0, maxAckedGoid: 0, reconnects: 0, duplicates: 0,
  }));
  return { tallies, done: Promise.all(tallies.map((t, i) => runAgent(o, i, t))) };
}

export const runAgents = (o: LoadOptions): Promise<AgentTally[]> => startAgents(o).done;

async function runAgent(o: LoadOptions, index: number, tally: AgentTally): Promise<AgentTally> {
  const { agentId, pid } = tally;
  const unacked = new Map<number, { text: string; goids: number[]; records: number; sentAt: number }>();
  let seq = 0;
  let goid = 0;
  const updateShare = o.updateShare ?? 0.2;
  /** Rows until a collector refuses protocol 2 (one from before rows: a baseline). */
  let protocol = PROTOCOL_VERSION;

  const makeBatch = () => {
    const now = Date.now();
    const rows = protocol >= 2;
    const [goroutine, connection] = rows ? [goroutineRow, connectionRow] : [goroutineJson, connectionJson];
    const goroutines: string[] = [];
    const connections: string[] = [];
    const processes = seq === 0 ? [(rows ? processRow : processJson)(pid, now)] : [];
    const goids: number[] = [];
    for (let k = 0; processes.length + goroutines.length + connections.length < o.batch; k++) {
      if (k % 50 === 49) { connections.push(connection(pid, 20_000 + ((seq * 7 + k) % 40_000), now)); continue; }
      // An update: the exit of a goroutine sent in an earlier batch.
      if (goid > 1000 && (k * 7919 + seq) % 100 < updateShare * 100) {
        const old = goid - 1 - ((k * 104_729 + seq) % 1000);
        goroutines.push(goroutine(pid, old, now, true));
        continue;
      }
      goid++;
      goids.push(goid);
      goroutines.push(goroutine(pid, goid, now, false));
    }
    const s = seq++;
    const head = `{"type":"batch","agentId":"${agentId}","epoch":"e1","seq":${s},`;
    const text = rows
      ? `${head}"rows":{${processes.length ? `"process":[${processes[0]}],` : ''}"goroutine":[${goroutines.join(',')}],"connection":[${connections.join(',')}]}}`
      : `${head}"records":[${[...processes, ...goroutines, ...connections].join(',')}]}`;
    unacked.set(s, { text, goids, records: processes.length + goroutines.length + connections.length, sentAt: 0 });
    return s;
  };

  for (;;) {
    const done = await new Promise<boolean>((resolve) => {
      const ws = new WebSocket(`${o.url.replace(/^http/, 'ws')}/api/v1/ingest`, { headers: { authorization: `Bearer ${o.token}` }, perMessageDeflate: false });
      let welcomed = false;
      const send = (s: number) => {
        const b = unacked.get(s)!;
        b.sentAt = performance.now();
        ws.send(b.text);
      };
      const fill = () => {
        // Resend what is unacked (after a reconnect), then new batches up to the window.
        for (const [s, b] of unacked) if (b.sentAt === 0 && ws.readyState === ws.OPEN) send(s);
        while (unacked.size < o.window && Date.now() < o.until && ws.readyState === ws.OPEN) send(makeBatch());
        if (unacked.size === 0 && Date.now() >= o.until) ws.close(1000);
      };
      ws.on('open', () => ws.send(JSON.stringify({ type: 'hello', protocol, agentId, node: `node-${index}`, agentVersion: 'bench', agentKey: `key-${index}-0123456789abcdef` })));
      ws.on('message', (data) => {
        const m = JSON.parse(data.toString()) as { type: string; seq?: number; error?: string };
        if (m.type === 'welcome') {
          welcomed = true;
          fill();
          return;
        }
        if (m.type === 'ack' && m.seq !== undefined) {
          const b = unacked.get(m.seq);
          if (!b) { tally.duplicates++; return; }
          unacked.delete(m.seq);
          tally.ackedBatches++;
          tally.ackedRecords += b.records;
          tally.ackedGoroutines += b.goids.length;
          if (b.goids.length) tally.maxAckedGoid = Math.max(tally.maxAckedGoid, b.goids[b.goids.length - 1]);
          o.onAck?.(index, b.records, performance.now() - b.sentAt);
          fill();
          return;
        }
        if (m.type === 'error' && !welcomed && protocol > 1 && /unsupported protocol version/.test(m.error ?? '')) {
          protocol = 1; // its close follows; the next connection speaks 1
          return;
        }
        o.log?.(`agent ${index}: ${data.toString().slice(0, 300)}`);
      });
      ws.on('error', () => {});
      ws.on('close', () => {
        if (unacked.size === 0 && Date.now() >= o.until && welcomed) return resolve(true);
        for (const b of unacked.values()) b.sentAt = 0; // not acked: sent again on the next connection
        resolve(false);
      });
    });
    if (done) return tally;
    tally.reconnects++;
    await new Promise((r) => setTimeout(r, 200 + (index % 10) * 30));
  }
}
