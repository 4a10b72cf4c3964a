// Shared by the runtime-event tests: which Go toolchains to run, building the fixtures, running a Go program
// with stdin/stdout/stderr captured.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { goBuild, goVersionOf, newestGo, repoRoot, tableToolchains } from '../lib/go.ts';

/** The machine's Go, 1.19 and the newest release in the table; every toolchain of the table with
 * RUNTIME_TEST_ALL_GO=1; or the comma-separated list in RUNTIME_TEST_GO (e.g. 1.27.4). */
export const goVersions = process.env.RUNTIME_TEST_GO
  ? process.env.RUNTIME_TEST_GO.split(',')
  : process.env.RUNTIME_TEST_ALL_GO
    ? ['local', ...tableToolchains]
    : ['local', '1.19', newestGo];

export function buildFixture(name: string, version: string): { bin?: string; skip?: string; goVersion?: string } {
  try {
    const bin = goBuild({ srcDir: join(repoRoot, 'test', 'fixtures', name), version, name });
    return { bin, goVersion: goVersionOf(version) };
  } catch (e) {
    const skip = `Go toolchain ${version} is not available here, so ${name} cannot be built: ${(e as Error).message.split('\n')[0]}`;
    console.error(`SKIPPED: ${skip}`); // loudly
    return { skip };
  }
}

export class GoProgram {
  out = '';
  err = '';
  /** Set once the output streams have ended too ('close'): only then has all the output arrived. */
  private closed = false;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (this.out += d));
    child.stderr.on('data', (d: string) => (this.err += d));
    this.exited = new Promise((r) =>
      child.once('close', (code, signal) => {
        this.closed = true;
        r({ code, signal });
      }),
    );
  }

  static start(bin: string, args: string[] = []): GoProgram {
    return new GoProgram(spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
  }

  get pid(): number {
    return this.child.pid!;
  }

  async until(re: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.out);
      if (m) return m;
      if (this.closed) throw new Error(`exited before ${re}: ${this.out} ${this.err}`);
      if (Date.now() > deadline) {
        // Output that arrived while the event loop was busy is read in the poll phase, after timers: let it in first.
        await new Promise((r) => setImmediate(r));
        if (re.test(this.out)) continue;
        // Killed, so its open pipes do not keep the test process alive past the test's own timeout.
        this.kill();
        throw new Error(`timed out waiting for ${re}: ${this.out.slice(-300)}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Waits for the program to end (its output closed too); kills it and throws when that takes over timeoutMs. */
  async exit(timeoutMs = 60_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.kill();
        reject(new Error(`pid ${this.pid} did not exit within ${timeoutMs / 1000} s: ${this.err.slice(-300)}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.exited, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  send(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
