// JSON schemas shared by API routes: query filters, records as returned (from the agent's records), errors.
import { Type, type TObject, type TProperties } from '@sinclair/typebox';
import {
  type CodeLocation, ConnectionRecord, FatalRecord, GoroutineRecord, LeakRecord, PauseRecord, ProcessRecord, RequestRecord, SchedRecord, WindowRecord,
} from '../protocol/records.ts';

const nullable = (type: string, extra: Record<string, unknown> = {}) => ({ type: [type, 'null'], ...extra });

export const errorSchema = {
  $id: 'Error',
  type: 'object',
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string' },
    message: { type: 'string' },
  },
  required: ['statusCode', 'error', 'message'],
};

/** Responses every route may give besides 200. */
export const errorResponses = {
  400: { $ref: 'Error#' },
  401: { $ref: 'Error#' },
};

export const processFilter = {
  node: { type: 'string', minLength: 1, maxLength: 253, description: 'Node name, as the agent reported it.' },
  pid: { type: 'integer', minimum: 1, maximum: 2 ** 31 - 1, description: 'Process id on that node.' },
};

export const timeRange = {
  since: { type: 'number', minimum: 0, maximum: 1e14, description: 'Unix ms; only records alive at or after this time.' },
  until: { type: 'number', minimum: 0, maximum: 1e14, description: 'Unix ms; only records alive at or before this time.' },
};

export const paging = {
  limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
  cursor: { type: 'string', pattern: '^[1-9][0-9]{0,15}$', description: 'nextCursor of the previous page.' },
};

export function querystring(properties: Record<string, unknown>) {
  return { type: 'object', additionalProperties: false, properties };
}

export function pageOf(item: Record<string, unknown>) {
  return {
    type: 'object',
    required: ['items', 'nextCursor'],
    properties: { items: { type: 'array', items: item }, nextCursor: nullable('string') },
  };
}

/**
 * A stored record as the API returns it: the agent's record (protocol/records.ts, the one definition) without its
 * kind and the fields the store does not keep, with the collector's own fields added. Every field may be absent,
 * as in the store's older rows.
 */
function itemOf<T extends TProperties, K extends keyof T & string, E extends TProperties>(record: TObject<T>, without: K[], extra: E) {
  return Type.Partial(Type.Object({ id: Type.Integer(), node: Type.String(), ...Type.Omit(record, ['kind', ...without]).properties, ...extra }));
}

export const goroutineItem = itemOf(GoroutineRecord, ['startLocation', 'trace', 'longParks', 'parkCoverage', 'sched'], {
  processStartTime: Type.Unsafe<number | null>(nullable('integer')),
  firstSeenAt: Type.Number(),
});

export const connectionItem = itemOf(ConnectionRecord, ['servedBy', 'trace'], {});

export const processItem = itemOf(ProcessRecord, ['serviceVersion'], {
  startTime: Type.Unsafe<number | null>(nullable('integer', { description: 'null while only goroutines of the process have arrived' })),
});

export const windowItem = itemOf(WindowRecord, [], {});

export const nodeItem = {
  type: 'object',
  properties: {
    agentId: { type: 'string' },
    node: { type: 'string' },
    agentVersion: { type: 'string' },
    protocol: { type: 'integer' },
    firstSeenAt: { type: 'number' },
    lastSeenAt: { type: 'number' },
    connected: { type: 'boolean' },
  },
};

/** Which process a leak, pause summary or fatal error belongs to. */
const processRef = {
  node: Type.String(),
  pid: Type.Integer(),
  processStartTime: Type.Unsafe<number | null>(nullable('integer', { description: 'null while only other records of the process have arrived' })),
  exe: Type.Unsafe<string | null>(nullable('string')),
};

export const leakItem = itemOf(LeakRecord, ['observedAt', 'goroutine'], {
  ...processRef,
  firstSeenAt: Type.Number({ description: 'observedAt of the first report stored.' }),
  lastSeenAt: Type.Number({ description: 'observedAt of the latest report stored.' }),
});

