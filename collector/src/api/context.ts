// What route plugins need from the collector, passed as plugin options.
import type { Database } from 'better-sqlite3';
import type { StoreReader } from '../store/reader.ts';
import type { RequestReader } from '../store/request-reader.ts';
import type { SchedReader } from '../store/sched-reader.ts';

export interface ApiContext {
  db: Database;
  reader: StoreReader;
  requests: RequestReader;
  sched: SchedReader;
  /** Agent ids with an open ingest connection. */
  connectedAgents(): { has(agentId: string): boolean };
  isShuttingDown(): boolean;
}
