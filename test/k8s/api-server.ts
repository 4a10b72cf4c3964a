// A real HTTP server that speaks the part of the Kubernetes API the agent uses: list and watch of pods across
// namespaces (GET /api/v1/pods), with fieldSelector spec.nodeName=..., resourceVersions, and watch streams of
// JSON lines {type: ADDED|MODIFIED|DELETED|ERROR, object}. Tests change its pods; watchers see the events.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface PodObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace: string; uid: string; resourceVersion?: string; labels?: Record<string, string>; annotations?: Record<string, string>; ownerReferences?: Array<{ apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }> };
  spec: { nodeName?: string; containers: Array<{ name: string; image: string }> };
  status?: { phase?: string; containerStatuses?: Array<{ name: string; containerID?: string; ready: boolean; restartCount: number; image: string; imageID: string }> };
}

interface Watcher {
  res: ServerResponse;
  nodeName: string | null;
}

export interface RequestSeen {
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
}

function nodeOf(fieldSelector: string | null): string | null {
  if (!fieldSelector) return null;
  const m = /^spec\.nodeName=(.*)$/.exec(fieldSelector);
  if (!m) throw new Error(`unsupported fieldSelector ${fieldSelector}`);
  return m[1];
}

export class KubeApiServer {
  readonly requests: RequestSeen[] = [];
  private readonly pods = new Map<string, PodObject>();
  private readonly watchers = new Set<Watcher>();
  private rv = 100;
  private server: Server | null = null;
  /** Answer the next n list requests with this status (to test retries). */
  failLists = 0;
  url = '';

  async start(): Promise<string> {
    this.server = createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  get resourceVersion(): string {
    return String(this.rv);
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const u = new URL(req.url ?? '/', 'http://x');
    this.requests.push({ method: req.method ?? '', path: u.pathname, query: u.searchParams, authorization: req.headers.authorization });
    if (req.method !== 'GET' || u.pathname !== '/api/v1/pods') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'NotFound', code: 404 }));
      return;
    }
    let nodeName: string | null;
    try {
      nodeName = nodeOf(u.searchParams.get('fieldSelector'));
    } catch (e) {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'BadRequest', message: (e as Error).message, code: 400 }));
      return;
    }
    if (u.searchParams.get('watch') === 'true' || u.searchParams.get('watch') === '1') {
      res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      res.flushHeaders();
      const w: Watcher = { res, nodeName };
      this.watchers.add(w);
      res.on('close', () => this.watchers.delete(w));
      // A resourceVersion older than the list's would be "410 Gone"; the tests only ever resume from current ones.
      return;
    }
    if (this.failLists > 0) {
      this.failLists--;
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'InternalError', code: 500 }));
      return;
    }
    const items = [...this.pods.values()].filter((p) => nodeName === null || p.spec.nodeName === nodeName);
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kind: 'PodList', apiVersion: 'v1', metadata: { resourceVersion: String(this.rv) }, items }));
  }

  private emit(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: PodObject): void {
    for (const w of this.watchers) {
      if (w.nodeName !== null && pod.spec.nodeName !== w.nodeName) continue;
      w.res.write(`${JSON.stringify({ type, object: pod })}\n`);
    }
  }

  private stamp(pod: PodObject): PodObject {
    const p = structuredClone(pod);
    p.apiVersion = 'v1';
    p.kind = 'Pod';
    p.metadata.resourceVersion = String(++this.rv);
    return p;
  }

  add(pod: PodObject): PodObject {
    const p = this.stamp(pod);
    this.pods.set(p.metadata.uid, p);
    this.emit('ADDED', p);
    return p;
  }

  modify(pod: PodObject): PodObject {
    const p = this.stamp(pod);
    this.pods.set(p.metadata.uid, p);
    this.emit('MODIFIED', p);
    return p;
  }

  remove(uid: string): void {
    const old = this.pods.get(uid);
    if (!old) return;
    this.pods.delete(uid);
    this.emit('DELETED', this.stamp(old));
  }

  /** Ends every open watch, as an API server does when a watch times out. */
  closeWatches(): void {
    for (const w of this.watchers) w.res.end();
    this.watchers.clear();
  }

  get openWatches(): number {
    return this.watchers.size;
  }

  async close(): Promise<void> {
    this.closeWatches();
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
