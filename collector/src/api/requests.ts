// Server requests (net/http, grpc-go): single requests with their goroutine's parks, and RED figures per route.
import type { FastifyPluginAsync } from 'fastify';
import type { ApiContext } from './context.ts';
import { requestProtocols } from '../protocol/records.ts';
import type { RequestQuery, RequestSummaryQuery } from '../store/request-reader.ts';
import { errorResponses, pageOf, paging, processFilter, querystring, requestItem, requestRouteItem, timeRange } from './schemas.ts';

const requestFilter = {
  ...processFilter,
  since: { ...timeRange.since, description: 'Unix ms; only requests that started at or after this time.' },
  until: { ...timeRange.until, description: 'Unix ms; only requests that started at or before this time.' },
  route: { type: 'string', maxLength: 256, description: 'The ServeMux pattern ("GET /items/{id}") or gRPC method; "" for unmatched requests.' },
  method: { type: 'string', minLength: 1, maxLength: 16 },
  protocol: { type: 'string', enum: [...requestProtocols] },
  status: { type: 'integer', minimum: 0, maximum: 999, description: 'HTTP status code, or gRPC status code.' },
  errors: { type: 'boolean', description: 'true: only server errors (5xx, gRPC server faults); false: only the others.' },
  minDurationNs: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
  goid: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'The goroutine that served it.' },
};

export const requestRoutes: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  app.get<{ Querystring: RequestQuery }>('/requests', {
    schema: {
      summary: 'Server requests, newest first, with the serving goroutine\'s parks inside each', tags: ['requests'],
      querystring: querystring({ ...requestFilter, ...paging }),
      response: { 200: pageOf(requestItem), ...errorResponses },
    },
  }, async (req) => ctx.requests.list(req.query));

  app.get<{ Querystring: RequestSummaryQuery }>('/requests/summary', {
    schema: {
      summary: 'RED per process and route: rate, errors, duration percentiles, time parked', tags: ['requests'],
      querystring: querystring({ ...requestFilter, limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 } }),
      response: {
        200: {
          type: 'object',
          required: ['from', 'to', 'items'],
          properties: {
            from: { type: ['number', 'null'], description: 'Unix ms: the start of the range the rates are over.' },
            to: { type: ['number', 'null'] },
            items: { type: 'array', items: requestRouteItem },
          },
        },
        ...errorResponses,
      },
    },
  }, async (req) => ctx.requests.summary(req.query));
};
