// Where net/http and grpc-go keep what the request probes read (bpf/http.bpf.c), read from the traced binary's
// own DWARF: the offsets of Request, url.URL, the two response writers and grpc-go's stream and status, and the
// registers of the probed functions' arguments. DWARF is exact for whatever Go and grpc-go versions built the
// binary. A stripped binary has none: net/http's part comes from http-layouts.json, read by this same code
// from the DWARF of a reference build per Go minor version (scripts/http-layouts); grpc-go's structs change
// with grpc-go's own releases, so a stripped binary's gRPC calls are not traced (said once, with the reason).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DW_TAG, DwarfData, DwarfIndex, stripTypedefs, structMembers, typeSize, type Die } from '../gobinary/dwarf.ts';
import type { ElfFile } from '../gobinary/elf.ts';
import { parseGoVersion, type AbiRegister } from '../gobinary/layouts.ts';
import { installRoot } from '../install-root.ts';

const REGS: AbiRegister[] = ['RAX', 'RBX', 'RCX', 'RDI', 'RSI', 'R8', 'R9', 'R10', 'R11'];

export interface HttpLayout {
  /** net/http.serverHandler.ServeHTTP: the registers of rw's data word and of req. */
  serve: { rwReg: AbiRegister; reqReg: AbiRegister } | null;
  request: { method: number; url: number; protoMajor: number; protoMinor: number; contentLength: number; pattern: number | null } | null;
  urlPath: number | null;
  response: { status: number; written: number } | null;
  http2: { rws: number; status: number; wroteBytes: number } | null;
  grpc: {
    streamReg: AbiRegister;
    /** ServerStream.Stream (an embedded *Stream, grpc-go 1.66+), null when method is ServerStream's own field. */
    serverStreamStream: number | null;
    method: number;
    statusReg: AbiRegister;
    statusS: number;
    code: number;
  } | null;
  /** Request.Header and Go 1.24+'s map internals, to find the Traceparent header; null for older maps. */
  headers: { header: number; used: number; dirPtr: number; dirLen: number; groupsData: number; groupsMask: number } | null;
  /** What could not be read, each with the reason: those probes are not placed. */
  missing: string[];
}

export const HTTP_FUNCS = {
  serve: 'net/http.serverHandler.ServeHTTP',
  /** What conn.serve calls once ServeHTTP returned (not on a hijacked connection): the HTTP/1 request's end. */
  finishRequest: 'net/http.(*response).finishRequest',
  /** What the HTTP/2 handler goroutine calls once ServeHTTP returned: the bundled server's (Go 1.26 and
   * before), then net/http/internal/http2's (Go 1.27+). */
  h2HandlerDone: ['net/http.(*http2responseWriter).handlerDone', 'net/http/internal/http2.(*responseWriter).handlerDone'],
  finishRequestCallers: ['net/http.(*conn).serve'],
  /** Where (*response).Hijack takes an HTTP/1 connection over: a hijacked request never reaches finishRequest. */
  hijack: 'net/http.(*conn).hijackLocked',
  /** runHandler's deferred closure calls handlerDone. */
  h2HandlerDoneCallers: ['net/http.(*http2serverConn).runHandler.func1', 'net/http/internal/http2.(*serverConn).runHandler.func1'],
  handleStream: 'google.golang.org/grpc.(*Server).handleStream',
  /** The server transport's writeStatus: (*ServerStream).WriteStatus is a one-line wrapper that callers inline. */
  writeStatus: 'google.golang.org/grpc/internal/transport.(*http2Server).writeStatus',
  /** Before grpc-go 1.66 the exported method itself did the work, on a *Stream. */
  writeStatusOld: 'google.golang.org/grpc/internal/transport.(*http2Server).WriteStatus',
} as const;

/** Units whose DIEs we need: the packages' own functions, and runtime, where Go's linker puts every type. */
const UNITS = /^(runtime|net\/http(\/internal\/http2)?|net\/url|google\.golang\.org\/grpc(\/internal\/(transport|status))?|google\.golang\.org\/genproto\/googleapis\/rpc\/status)$/;

class Missing extends Error {}

function field(idx: DwarfIndex, struct: string, name: string): { offset: number; type: Die | undefined } {
  const st = idx.struct(struct);
  if (!st) throw new Missing(`no DWARF struct ${struct}`);
  const m = structMembers(st).find((x) => x.name === name);
  if (!m) throw new Missing(`${struct} has no field ${name}`);
  return { offset: m.offset, type: m.type };
}

/**
 * ABIInternal registers of a function's parameters, for the simple cases: a one-word parameter takes the next
 * integer register, a struct or interface of one-word members one per member. Null past the first it cannot place.
 */
