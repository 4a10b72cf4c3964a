// The traced HTTP server of the tests: test/fixtures/httpserver started with `serve`, a goroutine tracer feeding
// its park and ready records to a request tracer (as the agent wires them, agent/src/agent/tracers.ts), and a
// GET with a client-side timeout of its own.
import http from 'node:http';
import type { Child, Teardown } from './child.ts';
import { startGo } from '../runtime/helpers.ts';
import { GoroutineTracer, type TracedProcess } from '../../agent/src/tracer/goroutine-tracer.ts';
import { HttpTracer, type HttpAttachOptions, type HttpProcess } from '../../agent/src/http/http-tracer.ts';
import type { ServerRequest } from '../../agent/src/http/http-tracer.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

/** The fixture's first line once it listens: its HTTP port, and its gRPC address ('none' in a nogrpc build). */
const listening = /^http=127\.0\.0\.1:(\d+) grpc=(127\.0\.0\.1:\d+|none) pid=(\d+)$/m;

/** Starts the httpserver fixture (`serve` and `args`) and waits (30 s at most) until it listens; it ends with the test. */
export async function startHttpServer(bin: string, t: Teardown, args: string[] = []): Promise<{ server: Child; port: number; grpcAddr: string }> {
  const server = startGo(bin, ['serve', ...args], t);
  const m = await server.until(listening, 30_000);
  return { server, port: Number(m[1]), grpcAddr: m[2] };
}

export interface TracedRequests {
  goroutines: GoroutineTracer;
  requests: HttpTracer;
  /** The process in each tracer. */
  proc: TracedProcess;
  req: HttpProcess;
  /** The request probes as the overhead governor takes them (OverheadGovernorOptions.requests). */
  budgeted: { hits: (pid: number) => number; setProbes: (pid: number, on: boolean) => Promise<void> };
}

/**
 * A goroutine tracer whose records feed a request tracer, both started and attached to `pid`, both closed when
 * the test ends (the request tracer first: it reads the goroutine tracer's records).
 */
export function traceRequests(t: Teardown, pid: number, opts: HttpAttachOptions = {}, onRequest?: (p: HttpProcess, r: ServerRequest) => void): TracedRequests {
  const goroutines = new GoroutineTracer();
  const requests = new HttpTracer();
  t.teardown(async () => {
    await requests.close();
    await goroutines.close();
  });
  goroutines.start((p, kind, v, at) => requests.onGoroutineRecord(p.info.pid, kind, v, at));
  requests.start(onRequest);
  const target = openTarget(pid);
  const proc = goroutines.attach(target);
  const req = requests.attach(target, opts);
  const budgeted = { hits: (p: number) => requests.probeHits(p), setProbes: (p: number, on: boolean) => requests.setProbes(p, on) };
  return { goroutines, requests, proc, req, budgeted };
}

/** GET `path` from the server at `port`: its status and the ns the client waited for the whole answer; fails after 10 s. */
export function httpGet(port: number, path: string, agent: http.Agent | false): Promise<{ status: number; ns: number }> {
  return new Promise((resolve, reject) => {
    const from = process.hrtime.bigint();
    const r = http.get({ host: '127.0.0.1', port, path, agent, timeout: 10_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, ns: Number(process.hrtime.bigint() - from) }));
    });
    r.on('error', reject);
    r.on('timeout', () => r.destroy(new Error(`GET ${path}: no answer in 10 s`)));
  });
}
