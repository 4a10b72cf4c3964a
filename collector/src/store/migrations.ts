// Numbered schema migrations. Append only: never edit a migration that has shipped.
import type { Database } from 'better-sqlite3';

export const migrations: { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE agents (
        agent_id      TEXT PRIMARY KEY,
        node          TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        protocol      INTEGER NOT NULL,
        first_seen_at REAL NOT NULL,
        last_seen_at  REAL NOT NULL
      );
      CREATE INDEX agents_node ON agents(node);

      -- start_time = -1 marks a placeholder made when a goroutine arrived before its process.
      CREATE TABLE processes (
        id            INTEGER PRIMARY KEY,
        node          TEXT NOT NULL,
        pid           INTEGER NOT NULL,
        start_time    INTEGER NOT NULL,
        exe           TEXT NOT NULL,
        go_version    TEXT,
        container_id  TEXT,
        pod_name      TEXT,
        pod_namespace TEXT,
        pod_uid       TEXT,
        pod_container TEXT,
        seen_at       REAL NOT NULL,
        exited_at     REAL,
        UNIQUE (node, pid, start_time)
      );

      CREATE TABLE goroutines (
        id                  INTEGER PRIMARY KEY,
        process_id          INTEGER NOT NULL REFERENCES processes(id),
        goid                INTEGER NOT NULL,
        parent_goid         INTEGER,
        state               TEXT NOT NULL,
        wait_reason         TEXT,
        created_by_function TEXT,
        created_by_file     TEXT,
        created_by_line     INTEGER,
        start_function      TEXT,
        created_at          REAL,
        exited_at           REAL,
        last_park_at        REAL,
        park_count          INTEGER NOT NULL,
        ready_count         INTEGER NOT NULL,
        blocked_ns          INTEGER NOT NULL,
        blocked_by_reason   TEXT NOT NULL,
        preexisting         INTEGER NOT NULL,
        system              INTEGER NOT NULL,
        observed_at         REAL NOT NULL,
        first_seen_at       REAL NOT NULL,
        UNIQUE (process_id, goid)
      );
      -- Single-column indexes also order by rowid (= id), which keyset paging uses. No index on
      -- state: few values, each common, so scanning newest-first finds a page quickly.
      CREATE INDEX goroutines_process ON goroutines(process_id);
      -- A state filter that matches nothing in a big process must not scan all of its goroutines.
      CREATE INDEX goroutines_process_state ON goroutines(process_id, state);
      CREATE INDEX goroutines_wait_reason ON goroutines(wait_reason);
      CREATE INDEX goroutines_created_by_function ON goroutines(created_by_function);
      CREATE INDEX goroutines_created_by_site ON goroutines(created_by_file, created_by_line);
      CREATE INDEX goroutines_observed_at ON goroutines(observed_at);

      -- opened_key = openedAt, or 0 for a connection open before the agent attached.
      CREATE TABLE connections (
        id             INTEGER PRIMARY KEY,
        process_id     INTEGER NOT NULL REFERENCES processes(id),
        goid           INTEGER,
        family         TEXT NOT NULL,
        role           TEXT NOT NULL,
        local_address  TEXT NOT NULL,
        local_port     INTEGER NOT NULL,
        peer_address   TEXT NOT NULL,
        peer_port      INTEGER NOT NULL,
        state          TEXT NOT NULL,
        opened_at      REAL,
        opened_key     REAL NOT NULL,
        closed_at      REAL,
        bytes_sent     INTEGER NOT NULL,
        bytes_received INTEGER NOT NULL,
        srtt_us        INTEGER,
        retransmits    INTEGER NOT NULL,
        resets         INTEGER NOT NULL,
        error          TEXT,
        preexisting    INTEGER NOT NULL,
        observed_at    REAL NOT NULL,
        UNIQUE (process_id, local_address, local_port, peer_address, peer_port, opened_key)
      );
      CREATE INDEX connections_peer ON connections(peer_address, peer_port);
      CREATE INDEX connections_observed_at ON connections(observed_at);
      CREATE INDEX connections_failed ON connections(process_id) WHERE error IS NOT NULL OR resets > 0;

      CREATE TABLE windows (
        id         INTEGER PRIMARY KEY,
        process_id INTEGER NOT NULL REFERENCES processes(id),
        from_ms    REAL NOT NULL,
        to_ms      REAL NOT NULL,
        probes     TEXT NOT NULL,
        created    INTEGER NOT NULL,
        parked     INTEGER NOT NULL,
        readied    INTEGER NOT NULL,
        exited     INTEGER NOT NULL,
        lost       INTEGER NOT NULL,
        UNIQUE (process_id, from_ms, to_ms)
      );
      CREATE INDEX windows_to ON windows(to_ms);

      -- One row per stored batch: what makes a re-sent batch idempotent.
      CREATE TABLE ingested_batches (
        agent_id    TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        records     INTEGER NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (agent_id, seq)
      ) WITHOUT ROWID;
      CREATE INDEX ingested_batches_received ON ingested_batches(received_at);
    `,
  },
  {
    version: 2,
    name: 'leak suspects, stop-the-world pauses, fatal errors',
    sql: `
      -- One row per (process, suspect kind, creation site, start function), upserted while the agent
      -- re-sends it. The unique index is on expressions because a site or start function may be NULL
      -- and NULLs never conflict in a plain UNIQUE constraint.
      CREATE TABLE leak_suspects (
        id                  INTEGER PRIMARY KEY,
        process_id          INTEGER NOT NULL REFERENCES processes(id),
        suspect             TEXT NOT NULL,
        created_by_function TEXT,
        created_by_file     TEXT,
        created_by_line     INTEGER,
        start_function      TEXT,
        wait_reason         TEXT,
        count               REAL NOT NULL,
        growth_per_minute   REAL NOT NULL,
        oldest_age_ms       REAL NOT NULL,
        since               REAL NOT NULL,
        first_seen_at       REAL NOT NULL,
        last_seen_at        REAL NOT NULL
      );
      CREATE UNIQUE INDEX leak_suspects_key ON leak_suspects(process_id, suspect,
        coalesce(created_by_function, ''), coalesce(created_by_file, ''), coalesce(created_by_line, -1),
        coalesce(start_function, ''));
      CREATE INDEX leak_suspects_growth ON leak_suspects(growth_per_minute);
      CREATE INDEX leak_suspects_last_seen ON leak_suspects(last_seen_at);

      -- One row per stop-the-world pause. Two pauses of one process cannot start at the same instant,
      -- so (process, start) names a pause across re-sends.
      CREATE TABLE pauses (
        id          INTEGER PRIMARY KEY,
        process_id  INTEGER NOT NULL REFERENCES processes(id),
        started_at  REAL NOT NULL,
        duration_ns INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        gc          INTEGER NOT NULL,
        goid        INTEGER NOT NULL,
        cycle       INTEGER,
        UNIQUE (process_id, started_at)
      );
      -- Newest-first paging within a process (orders by rowid), and age retention.
      CREATE INDEX pauses_process ON pauses(process_id);
      CREATE INDEX pauses_started_at ON pauses(started_at);

      -- Fatal errors outlive their process: its row is kept while one refers to it (see retention).
      CREATE TABLE fatal_errors (
        id          INTEGER PRIMARY KEY,
        process_id  INTEGER NOT NULL REFERENCES processes(id),
        error_kind  TEXT NOT NULL,
        message     TEXT NOT NULL,
        text        TEXT NOT NULL,
        goid        INTEGER NOT NULL,
        at          REAL NOT NULL,
        received_at REAL NOT NULL,
        UNIQUE (process_id, at, goid)
      );
      CREATE INDEX fatal_errors_at ON fatal_errors(at);
    `,
  },
  {
    version: 3,
    name: 'goroutine counts per wait reason and per creation site, kept by triggers',
    sql: `
      -- /goroutines/summary without filters other than node/pid reads these instead of every goroutine.
      -- They equal GROUP BY over goroutines: StoreWriter adds what each insert and update changes
      -- (once per batch and group; a trigger per row cost a third of ingest throughput), and a
      -- trigger subtracts what a delete (retention) removes.
      -- Keys: a NULL wait reason or site is stored as 0 (-1 for the line) in untyped key columns, so
      -- the key can be a WITHOUT ROWID primary key (one b-tree per table) and no real text collides
      -- with "none" (an integer never equals a text).
      CREATE TABLE goroutine_wait_groups (
        process_id INTEGER NOT NULL,
        wait_key   NOT NULL,
        goroutines INTEGER NOT NULL,
        live       INTEGER NOT NULL,
        blocked_ns INTEGER NOT NULL,
        PRIMARY KEY (process_id, wait_key)
      ) WITHOUT ROWID;

      CREATE TABLE goroutine_site_groups (
        process_id   INTEGER NOT NULL,
        function_key NOT NULL,
        file_key     NOT NULL,
        line_key     NOT NULL,
        goroutines   INTEGER NOT NULL,
        live         INTEGER NOT NULL,
        blocked_ns   INTEGER NOT NULL,
        PRIMARY KEY (process_id, function_key, file_key, line_key)
      ) WITHOUT ROWID;

      INSERT INTO goroutine_wait_groups (process_id, wait_key, goroutines, live, blocked_ns)
        SELECT process_id, coalesce(wait_reason, 0), count(*), sum(exited_at IS NULL), CAST(total(blocked_ns) AS INTEGER)
        FROM goroutines GROUP BY process_id, wait_reason;
      INSERT INTO goroutine_site_groups (process_id, function_key, file_key, line_key, goroutines, live, blocked_ns)
        SELECT process_id, coalesce(created_by_function, 0), coalesce(created_by_file, 0), coalesce(created_by_line, -1),
          count(*), sum(exited_at IS NULL), CAST(total(blocked_ns) AS INTEGER)
        FROM goroutines GROUP BY process_id, created_by_function, created_by_file, created_by_line;

      -- Deletes come in retention chunks; a trigger is cheap enough there.
      CREATE TRIGGER goroutines_groups_delete AFTER DELETE ON goroutines BEGIN
        UPDATE goroutine_wait_groups SET goroutines = goroutines - 1, live = live - (old.exited_at IS NULL), blocked_ns = blocked_ns - old.blocked_ns
          WHERE process_id = old.process_id AND wait_key = coalesce(old.wait_reason, 0);
        UPDATE goroutine_site_groups SET goroutines = goroutines - 1, live = live - (old.exited_at IS NULL), blocked_ns = blocked_ns - old.blocked_ns
          WHERE process_id = old.process_id AND function_key = coalesce(old.created_by_function, 0)
            AND file_key = coalesce(old.created_by_file, 0) AND line_key = coalesce(old.created_by_line, -1);
      END;
    `,
  },
  {
    version: 4,
    name: 'stacks: leak suspects parked stacks, the stack table and profile samples',
    sql: `
      ALTER TABLE leak_suspects ADD COLUMN stack TEXT;

      -- Each agent sends a stack once, then refers to it by id: (agent, id) names it.
      CREATE TABLE stacks (
        agent_id TEXT NOT NULL,
        stack_id INTEGER NOT NULL,
        frames   TEXT NOT NULL,
        PRIMARY KEY (agent_id, stack_id)
      ) WITHOUT ROWID;

      -- One row per (profile, stack, labels): goroutine counts at to_ms, or a window's contentions and delay.
      CREATE TABLE profile_samples (
        id         INTEGER PRIMARY KEY,
        process_id INTEGER NOT NULL REFERENCES processes(id),
        kind       TEXT NOT NULL,
        from_ms    REAL NOT NULL,
        to_ms      REAL NOT NULL,
        agent_id   TEXT NOT NULL,
        stack_id   INTEGER NOT NULL,
        labels     TEXT NOT NULL,
        v0         REAL NOT NULL,
        v1         REAL NOT NULL
      );
      CREATE INDEX profile_samples_process ON profile_samples(process_id, kind, to_ms);
      CREATE INDEX profile_samples_time ON profile_samples(kind, to_ms);
    `,
  },
  {
    version: 5,
    name: 'agent keys, and batch epochs',
    sql: `
      -- sha256 of the agent's key (HelloMessage.agentKey): set by the first hello that brings one.
      ALTER TABLE agents ADD COLUMN key_hash TEXT;

      -- An agent that lost its seq counter starts a new epoch: (agent, epoch, seq) names a batch.
      CREATE TABLE ingested_batches_new (
        agent_id    TEXT NOT NULL,
        epoch       TEXT NOT NULL,
        seq         INTEGER NOT NULL,
        records     INTEGER NOT NULL,
        received_at REAL NOT NULL,
        PRIMARY KEY (agent_id, epoch, seq)
      ) WITHOUT ROWID;
      INSERT INTO ingested_batches_new (agent_id, epoch, seq, records, received_at)
        SELECT agent_id, '', seq, records, received_at FROM ingested_batches;
      DROP TABLE ingested_batches;
      ALTER TABLE ingested_batches_new RENAME TO ingested_batches;
      CREATE INDEX ingested_batches_received ON ingested_batches(received_at);
    `,
  },
  {
    version: 6,
    name: 'service version of a process (OpenTelemetry service.version)',
    sql: `ALTER TABLE processes ADD COLUMN service_version TEXT;`,
  },
  {
    version: 7,
    name: 'goroutine creation sites and start functions interned in code_sites',
    sql: `
      -- Each goroutine row named its creation site and start function as text, and two indexes held those texts:
      -- half of an insert's cost (scripts/bench/collector-store.ts). A site is now a row of code_sites, and a
      -- goroutine refers to it by id (a start function is a site with file '' and line -1).
      CREATE TABLE code_sites (
        id       INTEGER PRIMARY KEY,
        function TEXT NOT NULL,
        file     TEXT NOT NULL,
        line     INTEGER NOT NULL,
        UNIQUE (function, file, line)
      );
      CREATE INDEX code_sites_file_line ON code_sites(file, line);
      INSERT OR IGNORE INTO code_sites (function, file, line)
        SELECT DISTINCT created_by_function, created_by_file, created_by_line FROM goroutines WHERE created_by_function IS NOT NULL;
      INSERT OR IGNORE INTO code_sites (function, file, line)
        SELECT DISTINCT start_function, '', -1 FROM goroutines WHERE start_function IS NOT NULL;

      CREATE TABLE goroutines_v7 (
        id                  INTEGER PRIMARY KEY,
        process_id          INTEGER NOT NULL REFERENCES processes(id),
        goid                INTEGER NOT NULL,
        parent_goid         INTEGER,
        state               TEXT NOT NULL,
        wait_reason         TEXT,
        site_id             INTEGER,
        start_id            INTEGER,
        created_at          REAL,
        exited_at           REAL,
        last_park_at        REAL,
        park_count          INTEGER NOT NULL,
        ready_count         INTEGER NOT NULL,
        blocked_ns          INTEGER NOT NULL,
        blocked_by_reason   TEXT NOT NULL,
        preexisting         INTEGER NOT NULL,
        system              INTEGER NOT NULL,
        observed_at         REAL NOT NULL,
        first_seen_at       REAL NOT NULL,
        UNIQUE (process_id, goid)
      );
      INSERT INTO goroutines_v7 SELECT g.id, g.process_id, g.goid, g.parent_goid, g.state, g.wait_reason,
          (SELECT s.id FROM code_sites s WHERE s.function = g.created_by_function AND s.file = g.created_by_file AND s.line = g.created_by_line),
          (SELECT s.id FROM code_sites s WHERE s.function = g.start_function AND s.file = '' AND s.line = -1),
          g.created_at, g.exited_at, g.last_park_at, g.park_count, g.ready_count, g.blocked_ns, g.blocked_by_reason,
          g.preexisting, g.system, g.observed_at, g.first_seen_at
        FROM goroutines g;
      DROP TABLE goroutines;
      ALTER TABLE goroutines_v7 RENAME TO goroutines;
      -- Each index costs every insert and update ~1-1.5 us (collector-store.ts), at 1e5 records a second. Kept: what
      -- the upsert needs, and what the API's filters need to answer within 50 ms over 10M rows. A process's newest
      -- rows come from (process_id, state) one state at a time, merged (store/reader.ts); retention walks rowids,
      -- which grow with first sight, instead of an index on observed_at.
      CREATE INDEX goroutines_process_state ON goroutines(process_id, state);
      CREATE INDEX goroutines_wait_reason ON goroutines(wait_reason);
      CREATE INDEX goroutines_site ON goroutines(site_id);

      -- For each minute of goroutine time (created, else first seen), the highest id of a row of that minute: a time
      -- range query ending at T walks rows newest first from the highest id of any minute up to T, not from the
      -- newest row (store/reader.ts). Exact: a row stored late (an agent's spool) raises its minute's mark.
      CREATE TABLE goroutine_id_marks (
        minute INTEGER PRIMARY KEY,
        max_id INTEGER NOT NULL
      );
      INSERT INTO goroutine_id_marks (minute, max_id)
        SELECT CAST(coalesce(created_at, first_seen_at) / 60000 AS INTEGER) AS minute, max(id) FROM goroutines GROUP BY minute;

      -- The rows as they read with their texts.
      CREATE VIEW goroutines_named AS SELECT g.*, s.function AS created_by_function, s.file AS created_by_file,
          s.line AS created_by_line, st.function AS start_function
        FROM goroutines g LEFT JOIN code_sites s ON s.id = g.site_id LEFT JOIN code_sites st ON st.id = g.start_id;

      CREATE TRIGGER goroutines_groups_delete AFTER DELETE ON goroutines BEGIN
        UPDATE goroutine_wait_groups SET goroutines = goroutines - 1, live = live - (old.exited_at IS NULL), blocked_ns = blocked_ns - old.blocked_ns
          WHERE process_id = old.process_id AND wait_key = coalesce(old.wait_reason, 0);
        UPDATE goroutine_site_groups SET goroutines = goroutines - 1, live = live - (old.exited_at IS NULL), blocked_ns = blocked_ns - old.blocked_ns
          WHERE process_id = old.process_id
            AND (function_key, file_key, line_key) = (SELECT coalesce(s.function, 0), coalesce(s.file, 0), coalesce(s.line, -1)
              FROM (SELECT 1) LEFT JOIN code_sites s ON s.id = old.site_id);
      END;
    `,
  },
  {
    version: 8,
    name: 'the wait reason index holds only goroutines that wait',
    sql: `
      -- A goroutine running, runnable or gone has no wait reason, and a filter by wait reason (an equality, which
      -- implies IS NOT NULL) never looks for one: their rows cost an index entry on every insert for nothing, and an
      -- exit, which clears the reason, costs a delete instead of a delete and an insert.
      DROP INDEX goroutines_wait_reason;
      CREATE INDEX goroutines_wait_reason ON goroutines(wait_reason) WHERE wait_reason IS NOT NULL;
    `,
  },
  {
    version: 9,
    name: 'server requests',
    sql: `
      -- One row per request record (net/http or grpc-go): the goroutine that served it started it at one instant, so
      -- (process, goid, start) names it across re-sends. Its parks stay JSON: they are read with the request.
      CREATE TABLE requests (
        id              INTEGER PRIMARY KEY,
        process_id      INTEGER NOT NULL REFERENCES processes(id),
        goid            INTEGER NOT NULL,
        protocol        TEXT NOT NULL,
        method          TEXT NOT NULL,
        route           TEXT NOT NULL,
        path            TEXT NOT NULL,
        status          INTEGER NOT NULL,
        started_at      REAL NOT NULL,
        duration_ns     INTEGER NOT NULL,
        request_bytes   INTEGER,
        response_bytes  INTEGER,
        parked_ns       INTEGER,
        parked_by_reason TEXT NOT NULL,
        parks           TEXT NOT NULL,
        trace_id        TEXT,
        parent_span_id  TEXT,
        weight          REAL NOT NULL,
        UNIQUE (process_id, goid, started_at)
      );
      CREATE INDEX requests_started_at ON requests(started_at);
      CREATE INDEX requests_route ON requests(process_id, route);
    `,
  },
  {
    version: 10,
    name: 'where a request\'s goroutine spent its time: running, runnable',
    sql: `
      -- RequestRecord.sched; NULL when the scheduler probes were not on for the whole request (or an older agent).
      ALTER TABLE requests ADD COLUMN running_ns INTEGER;
      ALTER TABLE requests ADD COLUMN runnable_ns INTEGER;
      ALTER TABLE requests ADD COLUMN syscall_ns INTEGER;
      ALTER TABLE requests ADD COLUMN runs INTEGER;
      ALTER TABLE requests ADD COLUMN preemptions INTEGER;
    `,
  },
  {
    version: 11,
    name: 'scheduler figures per process and report interval',
    sql: `
      -- One row per SchedRecord: what the scheduler did with a process's goroutines over [from_ms, to_ms], as
      -- differences since the agent's previous record, so any range is a sum. Histograms (run queue, system calls,
      -- and the run queue by creation site) stay JSON: they are merged in the reader (protocol/histogram.ts).
      CREATE TABLE sched_reports (
        id              INTEGER PRIMARY KEY,
        process_id      INTEGER NOT NULL REFERENCES processes(id),
        from_ms         REAL NOT NULL,
        to_ms           REAL NOT NULL,
        runs            INTEGER NOT NULL,
        runs_timed      INTEGER NOT NULL,
        yields          INTEGER NOT NULL,
        preemptions     INTEGER NOT NULL,
        preempt_parks   INTEGER NOT NULL,
        syscalls        INTEGER NOT NULL,
        syscall_ns      INTEGER NOT NULL,
        thread_switches INTEGER NOT NULL,
        p_switches      INTEGER NOT NULL,
        threads         INTEGER NOT NULL,
        ps              INTEGER NOT NULL,
        by_cause        TEXT NOT NULL,
        run_queue       TEXT NOT NULL,
        syscall_time    TEXT NOT NULL,
        sites           TEXT NOT NULL,
        UNIQUE (process_id, to_ms)
      );
      CREATE INDEX sched_reports_to ON sched_reports(to_ms);
    `,
  },
  {
    version: 12,
    name: 'goroutine id marks per second of goroutine time',
    sql: `
      -- A mark a minute made a time range ending early in a minute walk every row of the rest of that minute before its
      -- first match (166k rows at 10M rows an hour: 130-750 ms). A mark a second, built from the rows (one scan: ~6 s of
      -- CPU for a 10M-row file, once).
      CREATE TABLE goroutine_id_seconds (
        second INTEGER PRIMARY KEY,
        max_id INTEGER NOT NULL
      );
      INSERT INTO goroutine_id_seconds (second, max_id)
        SELECT CAST(coalesce(created_at, first_seen_at) / 1000 AS INTEGER) AS second, max(id) FROM goroutines GROUP BY second;
      DROP TABLE goroutine_id_marks;
    `,
  },
  {
    version: 13,
    name: 'goroutine group counts follow deletes a chunk at a time',
    sql: `
      -- The trigger ran two updates for every deleted goroutine row; retention now subtracts a whole chunk's rows from
      -- the groups with one GROUP BY per table (store/retention.ts, deleteGoroutines), through which every delete goes.
      DROP TRIGGER goroutines_groups_delete;
    `,
  },
];

/** Apply every migration newer than the database, each in its own transaction. */
export function migrate(db: Database): number {
  db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)');
  const current = (db.prepare('SELECT max(version) AS v FROM schema_version').get() as { v: number | null }).v ?? 0;
  const newest = migrations[migrations.length - 1].version;
  if (current > newest) {
    throw new Error(`database schema version ${current} is newer than this collector understands (${newest}); upgrade the collector`);
  }
  for (const m of migrations) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, Date.now());
    })();
  }
  return newest;
}
