// The one definition of what an agent sends a collector: each record is a TypeBox schema, and its TypeScript
// type is that schema's Static, so the type the agent builds, the JSON Schema the collector validates with
// (validate.ts, ajv) and the API's response schemas (api/schemas.ts) cannot drift apart. The limits here are
// also the collector's defence against hostile input.
//
// This module is published to the agent: it imports TypeBox and nothing of the collector's server.
// Times are Unix epoch milliseconds (fractional part allowed); durations are nanoseconds.
import { Type, type Static, type TProperties, type TSchema } from '@sinclair/typebox';
import { MAX_BUCKET } from './histogram.ts';

export { DEFAULT_MAX_MESSAGE_BYTES } from './wire-limits.ts';

/**
 * The protocol an agent speaks (its hello says): 1 sends a batch's records as JSON objects (`records`), 2 as rows,
 * each record an array of its fields in the schema's order (`rows`, by kind: row-layout.ts, rows.gen.ts), without a
 * key per field. A collector takes both, and both bodies from either (a spool may hold batches from before an
 * upgrade); an older collector refuses a hello of 2 and the shipper speaks 1 to it.
 */
export const PROTOCOL_VERSION = 2;

/** Most records in one batch. */
export const MAX_RECORDS_PER_BATCH = 20_000;
/** Most long parks a goroutine record carries (the agent keeps the longest). */
export const MAX_LONG_PARKS = 64;
/** Frames of a stack, innermost first; deep recursion is cut by the agent. */
export const MAX_STACK_FRAMES = 512;
/** Most samples of one profile record. */
export const MAX_PROFILE_SAMPLES = 20_000;
/** Most creation sites a scheduler record carries (the agent keeps those with the most runs in the interval). */
export const MAX_SCHED_SITES = 256;
/** Upper bound for Unix-ms times: year ~5138. Keeps REAL columns and Date math sane. */
const MAX_TIME_MS = 1e14;
const MAX_COUNT = Number.MAX_SAFE_INTEGER;

// The building blocks. Nullable and Enum keep the plain JSON Schema forms (a type list, an enum) rather than
// TypeBox's anyOf: ajv checks them in one step, and its errors read "must be one of [...]".

/** T or null. The copy is plain JSON Schema: TypeBox's marks stay with the non-null original. */
function Nullable<T extends TSchema & { type: string }>(schema: T) {
  return Type.Unsafe<Static<T> | null>({ ...(JSON.parse(JSON.stringify(schema)) as object), type: [schema.type, 'null'] });
}

/** One of these strings. */
function Enum<const T extends readonly string[]>(values: T) {
  return Type.Unsafe<T[number]>({ enum: [...values] });
}

const Str = (maxLength: number, minLength = 0) => Type.String({ minLength, maxLength });
const Time = Type.Number({ minimum: 0, maximum: MAX_TIME_MS });
const Count = Type.Integer({ minimum: 0, maximum: MAX_COUNT });
const Pid = Type.Integer({ minimum: 1, maximum: 2 ** 31 - 1 });
const Port = Type.Integer({ minimum: 0, maximum: 65535 });
const Bool = Type.Boolean();
/** A JSON object of counts by name (a Record<string, number>). */
const CountsByName = (maxProperties: number, maxNameLength: number) =>
  Type.Unsafe<Record<string, number>>({ type: 'object', maxProperties, propertyNames: { maxLength: maxNameLength }, additionalProperties: Count });

/** The schema of a record of one kind: exactly these fields, no others. */
function RecordSchema<K extends string, P extends TProperties>(kind: K, properties: P) {
  return Type.Object({ kind: Type.Literal(kind), ...properties }, { additionalProperties: false });
}

const Closed = <P extends TProperties>(properties: P) => Type.Object(properties, { additionalProperties: false });

export const CodeLocation = Closed({ function: Str(4096), file: Str(4096), line: Type.Integer({ minimum: 0, maximum: 2 ** 31 - 1 }) });
export type CodeLocation = Static<typeof CodeLocation>;

