// The one definition of what an agent sends a collector, used by both sides.
// Times are Unix epoch milliseconds (fractional part allowed); durations are nanoseconds.

export const PROTOCOL_VERSION = 1;

export interface CodeLocation {
  function: string;
  file: string;
  line: number;
}

/** A traced process. (node, pid, startTime) names it across pid reuse. */
export interface ProcessRecord {
  kind: 'process';
  pid: number;
  /** /proc/PID/stat field 22: start time in clock ticks since boot. */
  startTime: number;
  exe: string;
  goVersion: string | null;
  containerId: string | null;
  pod: { name: string; namespace: string; uid: string; container: string | null } | null;
  seenAt: number;
  exitedAt: number | null;
  /** What names the build: its module version, VCS revision or Go build ID (OpenTelemetry's service.version). */
  serviceVersion?: string | null;
}

export type GoroutineState =
  | 'idle' | 'runnable' | 'running' | 'syscall' | 'waiting' | 'dead' | 'copystack' | 'preempted' | 'unknown';

/**
 * Where a goroutine's span is at some time (collector/src/otel/trace-model.ts): the goid of its trace's root, and
 * which of its spans (0 from its start, then one per report interval while it lives).
 */
export interface SpanPlace {
  goid: number;
  root: number;
  segment: number;
}

/** A goroutine's place in the trace model, as the agent decided it. */
export interface GoroutineTrace {
  /** The goid of the root of its trace (its unit of work); itself when it starts one. */
  root: number;
  /** Which of its spans this record is about, and when that span began. */
  segment: number;
  from: number;
  /** Set when that span ended with the goroutine alive (a report interval passed); its exit ends the last one. */
  to?: number;
  /** A root's creator, where it was when it created it (a link, since it is in another trace). */
  creator?: SpanPlace | null;
  /** The park it was in at `to`, when already long: shown as a park in progress. */
  parked?: { waitReason: string | null; from: number } | null;
}

/** A park at least the agent's threshold long that ended. */
export interface LongParkRecord {
  waitReason: string | null;
  from: number;
  to: number;
  /** The goroutine's span the park ended in, and when that span began. */
  segment: number;
  segmentFrom: number;
  /** The goroutine that readied it, when a ready was seen. */
  waker: SpanPlace | null;
}

/** The latest known state of one goroutine; re-sent whenever it changes (upsert by pid+goid). */
export interface GoroutineRecord {
  kind: 'goroutine';
  pid: number;
  goid: number;
  parentGoid: number | null;
  state: GoroutineState;
  /** The runtime's own wait reason string, as in a goroutine dump; null unless waiting. */
  waitReason: string | null;
  createdBy: CodeLocation | null;
  startFunction: string | null;
  createdAt: number | null;
  exitedAt: number | null;
  lastParkAt: number | null;
  parkCount: number;
  readyCount: number;
  /** Time spent parked while observed, including the current park up to observedAt. */
  blockedNs: number;
  blockedByReason: Record<string, number>;
  /** Existed before the agent attached (seen in runtime.allgs). */
  preexisting: boolean;
  /** A runtime-internal goroutine (Go's dumps hide these). */
  system: boolean;
  observedAt: number;
  /** Where startFunction is defined. */
  startLocation?: CodeLocation | null;
  /** Its place in the trace model; goroutines with it are exported as spans. */
  trace?: GoroutineTrace;
  /** Long parks that ended since its last record. */
  longParks?: LongParkRecord[];
  /**
   * Share of the time this record covers (its life, or its span) during which the park and ready probes were on:
   * below 1, parkCount, readyCount and blocked times are samples of that share (the overhead budget duty-cycles them).
   */
  parkCoverage?: number;
}

/** One TCP connection of a process. */
export interface ConnectionRecord {
  kind: 'connection';
  pid: number;
  goid: number | null;
  family: 'inet' | 'inet6';
  role: 'client' | 'server';
  localAddress: string;
  localPort: number;
  peerAddress: string;
  peerPort: number;
  state: string;
  openedAt: number | null;
  closedAt: number | null;
  bytesSent: number;
  bytesReceived: number;
  srttUs: number | null;
  retransmits: number;
  resets: number;
  error: string | null;
  preexisting: boolean;
  observedAt: number;
  /** Server side: the goroutine the accepting goroutine started for it (it reads and writes the connection). */
  servedBy?: number | null;
  /** Its place in the trace model; connections with it are exported as spans. */
  trace?: ConnectionTrace;
}

/** A connection's span: a child of the goroutine that used it, one span per report interval while it is open. */
export interface ConnectionTrace {
  /** The goroutine span it is a child of (null: a root of its own trace). */
  parent: SpanPlace | null;
  /** Other goroutines that used it (the accepting goroutine of a served connection). */
  links: SpanPlace[];
  segment: number;
  from: number;
  /** Set when that span ended with the connection open; its close ends the last one. */
  to?: number;
}

