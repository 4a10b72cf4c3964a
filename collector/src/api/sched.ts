// Scheduler figures: run-queue latency, preemptions, yields, system calls, threads and Ps, per process and by
// goroutine creation site.
import type { FastifyPluginAsync } from 'fastify';
import type { ApiContext } from './context.ts';
import type { SchedQuery } from '../store/sched-reader.ts';
import { errorResponses, processFilter, querystring, schedItem, schedSiteItem, timeRange } from './schemas.ts';

const schedFilter = {
  ...processFilter,
  since: { ...timeRange.since, description: 'Unix ms; reports that end at or after this time (each report counts whole).' },
  until: { ...timeRange.until, description: 'Unix ms; reports that start at or before this time.' },
  limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
};

const itemsOf = (item: unknown) => ({ type: 'object', required: ['items'], properties: { items: { type: 'array', items: item } } });

export const schedRoutes: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  app.get<{ Querystring: SchedQuery }>('/sched', {
    schema: {
      summary: 'What the scheduler did per process: run-queue latency percentiles, preemptions, yields, system calls, threads, Ps',
      description: 'One item per process with scheduler reports in the range, newest process first. Percentiles come from the merged ' +
        'histograms (buckets of ~6%, as the Go runtime\'s own /sched/latencies:seconds): within one bucket of exact.',
      tags: ['sched'],
      querystring: querystring(schedFilter),
      response: { 200: itemsOf(schedItem), ...errorResponses },
    },
  }, async (req) => ({ items: ctx.sched.summary(req.query) }));

  app.get<{ Querystring: SchedQuery }>('/sched/sites', {
    schema: {
      summary: 'Run-queue latency by goroutine creation site (the go statement), most runs first', tags: ['sched'],
      querystring: querystring(schedFilter),
      response: { 200: itemsOf(schedSiteItem), ...errorResponses },
    },
  }, async (req) => ({ items: ctx.sched.sites(req.query) }));
};
