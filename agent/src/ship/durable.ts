// Files that survive a crash at any instant: written whole to a temporary file, fsynced, renamed over the old
// one, and the directory fsynced, so a reader finds the old content or the new, never a torn one. Private:
// files 0600 in 0700 directories (an agent's spool holds what it saw and the key it writes with).
import { chmodSync, closeSync, fsyncSync, mkdirSync, openSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Creates dir (and parents) as 0700, and narrows an existing one to 0700. */
export function privateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if ((statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
}

export function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Temporary files start with this; a crash can leave one behind, and nothing else does. */
export const TEMP_PREFIX = '.tmp-';

/** Replaces dir/name with data, atomically and durably (see above). */
export function writeDurable(dir: string, name: string, data: string | Buffer): void {
  const tmp = join(dir, `${TEMP_PREFIX}${name}`);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, name));
  fsyncDir(dir);
}
