// What the Go runtime itself reports: leak suspects, stop-the-world pauses, fatal errors.
import type { FastifyPluginAsync } from 'fastify';
import type { ApiContext } from './context.ts';
import type { FatalQuery, GcQuery, LeakQuery, PauseQuery } from '../store/reader.ts';
import { fatalErrorKinds, leakSuspects } from '../protocol/records.ts';
import {
  errorResponses, fatalItem, gcItem, leakItem, pageOf, pauseItem, paging, processFilter, querystring, timeRange,
} from './schemas.ts';

const gcFilter = {
  gc: { type: 'boolean', description: 'true: only GC pauses; false: only other stop-the-world pauses; absent: both.' },
};
const pauseRange = {
  since: { ...timeRange.since, description: 'Unix ms; only pauses that started at or after this time.' },
  until: { ...timeRange.until, description: 'Unix ms; only pauses that started at or before this time.' },
};

export const runtimeRoutes: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  app.get<{ Querystring: LeakQuery }>('/leaks', {
    schema: {
      summary: 'Goroutine leak suspects, fastest growing first', tags: ['runtime'],
      querystring: querystring({
        ...processFilter,
        since: { ...timeRange.since, description: 'Unix ms; only suspects reported at or after this time.' },
        until: { ...timeRange.until, description: 'Unix ms; only suspects first reported at or before this time.' },
        createdBy: { type: 'string', minLength: 1, maxLength: 4096, description: 'Creating (or start) function, or file:line of the go statement.' },
        minCount: { type: 'number', minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Only suspects whose latest count is at least this.' },
        suspect: { type: 'string', enum: [...leakSuspects] },
        limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
      }),
      response: { 200: { type: 'object', required: ['items'], properties: { items: { type: 'array', items: leakItem } } }, ...errorResponses },
    },
  }, async (req) => ({ items: ctx.reader.leaks(req.query) }));

  app.get<{ Querystring: GcQuery }>('/gc', {
    schema: {
      summary: 'Stop-the-world pauses per process: count, GC cycles, p50/p90/p99/max', tags: ['runtime'],
      description: 'One item per process with pauses in the range, newest process first. Percentiles are nearest-rank over every pause in the range.',
      querystring: querystring({ ...processFilter, ...pauseRange, ...gcFilter, ...paging }),
      response: { 200: pageOf(gcItem), ...errorResponses },
    },
  }, async (req) => ctx.reader.gcSummary(req.query));

  app.get<{ Querystring: PauseQuery }>('/gc/pauses', {
    schema: {
      summary: 'Single stop-the-world pauses, newest first', tags: ['runtime'],
      querystring: querystring({
        ...processFilter, ...pauseRange, ...gcFilter, ...paging,
        minDurationNs: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
      }),
      response: { 200: pageOf(pauseItem), ...errorResponses },
    },
  }, async (req) => ctx.reader.pauses(req.query));

  app.get<{ Querystring: FatalQuery }>('/fatal', {
    schema: {
      summary: 'Fatal errors and fatal panics, newest first, with the process they ended', tags: ['runtime'],
      querystring: querystring({
        ...processFilter,
        since: { ...timeRange.since, description: 'Unix ms; only errors at or after this time.' },
        until: { ...timeRange.until, description: 'Unix ms; only errors at or before this time.' },
        errorKind: { type: 'string', enum: [...fatalErrorKinds] },
        ...paging,
      }),
      response: { 200: pageOf(fatalItem), ...errorResponses },
    },
  }, async (req) => ctx.reader.fatalErrors(req.query));
};
