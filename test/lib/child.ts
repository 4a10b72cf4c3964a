// The one child-process helper of the tests and the benchmarks (scripts/bench imports it too; it imports
// nothing but Node). A child is started with its stdio piped; its output is read line-wise with waits that have
// a short timeout of their own and fail with the child's own words (its stderr and last output, its exit code
// or signal), never with tap's 20-minute timeout. A wait that fails kills the child, and every child still
// running when the test process exits (or when the test that started it ends, given `t`) is killed: its open
// pipes would otherwise keep the test process alive.
import { spawn, type ChildProcessWithoutNullStreams, type SpawnOptionsWithoutStdio } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** What the tap test object gives us to end a child with its test. */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

export interface ChildOptions extends SpawnOptionsWithoutStdio {
  /** How the child is named in errors; the command by default. */
  what?: string;
  /** Default timeout of its waits. */
  timeoutMs?: number;
  /** Kill it when this test ends. */
  t?: Teardown;
  /** Its stderr goes into `out` too (a program that logs to both, read as one). */
  mergeStderr?: boolean;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const DEFAULT_TIMEOUT_MS = 30_000;
/** Bytes of stderr kept at least (its end, where a failing program says why, when it writes more). */
const MAX_STDERR = 1 << 20;
const live = new Set<Child>();
process.once('exit', () => {
  for (const c of live) c.kill();
});

export class Child {
  /** Everything it wrote to stdout so far (waits consume from a cursor; this is never cut). */
  out = '';
  /** The end of what it wrote to stderr. */
  err = '';
  /** Where the next `until` starts looking in `out`. */
  private cursor = 0;
  private waiters: Array<() => void> = [];
  private lineListeners: Array<(line: string) => void> = [];
  private partialLine = '';
  private status: ExitStatus | undefined;
  readonly what: string;
  readonly timeoutMs: number;
  /** Resolves once it exited and its output streams are closed: only then has all of its output arrived. */
  readonly closed: Promise<ExitStatus>;

