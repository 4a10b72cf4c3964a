// Writes validated agent batches. The caller wraps calls in a transaction; a
// batch already stored under (agentId, seq) is reported as a duplicate and skipped.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import type {
  AgentRecord, ConnectionRecord, FatalRecord, GoroutineRecord, HelloMessage, LeakRecord, PauseRecord, ProcessRecord, ProfileRecord, RequestRecord,
  SchedRecord, StackRecord, WindowRecord,
} from '../protocol/records.ts';
import { readBatch, type EncodedBatch } from './batch-codec.ts';

const b = (v: boolean) => (v ? 1 : 0);

export class StoreWriter {
  private readonly insertBatch: Statement;
  private readonly findAgentKey: Statement;
  private readonly setAgentKey: Statement;
  private readonly upsertAgent: Statement;
  private readonly findLatestProcess: Statement;
  private readonly findProcess: Statement;
  private readonly upsertProcess: Statement;
  private readonly promotePlaceholder: Statement;
  private readonly insertPlaceholder: Statement;
  private readonly upsertGoroutine: Statement;
  private readonly upsertConnection: Statement;
  private readonly insertWindow: Statement;
  private readonly upsertLeak: Statement;
  private readonly upsertStack: Statement;
  private readonly insertProfileSample: Statement;
  private readonly insertPause: Statement;
  private readonly insertRequest: Statement;
  private readonly insertSched: Statement;
  private readonly insertFatal: Statement;
  private readonly findGoroutine: Statement;
  /** UPDATE of a goroutine row by id, by which indexed columns it sets (bit 0 state, 1 wait_reason, 2 site_id). */
  private readonly updateGoroutine: (Statement | undefined)[] = [];
  private readonly addWaitGroup: Statement;
  private readonly addSiteGroup: Statement;
  /** Changes to goroutine_wait_groups / goroutine_site_groups not yet written, by process and group. */
  private readonly groupDeltas = new Map<number, { wait: Map<string | null, GroupDelta>; site: Map<number | null, GroupDelta> }>();
  /** (node, pid) → id of the latest process row; the hot path of every goroutine record. */
  private readonly processCache = new Map<string, number>();
  private lastNode = '';
  private lastPid = -1;
  private lastProcessId: number | undefined;
  private readonly maxGoid: Statement;
  private readonly findSite: Statement;
  private readonly insertSite: Statement;
  private readonly siteById: Statement;
  private readonly markSecond: Statement;
  /** The highest id of the rows inserted in this batch, by second of goroutine time (goroutine_id_seconds). */
  private readonly idMarks = new Map<number, number>();
  /** Interned code sites both ways (creation sites, start functions): a few thousand per fleet. */
  private readonly siteIds = new Map<string, Map<string, Map<number, number>>>();
  private siteCount = 0;
  private readonly sites = new Map<number, [string, string, number]>();
  /**
   * The highest goid stored per process: Go hands out goids in increasing order, so a record with a higher goid is a
   * goroutine the table does not hold yet, and the lookup of its old row (for the group counts) is skipped.
   */
  private readonly maxGoids = new Map<number, number>();