/** A traced process. (node, pid, startTime) names it across pid reuse. */
export const ProcessRecord = RecordSchema('process', {
  pid: Pid,
  /** /proc/PID/stat field 22: start time in clock ticks since boot. */
  startTime: Count,
  exe: Str(4096),
  goVersion: Nullable(Str(64)),
  containerId: Nullable(Str(256)),
  pod: Nullable(Closed({ name: Str(253), namespace: Str(253), uid: Str(128), container: Nullable(Str(253)) })),
  seenAt: Time,
  exitedAt: Nullable(Time),
  /** What names the build: its module version, VCS revision or Go build ID (OpenTelemetry's service.version).
   * Optional: agents before the trace model did not send it. */
  serviceVersion: Type.Optional(Nullable(Str(256))),
});
export type ProcessRecord = Static<typeof ProcessRecord>;

export const goroutineStates = ['idle', 'runnable', 'running', 'syscall', 'waiting', 'dead', 'copystack', 'preempted', 'unknown'] as const;
export type GoroutineState = (typeof goroutineStates)[number];

/**
 * Where a goroutine's span is at some time (collector/src/otel/trace-model.ts): the goid of its trace's root, and
 * which of its spans (0 from its start, then one per report interval while it lives).
 */
export const SpanPlace = Closed({ goid: Count, root: Count, segment: Count });
export type SpanPlace = Static<typeof SpanPlace>;

/** A goroutine's place in the trace model, as the agent decided it. */
export const GoroutineTrace = Closed({
  /** The goid of the root of its trace (its unit of work); itself when it starts one. */
  root: Count,
  /** Which of its spans this record is about, and when that span began. */
  segment: Count,
  from: Time,
  /** Set when that span ended with the goroutine alive (a report interval passed); its exit ends the last one. */
  to: Type.Optional(Time),
  /** A root's creator, where it was when it created it (a link, since it is in another trace). */
  creator: Type.Optional(Nullable(SpanPlace)),
  /** The park it was in at `to`, when already long: shown as a park in progress. */
  parked: Type.Optional(Nullable(Closed({ waitReason: Nullable(Str(128)), from: Time }))),
});
export type GoroutineTrace = Static<typeof GoroutineTrace>;

/** A park at least the agent's threshold long that ended. */
export const LongParkRecord = Closed({
  waitReason: Nullable(Str(128)),
  from: Time,
  to: Time,
  /** The goroutine's span the park ended in, and when that span began. */
  segment: Count,
  segmentFrom: Time,
  /** The goroutine that readied it, when a ready was seen. */
  waker: Nullable(SpanPlace),
});
export type LongParkRecord = Static<typeof LongParkRecord>;

/** The latest known state of one goroutine; re-sent whenever it changes (upsert by pid+goid). */
/**
 * What the scheduler did with one goroutine while the scheduler probes were on (cumulative over its life):
 * runs (runtime.execute) and their run-queue time (runnable -> running; runsTimed of them, whose start was
 * seen), yields (Gosched), preemptions, system calls and their time, the thread (tid: its M) and P it last ran
 * on, and how often it moved between threads and between Ps.
 */
export const GoroutineSched = Closed({
  runs: Count,
  runsTimed: Count,
  runnableNs: Count,
  maxRunnableNs: Count,
  yields: Count,
  preemptions: Count,
  syscalls: Count,
  syscallNs: Count,
  tid: Nullable(Count),
  p: Nullable(Count),
  threadSwitches: Count,
  pSwitches: Count,
});
export type GoroutineSched = Static<typeof GoroutineSched>;

export const GoroutineRecord = RecordSchema('goroutine', {
  pid: Pid,
  goid: Count,
  parentGoid: Nullable(Count),
  state: Enum(goroutineStates),
  /** The runtime's own wait reason string, as in a goroutine dump; null unless waiting. */
  waitReason: Nullable(Str(128)),
  createdBy: Nullable(CodeLocation),
  startFunction: Nullable(Str(4096)),
  createdAt: Nullable(Time),
  exitedAt: Nullable(Time),
  lastParkAt: Nullable(Time),
  parkCount: Count,
  readyCount: Count,
  /** Time spent parked while observed, including the current park up to observedAt. */
  blockedNs: Count,
  blockedByReason: CountsByName(64, 128),
  /** Existed before the agent attached (seen in runtime.allgs). */
  preexisting: Bool,
  /** A runtime-internal goroutine (Go's dumps hide these). */
  system: Bool,
  observedAt: Time,
  // Optional from here (agents before the trace model did not send them).
  /** Where startFunction is defined. */
  startLocation: Type.Optional(Nullable(CodeLocation)),
  /** Its place in the trace model; goroutines with it are exported as spans. */
  trace: Type.Optional(GoroutineTrace),
  /** Long parks that ended since its last record. */
  longParks: Type.Optional(Type.Array(LongParkRecord, { maxItems: MAX_LONG_PARKS })),
  /**
   * Share of the time this record covers (its life, or its span) during which the park and ready probes were on:
   * below 1, parkCount, readyCount and blocked times are samples of that share (the overhead budget duty-cycles them).
   */
  parkCoverage: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  /** Its scheduling (the run and syscall probes), once any was seen. */
  sched: Type.Optional(GoroutineSched),
});
export type GoroutineRecord = Static<typeof GoroutineRecord>;

