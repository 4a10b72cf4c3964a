#!/usr/bin/env node
// The goroscope command. It runs the bundle (dist/goroscope.mjs, built by scripts/setup.sh or `npm run build:js`)
// with plain node, which starts in a fraction of the time the TypeScript sources take through tsx's loader.
// The sources run instead when there is no bundle, or when one of them is newer than it (a developer's edit).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bundle = `${root}dist/goroscope.mjs`;

/** True when a .ts file under these folders changed after `since` (a stat per file: a few ms). */
function sourcesNewerThan(since, dirs) {
  for (const dir of dirs) {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue; // an install without sources (the image) has only the bundle
    }
    for (const e of entries) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory()) {
        if (sourcesNewerThan(since, [path])) return true;
      } else if ((e.name.endsWith('.ts') || e.name.endsWith('.json')) && statSync(path).mtimeMs > since) {
        return true;
      }
    }
  }
  return false;
}

if (existsSync(bundle) && !sourcesNewerThan(statSync(bundle).mtimeMs, [`${root}agent/src`, `${root}collector/src`])) {
  await import(bundle);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../agent/src/main.ts');
}
