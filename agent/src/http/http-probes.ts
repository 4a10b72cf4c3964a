// Where each request probe (bpf/http.bpf.c) goes in one Go binary, and with which BPF cookie. An entry is the
// jump after the stack check (one emulated trap, every argument register intact; the hit that goes to
// morestack is dropped by the flags). The end of an HTTP request is the entry of what net/http calls once the
// handler returned, on the same goroutine; a RET is single-stepped out of line (~5 emulated hits here), so the
// RETs of ServeHTTP (found by decoding it: never a uretprobe, Go moves goroutine stacks) are the fallback for a
// build where those calls are not functions of their own.
//   serve        net/http.serverHandler.ServeHTTP                 entry: req, rw
//   serveDone    net/http.(*response).finishRequest, HTTP/2's handlerDone   entry: method, path, route, status, bytes
//   serveHijack  net/http.(*conn).hijackLocked                    entry: the same, for a request whose handler took
//                                                                 the connection over (it never reaches finishRequest)
//   serveRet     net/http.serverHandler.ServeHTTP                 every RET: the same, where serveDone cannot go
//   grpcHandle   grpc.(*Server).handleStream                      entry: the stream
//   grpcHandleRet grpc.(*Server).handleStream                      every RET: the full method
//   grpcStatus   grpc/internal/transport.(*http2Server).writeStatus entry: the status code (on the call's goroutine)
import { probeCookie } from '../events/goroutine-event.ts';
import { HttpProbe, type HttpProbeName } from '../events/http-event.ts';
import { findProbeSites, type GoBinary } from '../gobinary/index.ts';
import { HTTP_FUNCS, type HttpLayout } from './http-layout.ts';

export interface HttpProbeSite {
  probe: HttpProbeName;
  program: string;
  symbol: string;
  vaddr: number;
  fileOffset: number;
  kind: 'stack-check-jump' | 'ret';
  stackCheck: boolean;
}

export interface HttpProbePlan {
  sites: HttpProbeSite[];
  /** Where an HTTP request's end is probed: the post-handler calls' entries, or ServeHTTP's RETs. */
  end: HttpEnd | null;
  /** What is not traced in this binary, with why (the rest still works). */
  skipped: string[];
}

/** 'done': the entries of finishRequest and HTTP/2's handlerDone; 'ret': every RET of ServeHTTP. */
export type HttpEnd = 'done' | 'ret';

export interface HttpPlanOptions {
  /** 'auto' (the default): 'done' where the binary has both functions, else 'ret'. 'ret' is for the benchmark,
   * which sets both ends side by side. */
  end?: 'auto' | 'ret';
}

interface Spec {
  probe: HttpProbeName;
  program: string;
  /** The function; the first of a list that the binary has. */
  symbol: string | readonly string[];
  at: 'entry' | 'ret';
  /** Where net/http calls it: one of these must hold a direct CALL to it (else the call was inlined). */
  calledFrom?: readonly string[];
  /** Left out, without failing the group, when the binary lacks it (the linker drops what nothing calls). */
  optional?: boolean;
}

const HTTP_START: Spec = { probe: 'serve', program: 'http_serve', symbol: HTTP_FUNCS.serve, at: 'entry' };
const HTTP_DONE: Spec[] = [
  { probe: 'serveDone', program: 'http_serve_done', symbol: HTTP_FUNCS.finishRequest, at: 'entry', calledFrom: HTTP_FUNCS.finishRequestCallers },
  { probe: 'serveDone', program: 'http_serve_done', symbol: HTTP_FUNCS.h2HandlerDone, at: 'entry', calledFrom: HTTP_FUNCS.h2HandlerDoneCallers },
  // A binary that never hijacks (no Hijacker use) has no hijackLocked: nothing to probe there.
  { probe: 'serveHijack', program: 'http_serve_hijack', symbol: HTTP_FUNCS.hijack, at: 'entry', optional: true },
];
const HTTP_RET: Spec = { probe: 'serveRet', program: 'http_serve_ret', symbol: HTTP_FUNCS.serve, at: 'ret' };
const GRPC_SPECS: Spec[] = [
  { probe: 'grpcHandle', program: 'grpc_handle', symbol: HTTP_FUNCS.handleStream, at: 'entry' },
  { probe: 'grpcHandleRet', program: 'grpc_handle_ret', symbol: HTTP_FUNCS.handleStream, at: 'ret' },
  { probe: 'grpcStatus', program: 'grpc_status', symbol: [HTTP_FUNCS.writeStatus, HTTP_FUNCS.writeStatusOld], at: 'entry' },
];

