// WebSocket endpoints as fastify routes. An upgrade request goes through fastify's router like any other request,
// so what holds for every route (the auth hook, the error format, 404s) holds for the WebSocket endpoints too;
// the route's handler either hands the socket to its WebSocket server or answers over HTTP, and such an answer
// closes the socket.
import { ServerResponse, STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { ConnectionLimits } from '../ingest/limits.ts';
import type { IngestEndpoint } from '../ingest/ws-ingest.ts';
import { parseStreamQuery, type StreamEndpoint } from '../stream/ws-stream.ts';

const kUpgrade = Symbol('goroscope.upgrade');

export interface Upgrade {
  socket: Duplex;
  head: Buffer;
}

type UpgradeRequest = IncomingMessage & { [kUpgrade]?: Upgrade };

/** Routes the server's upgrade requests through the app, as requests whose reply is written to their socket. */
export function routeUpgrades(app: FastifyInstance): void {
  app.server.on('upgrade', (req: UpgradeRequest, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    req[kUpgrade] = { socket, head };
    const res = new ServerResponse(req);
    res.assignSocket(socket as Socket);
    res.shouldKeepAlive = false;
    // Answered over HTTP rather than upgraded: nothing more will come on this socket.
    res.once('finish', () => socket.end());
    app.routing(req, res);
  });
}

/** The upgrade a request asks for; undefined for a plain HTTP request. */
export function upgradeOf(req: FastifyRequest): Upgrade | undefined {
  return (req.raw as UpgradeRequest)[kUpgrade];
}

export interface WebSocketRoutesOptions {
  ingest: IngestEndpoint;
  ingestLimits: ConnectionLimits;
  stream: StreamEndpoint;
  streamLimits: ConnectionLimits;
  isShuttingDown(): boolean;
}

/** /ingest (agents, the ingest token) and /stream (live records, the API token); a plain GET gets a hint. */
export const webSocketRoutes: FastifyPluginAsync<WebSocketRoutesOptions> = async (app, o) => {
  const hidden = { hide: true, response: { 426: { $ref: 'Error#' } } };
  const refuse = (reply: FastifyReply, statusCode: number, message: string) =>
    reply.code(statusCode).send({ statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message });
  /** What every WebSocket route checks before its own: a plain GET, or a collector on its way out. */
  const upgradeOrAnswer = (req: FastifyRequest, reply: FastifyReply): Upgrade | undefined => {
    const up = upgradeOf(req);
    if (!up) refuse(reply.header('upgrade', 'websocket'), 426, 'this endpoint is a WebSocket');
    else if (o.isShuttingDown()) refuse(reply, 503, 'collector shutting down');
    else return up;
    return undefined;
  };

  app.get('/ingest', { schema: hidden, config: { auth: 'ingest' } }, async (req, reply) => {
    const up = upgradeOrAnswer(req, reply);
    if (!up) return reply;
    const refused = o.ingestLimits.admit(up.socket);
    if (refused) return refuse(reply, refused.status, refused.message);
    reply.hijack();
    o.ingest.wss.handleUpgrade(req.raw, up.socket, up.head, (ws) => o.ingest.accept(ws, req.raw, up.socket));
  });

  app.get('/stream', { schema: hidden }, async (req, reply) => {
    const up = upgradeOrAnswer(req, reply);
    if (!up) return reply;
    const filter = parseStreamQuery(new URL(req.url, 'http://collector').searchParams);
    if (typeof filter === 'string') return refuse(reply, 400, filter);
    const refused = o.streamLimits.admit(up.socket);
    if (refused) return refuse(reply, refused.status, refused.message);
    reply.hijack();
    o.stream.wss.handleUpgrade(req.raw, up.socket, up.head, (ws) => o.stream.accept(ws, filter));
  });
};
