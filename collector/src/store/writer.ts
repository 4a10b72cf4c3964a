// Writes validated agent batches. The caller wraps calls in a transaction; a
// batch already stored under (agentId, seq) is reported as a duplicate and skipped.
import type { Database, Statement } from 'better-sqlite3';
import type {
  AgentRecord, ConnectionRecord, GoroutineRecord, HelloMessage, ProcessRecord, WindowRecord,
} from '../protocol/records.ts';

const b = (v: boolean) => (v ? 1 : 0);

export class StoreWriter {
  private readonly insertBatch: Statement;
  private readonly upsertAgent: Statement;
  private readonly findLatestProcess: Statement;
  private readonly findProcess: Statement;
  private readonly upsertProcess: Statement;
  private readonly promotePlaceholder: Statement;
  private readonly insertPlaceholder: Statement;
  private readonly upsertGoroutine: Statement;
  private readonly upsertConnection: Statement;
  private readonly insertWindow: Statement;
  /** (node, pid) → id of the latest process row; the hot path of every goroutine record. */
  private readonly processCache = new Map<string, number>();

  constructor(private readonly db: Database) {
    this.insertBatch = db.prepare(
      'INSERT INTO ingested_batches (agent_id, seq, records, received_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING');
    this.upsertAgent = db.prepare(`
      INSERT INTO agents (agent_id, node, agent_version, protocol, first_seen_at, last_seen_at)
      VALUES (@agentId, @node, @agentVersion, @protocol, @now, @now)
      ON CONFLICT (agent_id) DO UPDATE SET node = excluded.node, agent_version = excluded.agent_version,
        protocol = excluded.protocol, last_seen_at = excluded.last_seen_at`);
    this.findLatestProcess = db.prepare('SELECT id, start_time FROM processes WHERE node = ? AND pid = ? ORDER BY id DESC LIMIT 1');
    this.findProcess = db.prepare('SELECT id FROM processes WHERE node = ? AND pid = ? AND start_time = ?');
    this.upsertProcess = db.prepare(`
      INSERT INTO processes (node, pid, start_time, exe, go_version, container_id, pod_name, pod_namespace, pod_uid, pod_container, seen_at, exited_at)
      VALUES (@node, @pid, @startTime, @exe, @goVersion, @containerId, @podName, @podNamespace, @podUid, @podContainer, @seenAt, @exitedAt)
      ON CONFLICT (node, pid, start_time) DO UPDATE SET exe = excluded.exe, go_version = excluded.go_version,
        container_id = excluded.container_id, pod_name = excluded.pod_name, pod_namespace = excluded.pod_namespace,
        pod_uid = excluded.pod_uid, pod_container = excluded.pod_container,
        seen_at = max(seen_at, excluded.seen_at), exited_at = coalesce(excluded.exited_at, exited_at)
      RETURNING id`);
    this.promotePlaceholder = db.prepare(`
      UPDATE processes SET start_time = @startTime, exe = @exe, go_version = @goVersion, container_id = @containerId,
        pod_name = @podName, pod_namespace = @podNamespace, pod_uid = @podUid, pod_container = @podContainer,
        seen_at = @seenAt, exited_at = @exitedAt
      WHERE id = @id`);
    this.insertPlaceholder = db.prepare(
      "INSERT INTO processes (node, pid, start_time, exe, seen_at) VALUES (?, ?, -1, '', ?) RETURNING id");
    // Upserts ignore a record older than the stored one, so re-ordered batches cannot go back in time.
    this.upsertGoroutine = db.prepare(`
      INSERT INTO goroutines (process_id, goid, parent_goid, state, wait_reason, created_by_function, created_by_file,
        created_by_line, start_function, created_at, exited_at, last_park_at, park_count, ready_count, blocked_ns,
        blocked_by_reason, preexisting, system, observed_at, first_seen_at)
      VALUES (@processId, @goid, @parentGoid, @state, @waitReason, @cbFunction, @cbFile, @cbLine, @startFunction,
        @createdAt, @exitedAt, @lastParkAt, @parkCount, @readyCount, @blockedNs, @blockedByReason, @preexisting,
        @system, @observedAt, @observedAt)
      ON CONFLICT (process_id, goid) DO UPDATE SET parent_goid = excluded.parent_goid, state = excluded.state,
        wait_reason = excluded.wait_reason, created_by_function = excluded.created_by_function,
        created_by_file = excluded.created_by_file, created_by_line = excluded.created_by_line,
        start_function = excluded.start_function, created_at = excluded.created_at, exited_at = excluded.exited_at,
        last_park_at = excluded.last_park_at, park_count = excluded.park_count, ready_count = excluded.ready_count,
        blocked_ns = excluded.blocked_ns, blocked_by_reason = excluded.blocked_by_reason,
        preexisting = excluded.preexisting, system = excluded.system, observed_at = excluded.observed_at
      WHERE excluded.observed_at >= goroutines.observed_at`);
    this.upsertConnection = db.prepare(`
      INSERT INTO connections (process_id, goid, family, role, local_address, local_port, peer_address, peer_port,
        state, opened_at, opened_key, closed_at, bytes_sent, bytes_received, srtt_us, retransmits, resets, error,
        preexisting, observed_at)
      VALUES (@processId, @goid, @family, @role, @localAddress, @localPort, @peerAddress, @peerPort, @state,
        @openedAt, @openedKey, @closedAt, @bytesSent, @bytesReceived, @srttUs, @retransmits, @resets, @error,
        @preexisting, @observedAt)
      ON CONFLICT (process_id, local_address, local_port, peer_address, peer_port, opened_key) DO UPDATE SET
        goid = coalesce(excluded.goid, goid), family = excluded.family, role = excluded.role, state = excluded.state,
        closed_at = excluded.closed_at, bytes_sent = excluded.bytes_sent, bytes_received = excluded.bytes_received,
        srtt_us = excluded.srtt_us, retransmits = excluded.retransmits, resets = excluded.resets,
        error = coalesce(excluded.error, error), preexisting = excluded.preexisting, observed_at = excluded.observed_at
      WHERE excluded.observed_at >= connections.observed_at`);
    this.insertWindow = db.prepare(`
      INSERT INTO windows (process_id, from_ms, to_ms, probes, created, parked, readied, exited, lost)
      VALUES (@processId, @from, @to, @probes, @created, @parked, @readied, @exited, @lost)
      ON CONFLICT (process_id, from_ms, to_ms) DO NOTHING`);
  }