export const gcItem = {
  type: 'object',
  properties: {
    ...processRef,
    pauses: { type: 'integer', description: 'Stop-the-world pauses in the range.' },
    gcPauses: { type: 'integer', description: 'Of those, pauses of the garbage collector.' },
    gcCycles: { type: 'integer', description: 'Distinct GC cycles the GC pauses belong to (where the agent knew the cycle).' },
    totalNs: { type: 'integer' },
    p50Ns: { type: 'integer' },
    p90Ns: { type: 'integer' },
    p99Ns: { type: 'integer' },
    maxNs: { type: 'integer' },
    firstAt: { type: 'number' },
    lastAt: { type: 'number' },
  },
};

export const pauseItem = itemOf(PauseRecord, [], {});

export const fatalItem = itemOf(FatalRecord, [], {
  ...processRef,
  goVersion: ProcessRecord.properties.goVersion,
  containerId: ProcessRecord.properties.containerId,
  pod: ProcessRecord.properties.pod,
  processExitedAt: Type.Unsafe<number | null>(nullable('number')),
  receivedAt: Type.Number(),
});

export const requestItem = itemOf(RequestRecord, [], {});

export const requestRouteItem = Type.Partial(Type.Object({
  ...processRef,
  route: Type.String({ description: 'The ServeMux pattern or gRPC method; "" for requests no pattern matched.' }),
  protocols: Type.Array(Type.String()),
  requests: Type.Number({ description: 'Requests the records stand for (their weights summed: the agent samples records, never the count).' }),
  records: Type.Integer({ description: 'Request records stored.' }),
  errors: Type.Number({ description: 'Server errors: HTTP 5xx, gRPC UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.' }),
  errorRatio: Type.Number(),
  ratePerSecond: Type.Number({ description: 'requests over the range (since..until, else the first start to the last end).' }),
  meanNs: Type.Integer(),
  p50Ns: Type.Integer({ description: 'Duration percentiles: nearest rank over the records, each weighted by what it stands for.' }),
  p90Ns: Type.Integer(),
  p99Ns: Type.Integer(),
  maxNs: Type.Integer(),
  parkedMeanNs: Type.Unsafe<number | null>(nullable('integer', { description: 'Mean time the serving goroutine was parked inside a request (of those whose parks were observed).' })),
  runningMeanNs: Type.Unsafe<number | null>(nullable('integer', { description: 'Mean time it was running (of the requests whose scheduling was observed).' })),
  runnableMeanNs: Type.Unsafe<number | null>(nullable('integer', { description: 'Mean time it waited runnable, in a run queue.' })),
}));

/** A latency histogram's figures (collector/src/store/sched-reader.ts). */
const latencySummary = Type.Object({
  count: Type.Integer(), sumNs: Type.Integer(), meanNs: Type.Integer(), maxNs: Type.Integer(),
  p50Ns: Type.Integer(), p90Ns: Type.Integer(), p99Ns: Type.Integer(),
});

const S = SchedRecord.properties;
export const schedItem = Type.Partial(Type.Object({
  ...processRef,
  from: Type.Number({ description: 'Unix ms: the start of the first report summed.' }),
  to: Type.Number({ description: 'Unix ms: the end of the last report summed.' }),
  reports: Type.Integer(),
  runs: S.runs, runsTimed: S.runsTimed, yields: S.yields, preemptions: S.preemptions, preemptParks: S.preemptParks, syscalls: S.syscalls,
  syscallNs: S.syscallNs, threadSwitches: S.threadSwitches, pSwitches: S.pSwitches, byCause: S.byCause, threads: S.threads, ps: S.ps,
  runQueue: latencySummary,
  syscallTime: latencySummary,
}));

export const schedSiteItem = Type.Object({
  createdBy: Type.Unsafe<CodeLocation | null>(nullable('object', {
    description: 'The go statement; null for goroutines whose creation site is unknown.',
    properties: { function: { type: 'string' }, file: { type: 'string' }, line: { type: 'integer' } },
  })),
  runQueue: latencySummary,
});
