// Goroutine lists and summaries.
import type { FastifyPluginAsync } from 'fastify';
import type { ApiContext } from './context.ts';
import type { GoroutineQuery } from '../store/reader.ts';
import { goroutineStates } from '../protocol/records.ts';
import { errorResponses, goroutineItem, pageOf, paging, processFilter, querystring, timeRange } from './schemas.ts';

const goroutineFilter = {
  ...processFilter,
  ...timeRange,
  state: { type: 'string', enum: [...goroutineStates] },
  waitReason: { type: 'string', minLength: 1, maxLength: 128, description: 'Runtime wait reason, e.g. "chan receive".' },
  createdBy: { type: 'string', minLength: 1, maxLength: 4096, description: 'Creating function, or file:line of the go statement.' },
  minBlockedNs: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
};

export const goroutineRoutes: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  app.get<{ Querystring: GoroutineQuery }>('/goroutines', {
    schema: {
      summary: 'Goroutines, newest first', tags: ['goroutines'],
      querystring: querystring({ ...goroutineFilter, ...paging }),
      response: { 200: pageOf(goroutineItem), ...errorResponses },
    },
  }, async (req) => ctx.reader.goroutines(req.query));

  app.get<{ Querystring: Omit<GoroutineQuery, 'cursor'> & { by: 'waitReason' | 'createdBy' } }>('/goroutines/summary', {
    schema: {
      summary: 'Goroutine counts and blocked time, grouped by wait reason or creation site', tags: ['goroutines'],
      querystring: {
        ...querystring({
          ...goroutineFilter,
          by: { type: 'string', enum: ['waitReason', 'createdBy'] },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
        }),
        required: ['by'],
      },
      response: {
        200: {
          type: 'object',
          required: ['by', 'groups'],
          properties: {
            by: { type: 'string' },
            groups: {
              type: 'array',
              items: {
                type: 'object',
                properties: {
                  waitReason: { type: ['string', 'null'] },
                  createdBy: {
                    type: ['object', 'null'],
                    properties: { function: { type: 'string' }, file: { type: ['string', 'null'] }, line: { type: ['integer', 'null'] } },
                  },
                  goroutines: { type: 'integer' },
                  live: { type: 'integer', description: 'Goroutines of the group that have not exited.' },
                  blockedNs: { type: 'integer' },
                },
              },
            },
          },
        },
        ...errorResponses,
      },
    },
  }, async (req) => ({ by: req.query.by, groups: ctx.reader.goroutineSummary(req.query) }));
};
