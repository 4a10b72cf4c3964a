// Liveness and readiness, open (config.auth) so kubelet probes need no token.
import type { FastifyPluginAsync } from 'fastify';
import type { ApiContext } from './context.ts';

const status = { type: 'object', required: ['status'], properties: { status: { type: 'string' }, reason: { type: 'string' } } };

export const healthRoutes: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  app.get('/healthz', { schema: { summary: 'Liveness', tags: ['health'], response: { 200: status } }, config: { auth: 'open' } }, async () => ({ status: 'ok' }));

  app.get('/readyz', {
    schema: { summary: 'Readiness: the database answers and the collector is not shutting down', tags: ['health'], response: { 200: status, 503: status } },
    config: { auth: 'open' },
  }, async (_req, reply) => {
    if (ctx.isShuttingDown()) return reply.code(503).send({ status: 'unavailable', reason: 'shutting down' });
    try {
      ctx.db.prepare('SELECT 1').get();
    } catch (err) {
      return reply.code(503).send({ status: 'unavailable', reason: `database: ${(err as Error).message}` });
    }
    return { status: 'ok' };
  });
};
