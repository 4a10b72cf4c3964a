// TCP connections and observation windows.
import type { FastifyPluginAsync } from 'fastify';
import type { ApiContext } from './context.ts';
import type { ConnectionQuery } from '../store/reader.ts';
import { connectionItem, errorResponses, pageOf, paging, processFilter, querystring, timeRange, windowItem } from './schemas.ts';

export const connectionRoutes: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  app.get<{ Querystring: ConnectionQuery }>('/connections', {
    schema: {
      summary: 'TCP connections, newest first', tags: ['connections'],
      querystring: querystring({
        ...processFilter,
        ...timeRange,
        ...paging,
        peer: { type: 'string', minLength: 1, maxLength: 72, description: 'Peer address, or address:port ([v6]:port).' },
        state: { type: 'string', minLength: 1, maxLength: 32 },
        errorsOnly: { type: 'boolean', description: 'Only connections with an error or a reset.' },
      }),
      response: { 200: pageOf(connectionItem), ...errorResponses },
    },
  }, async (req) => ctx.reader.connections(req.query));

  app.get<{ Querystring: { node?: string; pid?: number; since?: number; until?: number; limit: number; cursor?: string } }>('/windows', {
    schema: {
      summary: 'Observation windows: when probes were attached and what they counted', tags: ['windows'],
      querystring: querystring({ ...processFilter, ...timeRange, ...paging }),
      response: { 200: pageOf(windowItem), ...errorResponses },
    },
  }, async (req) => ctx.reader.windows(req.query));
};
