// The request records of bpf/http.bpf.c (net/http server requests, grpc-go server calls), read by the layout
// generated from the object's BTF (http.bpf.ts).
import { HTTP_TRACEPARENT_LEN, HttpFlag, HttpEventKind, httpEventLayout, httpLayoutLayout, HttpProbe } from './http.bpf.ts';
import { encode, forEachRecord, readers } from './layout.ts';

export { HTTP_FIELD_ABSENT, HTTP_MAX_LAYOUTS, HTTP_PROBE_KINDS, HttpFlag, HttpEventKind, HttpProbe, httpEventLayout, httpLayoutLayout } from './http.bpf.ts';
export type HttpProbeName = keyof typeof HttpProbe;

export type HttpLayoutValues = Parameters<typeof encode<typeof httpLayoutLayout>>[1];

export const encodeHttpLayout = (values: HttpLayoutValues): Buffer => encode(httpLayoutLayout, values);

/** One request or call as the probes saw it. */
export interface HttpEventRecord {
  kind: 'http' | 'grpc';
  pid: number;
  tid: number;
  goid: number;
  /** CLOCK_MONOTONIC ns at the handler's entry and return. */
  startNs: number;
  endNs: number;
  /** HTTP status code (200 when the handler set none: net/http sends it); gRPC status code (0 = OK). */
  status: number;
  /** HTTP: the handler set no status (net/http sent 200, or 101 for a hijacked connection); gRPC: no status was seen. */
  statusImplicit: boolean;
  /** HTTP/1: the handler took the connection over (Hijack, e.g. a WebSocket upgrade); the request ended there. */
  hijacked: boolean;
  method: string;
  /** URL path (cut at HTTP_PATH_MAX bytes: pathCut); gRPC: the full method, "/pkg.Service/Method". */
  path: string;
  pathCut: boolean;
  /** The ServeMux pattern that matched (Go 1.23+), "" when none did or the handler is no ServeMux. */
  route: string;
  protoMajor: number;
  protoMinor: number;
  /** Request.ContentLength: -1 when unknown. */
  requestBytes: number;
  /** Body bytes the handler wrote. */
  responseBytes: number;
  unreadable: boolean;
  /** The caller's W3C trace context from the Traceparent header (version 00, well-formed, not all zeros). */
  traceParent: { traceId: string; spanId: string } | null;
  layoutId: number;
  /**
   * What the HTTP tracer adds when it settles the request (http-tracer.ts ServerRequest): made with the record, in
   * that order, so the object keeps its one shape (adding them later grew a second store of properties per request).
   */
  durationNs?: number;
  wallMs?: number;
  routeLabel?: string;
  parked?: unknown;
  sched?: unknown;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

/** A W3C traceparent header's trace and parent span id; null when it is not one (or names no trace). */
export function parseTraceparent(text: string): { traceId: string; spanId: string } | null {
  const m = TRACEPARENT.exec(text);
  if (!m || /^0+$/.test(m[1]) || /^0+$/.test(m[2])) return null;
  return { traceId: m[1], spanId: m[2] };
}

const F = httpEventLayout.fields;
const rd = readers(httpEventLayout);

const text = (b: Buffer, at: number, f: { offset: number; size: number }, len: number) =>
  b.toString('utf8', at + f.offset, at + f.offset + Math.min(len, f.size));

/**
 * The strings of one text field, by their bytes: a server's requests repeat a few methods, routes and paths, and
 * decoding each (Buffer toString, a call into C++ and a new string per request) was most of a record's decode.
 * Direct-mapped by a hash of the length and three bytes; a miss decodes and takes the place.
 */
export class TextCache {
  private readonly bytes: Uint8Array;
  private readonly lens: Int32Array;
  private readonly strs: string[];

  constructor(private readonly maxLen: number, private readonly places = 32) {
    this.bytes = new Uint8Array(maxLen * places);
    this.lens = new Int32Array(places).fill(-1);
    this.strs = new Array<string>(places).fill('');
  }

  /** The UTF-8 text of b[start, start + len) (len at most maxLen). */
  text(b: Buffer, start: number, len: number): string {
    if (len <= 0) return '';
    const p = (len * 31 + b[start] * 7 + b[start + (len >> 1)] * 3 + b[start + len - 1]) & (this.places - 1);
    const bytes = this.bytes;
    const o = p * this.maxLen;
    if (this.lens[p] === len) {
      let i = 0;
      while (i < len && bytes[o + i] === b[start + i]) i++;
      if (i === len) return this.strs[p];
    }
    const s = b.toString('utf8', start, start + len);
    for (let i = 0; i < len; i++) bytes[o + i] = b[start + i];
    this.lens[p] = len;
    this.strs[p] = s;
    return s;
  }
}

const methods = new TextCache(F.method.size);
const paths = new TextCache(F.path.size);
const routes = new TextCache(F.route.size);
const cached = (c: TextCache, b: Buffer, at: number, f: { offset: number; size: number }, len: number) => c.text(b, at + f.offset, Math.min(len, f.size));

export function decodeHttpEvent(b: Buffer, v: DataView, at: number): HttpEventRecord {
  const flags = rd.flags(v, at);
  const grpc = rd.kind(v, at) === HttpEventKind.grpcCall;
  return {
    kind: grpc ? 'grpc' : 'http',
    pid: rd.pid(v, at),
    tid: rd.tid(v, at),
    goid: rd.goid(v, at),
    startNs: rd.startNs(v, at),
    endNs: rd.endNs(v, at),
    status: rd.status(v, at),
    statusImplicit: (flags & (HttpFlag.implicitOk | HttpFlag.noStatus)) !== 0 || ((flags & HttpFlag.hijacked) !== 0 && rd.status(v, at) === 101),
    hijacked: (flags & HttpFlag.hijacked) !== 0,
    method: grpc ? 'POST' : cached(methods, b, at, F.method, rd.methodLen(v, at)),
    path: cached(paths, b, at, F.path, rd.pathLen(v, at)),
    pathCut: (flags & HttpFlag.pathCut) !== 0,
    route: cached(routes, b, at, F.route, rd.routeLen(v, at)),
    protoMajor: rd.protoMajor(v, at),
    protoMinor: rd.protoMinor(v, at),
    requestBytes: rd.requestBytes(v, at),
    responseBytes: rd.responseBytes(v, at),
    unreadable: (flags & HttpFlag.unreadable) !== 0,
    traceParent: flags & HttpFlag.traceparent ? parseTraceparent(text(b, at, F.traceparent, HTTP_TRACEPARENT_LEN)) : null,
    layoutId: rd.layoutId(v, at),
    durationNs: 0,
    wallMs: 0,
    routeLabel: '',
    parked: null,
    sched: null,
  };
}

export function forEachHttpEvent(batch: Buffer, visit: (v: DataView, at: number) => void): number {
  return forEachRecord(httpEventLayout, batch, visit);
}
