// The whole project type-checks under strict TypeScript.
import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { repoRoot } from './lib/go.ts';

t.test('tsc --noEmit', async (t) => {
  const r = await promisify(execFile)(process.execPath, [`${repoRoot}/node_modules/typescript/bin/tsc`, '--noEmit', '-p', repoRoot], { maxBuffer: 16 << 20 })
    .then(() => ({ ok: true, out: '' }))
    .catch((e: { stdout: string }) => ({ ok: false, out: e.stdout }));
  t.ok(r.ok, r.out || 'no type errors');
});
