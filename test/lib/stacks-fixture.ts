// Runs test/fixtures/stacks, a Go program whose goroutines park at known places and which prints its own
// runtime.Stack(buf, true) dump once they have: the oracle for goroscope's stack reads.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { goBuild, repoRoot, type BuildKind } from './go.ts';

export const stacksFixtureSrc = join(repoRoot, 'test', 'fixtures', 'stacks');

export function buildStacksFixture(version = 'local', kind: BuildKind = 'default'): string {
  return goBuild({ srcDir: stacksFixtureSrc, version, kind, name: 'stacks' });
}

export class StacksProcess {
  private out = '';
  private err = '';
  private exited = false;

  private constructor(readonly child: ChildProcessWithoutNullStreams) {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => (this.out += d));
    child.stderr.on('data', (d: Buffer) => (this.err += d.toString()));
    child.once('close', () => (this.exited = true));
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Starts the program and waits (timeoutMs at most) until it has printed its own dump and READY. */
  static async start(binary: string, args: string[] = [], timeoutMs = 60_000): Promise<{ proc: StacksProcess; dump: string }> {
    const proc = new StacksProcess(spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] }));
    const m = await proc.until(/DUMP BEGIN\n([\s\S]*?)\nDUMP END\nREADY\n/, timeoutMs);
    return { proc, dump: m[1] };
  }

  async until(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.out);
      if (m) {
        this.out = this.out.slice(m.index + m[0].length);
        return m;
      }
      if (this.exited) throw new Error(`the stacks fixture exited: ${this.err.slice(-500)}`);
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${re}; output: ${this.out.slice(-300)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** Asks for another runtime.Stack dump. */
  async dump(timeoutMs = 30_000): Promise<string> {
    this.child.stdin.write('dump\n');
    return (await this.until(/DUMP BEGIN\n([\s\S]*?)\nDUMP END\n/, timeoutMs))[1];
  }

  kill(): void {
    if (!this.exited) this.child.kill('SIGKILL');
  }
}

/** A dump's goroutine blocks by goid: each block's lines, header first. */
export function dumpBlocks(text: string): Map<number, string[]> {
  const out = new Map<number, string[]>();
  for (const block of text.split(/\n\s*\n/)) {
    const lines = block.split('\n').filter((l) => l.length > 0);
    const m = /^goroutine (\d+)/.exec(lines[0] ?? '');
    if (m) out.set(Number(m[1]), lines);
  }
  return out;
}