function paramRegisters(idx: DwarfIndex, fn: string): Map<string, AbiRegister[]> {
  const sp = idx.subprogram(fn);
  if (!sp?.die) throw new Missing(`no DWARF subprogram ${fn}`);
  const out = new Map<string, AbiRegister[]>();
  let next = 0;
  for (const p of DwarfIndex.parameters(sp.die)) {
    if (p.result) continue;
    const t = stripTypedefs(p.type);
    let words: number;
    if (t?.tag === DW_TAG.pointer_type || t?.tag === DW_TAG.base_type) words = typeSize(t) <= 8 ? 1 : -1;
    else if (t?.tag === DW_TAG.structure_type) {
      const ms = structMembers(t);
      words = ms.every((m) => typeSize(m.type) === 8) ? ms.length : -1;
    } else words = -1;
    if (words < 0 || next + words > REGS.length) break;
    out.set(p.name, REGS.slice(next, next + words));
    next += words;
  }
  return out;
}

function reg(regs: Map<string, AbiRegister[]>, fn: string, name: string, word = 0): AbiRegister {
  const r = regs.get(name)?.[word];
  if (!r) throw new Missing(`${fn}'s ${name} is not in a register`);
  return r;
}

/** The layout from the binary's DWARF; undefined when it has none (stripped). */
export function httpLayoutFromDwarf(elf: ElfFile): HttpLayout | undefined {
  const dwarf = DwarfData.fromElf(elf);
  if (!dwarf) return undefined;
  const idx = new DwarfIndex(dwarf.units.filter((u) => UNITS.test(u.name ?? '')));
  const missing: string[] = [];
  const part = <T>(what: string, read: () => T): T | null => {
    try {
      return read();
    } catch (e) {
      if (!(e instanceof Missing)) throw e;
      missing.push(`${what}: ${e.message}`);
      return null;
    }
  };
  const hasHttp = idx.subprogram(HTTP_FUNCS.serve) !== undefined;
  const hasGrpc = idx.subprogram(HTTP_FUNCS.handleStream) !== undefined;
  const layout: HttpLayout = { serve: null, request: null, urlPath: null, response: null, http2: null, grpc: null, headers: null, missing };
  if (hasHttp) {
    layout.serve = part('ServeHTTP', () => {
      const r = paramRegisters(idx, HTTP_FUNCS.serve);
      // rw is an interface (itab, data): the data word is the second register.
      return { rwReg: reg(r, HTTP_FUNCS.serve, 'rw', 1), reqReg: reg(r, HTTP_FUNCS.serve, 'req') };
    });
    layout.request = part('http.Request', () => ({
      method: field(idx, 'net/http.Request', 'Method').offset,
      url: field(idx, 'net/http.Request', 'URL').offset,
      protoMajor: field(idx, 'net/http.Request', 'ProtoMajor').offset,
      protoMinor: field(idx, 'net/http.Request', 'ProtoMinor').offset,
      contentLength: field(idx, 'net/http.Request', 'ContentLength').offset,
      pattern: idx.struct('net/http.Request') && structMembers(idx.struct('net/http.Request')!).some((m) => m.name === 'Pattern')
        ? field(idx, 'net/http.Request', 'Pattern').offset
        : null,
    }));
    layout.urlPath = part('url.URL', () => field(idx, 'net/url.URL', 'Path').offset);
    layout.response = part('http.response', () => ({
      status: field(idx, 'net/http.response', 'status').offset,
      written: field(idx, 'net/http.response', 'written').offset,
    }));
    // Go 1.24+ maps; an older map's layout (buckets) is not walked: its requests carry no traceparent.
    if (idx.struct('internal/runtime/maps.Map')) {
      layout.headers = part('Request.Header', () => {
        const groups = field(idx, 'internal/runtime/maps.table', 'groups').offset;
        return {
          header: field(idx, 'net/http.Request', 'Header').offset,
          used: field(idx, 'internal/runtime/maps.Map', 'used').offset,
          dirPtr: field(idx, 'internal/runtime/maps.Map', 'dirPtr').offset,
          dirLen: field(idx, 'internal/runtime/maps.Map', 'dirLen').offset,
          groupsData: groups + field(idx, 'internal/runtime/maps.groupsReference', 'data').offset,
          groupsMask: groups + field(idx, 'internal/runtime/maps.groupsReference', 'lengthMask').offset,
        };
      });
    }
    // The bundled HTTP/2 server (Go 1.26 and before), or net/http/internal/http2 (Go 1.27+).
    const h2 = idx.struct('net/http.http2responseWriter') ? 'net/http.http2responseWriter' : 'net/http/internal/http2.responseWriter';
    layout.http2 = part('HTTP/2 response writer', () => ({
      rws: field(idx, h2, 'rws').offset,
      status: field(idx, `${h2}State`, 'status').offset,
      wroteBytes: field(idx, `${h2}State`, 'wroteBytes').offset,
    }));
  }
  if (hasGrpc) {
    layout.grpc = part('grpc-go', () => {
      const hs = paramRegisters(idx, HTTP_FUNCS.handleStream);
      const writeStatus = idx.subprogram(HTTP_FUNCS.writeStatus) ? HTTP_FUNCS.writeStatus : HTTP_FUNCS.writeStatusOld;
      const ws = paramRegisters(idx, writeStatus);
      // grpc-go 1.66+ hands the server a *ServerStream that embeds *Stream; before, a *Stream.
      const ss = idx.struct('google.golang.org/grpc/internal/transport.ServerStream');
      const embedded = ss !== undefined && structMembers(ss).some((m) => m.name === 'Stream');
      return {
        streamReg: reg(hs, HTTP_FUNCS.handleStream, 'stream'),
        serverStreamStream: embedded ? field(idx, 'google.golang.org/grpc/internal/transport.ServerStream', 'Stream').offset : null,
        method: field(idx, 'google.golang.org/grpc/internal/transport.Stream', 'method').offset,
        statusReg: reg(ws, writeStatus, 'st'),
        statusS: field(idx, 'google.golang.org/grpc/internal/status.Status', 's').offset,
        code: field(idx, 'google.golang.org/genproto/googleapis/rpc/status.Status', 'Code').offset,
      };
    });
  }
  return layout;
}