/** Whether function `caller` holds a direct CALL to `target`. */
function calls(bin: GoBinary, caller: string, target: number): boolean {
  const f = bin.func(caller);
  return f !== undefined && findProbeSites(bin.elf.read(f.entry, f.end - f.entry), f.entry).callsTo(target).length > 0;
}

/** The sites of one group (HTTP or gRPC): all of them, or none with the reason. */
function planGroup(bin: GoBinary, specs: Spec[]): HttpProbeSite[] | string {
  const sites: HttpProbeSite[] = [];
  for (const spec of specs) {
    const names = typeof spec.symbol === 'string' ? [spec.symbol] : spec.symbol;
    const symbol = names.find((n) => bin.func(n)) ?? names[0];
    const f = bin.func(symbol);
    if (!f && spec.optional) continue;
    if (!f) return `${names.join(' or ')} is not in the binary (inlined or not linked)`;
    if (spec.calledFrom && !spec.calledFrom.some((c) => calls(bin, c, f.entry))) return `${symbol} is not called from ${spec.calledFrom.join(' or ')} (inlined there)`;
    const found = findProbeSites(bin.elf.read(f.entry, f.end - f.entry), f.entry);
    const base = { probe: spec.probe, program: spec.program, symbol };
    if (spec.at === 'ret') {
      if (!found.rets.length) return `${symbol} has no RET instruction`;
      for (const ret of found.rets) sites.push({ ...base, vaddr: ret, fileOffset: bin.fileOffset(ret), kind: 'ret', stackCheck: false });
      continue;
    }
    const sc = found.stackCheck;
    if (!sc || (sc.compared !== 'rsp' && sc.compared !== 'r12')) return `${symbol} has no stack check to probe after`;
    sites.push({ ...base, vaddr: sc.jumpAddr, fileOffset: bin.fileOffset(sc.jumpAddr), kind: 'stack-check-jump', stackCheck: true });
  }
  return sites;
}

export function planHttpProbes(bin: GoBinary, layout: HttpLayout, opts: HttpPlanOptions = {}): HttpProbePlan {
  const sites: HttpProbeSite[] = [];
  const skipped: string[] = [];
  let end: HttpEnd | null = null;
  if (!bin.func(HTTP_FUNCS.serve)) skipped.push('net/http: no server in this binary');
  else if (!layout.serve || !layout.request || layout.urlPath === null || !layout.response || !layout.http2) {
    skipped.push(`net/http: ${layout.missing.join('; ') || 'its layout is unknown'}`);
  } else {
    const done = opts.end === 'ret' ? undefined : planGroup(bin, [HTTP_START, ...HTTP_DONE]);
    const g = typeof done === 'object' ? done : planGroup(bin, [HTTP_START, HTTP_RET]);
    if (typeof g === 'string') skipped.push(`net/http: ${g}`);
    else {
      sites.push(...g);
      end = g === done ? 'done' : 'ret';
    }
  }
  if (bin.func(HTTP_FUNCS.handleStream)) {
    if (!layout.grpc) skipped.push(`grpc-go: ${layout.missing.filter((m) => m.startsWith('grpc')).join('; ') || 'its layout is unknown'}`);
    else {
      const g = planGroup(bin, GRPC_SPECS);
      if (typeof g === 'string') skipped.push(`grpc-go: ${g}`);
      else sites.push(...g);
    }
  }
  return { sites, end, skipped };
}

export function httpCookie(site: HttpProbeSite, layoutId: number): bigint {
  return probeCookie(layoutId, HttpProbe[site.probe], { stackCheck: site.stackCheck });
}
