// Builds the tests' Go programs with a chosen toolchain and build kind.
// Go 1.19 comes from Debian (golang-1.19-go); Go 1.20+ from the module proxy through GOTOOLCHAIN.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const buildRoot = join(repoRoot, 'build', 'go');

export type BuildKind = 'default' | 'stripped' | 'pie' | 'static' | 'cgo';

/** The Go toolchain that the tests use when none is named: the machine's own. */
export const defaultGoVersion = 'local';

const debianGo119 = '/usr/lib/go-1.19/bin/go';

/**
 * The toolchain of each entry of the runtime layout table (agent/src/gobinary/runtime-layouts.json, made by
 * scripts/runtime-layouts/generate.sh), oldest first, as goCommand takes them: '1.19' (Debian's), '1.20.14', ...
 * The version matrix follows the table: a Go release added there is tested without editing the tests.
 */
export const tableToolchains: string[] = (() => {
  const file = JSON.parse(readFileSync(join(repoRoot, 'agent/src/gobinary/runtime-layouts.json'), 'utf8')) as {
    versions: Record<string, { goVersion: string; toolchain: string }>;
  };
  return Object.values(file.versions)
    .sort((a, b) => Number(a.goVersion.split('.')[1]) - Number(b.goVersion.split('.')[1]))
    .map((e) => (e.goVersion === '1.19' ? '1.19' : e.toolchain.replace(/^go/, '')));
})();

/** The newest Go release in the table (e.g. '1.27.4'): CI runs it beside the machine's own Go. */
export const newestGo = tableToolchains[tableToolchains.length - 1];

// Bounds on a child `go`, so a stalled toolchain download or build fails the test with its reason instead of
// hanging until tap's per-file timeout. A first GOTOOLCHAIN download is ~70 MB from the module proxy; a first
// build of a kind compiles the standard library (a minute or two on a busy 2-core machine).
const TOOLCHAIN_TIMEOUT_MS = 300_000;
const BUILD_TIMEOUT_MS = 600_000;

/** Command and environment that run `go` at the given version ('local', '1.19', or '1.N.P'). */
export function goCommand(version: string = defaultGoVersion): { cmd: string; env: NodeJS.ProcessEnv } {
  const env: NodeJS.ProcessEnv = { ...process.env, GOFLAGS: '-buildvcs=false', GO111MODULE: 'on' };
  if (version === 'local') return { cmd: 'go', env: { ...env, GOTOOLCHAIN: 'local' } };
  if (version === '1.19' || version.startsWith('1.19.')) {
    if (!existsSync(debianGo119)) throw new Error(`Go 1.19 needs Debian's golang-1.19-go (${debianGo119} is missing)`);
    return { cmd: debianGo119, env: { ...env, GOTOOLCHAIN: 'local' } };
  }
  return { cmd: 'go', env: { ...env, GOTOOLCHAIN: `go${version}` } };
}

const fetched = new Map<string, string>();

/**
 * `go version` of a toolchain, e.g. "go1.26.8". For '1.N.P' this is where GOTOOLCHAIN downloads it (once per
 * machine, into the module cache), bounded by a timeout that names the download.
 */
export function goVersionOf(version: string = defaultGoVersion): string {
  const known = fetched.get(version);
  if (known) return known;
  const { cmd, env } = goCommand(version);
  let out: string;
  try {
    out = execFileSync(cmd, ['env', 'GOVERSION'], { env, encoding: 'utf8', timeout: TOOLCHAIN_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as Error & { signal?: string; stderr?: string };
    if (err.signal === 'SIGTERM') {
      throw new Error(`go ${version}: no toolchain after ${TOOLCHAIN_TIMEOUT_MS / 1000} s (GOTOOLCHAIN=${env.GOTOOLCHAIN} downloads it from the Go module proxy)`);
    }
    throw new Error(`go ${version}: ${(err.stderr || err.message).trim().replace(/\s*\n\s*/g, '; ')}`);
  }
  fetched.set(version, out.trim());
  return out.trim();
}

export interface GoBuildOptions {
  /** Directory holding main.go (and go.mod, or one is assumed). */
  srcDir: string;
  version?: string;
  kind?: BuildKind;
  /** Name of the output binary under build/go/<version>/<kind>/. */
  name?: string;
  /** More `go build` flags (e.g. -modfile=, -tags=). */
  flags?: string[];
}

/**
 * Builds a Go program and returns the binary's path. Rebuilds only when the source is newer than the binary,
 * so many tests can share one build.
 */
export function goBuild(opts: GoBuildOptions): string {
  const version = opts.version ?? defaultGoVersion;
  const kind = opts.kind ?? 'default';
  const name = opts.name ?? opts.srcDir.split('/').filter(Boolean).pop()!;
  const outDir = join(buildRoot, version, kind);
  mkdirSync(outDir, { recursive: true });
  const out = join(outDir, name);
  const src = join(opts.srcDir, 'main.go');
  if (existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs) return out;
  goVersionOf(version); // the toolchain first, so a download that stalls is reported as such
  const { cmd, env } = goCommand(version);
  const args = ['build', '-o', out];
  let cgo = '0';
  switch (kind) {
    case 'stripped': args.push('-ldflags=-s -w'); break;
    case 'pie': args.push('-buildmode=pie'); break;
    case 'static': args.push('-ldflags=-extldflags=-static', '-tags=netgo,osusergo'); cgo = '1'; break;
    case 'cgo': args.push('-ldflags=-linkmode=external'); cgo = '1'; break;
    default: break;
  }
  args.push(...(opts.flags ?? []), '.');
  try {
    execFileSync(cmd, args, { cwd: opts.srcDir, env: { ...env, CGO_ENABLED: cgo }, stdio: ['ignore', 'inherit', 'inherit'], timeout: BUILD_TIMEOUT_MS });
  } catch (e) {
    if ((e as { signal?: string }).signal === 'SIGTERM') throw new Error(`go build (Go ${version}, ${kind}) of ${opts.srcDir} took over ${BUILD_TIMEOUT_MS / 1000} s`);
    throw e;
  }
  return out;
}
