// Where each request probe (bpf/http.bpf.c) goes in one Go binary, and with which BPF cookie. An entry is the
// jump after the stack check (one emulated trap, every argument register intact; the hit that goes to
// morestack is dropped by the flags); an end is every RET of the function, found by decoding it: never a
// uretprobe (Go moves goroutine stacks).
//   serve        net/http.serverHandler.ServeHTTP                 entry: req, rw
//   serveRet     net/http.serverHandler.ServeHTTP                 every RET: method, path, route, status, bytes
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
  /** What is not traced in this binary, with why (the rest still works). */
  skipped: string[];
}

interface Spec {
  probe: HttpProbeName;
  program: string;
  symbol: string;
  at: 'entry' | 'ret';
}

const HTTP_SPECS: Spec[] = [
  { probe: 'serve', program: 'http_serve', symbol: HTTP_FUNCS.serve, at: 'entry' },
  { probe: 'serveRet', program: 'http_serve_ret', symbol: HTTP_FUNCS.serve, at: 'ret' },
];
const GRPC_SPECS: Spec[] = [
  { probe: 'grpcHandle', program: 'grpc_handle', symbol: HTTP_FUNCS.handleStream, at: 'entry' },
  { probe: 'grpcHandleRet', program: 'grpc_handle_ret', symbol: HTTP_FUNCS.handleStream, at: 'ret' },
  { probe: 'grpcStatus', program: 'grpc_status', symbol: HTTP_FUNCS.writeStatus, at: 'entry' },
];

/** The sites of one group (HTTP or gRPC): all of them, or none with the reason. */
function planGroup(bin: GoBinary, specs: Spec[]): HttpProbeSite[] | string {
  const sites: HttpProbeSite[] = [];
  for (const spec of specs) {
    const symbol = spec.symbol === HTTP_FUNCS.writeStatus && !bin.func(spec.symbol) ? HTTP_FUNCS.writeStatusOld : spec.symbol;
    const f = bin.func(symbol);
    if (!f) return `${spec.symbol} is not in the binary (inlined or not linked)`;
    const found = findProbeSites(bin.elf.read(f.entry, f.end - f.entry), f.entry);
    const base = { probe: spec.probe, program: spec.program, symbol };
    if (spec.at === 'ret') {
      if (!found.rets.length) return `${spec.symbol} has no RET instruction`;
      for (const ret of found.rets) sites.push({ ...base, vaddr: ret, fileOffset: bin.fileOffset(ret), kind: 'ret', stackCheck: false });
      continue;
    }
    const sc = found.stackCheck;
    if (!sc || (sc.compared !== 'rsp' && sc.compared !== 'r12')) return `${spec.symbol} has no stack check to probe after`;
    sites.push({ ...base, vaddr: sc.jumpAddr, fileOffset: bin.fileOffset(sc.jumpAddr), kind: 'stack-check-jump', stackCheck: true });
  }
  return sites;
}

export function planHttpProbes(bin: GoBinary, layout: HttpLayout): HttpProbePlan {
  const sites: HttpProbeSite[] = [];
  const skipped: string[] = [];
  if (!bin.func(HTTP_FUNCS.serve)) skipped.push('net/http: no server in this binary');
  else if (!layout.serve || !layout.request || layout.urlPath === null || !layout.response || !layout.http2) {
    skipped.push(`net/http: ${layout.missing.join('; ') || 'its layout is unknown'}`);
  } else {
    const g = planGroup(bin, HTTP_SPECS);
    if (typeof g === 'string') skipped.push(`net/http: ${g}`);
    else sites.push(...g);
  }
  if (bin.func(HTTP_FUNCS.handleStream)) {
    if (!layout.grpc) skipped.push(`grpc-go: ${layout.missing.filter((m) => m.startsWith('grpc')).join('; ') || 'its layout is unknown'}`);
    else {
      const g = planGroup(bin, GRPC_SPECS);
      if (typeof g === 'string') skipped.push(`grpc-go: ${g}`);
      else sites.push(...g);
    }
  }
  return { sites, skipped };
}

export function httpCookie(site: HttpProbeSite, layoutId: number): bigint {
  return probeCookie(layoutId, HttpProbe[site.probe], { stackCheck: site.stackCheck });
}