/** The part of HttpLayout that depends on the Go version alone: what http-layouts.json holds per minor version. */
export type NetHttpLayout = Pick<HttpLayout, 'serve' | 'request' | 'urlPath' | 'response' | 'http2' | 'headers'>;

export interface HttpLayoutFile {
  schema: 1;
  generatedBy: string;
  /** By the reference build's Go version, "1.N.P": patch releases change net/http's structs too (1.26.8 -> 1.26.11
   * moved http.response's status). */
  versions: Record<string, NetHttpLayout>;
}

export const HTTP_LAYOUTS_FILE = join(installRoot, 'agent', 'src', 'http', 'http-layouts.json');

export function netHttpPart(l: HttpLayout): NetHttpLayout {
  return { serve: l.serve, request: l.request, urlPath: l.urlPath, response: l.response, http2: l.http2, headers: l.headers };
}

let table: HttpLayoutFile | undefined;

/**
 * net/http's layout for a Go version from the table: its own entry, or the one its two nearest entries of the same
 * minor version agree on (the patches between them changed nothing there); else a string saying why not.
 */
export function tableLayout(goVersion: string, file: HttpLayoutFile): NetHttpLayout | string {
  const v = parseGoVersion(goVersion);
  const regenerate = `add it: node --import tsx scripts/http-layouts/generate.ts ${goVersion.replace(/^go/, '')}`;
  if (!v || v.devel) return `Go ${goVersion} is no release`;
  const same = Object.entries(file.versions)
    .map(([k, layout]) => ({ v: parseGoVersion(k)!, layout }))
    .filter((e) => e.v.minor === v.minor)
    .sort((a, b) => a.v.patch - b.v.patch);
  const exact = same.find((e) => e.v.patch === v.patch);
  if (exact) return exact.layout;
  const below = same.filter((e) => e.v.patch < v.patch).pop();
  const above = same.find((e) => e.v.patch > v.patch);
  if (below && above && JSON.stringify(below.layout) === JSON.stringify(above.layout)) return below.layout;
  const known = same.map((e) => `1.${v.minor}.${e.v.patch}`).join(', ') || 'none';
  return `Go ${goVersion} is not in http-layouts.json, nor between two of its Go 1.${v.minor} entries that agree (${known}): ${regenerate}`;
}

/**
 * The layout for a binary: its own DWARF, else (stripped) net/http's from the table (tableLayout), with `missing`
 * saying what is left out and why.
 */
export function httpLayoutFor(elf: ElfFile, goVersion: string, hasGrpc: boolean): HttpLayout {
  const own = httpLayoutFromDwarf(elf);
  if (own) return own;
  const missing: string[] = [];
  if (hasGrpc) missing.push("grpc-go's offsets need the binary's DWARF: it has none (stripped), and they change with grpc-go's own releases");
  const empty: HttpLayout = { serve: null, request: null, urlPath: null, response: null, http2: null, grpc: null, headers: null, missing };
  table ??= JSON.parse(readFileSync(HTTP_LAYOUTS_FILE, 'utf8')) as HttpLayoutFile;
  const l = tableLayout(goVersion, table);
  if (typeof l === 'string') {
    missing.unshift(`the binary has no DWARF (stripped) and ${l}`);
    return empty;
  }
  return { ...empty, ...l };
}