  recordAgent(hello: HelloMessage, now = Date.now()): void {
    this.upsertAgent.run({ agentId: hello.agentId, node: hello.node, agentVersion: hello.agentVersion, protocol: hello.protocol, now });
  }

  /** Store one batch; false if (agentId, seq) was stored before. Call inside a transaction. */
  writeBatch(agentId: string, node: string, seq: number, records: AgentRecord[], now = Date.now()): boolean {
    if (this.insertBatch.run(agentId, seq, records.length, now).changes === 0) return false;
    for (const r of records) this.writeRecord(node, r);
    return true;
  }

  writeRecord(node: string, r: AgentRecord): void {
    switch (r.kind) {
      case 'process': this.writeProcess(node, r); break;
      case 'goroutine': this.writeGoroutine(node, r); break;
      case 'connection': this.writeConnection(node, r); break;
      case 'window': this.writeWindow(node, r); break;
    }
  }

  /** Forget cached process ids, e.g. after a rolled-back transaction or retention. */
  clearCache(): void {
    this.processCache.clear();
  }

  private writeProcess(node: string, r: ProcessRecord): void {
    const row = {
      node, pid: r.pid, startTime: r.startTime, exe: r.exe, goVersion: r.goVersion, containerId: r.containerId,
      podName: r.pod?.name ?? null, podNamespace: r.pod?.namespace ?? null, podUid: r.pod?.uid ?? null,
      podContainer: r.pod?.container ?? null, seenAt: r.seenAt, exitedAt: r.exitedAt,
    };
    const latest = this.findLatestProcess.get(node, r.pid) as { id: number; start_time: number } | undefined;
    let id: number;
    if (latest && latest.start_time === -1 && !this.findProcess.get(node, r.pid, r.startTime)) {
      // Goroutines arrived first and hang off a placeholder: it becomes this process.
      this.promotePlaceholder.run({ ...row, id: latest.id });
      id = latest.id;
    } else {
      id = (this.upsertProcess.get(row) as { id: number }).id;
    }
    // Only the newest process of (node, pid) receives its later goroutine records.
    const newest = this.findLatestProcess.get(node, r.pid) as { id: number };
    this.processCache.set(cacheKey(node, r.pid), newest.id ?? id);
  }

  /** The latest process of (node, pid), creating a placeholder if none is known yet. */
  processId(node: string, pid: number, now: number): number {
    const key = cacheKey(node, pid);
    let id = this.processCache.get(key);
    if (id !== undefined) return id;
    const latest = this.findLatestProcess.get(node, pid) as { id: number } | undefined;
    id = latest ? latest.id : (this.insertPlaceholder.get(node, pid, now) as { id: number }).id;
    if (this.processCache.size > 100_000) this.processCache.clear();
    this.processCache.set(key, id);
    return id;
  }

  private writeGoroutine(node: string, r: GoroutineRecord): void {
    this.upsertGoroutine.run({
      processId: this.processId(node, r.pid, r.observedAt), goid: r.goid, parentGoid: r.parentGoid, state: r.state,
      waitReason: r.waitReason, cbFunction: r.createdBy?.function ?? null, cbFile: r.createdBy?.file ?? null,
      cbLine: r.createdBy?.line ?? null, startFunction: r.startFunction, createdAt: r.createdAt, exitedAt: r.exitedAt,
      lastParkAt: r.lastParkAt, parkCount: r.parkCount, readyCount: r.readyCount, blockedNs: r.blockedNs,
      blockedByReason: JSON.stringify(r.blockedByReason), preexisting: b(r.preexisting), system: b(r.system),
      observedAt: r.observedAt,
    });
  }

  private writeConnection(node: string, r: ConnectionRecord): void {
    this.upsertConnection.run({
      processId: this.processId(node, r.pid, r.observedAt), goid: r.goid, family: r.family, role: r.role,
      localAddress: r.localAddress, localPort: r.localPort, peerAddress: r.peerAddress, peerPort: r.peerPort,
      state: r.state, openedAt: r.openedAt, openedKey: r.openedAt ?? 0, closedAt: r.closedAt, bytesSent: r.bytesSent,
      bytesReceived: r.bytesReceived, srttUs: r.srttUs, retransmits: r.retransmits, resets: r.resets, error: r.error,
      preexisting: b(r.preexisting), observedAt: r.observedAt,
    });
  }

  private writeWindow(node: string, r: WindowRecord): void {
    this.insertWindow.run({
      processId: this.processId(node, r.pid, r.to), from: r.from, to: r.to, probes: JSON.stringify(r.probes),
      created: r.created, parked: r.parked, readied: r.readied, exited: r.exited, lost: r.lost,
    });
  }
}

const cacheKey = (node: string, pid: number) => `${node}\u0000${pid}`;
