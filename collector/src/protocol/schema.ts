// JSON schemas for the agent→collector messages in records.ts. The collector
// validates every message against these before touching the database, so the
// limits here are also the collector's defence against hostile input.
import { PROTOCOL_VERSION } from './records.ts';

/** Upper bound for Unix-ms times: year ~5138. Keeps REAL columns and Date math sane. */
const MAX_TIME_MS = 1e14;
const MAX_COUNT = Number.MAX_SAFE_INTEGER;
export const MAX_RECORDS_PER_BATCH = 20_000;

const str = (maxLength: number, minLength = 0) => ({ type: 'string', minLength, maxLength }) as const;
const nullable = <T extends { type: string }>(s: T) => ({ ...s, type: [s.type, 'null'] });
const time = { type: 'number', minimum: 0, maximum: MAX_TIME_MS } as const;
const count = { type: 'integer', minimum: 0, maximum: MAX_COUNT } as const;
const pid = { type: 'integer', minimum: 1, maximum: 2 ** 31 - 1 } as const;
const port = { type: 'integer', minimum: 0, maximum: 65535 } as const;
const bool = { type: 'boolean' } as const;

function record(kind: string, properties: Record<string, unknown>) {
  return {
    type: 'object',
    additionalProperties: false,
    required: ['kind', ...Object.keys(properties)],
    properties: { kind: { const: kind }, ...properties },
  };
}

export const processRecordSchema = record('process', {
  pid,
  startTime: count,
  exe: str(4096),
  goVersion: nullable(str(64)),
  containerId: nullable(str(256)),
  pod: {
    type: ['object', 'null'],
    additionalProperties: false,
    required: ['name', 'namespace', 'uid', 'container'],
    properties: { name: str(253), namespace: str(253), uid: str(128), container: nullable(str(253)) },
  },
  seenAt: time,
  exitedAt: nullable(time),
});
// Optional: agents before the trace model did not send it.
Object.assign(processRecordSchema.properties, { serviceVersion: nullable(str(256)) });

export const goroutineStates = [
  'idle', 'runnable', 'running', 'syscall', 'waiting', 'dead', 'copystack', 'preempted', 'unknown',
] as const;

const codeLocation = {
  type: ['object', 'null'],
  additionalProperties: false,
  required: ['function', 'file', 'line'],
  properties: { function: str(4096), file: str(4096), line: { type: 'integer', minimum: 0, maximum: 2 ** 31 - 1 } },
};

export const goroutineRecordSchema = record('goroutine', {
  pid,
  goid: count,
  parentGoid: nullable(count),
  state: { enum: goroutineStates },
  waitReason: nullable(str(128)),
  createdBy: codeLocation,
  startFunction: nullable(str(4096)),
  createdAt: nullable(time),
  exitedAt: nullable(time),
  lastParkAt: nullable(time),
  parkCount: count,
  readyCount: count,
  blockedNs: count,
  blockedByReason: {
    type: 'object',
    maxProperties: 64,
    propertyNames: { maxLength: 128 },
    additionalProperties: count,
  },
  preexisting: bool,
  system: bool,
  observedAt: time,
});

const spanPlace = {
  type: 'object',
  additionalProperties: false,
  required: ['goid', 'root', 'segment'],
  properties: { goid: count, root: count, segment: count },
} as const;
const nullableSpanPlace = { ...spanPlace, type: ['object', 'null'] };
export const MAX_LONG_PARKS = 64;

// Optional (agents before the trace model did not send them): the goroutine's place in the trace model.
Object.assign(goroutineRecordSchema.properties, {
  startLocation: codeLocation,
  trace: {
    type: 'object',
    additionalProperties: false,
    required: ['root', 'segment', 'from'],
    properties: {
      root: count,
      segment: count,
      from: time,
      to: time,
      creator: nullableSpanPlace,
      parked: {
        type: ['object', 'null'],
        additionalProperties: false,
        required: ['waitReason', 'from'],
        properties: { waitReason: nullable(str(128)), from: time },
      },
    },
  },
  longParks: {
    type: 'array',
    maxItems: MAX_LONG_PARKS,
    items: {
      type: 'object',
      additionalProperties: false,
      required: ['waitReason', 'from', 'to', 'segment', 'segmentFrom', 'waker'],
      properties: { waitReason: nullable(str(128)), from: time, to: time, segment: count, segmentFrom: time, waker: nullableSpanPlace },
    },
  },
  parkCoverage: { type: 'number', minimum: 0, maximum: 1 },
});

export const connectionRecordSchema = record('connection', {
  pid,
  goid: nullable(count),
  family: { enum: ['inet', 'inet6'] },
  role: { enum: ['client', 'server'] },
  localAddress: str(64, 1),
  localPort: port,
  peerAddress: str(64, 1),
  peerPort: port,
  state: str(32),
  openedAt: nullable(time),
  closedAt: nullable(time),
  bytesSent: count,
  bytesReceived: count,
  srttUs: nullable(count),
  retransmits: count,
  resets: count,
  error: nullable(str(256)),
  preexisting: bool,
  observedAt: time,
});
Object.assign(connectionRecordSchema.properties, {
  servedBy: nullable(count),
  trace: {
    type: 'object',
    additionalProperties: false,
    required: ['parent', 'links', 'segment', 'from'],
    properties: { parent: nullableSpanPlace, links: { type: 'array', maxItems: 8, items: spanPlace }, segment: count, from: time, to: time },
  },
});