/** A connection's span: a child of the goroutine that used it, one span per report interval while it is open. */
export const ConnectionTrace = Closed({
  /** The goroutine span it is a child of (null: a root of its own trace). */
  parent: Nullable(SpanPlace),
  /** Other goroutines that used it (the accepting goroutine of a served connection). */
  links: Type.Array(SpanPlace, { maxItems: 8 }),
  segment: Count,
  from: Time,
  /** Set when that span ended with the connection open; its close ends the last one. */
  to: Type.Optional(Time),
});
export type ConnectionTrace = Static<typeof ConnectionTrace>;

/** One TCP connection of a process. */
export const ConnectionRecord = RecordSchema('connection', {
  pid: Pid,
  goid: Nullable(Count),
  family: Enum(['inet', 'inet6']),
  role: Enum(['client', 'server']),
  localAddress: Str(64, 1),
  localPort: Port,
  peerAddress: Str(64, 1),
  peerPort: Port,
  state: Str(32),
  openedAt: Nullable(Time),
  closedAt: Nullable(Time),
  bytesSent: Count,
  bytesReceived: Count,
  srttUs: Nullable(Count),
  retransmits: Count,
  resets: Count,
  error: Nullable(Str(256)),
  preexisting: Bool,
  observedAt: Time,
  /** Server side: the goroutine the accepting goroutine started for it (it reads and writes the connection). */
  servedBy: Type.Optional(Nullable(Count)),
  /** Its place in the trace model; connections with it are exported as spans. */
  trace: Type.Optional(ConnectionTrace),
});
export type ConnectionRecord = Static<typeof ConnectionRecord>;

/** A stretch of time in which the agent observed a process, and what it counted; windows make sampled figures honest. */
export const WindowRecord = RecordSchema('window', {
  pid: Pid,
  from: Time,
  to: Time,
  /** Which probes were attached for the whole window. */
  probes: Type.Array(Str(128), { maxItems: 64 }),
  created: Count,
  parked: Count,
  readied: Count,
  exited: Count,
  lost: Count,
});
export type WindowRecord = Static<typeof WindowRecord>;

/** growing-live: live goroutines of one creation site keep piling up; growing-creation-rate: a start function's
 * creation rate keeps growing (self re-arming timers). */
export const leakSuspects = ['growing-live', 'growing-creation-rate'] as const;

/** A leak suspect as the agent judged it at observedAt (agent/src/analysis/leaks.ts); re-sent while it holds. */
export const LeakRecord = RecordSchema('leak', {
  pid: Pid,
  suspect: Enum(leakSuspects),
  createdBy: Nullable(CodeLocation),
  startFunction: Nullable(Str(4096)),
  waitReason: Nullable(Str(128)),
  // Creations per minute for growing-creation-rate suspects: not always a whole number.
  count: Type.Number({ minimum: 0, maximum: MAX_COUNT, description: 'Goroutines in the group (growing-live) or creations per minute (growing-creation-rate).' }),
  growthPerMinute: Type.Number({ minimum: 0, maximum: MAX_COUNT, description: 'Change of count per minute.' }),
  oldestAgeMs: Type.Number({ minimum: 0, maximum: MAX_TIME_MS }),
  since: Type.Number({ minimum: 0, maximum: MAX_TIME_MS, description: 'When the agent first saw the group.' }),
  observedAt: Time,
  /** Optional: agents before stacks did not send it. */
  stack: Type.Optional(Nullable(Type.Array(CodeLocation, {
    maxItems: MAX_STACK_FRAMES,
    description: 'Where one of its goroutines is parked, innermost frame first, as a goroutine dump shows it (read from the ' +
      "process's memory); null when none could be read (running, or no live goroutine for creation-rate suspects).",
  }))),
  /** The goroutine that stack is of, where its span is now (a link from the suspect to it). */
  goroutine: Type.Optional(Nullable(SpanPlace)),
});
export type LeakRecord = Static<typeof LeakRecord>;