  constructor(readonly child: ChildProcessWithoutNullStreams, opts: Pick<ChildOptions, 'what' | 'timeoutMs' | 't' | 'mergeStderr'> = {}) {
    this.what = opts.what ?? child.spawnfile;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    live.add(this);
    opts.t?.teardown(() => this.kill());
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    // A line sent to a child that has exited (EPIPE): its exit is what the next wait reports.
    child.stdin.on('error', () => {});
    child.stdout.on('data', (d: string) => {
      this.out += d;
      if (this.lineListeners.length) {
        const lines = (this.partialLine + d).split('\n');
        this.partialLine = lines.pop()!;
        for (const l of lines) for (const f of this.lineListeners) f(l);
      }
      this.wake();
    });
    child.stderr.on('data', (d: string) => {
      if (opts.mergeStderr) this.out += d;
      this.err += d;
      if (this.err.length > 2 * MAX_STDERR) this.err = this.err.slice(-MAX_STDERR);
      this.wake();
    });
    let finish!: (status: ExitStatus) => void;
    this.closed = new Promise((resolve) => {
      finish = (status) => {
        if (this.status) return;
        this.status = status;
        live.delete(this);
        this.wake();
        resolve(status);
      };
    });
    // 'close', not 'exit': output can still be on its way when 'exit' fires, and a waiter must see it all.
    child.once('close', (code, signal) => finish({ code, signal }));
    // A command that cannot be run (not found, not executable): its failure, said where it is waited on.
    child.once('error', (e) => {
      this.err += `\n${e.message}`;
      if (child.pid === undefined) finish({ code: null, signal: null });
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** True once it exited and its output is all in. */
  get exited(): boolean {
    return this.status !== undefined;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves when output arrives or it exits, or after at most ms. */
  private async nextChange(ms: number): Promise<void> {
    await new Promise<void>((r) => {
      const timer = setTimeout(r, ms);
      this.waiters.push(() => {
        clearTimeout(timer);
        r();
      });
    });
  }

  /** Why a wait failed, in the child's own words. */
  private failure(why: string): Error {
    const s = this.status;
    const state = s ? `exited (${s.signal ?? `code ${s.code}`})` : (procState(this.pid) ?? 'running');
    return new Error(`${this.what} (pid ${this.pid}, ${state}): ${why}; stdout: ${this.out.slice(-800) || '(none)'}; stderr: ${this.err.slice(-1500) || '(none)'}`);
  }

  /** Waits until `find` finds what it looks for; kills the child and throws when it exits first or time runs out. */
  private async waitFor<T>(find: () => T | undefined, what: string, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = find();
      if (got !== undefined) return got;
      if (this.exited) throw this.failure(`exited before ${what}`);
      if (Date.now() > deadline) {
        // Output that arrived while the event loop was busy is read in the poll phase, after timers: let it in first.
        await new Promise((r) => setImmediate(r));
        const late = find();
        if (late !== undefined) return late;
        const err = this.failure(`no ${what} within ${timeoutMs / 1000} s`);
        this.kill();
        throw err;
      }
      await this.nextChange(Math.min(200, Math.max(1, deadline - Date.now())));
    }
  }

  /**
   * Waits for `re` in the output not yet consumed, and consumes it through the match: called again with the same
   * pattern, it waits for the next occurrence.
   */
  until(re: RegExp, timeoutMs = this.timeoutMs): Promise<RegExpExecArray> {
    const once = new RegExp(re.source, re.flags.replace('g', '').replace('y', ''));
    return this.waitFor(() => {
      const m = once.exec(this.out.slice(this.cursor));
      if (!m) return undefined;
      this.cursor += m.index + m[0].length;
      return m;
    }, String(re), timeoutMs);
  }

  /** Waits for `re` anywhere in the output, consumed or not, and consumes nothing: for lines in no fixed order. */
  async find(re: RegExp, timeoutMs = this.timeoutMs): Promise<RegExpExecArray> {
    return (await this.lines(re, 1, timeoutMs))[0];
  }

  /** Waits for `re` in its stderr (nothing consumed): a program that says on stderr where it is. */
  inStderr(re: RegExp, timeoutMs = this.timeoutMs): Promise<RegExpExecArray> {
    const once = new RegExp(re.source, re.flags.replace('g', '').replace('y', ''));
    return this.waitFor(() => once.exec(this.err) ?? undefined, `${re} on stderr`, timeoutMs);
  }

  /** Waits until `n` lines of the whole output (consumed or not) match `re`; returns them all. */
  lines(re: RegExp, n: number, timeoutMs = this.timeoutMs): Promise<RegExpExecArray[]> {
    const all = new RegExp(re.source, `${re.flags.replace(/[gm]/g, '')}gm`);
    return this.waitFor(() => {
      const got = [...this.out.matchAll(all)];
      return got.length >= n ? got : undefined;
    }, `${n} lines like ${re}`, timeoutMs);
  }

  /** Calls `fn` with each whole line of stdout that arrives from now on (a stream, not a wait). */
  onLine(fn: (line: string) => void): void {
    this.lineListeners.push(fn);
  }

  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  /** Sends a line and waits for its reply. */
  command(line: string, reply: RegExp, timeoutMs = this.timeoutMs): Promise<RegExpExecArray> {
    this.send(line);
    return this.until(reply, timeoutMs);
  }

  /** Waits for it to exit on its own (its output all in); kills it and throws when that takes over timeoutMs. */
  async exit(timeoutMs = this.timeoutMs): Promise<ExitStatus> {
    await this.waitFor(() => this.status, 'exit', timeoutMs);
    return this.status!;
  }

  /** Ends its stdin (a fixture's cue to finish) and waits for it to exit. */
  async end(timeoutMs = this.timeoutMs): Promise<ExitStatus> {
    this.child.stdin.end();
    return this.exit(timeoutMs);
  }

  /**
   * Sends `signal` and waits for the exit; SIGKILL after timeoutMs. Resolves undefined when its output is still
   * held open a few seconds after SIGKILL (a grandchild that inherited it): the child itself is gone.
   */
  async stop(signal: NodeJS.Signals, timeoutMs = 10_000): Promise<ExitStatus | undefined> {
    if (!this.exited) this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        this.kill();
        timer = setTimeout(() => resolve(undefined), 5000);
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.closed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  /** The kernel's view of it while it does not answer: its threads' states and where they sleep. */
  procState(): string | undefined {
    return procState(this.pid);
  }
}

/** Starts `cmd` with its stdio piped. */
export function startChild(cmd: string, args: string[] = [], opts: ChildOptions = {}): Child {
  const { what, timeoutMs, t, mergeStderr, ...spawnOpts } = opts;
  return new Child(spawn(cmd, args, { ...spawnOpts, stdio: ['pipe', 'pipe', 'pipe'] }), { what: what ?? cmd, timeoutMs, t, mergeStderr });
}

function procState(pid: number): string | undefined {
  try {
    const tasks = readdirSync(`/proc/${pid}/task`);
    const threads = tasks.map((t) => `${readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').split(') ')[1]?.[0]}:${readFileSync(`/proc/${pid}/task/${t}/wchan`, 'utf8') || '-'}`);
    return `${tasks.length} threads ${threads.join(' ')}`;
  } catch {
    return undefined;
  }
}

/**
 * Runs a command to its end with a timeout of its own (killSignal, SIGKILL by default, when it runs over): its
 * exit status and all of its output. `check` rejects on a non-zero exit with its stderr.
 */
export async function run(
  cmd: string,
  args: string[],
  opts: ChildOptions & { check?: boolean; input?: string; killSignal?: NodeJS.Signals } = {},
): Promise<ExitStatus & { stdout: string; stderr: string }> {
  const { check, input, killSignal = 'SIGKILL', timeoutMs = 120_000, ...rest } = opts;
  const c = startChild(cmd, args, { ...rest, timeoutMs });
  c.child.stdin.end(input);
  const timer = setTimeout(() => (killSignal === 'SIGKILL' ? c.kill() : void c.stop(killSignal)), timeoutMs);
  const status = await c.closed.finally(() => clearTimeout(timer));
  if (check && status.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${status.code ?? status.signal}: ${c.err.slice(-1000)}`);
  return { ...status, stdout: c.out, stderr: c.err };
}
