// Shared pieces for collector tests: temp databases, a collector per test, a minimal agent client.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { startCollector, type Collector, type CollectorOptions } from '../../collector/src/server.ts';
import { toRow } from '../../collector/src/protocol/rows.gen.ts';
import type {
  AgentRecord, CollectorMessage, ConnectionRecord, WelcomeMessage, FatalRecord, GoroutineRecord, LeakRecord, PauseRecord, ProcessRecord, WindowRecord,
} from '../../collector/src/protocol/records.ts';

export const INGEST_TOKEN = 'ingest-token-0123456789abcdef';
export const API_TOKEN = 'api-token-0123456789abcdef';

interface Teardown { teardown(fn: () => unknown): void }

export function tempDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-collector-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export async function testCollector(t: Teardown, opts: Partial<CollectorOptions> = {}): Promise<Collector & { dbFile: string }> {
  const dbFile = opts.db ?? join(tempDir(t), 'collector.db');
  const c = await startCollector({ listen: '127.0.0.1:0', db: dbFile, ingestToken: INGEST_TOKEN, apiToken: API_TOKEN, ...opts });
  t.teardown(() => c.close());
  return Object.assign(c, { dbFile });
}

export async function api(c: { url: string }, path: string, token: string | null = API_TOKEN): Promise<{ status: number; body: any }> {
  const res = await fetch(`${c.url}${path}`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
  const text = await res.text();
  let body: unknown = text;
  try { body = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body };
}

/** A batch body of protocol 2: the records as rows, by kind. */
export function rowBatch(agentId: string, seq: number, records: AgentRecord[]): string {
  const rows: Record<string, unknown[][]> = {};
  for (const r of records) (rows[r.kind] ??= []).push((toRow[r.kind] as (r: AgentRecord) => unknown[])(r));
  return JSON.stringify({ type: 'batch', agentId, seq, rows });
}

/** A minimal agent: hello, then batches, matching acks and errors by seq. By default an agent of protocol 1 (records
 * as objects, as agents before rows sent them); `protocol = 2` sends rows. */
export class TestAgent {
  protocol: 1 | 2 = 1;
  readonly ws: WebSocket;
  readonly messages: CollectorMessage[] = [];
  private waiters = new Map<number | null, ((m: CollectorMessage) => void)[]>();
  readonly opened: Promise<void>;
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(url: string, token: string | null = INGEST_TOKEN, readonly agentId = 'agent-1', readonly node = 'node-a') {
    this.ws = new WebSocket(`${url.replace(/^http/, 'ws')}/api/v1/ingest`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve());
      this.ws.once('unexpected-response', (_req, res) => reject(Object.assign(new Error(`HTTP ${res.statusCode}`), { statusCode: res.statusCode })));
      this.ws.once('error', reject);
    });
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    this.welcomed = new Promise((resolve) => {
      this.ws.on('message', (data) => {
        const m = JSON.parse(data.toString()) as CollectorMessage;
        this.messages.push(m);
        if (m.type === 'welcome') return resolve(m);
        const list = this.waiters.get(m.seq);
        const w = list?.shift();
        if (w) w(m);
      });
      this.ws.once('close', () => resolve(undefined));
    });
  }

  /** The collector's welcome, or undefined when it closed instead. */
  readonly welcomed: Promise<WelcomeMessage | undefined>;

  /** Sends the hello and waits for the welcome (or the close that refuses it). */
  async hello(agentKey?: string): Promise<WelcomeMessage | undefined> {
    await this.opened;
    this.ws.send(JSON.stringify({ type: 'hello', protocol: this.protocol, agentId: this.agentId, node: this.node, agentVersion: 'test', ...(agentKey ? { agentKey } : {}) }));
    return this.welcomed;
  }

  /** Next message for seq (ack or error). */
  reply(seq: number | null): Promise<CollectorMessage> {
    return new Promise((resolve) => {
      const list = this.waiters.get(seq) ?? [];
      list.push(resolve);
      this.waiters.set(seq, list);
    });
  }

  send(seq: number, records: AgentRecord[]): Promise<CollectorMessage> {
    const r = this.reply(seq);
    this.ws.send(this.protocol === 2 ? rowBatch(this.agentId, seq, records) : JSON.stringify({ type: 'batch', agentId: this.agentId, seq, records }));
    return r;
  }

  close(): void {
    this.ws.close();
  }
}

const T0 = 1_700_000_000_000;

export function proc(pid: number, o: Partial<ProcessRecord> = {}): ProcessRecord {
  return {
    kind: 'process', pid, startTime: 1000 + pid, exe: `/usr/bin/svc${pid}`, goVersion: 'go1.22.1', containerId: `cid${pid}`,
    pod: { name: `pod-${pid}`, namespace: 'default', uid: `uid-${pid}`, container: 'app' }, seenAt: T0, exitedAt: null, ...o,
  };
}

export function gor(pid: number, goid: number, o: Partial<GoroutineRecord> = {}): GoroutineRecord {
  return {
    kind: 'goroutine', pid, goid, parentGoid: 1, state: 'waiting', waitReason: 'chan receive',
    createdBy: { function: 'main.serve', file: '/src/main.go', line: 42 }, startFunction: 'main.worker',
    createdAt: T0 + goid, exitedAt: null, lastParkAt: T0 + goid + 5, parkCount: 3, readyCount: 2, blockedNs: 1_000_000,
    blockedByReason: { 'chan receive': 1_000_000 }, preexisting: false, system: false, observedAt: T0 + goid + 10, ...o,
  };
}

export function conn(pid: number, port: number, o: Partial<ConnectionRecord> = {}): ConnectionRecord {
  return {
    kind: 'connection', pid, goid: 7, family: 'inet', role: 'client', localAddress: '10.0.0.1', localPort: port,
    peerAddress: '10.0.0.2', peerPort: 5432, state: 'ESTABLISHED', openedAt: T0 + 100, closedAt: null, bytesSent: 100,
    bytesReceived: 200, srttUs: 150, retransmits: 0, resets: 0, error: null, preexisting: false, observedAt: T0 + 200, ...o,
  };
}

export function win(pid: number, from: number, o: Partial<WindowRecord> = {}): WindowRecord {
  return {
    kind: 'window', pid, from: T0 + from, to: T0 + from + 1000, probes: ['newproc', 'goexit'], created: 10, parked: 20,
    readied: 20, exited: 5, lost: 0, ...o,
  };
}

export function leak(pid: number, line: number, o: Partial<LeakRecord> = {}): LeakRecord {
  return {
    kind: 'leak', pid, suspect: 'growing-live', createdBy: { function: 'main.serve', file: '/src/main.go', line },
    startFunction: 'main.worker', waitReason: 'chan receive', count: 500, growthPerMinute: 50, oldestAgeMs: 600_000,
    since: T0, observedAt: T0 + 60_000, ...o,
  };
}

export function pause(pid: number, at: number, o: Partial<PauseRecord> = {}): PauseRecord {
  return { kind: 'pause', pid, reason: 'GC mark termination', gc: true, startedAt: T0 + at, durationNs: 100_000, goid: 3, cycle: 1, ...o };
}

export function fatal(pid: number, o: Partial<FatalRecord> = {}): FatalRecord {
  return {
    kind: 'fatal', pid, errorKind: 'fatal error', message: 'concurrent map writes', text: 'fatal error: concurrent map writes',
    goid: 42, at: T0 + 5_000, ...o,
  };
}

export { T0 };