/** An entry of the agent's stack table: records refer to stacks by id (unique per agent run) to send each once. */
export const StackRecord = RecordSchema('stack', {
  id: Type.Integer({ minimum: 1, maximum: MAX_COUNT }),
  /** Innermost first. */
  frames: Type.Array(CodeLocation, { maxItems: MAX_STACK_FRAMES }),
});
export type StackRecord = Static<typeof StackRecord>;

export const ProfileSampleRecord = Closed({
  /** A StackRecord id of the same agent. */
  stack: Type.Integer({ minimum: 1, maximum: MAX_COUNT }),
  /** goroutine: [goroutines]; block: [contentions, delay ns]. */
  values: Type.Array(Type.Number({ minimum: 0, maximum: MAX_COUNT }), { minItems: 1, maxItems: 2 }),
  labels: Type.Unsafe<Record<string, string>>({ type: 'object', maxProperties: 8, additionalProperties: Str(256) }),
});
export type ProfileSampleRecord = Static<typeof ProfileSampleRecord>;

export const profileKinds = ['goroutine', 'block'] as const;

/**
 * A profile of one process: the goroutines on each stack at `to` (goroutine), or the waits of the window
 * [from, to] by stack (block; agent/src/profiles/block-profile.ts).
 */
export const ProfileRecord = RecordSchema('profile', {
  pid: Pid,
  profile: Enum(profileKinds),
  from: Time,
  to: Time,
  samples: Type.Array(ProfileSampleRecord, { maxItems: MAX_PROFILE_SAMPLES }),
  comments: Type.Array(Str(1024), { maxItems: 16 }),
});
export type ProfileRecord = Static<typeof ProfileRecord>;

/** One stop-the-world pause of a Go process (GC or otherwise). */
export const PauseRecord = RecordSchema('pause', {
  pid: Pid,
  /** "GC sweep termination", "GC mark termination", "ReadMemStats", ... */
  reason: Str(128, 1),
  gc: Bool,
  startedAt: Time,
  // An hour: a longer stop-the-world is a corrupt record, not a pause.
  durationNs: Type.Integer({ minimum: 0, maximum: 3_600_000_000_000 }),
  /** The goroutine that stopped the world. */
  goid: Count,
  /** The GC cycle (MemStats.NumGC after it) the pause belongs to, when known. */
  cycle: Nullable(Count),
});
export type PauseRecord = Static<typeof PauseRecord>;

export const fatalErrorKinds = ['fatal error', 'panic'] as const;

/** A fatal error or fatal panic that ended (or is ending) a Go process: the reason outlives the process. */
export const FatalRecord = RecordSchema('fatal', {
  pid: Pid,
  errorKind: Enum(fatalErrorKinds),
  message: Str(4096),
  text: Type.String({ minLength: 0, maxLength: 4096, description: 'The first line the runtime printed, e.g. "fatal error: concurrent map writes".' }),
  goid: Count,
  at: Time,
});
export type FatalRecord = Static<typeof FatalRecord>;

/**
 * Durations counted by bucket (protocol/histogram.ts: ~6% buckets, as the Go runtime's own histograms): buckets maps
 * a bucket number to its count; only buckets with samples appear.
 */
export const LatencyBuckets = Closed({
  count: Count,
  sumNs: Count,
  /** The largest sample (of the stretch the record covers; at most its highest bucket's upper bound). */
  maxNs: Count,
  buckets: Type.Unsafe<Record<string, number>>({
    type: 'object', maxProperties: MAX_BUCKET + 1, propertyNames: { pattern: '^(0|[1-9][0-9]{0,3})$' }, additionalProperties: Count,
  }),
});
export type LatencyBuckets = Static<typeof LatencyBuckets>;

/**
 * What the scheduler did with one process's goroutines over [from, to] (the scheduler probes: runtime.execute,
 * where goroutines become runnable, preemptions, system calls), as differences since the agent's previous record
 * of the process: the collector sums them over any range. runQueue is the run-queue latency (runnable -> running)
 * of every run whose start was seen (runsTimed of runs), by creation site too (the sites with the most runs).
 */
