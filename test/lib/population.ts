// Runs test/fixtures/population, a Go program with a known goroutine population, and talks to it.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { goBuild, repoRoot, type BuildKind } from './go.ts';
import { parseGoroutineDump, type DumpGoroutine } from './godump.ts';

export const populationSrc = join(repoRoot, 'test', 'fixtures', 'population');

export function buildPopulation(version = 'local', kind: BuildKind = 'default'): string {
  return goBuild({ srcDir: populationSrc, version, kind, name: 'population' });
}

export class PopulationProcess {
  private out = '';
  private waiters: Array<() => void> = [];
  /** Every line the program printed, but the dumps. */
  readonly lines: string[] = [];

  private constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      this.out += d;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(binary: string): Promise<PopulationProcess> {
    const p = new PopulationProcess(spawn(binary, [], { stdio: ['pipe', 'pipe', 'pipe'] }));
    let err = '';
    p.child.stderr.on('data', (d) => (err += d));
    // 'close', not 'exit': output can still be on its way when 'exit' fires.
    p.child.once('close', (code, sig) => {
      if (code !== 0) p.out += `\nEXITED code=${code} signal=${sig} stderr=${err}\n`;
      for (const w of p.waiters.splice(0)) w();
    });
    try {
      await p.until(/^READY$/m);
    } catch (e) {
      // Not left running: its open pipes would keep the test process alive past the test's own timeout.
      const state = p.procState();
      p.kill();
      throw new Error(`${(e as Error).message}${state ? ` (process ${p.pid}: ${state})` : ''}; stderr: ${err.slice(-500)}`);
    }
    return p;
  }

  /** The kernel's view of a process that does not answer: state and where each thread sleeps. */
  procState(): string | undefined {
    try {
      const tasks = readdirSync(`/proc/${this.pid}/task`);
      const threads = tasks.map((t) => `${readFileSync(`/proc/${this.pid}/task/${t}/stat`, 'utf8').split(') ')[1]?.[0]}:${readFileSync(`/proc/${this.pid}/task/${t}/wchan`, 'utf8') || '-'}`);
      return `${tasks.length} threads ${threads.join(' ')}`;
    } catch {
      return undefined;
    }
  }

  /** Waits until the output (after what was already consumed) matches; returns the match and consumes it. */
  async until(re: RegExp, timeoutMs = 60_000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.out);
      if (m) {
        const consumed = this.out.slice(0, m.index + m[0].length);
        this.out = this.out.slice(m.index + m[0].length);
        if (!consumed.includes('DUMP BEGIN')) this.lines.push(...consumed.split('\n').filter((l) => l && !l.startsWith('EXITED')));
        return m;
      }
      if (/EXITED code=/.test(this.out)) throw new Error(`population exited: ${this.out}`);
      if (Date.now() > deadline) {
        // Output that arrived while the event loop was busy is read in the poll phase, after timers: let it in first.
        await new Promise((r) => setImmediate(r));
        if (re.test(this.out)) continue;
        throw new Error(`timed out waiting for ${re}; output so far: ${this.out.slice(-500)}`);
      }
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  async command(cmd: string, reply: RegExp): Promise<RegExpExecArray> {
    this.child.stdin.write(`${cmd}\n`);
    return this.until(reply);
  }

  async dump(): Promise<DumpGoroutine[]> {
    const m = await this.command('dump', /DUMP BEGIN\n([\s\S]*?)\nDUMP END\n/);
    return parseGoroutineDump(m[1]);
  }

  async quit(): Promise<string> {
    const m = await this.command('quit', /^BYE .*$/m);
    await new Promise((r) => (this.child.exitCode !== null ? r(null) : this.child.once('exit', r)));
    return m[0];
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}
