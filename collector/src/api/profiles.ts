// pprof profiles per process, pod or node over a time range, merged across processes: goroutines by stack (each
// process's latest profile in the range), or waits by stack (every block window overlapping the range).
import type { FastifyPluginAsync } from 'fastify';
import { encodePprof, mergeSamples, PERIOD, SAMPLE_TYPES } from '../protocol/pprof.ts';
import { profileKinds } from '../protocol/records.ts';
import type { ProfileQuery } from '../store/reader.ts';
import type { ApiContext } from './context.ts';
import { errorResponses, processFilter, querystring, timeRange } from './schemas.ts';

interface Query extends Omit<ProfileQuery, 'kind'> {
  format: 'pprof' | 'json';
}

const frame = { type: 'object', properties: { function: { type: 'string' }, file: { type: 'string' }, line: { type: 'integer' } } };

const profileJson = {
  type: 'object',
  required: ['kind', 'processes', 'sampleTypes', 'samples'],
  properties: {
    kind: { type: 'string', enum: [...profileKinds] },
    processes: { type: 'integer', description: 'Processes whose samples were merged.' },
    from: { type: ['number', 'null'] },
    to: { type: ['number', 'null'] },
    sampleTypes: { type: 'array', items: { type: 'object', properties: { type: { type: 'string' }, unit: { type: 'string' } } } },
    samples: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          frames: { type: 'array', items: frame, description: 'Innermost first.' },
          values: { type: 'array', items: { type: 'number' } },
          labels: { type: 'object', additionalProperties: { type: 'string' } },
        },
      },
    },
  },
};

export const profileRoutes: FastifyPluginAsync<ApiContext> = async (app, ctx) => {
  app.get<{ Params: { kind: 'goroutine' | 'block' }; Querystring: Query }>('/profiles/:kind', {
    schema: {
      summary: 'A pprof profile of the processes named, merged: goroutines or waits (off-CPU) by stack',
      description:
        'goroutine: each process\'s latest goroutine profile in the range, merged (a population). block: contentions and delay of every wait ' +
        'in the windows that overlap the range, every wait reason, merged. format=pprof (default) is the gzipped protobuf go tool pprof reads; ' +
        'json the same samples as data.',
      tags: ['profiles'],
      params: { type: 'object', required: ['kind'], properties: { kind: { type: 'string', enum: [...profileKinds] } } },
      querystring: querystring({
        ...processFilter,
        pod: { type: 'string', minLength: 1, maxLength: 253, description: 'Pod name.' },
        namespace: { type: 'string', minLength: 1, maxLength: 253, description: 'Pod namespace.' },
        ...timeRange,
        format: { type: 'string', enum: ['pprof', 'json'], default: 'pprof' },
      }),
      produces: ['application/octet-stream', 'application/json'],
      response: { 200: { description: 'The profile: gzipped protobuf (format=pprof) or JSON (format=json).', ...profileJson }, ...errorResponses },
    },
  }, async (req, reply) => {
    const { format, ...filter } = req.query;
    const kind = req.params.kind;
    const r = ctx.reader.profileSamples({ ...filter, kind });
    const samples = mergeSamples(r.samples);
    if (format === 'json') return { kind, processes: r.processes, from: r.from, to: r.to, sampleTypes: SAMPLE_TYPES[kind], samples };
    const body = encodePprof({
      kind,
      sampleTypes: SAMPLE_TYPES[kind],
      period: PERIOD[kind],
      startMs: r.from ?? Date.now(),
      durationMs: r.from !== null && r.to !== null ? r.to - r.from : 0,
      samples,
      comments: [`goroscope collector: ${kind} profile of ${r.processes} processes merged`],
    });
    return reply
      .type('application/octet-stream')
      .header('content-disposition', `attachment; filename="${kind}.pb.gz"`)
      .send(body); // a Buffer goes out as it is, not through the JSON serializer
  });
};