  constructor(private readonly db: Database) {
    this.insertBatch = db.prepare(
      'INSERT INTO ingested_batches (agent_id, epoch, seq, records, received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING');
    this.findAgentKey = db.prepare('SELECT key_hash FROM agents WHERE agent_id = ?').pluck();
    this.setAgentKey = db.prepare('UPDATE agents SET key_hash = ? WHERE agent_id = ? AND key_hash IS NULL');
    this.upsertAgent = db.prepare(`
      INSERT INTO agents (agent_id, node, agent_version, protocol, first_seen_at, last_seen_at)
      VALUES (@agentId, @node, @agentVersion, @protocol, @now, @now)
      ON CONFLICT (agent_id) DO UPDATE SET node = excluded.node, agent_version = excluded.agent_version,
        protocol = excluded.protocol, last_seen_at = excluded.last_seen_at`);
    this.findLatestProcess = db.prepare('SELECT id, start_time FROM processes WHERE node = ? AND pid = ? ORDER BY id DESC LIMIT 1');
    this.findProcess = db.prepare('SELECT id FROM processes WHERE node = ? AND pid = ? AND start_time = ?');
    this.upsertProcess = db.prepare(`
      INSERT INTO processes (node, pid, start_time, exe, go_version, container_id, pod_name, pod_namespace, pod_uid, pod_container, seen_at, exited_at, service_version)
      VALUES (@node, @pid, @startTime, @exe, @goVersion, @containerId, @podName, @podNamespace, @podUid, @podContainer, @seenAt, @exitedAt, @serviceVersion)
      ON CONFLICT (node, pid, start_time) DO UPDATE SET exe = excluded.exe, go_version = excluded.go_version,
        service_version = coalesce(excluded.service_version, service_version),
        container_id = excluded.container_id, pod_name = excluded.pod_name, pod_namespace = excluded.pod_namespace,
        pod_uid = excluded.pod_uid, pod_container = excluded.pod_container,
        seen_at = max(seen_at, excluded.seen_at), exited_at = coalesce(excluded.exited_at, exited_at)
      RETURNING id`);
    this.promotePlaceholder = db.prepare(`
      UPDATE processes SET start_time = @startTime, exe = @exe, go_version = @goVersion, container_id = @containerId,
        pod_name = @podName, pod_namespace = @podNamespace, pod_uid = @podUid, pod_container = @podContainer,
        seen_at = @seenAt, exited_at = @exitedAt, service_version = @serviceVersion
      WHERE id = @id`);
    this.insertPlaceholder = db.prepare(
      "INSERT INTO processes (node, pid, start_time, exe, seen_at) VALUES (?, ?, -1, '', ?) RETURNING id");
    // Upserts ignore a record older than the stored one, so re-ordered batches cannot go back in time.
    // Positional parameters: binding 20 named ones costs about as much again as the insert's own work.
    this.upsertGoroutine = db.prepare(`
      INSERT INTO goroutines (process_id, goid, parent_goid, state, wait_reason, site_id, start_id, created_at, exited_at,
        last_park_at, park_count, ready_count, blocked_ns, blocked_by_reason, preexisting, system, observed_at, first_seen_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (process_id, goid) DO UPDATE SET parent_goid = excluded.parent_goid, state = excluded.state,
        wait_reason = excluded.wait_reason, site_id = excluded.site_id, start_id = excluded.start_id,
        created_at = excluded.created_at, exited_at = excluded.exited_at,
        last_park_at = excluded.last_park_at, park_count = excluded.park_count, ready_count = excluded.ready_count,
        blocked_ns = excluded.blocked_ns, blocked_by_reason = excluded.blocked_by_reason,
        preexisting = excluded.preexisting, system = excluded.system, observed_at = excluded.observed_at
      WHERE excluded.observed_at >= goroutines.observed_at`);
    // What the row held before an update: the groups it leaves, and whether an indexed column changes. raw(): an
    // array is cheaper than an object.
    this.findGoroutine = db.prepare(`SELECT id, wait_reason, site_id, blocked_ns, exited_at IS NULL, state, observed_at
      FROM goroutines WHERE process_id = ? AND goid = ?`).raw();
    this.maxGoid = db.prepare('SELECT max(goid) FROM goroutines WHERE process_id = ?').pluck();
    this.findSite = db.prepare('SELECT id FROM code_sites WHERE function = ? AND file = ? AND line = ?').pluck();
    this.insertSite = db.prepare('INSERT INTO code_sites (function, file, line) VALUES (?, ?, ?)');
    this.siteById = db.prepare('SELECT function, file, line FROM code_sites WHERE id = ?').raw();
    this.markSecond = db.prepare('INSERT INTO goroutine_id_seconds (second, max_id) VALUES (?, ?) ON CONFLICT DO UPDATE SET max_id = max(max_id, excluded.max_id)');
    const addGroup = 'ON CONFLICT DO UPDATE SET goroutines = goroutines + excluded.goroutines, live = live + excluded.live, blocked_ns = blocked_ns + excluded.blocked_ns';
    this.addWaitGroup = db.prepare(`INSERT INTO goroutine_wait_groups (process_id, wait_key, goroutines, live, blocked_ns)
      VALUES (?, ?, ?, ?, ?) ${addGroup}`);
    this.addSiteGroup = db.prepare(`INSERT INTO goroutine_site_groups (process_id, function_key, file_key, line_key,
      goroutines, live, blocked_ns) VALUES (?, ?, ?, ?, ?, ?, ?) ${addGroup}`);
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
    // The latest judgement wins (count, growth, age, wait reason); first/last seen only widen.
    this.upsertLeak = db.prepare(`
      INSERT INTO leak_suspects (process_id, suspect, created_by_function, created_by_file, created_by_line, start_function,
        wait_reason, count, growth_per_minute, oldest_age_ms, since, first_seen_at, last_seen_at, stack)
      VALUES (@processId, @suspect, @cbFunction, @cbFile, @cbLine, @startFunction, @waitReason, @count, @growth,
        @oldestAgeMs, @since, @observedAt, @observedAt, @stack)
      ON CONFLICT (process_id, suspect, coalesce(created_by_function, ''), coalesce(created_by_file, ''),
        coalesce(created_by_line, -1), coalesce(start_function, '')) DO UPDATE SET
        wait_reason = iif(excluded.last_seen_at >= last_seen_at, excluded.wait_reason, wait_reason),
        count = iif(excluded.last_seen_at >= last_seen_at, excluded.count, count),
        growth_per_minute = iif(excluded.last_seen_at >= last_seen_at, excluded.growth_per_minute, growth_per_minute),
        oldest_age_ms = iif(excluded.last_seen_at >= last_seen_at, excluded.oldest_age_ms, oldest_age_ms),
        stack = iif(excluded.last_seen_at >= last_seen_at AND excluded.stack IS NOT NULL, excluded.stack, stack),
        since = min(since, excluded.since),
        first_seen_at = min(first_seen_at, excluded.first_seen_at),
        last_seen_at = max(last_seen_at, excluded.last_seen_at)`);
    this.upsertStack = db.prepare('INSERT INTO stacks (agent_id, stack_id, frames) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET frames = excluded.frames');
    this.insertProfileSample = db.prepare(`
      INSERT INTO profile_samples (process_id, kind, from_ms, to_ms, agent_id, stack_id, labels, v0, v1)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.insertPause = db.prepare(`
      INSERT INTO pauses (process_id, started_at, duration_ns, reason, gc, goid, cycle)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (process_id, started_at) DO NOTHING`);
    this.insertRequest = db.prepare(`
      INSERT INTO requests (process_id, goid, protocol, method, route, path, status, started_at, duration_ns, request_bytes,
        response_bytes, parked_ns, parked_by_reason, parks, trace_id, parent_span_id, weight, running_ns, runnable_ns, syscall_ns, runs, preemptions)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (process_id, goid, started_at) DO NOTHING`);
    this.insertSched = db.prepare(`
      INSERT INTO sched_reports (process_id, from_ms, to_ms, runs, runs_timed, yields, preemptions, preempt_parks, syscalls, syscall_ns,
        thread_switches, p_switches, threads, ps, by_cause, run_queue, syscall_time, sites)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (process_id, to_ms) DO NOTHING`);
    this.insertFatal = db.prepare(`
      INSERT INTO fatal_errors (process_id, error_kind, message, text, goid, at, received_at)
      VALUES (?, ?, ?, ?, ?, ?, ?)
      ON CONFLICT (process_id, at, goid) DO NOTHING`);
  }

  /**
   * Records a hello, binding the agent id to its key on the first hello that brings one. 'key-mismatch': the
   * id is bound to another key (or to a key this hello lacks), and nothing was written.
   */
  recordAgent(hello: HelloMessage, now = Date.now()): 'ok' | 'key-mismatch' {
    const keyHash = hello.agentKey === undefined ? null : createHash('sha256').update(hello.agentKey).digest('hex');
    return this.db.transaction(() => {
      const stored = this.findAgentKey.get(hello.agentId) as string | null | undefined;
      if (stored && (keyHash === null || !timingSafeEqual(Buffer.from(stored, 'hex'), Buffer.from(keyHash, 'hex')))) return 'key-mismatch';
      this.upsertAgent.run({ agentId: hello.agentId, node: hello.node, agentVersion: hello.agentVersion, protocol: hello.protocol, now });
      if (keyHash !== null && !stored) this.setAgentKey.run(keyHash, hello.agentId);
      return 'ok';
    })();
  }

  /** Store one batch; false if (agentId, epoch, seq) was stored before. Call inside a transaction. */
  writeBatch(agentId: string, epoch: string, node: string, seq: number, records: AgentRecord[], now = Date.now()): boolean {
    if (this.insertBatch.run(agentId, epoch, seq, records.length, now).changes === 0) return false;
    this.writeRecords(node, records, now, agentId);
    return true;
  }

  /** writeBatch for a batch as the writer thread receives it (batch-codec.ts), each record stored as it is read. */
  writeEncodedBatch(agentId: string, epoch: string, node: string, seq: number, batch: EncodedBatch, records: number, now = Date.now()): boolean {
    if (this.insertBatch.run(agentId, epoch, seq, records, now).changes === 0) return false;
    this.writing(() => readBatch(batch, (r) => this.writeOne(node, r, now, agentId)));
    return true;
  }

  /** Store records of one node. Call inside a transaction. */
  writeRecords(node: string, records: AgentRecord[], now = Date.now(), agentId = ''): void {
    this.writing(() => { for (const r of records) this.writeOne(node, r, now, agentId); });
  }

  /** Runs `write`, then writes what it added up (group counts, id marks). */
  private writing(write: () => void): void {
    try {
      write();
      this.flushGroups();
      for (const [second, id] of this.idMarks) this.markSecond.run(second, id);
    } catch (e) {
      // The caller rolls back: ids interned or cached in this transaction may not exist.
      this.clearCache();
      throw e;
    } finally {
      this.groupDeltas.clear();
      this.idMarks.clear();
    }
  }

  writeRecord(node: string, r: AgentRecord, now = Date.now()): void {
    this.writeRecords(node, [r], now);
  }

  private writeOne(node: string, r: AgentRecord, now: number, agentId: string): void {
    switch (r.kind) {
      case 'process': this.writeProcess(node, r); break;
      case 'goroutine': this.writeGoroutine(node, r); break;
      case 'connection': this.writeConnection(node, r); break;
      case 'window': this.writeWindow(node, r); break;
      case 'leak': this.writeLeak(node, r); break;
      case 'pause': this.writePause(node, r); break;
      case 'request': this.writeRequest(node, r); break;
      case 'sched': this.writeSched(node, r); break;
      case 'fatal': this.writeFatal(node, r, now); break;
      case 'stack': this.writeStack(agentId, r); break;
      case 'profile': this.writeProfile(node, agentId, r); break;
    }
  }

  /** Forget cached process ids, e.g. after a rolled-back transaction or retention. */
  clearCache(): void {
    this.processCache.clear();
    this.lastProcessId = undefined;
    this.siteIds.clear();
    this.sites.clear();
    this.siteCount = 0;
    this.maxGoids.clear();
  }

  private writeProcess(node: string, r: ProcessRecord): void {
    const row = {
      node, pid: r.pid, startTime: r.startTime, exe: r.exe, goVersion: r.goVersion, containerId: r.containerId,
      podName: r.pod?.name ?? null, podNamespace: r.pod?.namespace ?? null, podUid: r.pod?.uid ?? null,
      podContainer: r.pod?.container ?? null, seenAt: r.seenAt, exitedAt: r.exitedAt, serviceVersion: r.serviceVersion ?? null,
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
    this.lastProcessId = undefined;
  }

  /** The latest process of (node, pid), creating a placeholder if none is known yet. */
  processId(node: string, pid: number, now: number): number {
    // A batch is one node's, mostly one process's records: the last answer is the usual one.
    if (node === this.lastNode && pid === this.lastPid && this.lastProcessId !== undefined) return this.lastProcessId;
    const id = this.lookupProcessId(node, pid, now);
    this.lastNode = node;
    this.lastPid = pid;
    this.lastProcessId = id;
    return id;
  }

  private lookupProcessId(node: string, pid: number, now: number): number {
    const key = cacheKey(node, pid);
    let id = this.processCache.get(key);
    if (id !== undefined) return id;
    const latest = this.findLatestProcess.get(node, pid) as { id: number } | undefined;
    id = latest ? latest.id : (this.insertPlaceholder.get(node, pid, now) as { id: number }).id;
    if (this.processCache.size > 100_000) this.processCache.clear();
    this.processCache.set(key, id);
    return id;
  }

  /** The id of a code site, interned on first use (a start function is the site (function, '', -1)). */
  private siteId(fn: string, file: string, line: number): number {
    // Nested maps: no key string built per record (two sites a record, 1e5 records a second).
    let byFile = this.siteIds.get(fn);
    if (!byFile) this.siteIds.set(fn, (byFile = new Map()));
    let byLine = byFile.get(file);
    if (!byLine) byFile.set(file, (byLine = new Map()));
    let id = byLine.get(line);
    if (id !== undefined) return id;
    id = (this.findSite.get(fn, file, line) as number | undefined) ?? Number(this.insertSite.run(fn, file, line).lastInsertRowid);
    if (++this.siteCount > 100_000) { this.siteIds.clear(); this.sites.clear(); this.siteCount = 0; }
    byLine.set(line, id);
    this.sites.set(id, [fn, file, line]);
    return id;
  }

  private site(id: number): [string, string, number] {
    let s = this.sites.get(id);
    if (!s) this.sites.set(id, (s = this.siteById.get(id) as [string, string, number]));
    return s;
  }

  private writeGoroutine(node: string, r: GoroutineRecord): void {
    const processId = this.processId(node, r.pid, r.observedAt);
    let max = this.maxGoids.get(processId);
    if (max === undefined) this.maxGoids.set(processId, (max = (this.maxGoid.get(processId) as number | null) ?? -1));
    const old = r.goid > max ? undefined : this.findGoroutine.get(processId, r.goid) as OldGoroutine | undefined;
    if (r.goid > max) this.maxGoids.set(processId, r.goid);
    const cb = r.createdBy;
    const siteId = cb ? this.siteId(cb.function, cb.file, cb.line) : null;
    const startId = r.startFunction !== null ? this.siteId(r.startFunction, '', -1) : null;
    const byReason = r.blockedByReason;
    let reasons = '{}';
    for (const _ in byReason) { reasons = JSON.stringify(byReason); break; }
    if (old) {
      const [id, waitReason, oldSite, blockedNs, wasLive, state, observedAt] = old;
      if (r.observedAt < observedAt) return; // an older observation than the stored one: nothing changes
      this.updateRow(id, r, state, waitReason, oldSite, siteId, startId, reasons);
      this.addToGroups(processId, waitReason, oldSite, -1, -wasLive, -blockedNs);
    } else {
      // Upserts ignore a record older than the stored one, so a row the cache did not know of cannot go back in time.
      const info = this.upsertGoroutine.run(
        processId, r.goid, r.parentGoid, r.state, r.waitReason, siteId, startId, r.createdAt, r.exitedAt, r.lastParkAt,
        r.parkCount, r.readyCount, r.blockedNs, reasons, b(r.preexisting), b(r.system), r.observedAt, r.observedAt,
      );
      if (info.changes === 0) return;
      // A new row: its second of goroutine time may now reach a higher id.
      const second = Math.floor((r.createdAt ?? r.observedAt) / 1000);
      const id = Number(info.lastInsertRowid);
      if (id > (this.idMarks.get(second) ?? 0)) this.idMarks.set(second, id);
    }
    this.addToGroups(processId, r.waitReason, siteId, 1, r.exitedAt === null ? 1 : 0, r.blockedNs);
  }

  /**
   * A stored goroutine's new observation, by row id. An indexed column (state, wait_reason, site_id) is set only
   * when it changes: SQLite rewrites the entries of every index whose column an UPDATE sets, equal or not, and a
   * goroutine's site never changes and its state often does not (collector-store.ts).
   */
  private updateRow(id: number, r: GoroutineRecord, state: string, waitReason: string | null, oldSite: number | null,
    siteId: number | null, startId: number | null, reasons: string): void {
    const mask = (r.state !== state ? 1 : 0) | (r.waitReason !== waitReason ? 2 : 0) | (siteId !== oldSite ? 4 : 0);
    let stmt = this.updateGoroutine[mask];
    if (!stmt) {
      const set = ['parent_goid', 'start_id', 'created_at', 'exited_at', 'last_park_at', 'park_count', 'ready_count', 'blocked_ns',
        'blocked_by_reason', 'preexisting', 'system', 'observed_at'];
      if (mask & 1) set.push('state');
      if (mask & 2) set.push('wait_reason');
      if (mask & 4) set.push('site_id');
      this.updateGoroutine[mask] = stmt = this.db.prepare(`UPDATE goroutines SET ${set.map((c) => `${c} = ?`).join(', ')} WHERE id = ?`);
    }
    const values: unknown[] = [r.parentGoid, startId, r.createdAt, r.exitedAt, r.lastParkAt, r.parkCount, r.readyCount, r.blockedNs,
      reasons, b(r.preexisting), b(r.system), r.observedAt];
    if (mask & 1) values.push(r.state);
    if (mask & 2) values.push(r.waitReason);
    if (mask & 4) values.push(siteId);
    values.push(id);
    stmt.run(values);
  }

  /** Adds to the group deltas of a wait reason and a creation site (a site by its code_sites id; null: none). */
  private addToGroups(processId: number, waitReason: string | null, siteId: number | null, goroutines: number, live: number, blockedNs: number): void {
    // Nested maps by process, then reason or site id: no key string is built per record.
    let byProcess = this.groupDeltas.get(processId);
    if (!byProcess) this.groupDeltas.set(processId, (byProcess = { wait: new Map(), site: new Map() }));
    let d = byProcess.wait.get(waitReason);
    if (!d) byProcess.wait.set(waitReason, (d = { wait: true, processId, keys: [waitReason ?? 0], goroutines: 0, live: 0, blockedNs: 0 }));
    d.goroutines += goroutines;
    d.live += live;
    d.blockedNs += blockedNs;
    d = byProcess.site.get(siteId);
    if (!d) {
      const st = siteId === null ? null : this.site(siteId);
      byProcess.site.set(siteId, (d = { wait: false, processId, keys: st ? [st[0], st[1], st[2]] : [0, 0, -1], goroutines: 0, live: 0, blockedNs: 0 }));
    }
    d.goroutines += goroutines;
    d.live += live;
    d.blockedNs += blockedNs;
  }

  private flushGroups(): void {
    for (const byProcess of this.groupDeltas.values()) {
      for (const d of [...byProcess.wait.values(), ...byProcess.site.values()]) {
        if (d.goroutines === 0 && d.live === 0 && d.blockedNs === 0) continue;
        (d.wait ? this.addWaitGroup : this.addSiteGroup).run(d.processId, ...d.keys, d.goroutines, d.live, d.blockedNs);
      }
    }
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

  private writeLeak(node: string, r: LeakRecord): void {
    this.upsertLeak.run({
      processId: this.processId(node, r.pid, r.observedAt), suspect: r.suspect, cbFunction: r.createdBy?.function ?? null,
      cbFile: r.createdBy?.file ?? null, cbLine: r.createdBy?.line ?? null, startFunction: r.startFunction,
      waitReason: r.waitReason, count: r.count, growth: r.growthPerMinute, oldestAgeMs: r.oldestAgeMs, since: r.since,
      observedAt: r.observedAt, stack: r.stack ? JSON.stringify(r.stack) : null,
    });
  }

  private writeStack(agentId: string, r: StackRecord): void {
    this.upsertStack.run(agentId, r.id, JSON.stringify(r.frames));
  }

  private writeProfile(node: string, agentId: string, r: ProfileRecord): void {
    const processId = this.processId(node, r.pid, r.to);
    for (const s of r.samples) {
      this.insertProfileSample.run(processId, r.profile, r.from, r.to, agentId, s.stack, JSON.stringify(s.labels), s.values[0], s.values[1] ?? 0);
    }
  }

  private writePause(node: string, r: PauseRecord): void {
    this.insertPause.run(this.processId(node, r.pid, r.startedAt), r.startedAt, r.durationNs, r.reason, b(r.gc), r.goid, r.cycle);
  }

  private writeRequest(node: string, r: RequestRecord): void {
    this.insertRequest.run(
      this.processId(node, r.pid, r.startedAt), r.goid, r.protocol, r.method, r.route, r.path, r.status, r.startedAt, r.durationNs,
      r.requestBytes, r.responseBytes, r.parkedNs, JSON.stringify(r.parkedByReason), JSON.stringify(r.parks),
      r.traceParent?.traceId ?? null, r.traceParent?.spanId ?? null, r.weight,
      r.sched?.runningNs ?? null, r.sched?.runnableNs ?? null, r.sched?.syscallNs ?? null, r.sched?.runs ?? null, r.sched?.preemptions ?? null,
    );
  }

  private writeSched(node: string, r: SchedRecord): void {
    this.insertSched.run(
      this.processId(node, r.pid, r.to), r.from, r.to, r.runs, r.runsTimed, r.yields, r.preemptions, r.preemptParks, r.syscalls, r.syscallNs,
      r.threadSwitches, r.pSwitches, r.threads, r.ps, JSON.stringify(r.byCause), JSON.stringify(r.runQueue), JSON.stringify(r.syscallTime),
      JSON.stringify(r.sites),
    );
  }

  private writeFatal(node: string, r: FatalRecord, now: number): void {
    this.insertFatal.run(this.processId(node, r.pid, r.at), r.errorKind, r.message, r.text, r.goid, r.at, now);
  }
}

/** findGoroutine's row: id, wait_reason, site_id, blocked_ns, live (0/1), state, observed_at. */
type OldGoroutine = [number, string | null, number | null, number, number, string, number];

interface GroupDelta {
  wait: boolean;
  processId: number;
  keys: (string | number)[];
  goroutines: number;
  live: number;
  blockedNs: number;
}

const cacheKey = (node: string, pid: number) => `${node}\u0000${pid}`;
