// Classic tracepoints are attached by id, and only tracefs publishes the ids (events/<category>/<name>/id).
// A fresh node often has no tracefs mounted. Then, if the agent holds CAP_SYS_ADMIN, the native bridge reads
// the ids from a tracefs it mounts in a child's private mount namespace (agent/native/tracefs.c): the
// node's mounts never change, and attaching by id needs no tracefs afterwards. Otherwise the caller gets one
// line saying what is needed.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAddon } from './bridge.ts';

/** Where a mounted tracefs is found (libbpf looks in the same places). */
export const tracefsRoots = ['/sys/kernel/tracing', '/sys/kernel/debug/tracing'];

/** What to do on a node without tracefs, in one line (for logs, /metrics, the snapshot and doctor). */
export const tracefsFix = 'mount -t tracefs tracefs /sys/kernel/tracing on the node, or give the agent CAP_SYS_ADMIN';

/** The mounted tracefs, if any: a root whose events/ directory is there. */
export function mountedTracefs(): string | undefined {
  return tracefsRoots.find((r) => existsSync(join(r, 'events')));
}

const CAP_SYS_ADMIN = 21;

/** Whether this process holds CAP_SYS_ADMIN in its effective set. */
export function hasCapSysAdmin(status = safeRead('/proc/self/status')): boolean {
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return !!m && ((BigInt(`0x${m[1]}`) >> BigInt(CAP_SYS_ADMIN)) & 1n) === 1n;
}

function safeRead(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** How classic tracepoint ids can be had here. */
export type TracefsAccess =
  | { kind: 'mounted'; root: string }
  | { kind: 'private-mount' }
  | { kind: 'none'; reason: string };

export function tracefsAccess(): TracefsAccess {
  const root = mountedTracefs();
  if (root) return { kind: 'mounted', root };
  if (hasCapSysAdmin()) return { kind: 'private-mount' };
  return { kind: 'none', reason: 'tracefs is not mounted and the agent lacks CAP_SYS_ADMIN to mount it' };
}

export class TracefsUnavailable extends Error {
  constructor(readonly reason: string) {
    super(`${reason}: ${tracefsFix}`);
    this.name = 'TracefsUnavailable';
  }
}

export interface TracepointIds {
  /** "category/name" -> id */
  ids: Map<string, number>;
  /** where they came from */
  source: 'mounted' | 'private-mount';
}

/**
 * The ids of classic tracepoints ("category/name"). Throws TracefsUnavailable when tracefs is neither mounted
 * nor mountable, and an Error naming the tracepoint when one does not exist on this kernel.
 */
export function tracepointIds(names: string[], access: TracefsAccess = tracefsAccess()): TracepointIds {
  const ids = new Map<string, number>();
  if (access.kind === 'none') throw new TracefsUnavailable(access.reason);
  if (access.kind === 'mounted') {
    for (const n of names) {
      const path = join(access.root, 'events', n, 'id');
      let text: string;
      try {
        text = readFileSync(path, 'utf8');
      } catch (e) {
        throw new Error(`no tracepoint ${n} on this kernel (${path}: ${(e as NodeJS.ErrnoException).code ?? e})`);
      }
      ids.set(n, Number.parseInt(text, 10));
    }
    return { ids, source: 'mounted' };
  }
  let raw: number[];
  try {
    raw = loadAddon().privateTracefsIds(names);
  } catch (e) {
    throw new TracefsUnavailable(`tracefs is not mounted and mounting it failed (${(e as Error).message})`);
  }
  names.forEach((n, i) => {
    if (raw[i] <= 0) throw new Error(`no tracepoint ${n} on this kernel (its id: errno ${-raw[i]})`);
    ids.set(n, raw[i]);
  });
  return { ids, source: 'private-mount' };
}