export const windowRecordSchema = record('window', {
  pid,
  from: time,
  to: time,
  probes: { type: 'array', maxItems: 64, items: str(128) },
  created: count,
  parked: count,
  readied: count,
  exited: count,
  lost: count,
});

export const leakSuspects = ['growing-live', 'growing-creation-rate'] as const;

const leakRecordBase = record('leak', {
  pid,
  suspect: { enum: [...leakSuspects] },
  createdBy: codeLocation,
  startFunction: nullable(str(4096)),
  waitReason: nullable(str(128)),
  // Creations per minute for growing-creation-rate suspects: not always a whole number.
  count: { type: 'number', minimum: 0, maximum: MAX_COUNT },
  growthPerMinute: { type: 'number', minimum: 0, maximum: MAX_COUNT },
  oldestAgeMs: { type: 'number', minimum: 0, maximum: MAX_TIME_MS },
  since: time,
  observedAt: time,
});

/** Frames of a stack, innermost first; deep recursion is cut by the agent (MAX_STACK_FRAMES). */
export const MAX_STACK_FRAMES = 512;
const frameLocation = { ...codeLocation, type: 'object' };
const frames = { type: 'array', maxItems: MAX_STACK_FRAMES, items: frameLocation } as const;

// stack is optional: agents before stacks did not send it.
export const leakRecordSchema = {
  ...leakRecordBase,
  properties: { ...leakRecordBase.properties, stack: { type: ['array', 'null'], maxItems: MAX_STACK_FRAMES, items: frameLocation }, goroutine: nullableSpanPlace },
};

export const stackRecordSchema = record('stack', {
  id: { type: 'integer', minimum: 1, maximum: MAX_COUNT },
  frames,
});

export const profileKinds = ['goroutine', 'block'] as const;
export const MAX_PROFILE_SAMPLES = 20_000;

export const profileRecordSchema = record('profile', {
  pid,
  profile: { enum: [...profileKinds] },
  from: time,
  to: time,
  samples: {
    type: 'array',
    maxItems: MAX_PROFILE_SAMPLES,
    items: {
      type: 'object',
      additionalProperties: false,
      required: ['stack', 'values', 'labels'],
      properties: {
        stack: { type: 'integer', minimum: 1, maximum: MAX_COUNT },
        values: { type: 'array', minItems: 1, maxItems: 2, items: { type: 'number', minimum: 0, maximum: MAX_COUNT } },
        labels: { type: 'object', maxProperties: 8, additionalProperties: str(256) },
      },
    },
  },
  comments: { type: 'array', maxItems: 16, items: str(1024) },
});

export const pauseRecordSchema = record('pause', {
  pid,
  reason: str(128, 1),
  gc: bool,
  startedAt: time,
  // An hour: a longer stop-the-world is a corrupt record, not a pause.
  durationNs: { type: 'integer', minimum: 0, maximum: 3_600_000_000_000 },
  goid: count,
  cycle: nullable(count),
});

export const fatalErrorKinds = ['fatal error', 'panic'] as const;

export const fatalRecordSchema = record('fatal', {
  pid,
  errorKind: { enum: [...fatalErrorKinds] },
  message: str(4096),
  text: str(4096),
  goid: count,
  at: time,
});

/** Every record schema, in the order error messages list the kinds. */
export const recordSchemas = [
  processRecordSchema, goroutineRecordSchema, connectionRecordSchema, windowRecordSchema,
  leakRecordSchema, pauseRecordSchema, fatalRecordSchema, stackRecordSchema, profileRecordSchema,
];
export const recordKinds = recordSchemas.map((s) => s.properties.kind.const);

const agentId = { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } as const;
/** An agent's secret (HelloMessage.agentKey): 128 bits at least, base64url or hex. */
const agentKey = { type: 'string', pattern: '^[A-Za-z0-9_-]{22,128}$' } as const;
const epoch = { type: 'string', pattern: '^[A-Za-z0-9_-]{0,64}$' } as const;

export const helloMessageSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'protocol', 'agentId', 'node', 'agentVersion'],
  properties: {
    type: { const: 'hello' },
    protocol: { const: PROTOCOL_VERSION },
    agentId,
    node: str(253, 1),
    agentVersion: str(64),
    agentKey,
  },
};

export const batchMessageSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['type', 'agentId', 'seq', 'records'],
  properties: {
    type: { const: 'batch' },
    agentId,
    epoch,
    seq: count,
    records: {
      type: 'array',
      maxItems: MAX_RECORDS_PER_BATCH,
      items: {
        type: 'object',
        required: ['kind'],
        // The discriminator makes ajv report errors of the matching record kind only.
        discriminator: { propertyName: 'kind' },
        oneOf: recordSchemas,
      },
    },
  },
};
