// Shared by the gobinary tests: fixture builds and the Go toolchain's own tools as oracles.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BuildKind, buildRoot, goBuild, goCommand } from '../lib/go.ts';

export const fixtureDir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'hello');
export const VERSIONS = ['local', '1.19'] as const;
export const KINDS: BuildKind[] = ['default', 'stripped', 'pie', 'static', 'cgo'];

/** Builds the hello fixture, or returns why it cannot be built here (the caller skips loudly with it). */
export function buildHello(version: string, kind: BuildKind): { path?: string; why?: string } {
  try {
    return { path: goBuild({ srcDir: fixtureDir, version, kind }) };
  } catch (e) {
    return { why: `cannot build hello with Go ${version} (${kind}): ${(e as Error).message.split('\n')[0]}` };
  }
}

/** Runs `go tool <tool>` of the toolchain that built the binary. */
export function goTool(version: string, tool: string, args: string[], input?: string): string {
  const { cmd, env } = goCommand(version);
  return execFileSync(cmd, ['tool', tool, ...args], { env, input, encoding: 'utf8', maxBuffer: 256 << 20 });
}

/** `go tool nm` text symbols: name -> address. */
export function nmFuncs(version: string, bin: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of goTool(version, 'nm', [bin]).split('\n')) {
    const m = /^\s*([0-9a-f]+) ([Tt]) (.+)$/.exec(line);
    if (m && !out.has(m[3])) out.set(m[3], parseInt(m[1], 16));
  }
  return out;
}

/** `go tool addr2line` for many PCs in one run: [function, "file:line"] per pc. */
export function addr2line(version: string, bin: string, pcs: number[]): Array<[string, string]> {
  const out = goTool(version, 'addr2line', [bin], pcs.map((pc) => `0x${pc.toString(16)}`).join('\n') + '\n');
  const lines = out.split('\n');
  return pcs.map((_, i) => [lines[2 * i], lines[2 * i + 1]]);
}

export interface ObjdumpInsn {
  addr: number;
  bytes: string;
  text: string;
}

/** `go tool objdump -s regexp`: instructions per function. */
export function objdump(version: string, bin: string, regexp: string): Map<string, ObjdumpInsn[]> {
  const funcs = new Map<string, ObjdumpInsn[]>();
  let cur: ObjdumpInsn[] | undefined;
  for (const line of goTool(version, 'objdump', ['-s', regexp, bin]).split('\n')) {
    const t = /^TEXT (\S+)\(SB\)/.exec(line);
    if (t) {
      cur = [];
      funcs.set(t[1], cur);
      continue;
    }
    const m = /^\s+\S+\t+0x([0-9a-f]+)\t+([0-9a-f]+)\t+(.*?)\s*$/.exec(line);
    if (m && cur) cur.push({ addr: parseInt(m[1], 16), bytes: m[2], text: m[3] });
  }
  return funcs;
}

/**
 * A copy of the binary with its section headers removed (as sstrip-like tools do), so that everything must be found
 * from program headers and by scanning. Written next to the build, rebuilt when missing.
 */
export function withoutSectionHeaders(bin: string, version: string, kind: string): string {
  const out = join(buildRoot, version, kind, 'hello.noshdr');
  mkdirSync(dirname(out), { recursive: true });
  const buf = Buffer.from(readFileSync(bin));
  buf.writeBigUInt64LE(0n, 40); // e_shoff
  buf.writeUInt16LE(0, 60); // e_shnum
  buf.writeUInt16LE(0, 62); // e_shstrndx
  if (!existsSync(out) || !readFileSync(out).equals(buf)) writeFileSync(out, buf, { mode: 0o755 });
  return out;
}

/** Deterministic sample of n items spread over the list. */
export function sample<T>(items: T[], n: number): T[] {
  if (items.length <= n) return items;
  const step = items.length / n;
  return Array.from({ length: n }, (_, i) => items[Math.floor(i * step)]);
}

/** GNU objdump's instructions (AT&T mnemonics), for code Go's objdump cannot decode. Sorted by address. */
export function gnuObjdump(bin: string): ObjdumpInsn[] {
  const out = execFileSync('objdump', ['-d', '-w', bin], { encoding: 'utf8', maxBuffer: 512 << 20 });
  const insns: ObjdumpInsn[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s+([0-9a-f]+):\t([0-9a-f ]+?)\s*\t(\S+)/.exec(line);
    if (m) insns.push({ addr: parseInt(m[1], 16), bytes: m[2].replaceAll(' ', ''), text: m[3] });
  }
  return insns;
}
