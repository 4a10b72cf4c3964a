// Opening the SQLite file with the settings the collector relies on.
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3, { type Database } from 'better-sqlite3';
import { migrate } from './migrations.ts';

export interface OpenOptions {
  /** 'full' fsyncs every commit (survives power loss); 'normal' survives a process crash. */
  synchronous?: 'normal' | 'full';
}

/**
 * The database and its -wal and -shm files are 0600 (SQLite gives those the database file's mode); a directory
 * made for it is 0700. Files left wider by an older collector are narrowed.
 */
function makePrivate(file: string): void {
  if (file === ':memory:' || file === '') return;
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  closeSync(openSync(file, 'a', 0o600));
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      if ((statSync(f).mode & 0o077) !== 0) chmodSync(f, 0o600);
    } catch {
      /* not there yet */
    }
  }
}

export function openDatabase(file: string, opts: OpenOptions = {}): Database {
  makePrivate(file);
  const db = new BetterSqlite3(file);
  // Both must precede the first table (a file made earlier keeps what it has). 8 KiB pages: a b-tree one level lower and
  // half as many page splits, ~20% less writer CPU per insert and update than SQLite's 4 KiB in collector-store.ts.
  // Incremental auto-vacuum: so retention can hand freed pages back to the OS.
  db.pragma('page_size = 8192');
  db.pragma('auto_vacuum = INCREMENTAL');
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
  // Off: the checks cost a quarter of ingest throughput, every write goes through StoreWriter
  // (which resolves process ids itself), and retention deletes children before processes.
  db.pragma('foreign_keys = OFF');
  db.pragma('busy_timeout = 5000');
  db.pragma('cache_size = -65536'); // 64 MiB
  db.pragma('temp_store = MEMORY');
  // Checkpoint every ~40 MiB of WAL instead of SQLite's 4 MiB: index pages that every batch touches
  // are copied into the database file once per checkpoint, so fewer checkpoints mean much less
  // writing (20-40% more inserts/s in scripts/bench/collector-store.ts). The WAL file is cut back
  // to 64 MiB after a checkpoint so it does not keep its largest size.
  db.pragma('wal_autocheckpoint = 10000');
  db.pragma('journal_size_limit = 67108864');
  migrate(db);
  return db;
}

export function databaseSizeBytes(db: Database): { fileBytes: number; usedBytes: number } {
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const pages = db.pragma('page_count', { simple: true }) as number;
  const free = db.pragma('freelist_count', { simple: true }) as number;
  return { fileBytes: pages * pageSize, usedBytes: (pages - free) * pageSize };
}