export const SchedRecord = RecordSchema('sched', {
  pid: Pid,
  from: Time,
  to: Time,
  runs: Count,
  runsTimed: Count,
  yields: Count,
  preemptions: Count,
  /** Of preemptions, suspensions in place for the GC (preemptPark). */
  preemptParks: Count,
  syscalls: Count,
  syscallNs: Count,
  /** Runs on another thread (M), or another P, than the goroutine's run before. */
  threadSwitches: Count,
  pSwitches: Count,
  /** Runs by what made the goroutine runnable (ready, created, yielded, preempted, syscall, injected, unknown). */
  byCause: CountsByName(16, 32),
  /** Threads and Ps seen running goroutines since the agent attached (not differences). */
  threads: Count,
  ps: Count,
  runQueue: LatencyBuckets,
  syscallTime: LatencyBuckets,
  sites: Type.Array(Closed({ createdBy: Nullable(CodeLocation), runQueue: LatencyBuckets }), { maxItems: MAX_SCHED_SITES }),
});
export type SchedRecord = Static<typeof SchedRecord>;

export const requestProtocols = ['http/1.0', 'http/1.1', 'http/2', 'grpc'] as const;

/** The gRPC status codes OpenTelemetry's conventions count as the server's fault (UNKNOWN, DEADLINE_EXCEEDED,
 * UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS). */
export const GRPC_SERVER_ERROR_CODES: readonly number[] = [2, 4, 12, 13, 14, 15];

/** A server error: an HTTP 5xx, or one of GRPC_SERVER_ERROR_CODES for a gRPC call. */
export const isServerErrorStatus = (grpc: boolean, status: number): boolean =>
  grpc ? GRPC_SERVER_ERROR_CODES.includes(status) : status >= 500;
/** Most parks a request record carries (its goroutine's longest inside it). */
export const MAX_REQUEST_PARKS = 32;

/** A park of the goroutine serving a request, inside the request. */
export const RequestParkRecord = Closed({
  waitReason: Nullable(Str(128)),
  from: Time,
  durationNs: Count,
  /** Ended without a ready (an IO wait the netpoller ended): its end is where the goroutine was next seen. */
  resumedUnseen: Bool,
  /** The goroutine that readied it (0: the runtime, or not seen). */
  wakerGoid: Count,
});
export type RequestParkRecord = Static<typeof RequestParkRecord>;

/**
 * Where the goroutine serving a request spent the request's time besides parked (RequestRecord.parkedNs): running on
 * a thread (system calls included) and runnable, waiting in a run queue for a P. runningNs + runnableNs + parkedNs
 * is the request's duration.
 */
export const RequestSched = Closed({
  runningNs: Count,
  runnableNs: Count,
  /** Of runningNs, time in system calls. */
  syscallNs: Count,
  /** Times it was scheduled to run again inside the request, and preempted. */
  runs: Count,
  preemptions: Count,
});
export type RequestSched = Static<typeof RequestSched>;

/**
 * One server request (net/http, HTTP/1 or HTTP/2) or gRPC call (grpc-go) of a Go process, from its handler's entry to
 * its return, tied to the goroutine that served it.
 */
export const RequestRecord = RecordSchema('request', {
  pid: Pid,
  /** The goroutine that served it. */
  goid: Count,
  protocol: Enum(requestProtocols),
  /** HTTP method; POST for gRPC. */
  method: Str(16),
  /** The ServeMux pattern that matched ("GET /items/{id}"), or the gRPC method; "" when none matched. */
  route: Str(256),
  /** The URL path (cut at 128 bytes by the probe), or the gRPC method. */
  path: Str(256),
  /** HTTP status code, or the gRPC status code (0 = OK). */
  status: Type.Integer({ minimum: 0, maximum: 999 }),
  startedAt: Time,
  durationNs: Count,
  /** Request.ContentLength (-1: unknown) and the body bytes the handler wrote; null for gRPC. */
  requestBytes: Nullable(Type.Integer({ minimum: -1, maximum: MAX_COUNT })),
  responseBytes: Nullable(Count),
  /** Time its goroutine spent parked inside it, in all and by wait reason; null when parks were not observed. */
  parkedNs: Nullable(Count),
  parkedByReason: CountsByName(64, 128),
  /** Its goroutine's longest parks inside it, in time order. */
  parks: Type.Array(RequestParkRecord, { maxItems: MAX_REQUEST_PARKS }),
  /** The caller's W3C trace context (traceparent), when the request carried one: the request's span joins it. */
  traceParent: Nullable(Closed({ traceId: Type.String({ pattern: '^[0-9a-f]{32}$' }), spanId: Type.String({ pattern: '^[0-9a-f]{16}$' }) })),
  /** Requests of this process that this record stands for (1, or more when the agent sampled). */
  weight: Type.Number({ minimum: 1, maximum: MAX_COUNT }),
  /** Its goroutine's time running and runnable inside it; null when the scheduler probes were not on for all of it.
   * Optional: agents before it did not send it. */
  sched: Type.Optional(Nullable(RequestSched)),
});
export type RequestRecord = Static<typeof RequestRecord>;

