// Runs test/fixtures/stacks, a Go program whose goroutines park at known places and which prints its own
// runtime.Stack(buf, true) dump once they have: the oracle for goroscope's stack reads.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Child } from './child.ts';
import { goBuild, repoRoot, type BuildKind } from './go.ts';

export const stacksFixtureSrc = join(repoRoot, 'test', 'fixtures', 'stacks');

export function buildStacksFixture(version = 'local', kind: BuildKind = 'default'): string {
  return goBuild({ srcDir: stacksFixtureSrc, version, kind, name: 'stacks' });
}

export class StacksProcess extends Child {
  /** Starts the program and waits (timeoutMs at most) until it has printed its own dump and READY. */
  static async start(binary: string, args: string[] = [], timeoutMs = 60_000): Promise<{ proc: StacksProcess; dump: string }> {
    const proc = new StacksProcess(spawn(binary, args, { stdio: ['pipe', 'pipe', 'pipe'] }), { what: `stacks ${args.join(' ')}`.trim(), timeoutMs });
    const m = await proc.until(/DUMP BEGIN\n([\s\S]*?)\nDUMP END\nREADY\n/);
    return { proc, dump: m[1] };
  }

  /** Asks for another runtime.Stack dump. */
  async dump(timeoutMs = 30_000): Promise<string> {
    return (await this.command('dump', /DUMP BEGIN\n([\s\S]*?)\nDUMP END\n/, timeoutMs))[1];
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
