// JSON schemas shared by API routes: query filters, records as returned, errors.
import { goroutineStates } from '../protocol/schema.ts';

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

const codeLocation = {
  type: ['object', 'null'],
  properties: { function: { type: 'string' }, file: { type: 'string' }, line: { type: 'integer' } },
};

export const goroutineItem = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    node: { type: 'string' },
    pid: { type: 'integer' },
    processStartTime: nullable('integer'),
    goid: { type: 'integer' },
    parentGoid: nullable('integer'),
    state: { type: 'string', enum: [...goroutineStates] },
    waitReason: nullable('string'),
    createdBy: codeLocation,
    startFunction: nullable('string'),
    createdAt: nullable('number'),
    exitedAt: nullable('number'),
    lastParkAt: nullable('number'),
    parkCount: { type: 'integer' },
    readyCount: { type: 'integer' },
    blockedNs: { type: 'integer' },
    blockedByReason: { type: 'object', additionalProperties: { type: 'integer' } },
    preexisting: { type: 'boolean' },
    system: { type: 'boolean' },
    observedAt: { type: 'number' },
    firstSeenAt: { type: 'number' },
  },
};

export const connectionItem = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    node: { type: 'string' },
    pid: { type: 'integer' },
    goid: nullable('integer'),
    family: { type: 'string' },
    role: { type: 'string' },
    localAddress: { type: 'string' },
    localPort: { type: 'integer' },
    peerAddress: { type: 'string' },
    peerPort: { type: 'integer' },
    state: { type: 'string' },
    openedAt: nullable('number'),
    closedAt: nullable('number'),
    bytesSent: { type: 'integer' },
    bytesReceived: { type: 'integer' },
    srttUs: nullable('integer'),
    retransmits: { type: 'integer' },
    resets: { type: 'integer' },
    error: nullable('string'),
    preexisting: { type: 'boolean' },
    observedAt: { type: 'number' },
  },
};

export const processItem = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    node: { type: 'string' },
    pid: { type: 'integer' },
    startTime: nullable('integer', { description: 'null while only goroutines of the process have arrived' }),
    exe: { type: 'string' },
    goVersion: nullable('string'),
    containerId: nullable('string'),
    pod: {
      type: ['object', 'null'],
      properties: { name: { type: 'string' }, namespace: { type: 'string' }, uid: { type: 'string' }, container: nullable('string') },
    },
    seenAt: { type: 'number' },
    exitedAt: nullable('number'),
  },
};

export const windowItem = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    node: { type: 'string' },
    pid: { type: 'integer' },
    from: { type: 'number' },
    to: { type: 'number' },
    probes: { type: 'array', items: { type: 'string' } },
    created: { type: 'integer' },
    parked: { type: 'integer' },
    readied: { type: 'integer' },
    exited: { type: 'integer' },
    lost: { type: 'integer' },
  },
};

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
  node: { type: 'string' },
  pid: { type: 'integer' },
  processStartTime: nullable('integer', { description: 'null while only other records of the process have arrived' }),
  exe: nullable('string'),
};

export const leakItem = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    ...processRef,
    suspect: { type: 'string', enum: ['growing-live', 'growing-creation-rate'] },
    createdBy: codeLocation,
    startFunction: nullable('string'),
    waitReason: nullable('string'),
    count: { type: 'number', description: 'Goroutines in the group (growing-live) or creations per minute (growing-creation-rate), as last reported.' },
    growthPerMinute: { type: 'number', description: 'Change of count per minute, as last reported.' },
    oldestAgeMs: { type: 'number' },
    since: { type: 'number', description: 'When the agent first saw the group.' },
    firstSeenAt: { type: 'number', description: 'observedAt of the first report stored.' },
    lastSeenAt: { type: 'number', description: 'observedAt of the latest report stored.' },
    stack: {
      type: ['array', 'null'],
      description: 'Where one of its goroutines is parked, innermost frame first, as a goroutine dump shows it; null when none could be read.',
      items: { type: 'object', properties: { function: { type: 'string' }, file: { type: 'string' }, line: { type: 'integer' } } },
    },
  },
};

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

export const pauseItem = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    node: { type: 'string' },
    pid: { type: 'integer' },
    reason: { type: 'string' },
    gc: { type: 'boolean' },
    startedAt: { type: 'number' },
    durationNs: { type: 'integer' },
    goid: { type: 'integer' },
    cycle: nullable('integer'),
  },
};

export const fatalItem = {
  type: 'object',
  properties: {
    id: { type: 'integer' },
    ...processRef,
    goVersion: nullable('string'),
    containerId: nullable('string'),
    pod: processItem.properties.pod,
    errorKind: { type: 'string', enum: ['fatal error', 'panic'] },
    message: { type: 'string' },
    text: { type: 'string', description: 'The first line the runtime printed.' },
    goid: { type: 'integer' },
    at: { type: 'number' },
    processExitedAt: nullable('number'),
    receivedAt: { type: 'number' },
  },
};