/** Every record schema, in the order error messages list the kinds. */
export const recordSchemas = [
  ProcessRecord, GoroutineRecord, ConnectionRecord, WindowRecord, LeakRecord, PauseRecord, FatalRecord, StackRecord, ProfileRecord, RequestRecord,
  SchedRecord,
] as const;
export type AgentRecord = Static<(typeof recordSchemas)[number]>;
export const recordKinds = recordSchemas.map((s) => s.properties.kind.const);

/** Any record: checked as one of the kinds (ajv's discriminator reports the errors of the matching kind only). */
export const AgentRecord = Type.Unsafe<AgentRecord>({
  type: 'object',
  required: ['kind'],
  discriminator: { propertyName: 'kind' },
  oneOf: recordSchemas,
});

const AgentId = Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' });
/** An agent's secret (HelloMessage.agentKey): 128 bits at least, base64url or hex. */
const AgentKey = Type.String({ pattern: '^[A-Za-z0-9_-]{22,128}$' });
const Epoch = Type.String({ pattern: '^[A-Za-z0-9_-]{0,64}$' });

export const HelloMessage = Closed({
  type: Type.Literal('hello'),
  protocol: Type.Integer({ minimum: 1, maximum: PROTOCOL_VERSION }),
  agentId: AgentId,
  node: Str(253, 1),
  agentVersion: Str(64),
  /**
   * A secret the agent keeps with its id: the first hello that brings one binds the id to it, and the collector
   * refuses the id with any other key afterwards, so a holder of the shared ingest token cannot write as
   * another agent.
   */
  agentKey: Type.Optional(AgentKey),
});
export type HelloMessage = Static<typeof HelloMessage>;

/**
 * seq increases by one per batch of an agent within an epoch; a collector stores each (agentId, epoch, seq)
 * once. An agent that lost its counter starts a new epoch, so its new batches never look like old ones.
 */
export const BatchMessage = Closed({
  type: Type.Literal('batch'),
  agentId: AgentId,
  /** Absent: the epoch "" (agents before epochs). */
  epoch: Type.Optional(Epoch),
  seq: Count,
  records: Type.Array(AgentRecord, { maxItems: MAX_RECORDS_PER_BATCH }),
});
export type BatchMessage = Static<typeof BatchMessage>;

/** Rows of each kind (protocol 2): what the collector validates them with is derived from the records' schemas. */
export type RowsByKind = { [K in AgentRecord['kind']]?: unknown[][] };

/** A batch of protocol 2: the records as rows (row-layout.ts), in one array per kind. */
export const RowBatchMessage = Closed({
  type: Type.Literal('batch'),
  agentId: AgentId,
  epoch: Type.Optional(Epoch),
  seq: Count,
  rows: Type.Unsafe<RowsByKind>({ type: 'object' }),
});
export type RowBatchMessage = Static<typeof RowBatchMessage>;

// What the collector answers. The agent trusts its collector, so these are types only (no validator runs).

/** The collector's answer to a hello it accepts: what a batch may hold here. */
export const WelcomeMessage = Closed({
  type: Type.Literal('welcome'),
  /** Largest message (batch) taken, in bytes of its UTF-8 JSON. */
  maxMessageBytes: Count,
  maxRecordsPerBatch: Count,
});
export type WelcomeMessage = Static<typeof WelcomeMessage>;

export const AckMessage = Closed({
  type: Type.Literal('ack'),
  seq: Count,
  /** The batch's epoch, echoed ("" when it had none). */
  epoch: Type.Optional(Epoch),
});
export type AckMessage = Static<typeof AckMessage>;

export const ErrorMessage = Closed({
  type: Type.Literal('error'),
  seq: Nullable(Count),
  epoch: Type.Optional(Epoch),
  error: Type.String(),
});
export type ErrorMessage = Static<typeof ErrorMessage>;

export type AgentMessage = HelloMessage | BatchMessage;
export type CollectorMessage = WelcomeMessage | AckMessage | ErrorMessage;
