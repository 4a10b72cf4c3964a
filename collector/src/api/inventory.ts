// Nodes (agents) and the processes they trace.
import type { FastifyPluginAsync } from 'fastify';
import type { ApiContext } from './context.ts';
import { errorResponses, nodeItem, pageOf, paging, processFilter, processItem, querystring } from './schemas.ts';

export const inventoryRoutes: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  app.get('/nodes', {
    schema: {
      summary: 'Agents that have connected, one per node', tags: ['inventory'],
      querystring: querystring({}),
      response: { 200: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: nodeItem } } }, ...errorResponses },
    },
  }, async () => {
    const connected = ctx.connectedAgents();
    return { items: ctx.reader.nodes().map((n) => ({ ...n, connected: connected.has(n.agentId) })) };
  });

  app.get<{ Querystring: { node?: string; pid?: number; limit: number; cursor?: string } }>('/processes', {
    schema: {
      summary: 'Traced processes, newest first', tags: ['inventory'],
      querystring: querystring({ ...processFilter, ...paging }),
      response: { 200: pageOf(processItem), ...errorResponses },
    },
  }, async (req) => ctx.reader.processes(req.query));
};
