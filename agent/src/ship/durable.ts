// Files replaced atomically: written whole to a temporary file and renamed over the old one, so a reader finds the
// old content or the new, never a torn one, whenever the writer dies. writeDurable also fsyncs the file and the
// directory, so the new content survives the machine's crash too. Private: files 0600 in 0700 directories (an
// agent's spool holds what it saw and the key it writes with).
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Creates dir (and missing parents) as 0700. An existing directory is left as the operator made it (it may be
 * shared, as /tmp is): the files written in it are 0600 whatever it is. Returns a note when others can list it.
 */
export function privateDir(dir: string): string | undefined {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const mode = statSync(dir).mode & 0o777;
  return mode & 0o077 ? `${dir} is mode ${mode.toString(8)}: others can list it (its files are 0600); 0700 keeps even the names private` : undefined;
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

/** Replaces dir/name with data atomically: survives the writer's crash (the page cache keeps it), not the machine's. */
export function writeAtomic(dir: string, name: string, data: string | Buffer): void {
  const tmp = join(dir, `${TEMP_PREFIX}${name}`);
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, join(dir, name));
}

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