/** A stretch of time in which the agent observed a process, and what it counted; windows make sampled figures honest. */
export interface WindowRecord {
  kind: 'window';
  pid: number;
  from: number;
  to: number;
  /** Which probes were attached for the whole window. */
  probes: string[];
  created: number;
  parked: number;
  readied: number;
  exited: number;
  lost: number;
}

/** A leak suspect as the agent judged it at observedAt (agent/src/analysis/leaks.ts); re-sent while it holds. */
export interface LeakRecord {
  kind: 'leak';
  pid: number;
  /** growing-live: live goroutines of one creation site keep piling up; growing-creation-rate: a start
   * function's creation rate keeps growing (self re-arming timers). */
  suspect: 'growing-live' | 'growing-creation-rate';
  createdBy: CodeLocation | null;
  startFunction: string | null;
  waitReason: string | null;
  /** Goroutines in the group (growing-live) or creations per minute (growing-creation-rate). */
  count: number;
  growthPerMinute: number;
  oldestAgeMs: number;
  /** When the agent first saw the group. */
  since: number;
  observedAt: number;
  /** Where one of its goroutines is parked, innermost frame first, as a goroutine dump shows it (read from the
   * process's memory); null when none could be read (running, or no live goroutine for creation-rate suspects). */
  stack?: CodeLocation[] | null;
  /** The goroutine that stack is of, where its span is now (a link from the suspect to it). */
  goroutine?: SpanPlace | null;
}

/** An entry of the agent's stack table: records refer to stacks by id (unique per agent run) to send each once. */
export interface StackRecord {
  kind: 'stack';
  id: number;
  /** Innermost first. */
  frames: CodeLocation[];
}

export interface ProfileSampleRecord {
  /** A StackRecord id of the same agent. */
  stack: number;
  /** goroutine: [goroutines]; block: [contentions, delay ns]. */
  values: number[];
  labels: Record<string, string>;
}

/**
 * A profile of one process: the goroutines on each stack at `to` (goroutine), or the waits of the window
 * [from, to] by stack (block; agent/src/profiles/block-profile.ts).
 */
export interface ProfileRecord {
  kind: 'profile';
  pid: number;
  profile: 'goroutine' | 'block';
  from: number;
  to: number;
  samples: ProfileSampleRecord[];
  comments: string[];
}

/** One stop-the-world pause of a Go process (GC or otherwise). */
export interface PauseRecord {
  kind: 'pause';
  pid: number;
  /** "GC sweep termination", "GC mark termination", "ReadMemStats", ... */
  reason: string;
  gc: boolean;
  startedAt: number;
  durationNs: number;
  /** The goroutine that stopped the world. */
  goid: number;
  /** The GC cycle (MemStats.NumGC after it) the pause belongs to, when known. */
  cycle: number | null;
}

/** A fatal error or fatal panic that ended (or is ending) a Go process: the reason outlives the process. */
export interface FatalRecord {
  kind: 'fatal';
  pid: number;
  errorKind: 'fatal error' | 'panic';
  message: string;
  /** The first line the runtime printed, e.g. "fatal error: concurrent map writes". */
  text: string;
  goid: number;
  at: number;
}

export type AgentRecord = ProcessRecord | GoroutineRecord | ConnectionRecord | WindowRecord | LeakRecord | PauseRecord | FatalRecord | StackRecord | ProfileRecord;

export interface HelloMessage {
  type: 'hello';
  protocol: typeof PROTOCOL_VERSION;
  agentId: string;
  node: string;
  agentVersion: string;
  /**
   * A secret the agent keeps with its id: the first hello that brings one binds the id to it, and the collector
   * refuses the id with any other key afterwards, so a holder of the shared ingest token cannot write as
   * another agent.
   */
  agentKey?: string;
}

/**
 * seq increases by one per batch of an agent within an epoch; a collector stores each (agentId, epoch, seq)
 * once. An agent that lost its counter starts a new epoch, so its new batches never look like old ones.
 */
export interface BatchMessage {
  type: 'batch';
  agentId: string;
  /** Absent: the epoch "" (agents before epochs). */
  epoch?: string;
  seq: number;
  records: AgentRecord[];
}

/** The collector's answer to a hello it accepts: what a batch may hold here. */
export interface WelcomeMessage {
  type: 'welcome';
  /** Largest message (batch) taken, in bytes of its UTF-8 JSON. */
  maxMessageBytes: number;
  maxRecordsPerBatch: number;
}

export interface AckMessage {
  type: 'ack';
  seq: number;
  /** The batch's epoch, echoed ("" when it had none). */
  epoch?: string;
}

export interface ErrorMessage {
  type: 'error';
  seq: number | null;
  epoch?: string;
  error: string;
}

export type AgentMessage = HelloMessage | BatchMessage;
export type CollectorMessage = WelcomeMessage | AckMessage | ErrorMessage;
