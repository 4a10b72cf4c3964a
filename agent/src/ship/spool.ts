// The agent's spool directory: batches waiting for the collector's ack, the counter their seq numbers come
// from, and the agent's identity (its id, and the key that binds the id to it at the collector). Every file is
// replaced atomically (durable.ts). What cannot be read back is set aside in corrupt/, counted, and never stops
// the agent; a counter that is lost or unreadable starts a new epoch, so new batches can never be taken for old
// ones that the collector already stored.
import { randomBytes, randomUUID } from 'node:crypto';
import { chmodSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { privateDir, TEMP_PREFIX, writeAtomic, writeDurable } from './durable.ts';
import { UserError } from '../health/explain.ts';

export interface SpooledBatch {
  epoch: string;
  seq: number;
  /** The batch message as sent: JSON, its records as rows (protocol 2) or objects (1). */
  body: string;
  records: number;
}

const AGENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const AGENT_KEY = /^[A-Za-z0-9_-]{22,128}$/;
const EPOCH = /^[A-Za-z0-9_-]{0,64}$/;
const BATCH_FILE = /^batch-([A-Za-z0-9_-]*)-(\d{1,16})\.json$/;
/** Spools of agents before epochs: "<seq>.json" and a "next-seq" counter, the epoch "". */
const LEGACY_BATCH_FILE = /^(\d{1,16})\.json$/;
/** Seq numbers reserved per counter write: one fsync per this many batches (unused ones are skipped). */
const DEFAULT_RESERVE = 1000;
/** Corrupt files kept for a look; older ones go. */
const KEEP_CORRUPT = 20;

function isOwnSpool(dir: string): boolean {
  const st = statSync(dir);
  if (st.mode & 0o1000 || st.uid !== process.getuid?.()) return false;
  const ours = /^(agent-id|agent-key|counter|next-seq|corrupt|batch-.*\.json|\d+\.json|\.tmp-.*)$/;
  return readdirSync(dir).every((f) => ours.test(f));
}

/** Rows of a protocol 2 batch body, 0 when it is not one. */
function rowCount(rows: unknown): number {
  if (typeof rows !== 'object' || rows === null || Array.isArray(rows)) return 0;
  let n = 0;
  for (const these of Object.values(rows)) {
    if (!Array.isArray(these)) return 0;
    n += these.length;
  }
  return n;
}

export function batchFileName(epoch: string, seq: number): string {
  return `batch-${epoch}-${seq}.json`;
}

export function newEpoch(): string {
  return randomBytes(9).toString('base64url');
}

export class Spool {
  /** Files set aside as unreadable since start. */
  corruptFiles = 0;
  /** Times the counter was lost or unreadable (each started an epoch). */
  counterResets = 0;
  private epoch = '';
  private next = 1;
  private reservedUntil = 0;

  /** The directory held an agent before this run: a missing counter then is a lost one. */
  private readonly used: boolean;

  constructor(readonly dir: string, private readonly log: (msg: string) => void = () => {}, private readonly reserve = DEFAULT_RESERVE) {
    let note: string | undefined;
    try {
      note = privateDir(dir);
    } catch (e) {
      const why = { ENOTDIR: 'a part of the path is a file', EACCES: 'permission denied', EROFS: 'read-only file system', ENOSPC: 'no space left' }[
        (e as NodeJS.ErrnoException).code ?? ''] ?? (e as Error).message;
      throw new UserError(`cannot use the spool directory ${dir}: ${why} (--spool-dir)`);
    }
    // A directory made for the spool by someone else (kubelet makes a hostPath 0755): narrowed while it holds
    // nothing, or this spool; a shared one (sticky, as /tmp, or holding other files) is left as it is.
    if (note && isOwnSpool(dir)) {
      chmodSync(dir, 0o700);
      note = undefined;
    }
    if (note) log(`spool: ${note}`);
    this.used = existsSync(join(dir, 'agent-id')) || existsSync(join(dir, 'next-seq'));
    for (const f of readdirSync(dir)) {
      const path = join(dir, f);
      if (f.startsWith(TEMP_PREFIX)) unlinkSync(path); // a write cut short by a crash: never renamed, never used
      else if (statSync(path).isFile() && (statSync(path).mode & 0o077) !== 0) chmodSync(path, 0o600); // an older agent's
    }
  }

  /** The agent's id and key, made on first use; a lost or unreadable one makes a new identity, said once. */
  identity(node: string): { agentId: string; agentKey: string } {
    const read = (name: string, valid: RegExp): string | undefined => {
      try {
        const v = readFileSync(join(this.dir, name), 'utf8').trim();
        return valid.test(v) ? v : undefined;
      } catch {
        return undefined;
      }
    };
    let agentId = read('agent-id', AGENT_ID);
    let agentKey = read('agent-key', AGENT_KEY);
    if (agentId && agentKey) return { agentId, agentKey };
    // A key the collector bound to this id cannot be made again: a lost key means a new id.
    if (agentId) this.log(`spool: the agent key in ${this.dir} is lost or unreadable: starting as a new agent`);
    agentId = `${node.replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 80)}.${randomUUID()}`;
    agentKey = randomBytes(32).toString('base64url');
    writeDurable(this.dir, 'agent-key', agentKey);
    writeDurable(this.dir, 'agent-id', agentId);
    return { agentId, agentKey };
  }

  /**
   * The batches of a previous run, oldest first, and the counter. Each must be a whole batch message of its
   * file's epoch and seq; any other file is set aside. agentId: bodies are rewritten to name this agent.
   */
  load(agentId: string): SpooledBatch[] {
    const out: SpooledBatch[] = [];
    for (const f of readdirSync(this.dir)) {
      const m = BATCH_FILE.exec(f) ?? LEGACY_BATCH_FILE.exec(f);
      if (!m) continue;
      const [epoch, seq] = m.length === 3 ? [m[1], Number(m[2])] : ['', Number(m[1])];
      const batch = this.readBatch(f, epoch, seq, agentId);
      if (batch) out.push(batch);
      else this.setAside(f);
    }
    this.loadCounter(out);
    // Older epochs first, then the current one, each by seq.
    const rank = (b: SpooledBatch) => (b.epoch === this.epoch ? 1 : 0);
    return out.sort((a, b) => rank(a) - rank(b) || (a.epoch < b.epoch ? -1 : a.epoch > b.epoch ? 1 : 0) || a.seq - b.seq);
  }

  private readBatch(file: string, epoch: string, seq: number, agentId: string): SpooledBatch | undefined {
    let text: string;
    let msg: { type?: unknown; agentId?: unknown; epoch?: unknown; seq?: unknown; records?: unknown; rows?: unknown };
    try {
      text = readFileSync(join(this.dir, file), 'utf8');
      msg = JSON.parse(text);
    } catch {
      return undefined;
    }
    if (typeof msg !== 'object' || msg === null || msg.type !== 'batch' || msg.seq !== seq || (msg.epoch ?? '') !== epoch) return undefined;
    // Records as objects (protocol 1, agents before rows) or as rows by kind (protocol 2).
    const records = Array.isArray(msg.records) ? msg.records.length : rowCount(msg.rows);
    if (!records) return undefined;
    // A batch of a previous identity (or of the legacy layout) is sent as this agent, under its own epoch and seq.
    const body = msg.agentId === agentId && msg.epoch === epoch ? text
      : JSON.stringify({ type: 'batch', agentId, epoch, seq, ...(Array.isArray(msg.records) ? { records: msg.records } : { rows: msg.rows }) });
    return { epoch, seq, body, records };
  }

  private setAside(file: string): void {
    this.corruptFiles++;
    const dir = join(this.dir, 'corrupt');
    privateDir(dir);
    renameSync(join(this.dir, file), join(dir, `${file}.${Date.now()}`));
    this.log(`spool: ${file} is not a whole batch (cut short by a crash, or damaged): set aside in ${dir}`);
    const kept = readdirSync(dir).map((f) => ({ f, t: statSync(join(dir, f)).mtimeMs })).sort((a, b) => b.t - a.t);
    for (const { f } of kept.slice(KEEP_CORRUPT)) unlinkSync(join(dir, f));
  }

  private loadCounter(batches: SpooledBatch[]): void {
    let counter: { epoch?: unknown; next?: unknown } | undefined;
    let existed = false;
    try {
      counter = JSON.parse(readFileSync(join(this.dir, 'counter'), 'utf8'));
      existed = true;
    } catch (e) {
      existed = (e as NodeJS.ErrnoException).code !== 'ENOENT';
    }
    if (counter && typeof counter.epoch === 'string' && EPOCH.test(counter.epoch) && Number.isSafeInteger(counter.next) && (counter.next as number) >= 1) {
      this.epoch = counter.epoch;
      this.next = counter.next as number;
    } else if (!existed && this.legacyCounter() !== undefined) {
      this.epoch = '';
      this.next = this.legacyCounter()!;
    } else {
      // Lost, or unreadable: seq numbers cannot safely continue, so a new epoch begins. A fresh spool starts here too.
      this.epoch = newEpoch();
      this.next = 1;
      if (existed || batches.length > 0 || this.used) {
        this.counterResets++;
        this.log(`spool: the seq counter in ${this.dir} is ${existed ? 'unreadable' : 'missing'}: new batches start epoch ${this.epoch}`);
      }
    }
    for (const b of batches) if (b.epoch === this.epoch && b.seq >= this.next) this.next = b.seq + 1;
    this.reservedUntil = this.next; // reserved on first use
  }

  private legacyCounter(): number | undefined {
    try {
      const n = Number(readFileSync(join(this.dir, 'next-seq'), 'utf8').trim());
      return Number.isSafeInteger(n) && n >= 1 ? n : undefined;
    } catch {
      return undefined;
    }
  }

  /** The next (epoch, seq): durable before it is handed out, so no restart can hand it out again. */
  take(): { epoch: string; seq: number } {
    if (this.next >= this.reservedUntil) {
      this.reservedUntil = this.next + this.reserve;
      writeDurable(this.dir, 'counter', JSON.stringify({ epoch: this.epoch, next: this.reservedUntil }));
      if (this.epoch === '') rmSync(join(this.dir, 'next-seq'), { force: true }); // the legacy counter is replaced
    }
    return { epoch: this.epoch, seq: this.next++ };
  }

  /** A batch survives the agent's crash or restart; not fsynced (two fsyncs per batch were ~11% of a default-mode
   *  agent's main thread): a machine's crash takes the node's processes, and their newest telemetry, with it, and a
   *  batch file it tears is set aside as corrupt. The counter and the identity stay durable: a seq or an id handed
   *  out twice would make the collector drop new batches as ones it already stored. */
  write(b: SpooledBatch): void {
    writeAtomic(this.dir, batchFileName(b.epoch, b.seq), b.body);
  }

  remove(epoch: string, seq: number): void {
    for (const name of [batchFileName(epoch, seq), ...(epoch === '' ? [`${seq}.json`] : [])]) {
      try {
        unlinkSync(join(this.dir, name));
      } catch {
        /* already gone */
      }
    }
  }
}
