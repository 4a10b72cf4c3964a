// Bearer tokens: the rule for when the collector may run without them, and the fastify plugin that checks them on
// every route, HTTP and WebSocket alike.
import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/** Compare digests, not tokens, so timingSafeEqual always sees equal lengths. */
export function tokenMatches(expected: string, header: string | undefined): boolean {
  if (header === undefined) return false;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!m) return false;
  const a = createHash('sha256').update(expected).digest();
  const b = createHash('sha256').update(m[1]).digest();
  return timingSafeEqual(a, b);
}

export function isLoopbackHost(host: string | undefined): boolean {
  if (host === undefined) return false; // every interface
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h.startsWith('::ffff:127.');
  return false;
}

export interface AuthConfig { ingestToken?: string; apiToken?: string }

/**
 * Throws unless both tokens are set, or auth is explicitly off on a loopback address. Returns a warning for
 * each endpoint left open (said at every start: an open collector must never be a quiet one).
 */
export function checkAuthConfig(host: string | undefined, cfg: AuthConfig & { noAuth?: boolean }): string[] {
  for (const [name, token] of [['ingest', cfg.ingestToken], ['API', cfg.apiToken]] as const) {
    if (token !== undefined && token.length === 0) throw new Error(`the ${name} token is empty`);
  }
  const missing = [cfg.ingestToken === undefined && 'GOROSCOPE_INGEST_TOKEN', cfg.apiToken === undefined && 'GOROSCOPE_API_TOKEN']
    .filter(Boolean) as string[];
  if (missing.length === 0) return cfg.noAuth ? ['--no-auth has no effect: both tokens are set'] : [];
  if (!cfg.noAuth) {
    throw new Error(`refusing to start without authentication: set ${missing.join(' and ')}, or pass --no-auth on a loopback address`);
  }
  if (!isLoopbackHost(host)) {
    throw new Error(`refusing to start without authentication on non-loopback address '${host ?? '*'}': --no-auth is only allowed on 127.0.0.1, ::1 or localhost; set ${missing.join(' and ')}`);
  }
  const open: string[] = [];
  if (cfg.ingestToken === undefined) open.push('--no-auth: the ingest endpoint takes batches from any process of this machine (no GOROSCOPE_INGEST_TOKEN)');
  if (cfg.apiToken === undefined) open.push('--no-auth: the API, the live stream and /metrics answer any process of this machine (no GOROSCOPE_API_TOKEN)');
  return open;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The token a route needs: the API's (the default), the ingest's, or none (probes, the API description). */
    auth?: 'api' | 'ingest' | 'open';
  }
}

/**
 * Every route needs the token its config names, checked by one onRequest hook. WebSocket endpoints are routes too
 * (api/websocket.ts sends upgrade requests through the router), so the same check guards them.
 */
export const authPlugin = fp<AuthConfig>(async (app, tokens) => {
  app.addHook('onRequest', async (req, reply) => {
    const need = req.routeOptions.config.auth ?? 'api';
    const token = need === 'ingest' ? tokens.ingestToken : need === 'api' ? tokens.apiToken : undefined;
    if (token === undefined || tokenMatches(token, req.headers.authorization)) return;
    return reply.code(401).header('www-authenticate', 'Bearer').send({
      statusCode: 401, error: 'Unauthorized', message: `missing or wrong ${need === 'api' ? 'API' : 'ingest'} token (Authorization: Bearer <token>)`,
    });
  });
}, { name: 'goroscope-auth' });

/** Routes registered in this context from now on answer without a token (the API's documentation pages). */
export function openRoutesOf(app: FastifyInstance): void {
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, auth: 'open' };
  });
}
