// Where goroscope's files are: BPF objects (bpf/.output), the native bridge, the calibration program and the
// runtime layout table. It is the directory of goroscope's package.json, found upward from this module, so
// the same code works from the sources (agent/src/) and from the image's bundle (dist/). GOROSCOPE_HOME
// overrides it.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function isGoroscopeRoot(dir: string): boolean {
  const pkg = join(dir, 'package.json');
  if (!existsSync(pkg)) return false;
  try {
    return (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'goroscope';
  } catch {
    return false;
  }
}

function findInstallRoot(): string {
  if (process.env.GOROSCOPE_HOME) return resolve(process.env.GOROSCOPE_HOME);
  const here = dirname(fileURLToPath(import.meta.url));
  for (let dir = here; ; dir = dirname(dir)) {
    if (isGoroscopeRoot(dir)) return dir;
    if (dirname(dir) === dir) throw new Error(`cannot find goroscope's files above ${here}: set GOROSCOPE_HOME`);
  }
}

export const installRoot = findInstallRoot();
