// Whether this machine lets the tests load BPF programs; a test that cannot run says why, loudly.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from './go.ts';

let reason: string | undefined | null = null;

/** undefined when BPF works here, else the reason it does not. */
export async function bpfUnavailable(): Promise<string | undefined> {
  if (reason !== null) return reason;
  const obj = join(repoRoot, 'bpf', '.output', 'goroutines.bpf.o');
  const addon = join(repoRoot, 'agent', 'native', 'build', 'Release', 'goroscope_bridge.node');
  if (!existsSync(obj) || !existsSync(addon)) {
    reason = `BPF object or native bridge not built (run scripts/setup.sh): ${existsSync(obj) ? addon : obj}`;
    return reason;
  }
  try {
    const { openBpfObject } = await import('../../agent/src/bpf/bridge.ts');
    openBpfObject('goroutines').close();
    reason = undefined;
  } catch (e) {
    reason = `cannot load BPF programs here: ${(e as Error).message.split('\n')[0]}`;
  }
  return reason;
}
