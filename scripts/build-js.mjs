// Builds the bundle that bin/goroscope.js and the agent image run with plain node: agent/src/main.ts as one ES
// module entry (dist/goroscope.mjs) and, split off it, a chunk per command, loaded only when that command runs;
// and the collector's writer thread (dist/write-worker.mjs).
// npm packages stay outside (node_modules). Usage: node scripts/build-js.mjs [OUTDIR]  (default dist/)
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

export async function buildBundle(outdir = `${root}dist`) {
  rmSync(`${outdir}/chunks`, { recursive: true, force: true }); // chunks of an older build
  await build({
    // The collector's store writer runs in a worker thread of its own (collector/src/store/write-thread.ts).
    entryPoints: { goroscope: `${root}agent/src/main.ts`, 'write-worker': `${root}collector/src/store/write-worker.ts` },
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outdir,
    chunkNames: 'chunks/[name]-[hash]',
    outExtension: { '.js': '.mjs' },
    logLevel: 'warning',
  });
  return `${outdir}/goroscope.mjs`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await buildBundle(process.argv[2]);
