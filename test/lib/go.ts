// Builds the tests' Go programs with a chosen toolchain and build kind.
// Go 1.19 comes from Debian (golang-1.19-go); Go 1.21+ from the module proxy through GOTOOLCHAIN.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const buildRoot = join(repoRoot, 'build', 'go');

export type BuildKind = 'default' | 'stripped' | 'pie' | 'static' | 'cgo';

/** The Go toolchain that the tests use when none is named: the machine's own. */
export const defaultGoVersion = 'local';

const debianGo119 = '/usr/lib/go-1.19/bin/go';

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

/** `go version` of a toolchain, e.g. "go1.26.8". */
export function goVersionOf(version: string = defaultGoVersion): string {
  const { cmd, env } = goCommand(version);
  const out = execFileSync(cmd, ['env', 'GOVERSION'], { env, encoding: 'utf8' });
  return out.trim();
}

export interface GoBuildOptions {
  /** Directory holding main.go (and go.mod, or one is assumed). */
  srcDir: string;
  version?: string;
  kind?: BuildKind;
  /** Name of the output binary under build/go/<version>/<kind>/. */
  name?: string;
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
  args.push('.');
  execFileSync(cmd, args, { cwd: opts.srcDir, env: { ...env, CGO_ENABLED: cgo }, stdio: ['ignore', 'inherit', 'inherit'] });
  return out;
}
