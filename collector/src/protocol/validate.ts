// Compiled validators for agent messages, compiled from the one definition (records.ts), with error texts an
// agent author can act on.
import AjvModule, { type ErrorObject, type ValidateFunction } from 'ajv';
import {
  BatchMessage, HelloMessage, MAX_RECORDS_PER_BATCH, PROTOCOL_VERSION, recordKinds, recordSchemas, RowBatchMessage, type AgentRecord,
} from './records.ts';
import { fieldPath, rowLayouts, rowSchema } from './row-layout.ts';
import { rowCount } from './rows.ts';
import { clip, quote } from '../net/text.ts';

// ajv ships CommonJS with a default export; under NodeNext the class sits on .default.
const Ajv = (AjvModule.default ?? AjvModule) as typeof AjvModule.default;

const ajv = new Ajv({ allErrors: false, discriminator: true, allowUnionTypes: true, strict: true, strictRequired: false });
const validateHello = ajv.compile(HelloMessage) as ValidateFunction<HelloMessage>;
// The batch schema's discriminator (oneOf over the record kinds) costs ~4 us a record in ajv's code, 7x the
// record's own validator (scripts/bench/collector-store.ts): the envelope is checked with records as plain objects,
// then each record with its kind's validator, and errors are reported with the same paths and texts.
const validateEnvelope = ajv.compile({
  ...BatchMessage,
  properties: { ...BatchMessage.properties, records: { ...BatchMessage.properties.records, items: { type: 'object', required: ['kind'] } } },
}) as ValidateFunction<BatchMessage>;
const validateRecord = new Map<unknown, ValidateFunction>(recordSchemas.map((schema) => [schema.properties.kind.const, ajv.compile(schema)]));

// Rows (protocol 2): the envelope first, rows as plain arrays, then each row with its kind's tuple schema (derived from
// the record's schema: row-layout.ts), compiled apart: one function for every kind was too big for V8 to optimize
// (4 us a row, against 0.5 us). Tuples with trailing optional fields are what ajv's strictTuples forbids.
const rowsAjv = new Ajv({ allErrors: false, allowUnionTypes: true, strict: true, strictTuples: false, strictRequired: false });
const validateRowEnvelope = rowsAjv.compile({
  ...RowBatchMessage,
  properties: {
    ...RowBatchMessage.properties,
    rows: {
      type: 'object',
      additionalProperties: false,
      properties: Object.fromEntries(rowLayouts.map(({ kind }) => [kind, { type: 'array', maxItems: MAX_RECORDS_PER_BATCH, items: { type: 'array' } }])),
    },
  },
}) as ValidateFunction<RowBatchMessage>;
const validateRow = new Map(rowLayouts.map(({ kind, schema, layout }) => [kind, { layout, validate: rowsAjv.compile(rowSchema(schema, ['kind'])) }]));

/** A row batch's first error, its path named by field ("/rows/goroutine/3/5/1 (goroutine 3: createdBy.file)"). */
function rowErrors(value: unknown): ErrorObject[] | null {
  if (!validateRowEnvelope(value)) return validateRowEnvelope.errors ?? [];
  const rows = (value as RowBatchMessage).rows;
  const n = rowCount(rows);
  if (n > MAX_RECORDS_PER_BATCH) return [{ instancePath: '/rows', schemaPath: '#/maxItems', keyword: 'maxItems', params: {}, message: `must hold at most ${MAX_RECORDS_PER_BATCH} rows in all (${n})` }];
  for (const kind in rows) {
    const { layout, validate } = validateRow.get(kind as AgentRecord['kind'])!;
    const these = rows[kind as AgentRecord['kind']]!;
    for (let i = 0; i < these.length; i++) {
      if (validate(these[i])) continue;
      return (validate.errors ?? []).map((e) => {
        const field = fieldPath(layout, e.instancePath.split('/').slice(1));
        return { ...e, instancePath: `/rows/${kind}/${i}${e.instancePath} (${kind} ${i}${field ? `: ${field}` : ''})` };
      });
    }
  }
  return null;
}

/** The first error of a batch, as ajv reports it over the whole batch schema; null when the batch is valid. */
function batchErrors(value: unknown): ErrorObject[] | null {
  if (!validateEnvelope(value)) return validateEnvelope.errors ?? [];
  const records = (value as BatchMessage).records;
  for (let i = 0; i < records.length; i++) {
    const kind = (records[i] as { kind: unknown }).kind;
    const v = typeof kind === 'string' ? validateRecord.get(kind) : undefined;
    if (!v) return [{ instancePath: `/records/${i}`, schemaPath: '#/discriminator', keyword: 'discriminator', params: {}, message: 'bad kind' }];
    if (!v(records[i])) return (v.errors ?? []).map((e) => ({ ...e, instancePath: `/records/${i}${e.instancePath}` }));
  }
  return null;
}

export function describeAjvError(errors: ErrorObject[] | null | undefined): string {
  const e = errors?.[0];
  if (!e) return 'invalid message';
  const where = clip(e.instancePath || '(message)', 200);
  const p = e.params as Record<string, unknown>;
  if (e.keyword === 'additionalProperties') return `${where}: unknown field '${clip(String(p.additionalProperty))}'`;
  if (e.keyword === 'enum') return `${where}: must be one of ${JSON.stringify(p.allowedValues)}`;
  if (e.keyword === 'const') return `${where}: must be ${JSON.stringify(p.allowedValue)}`;
  if (e.keyword === 'discriminator') return `${where}: 'kind' must be one of ${recordKinds.map((k) => JSON.stringify(k)).join(', ')}`;
  return `${where}: ${e.message ?? e.keyword}`;
}

export type ParsedMessage =
  | { ok: true; message: HelloMessage; kind: 'hello' }
  | { ok: true; message: BatchMessage | RowBatchMessage; kind: 'batch' }
  | { ok: false; error: string; seq: number | null; epoch?: string };

/**
 * A JSON \u escape can name half a surrogate pair, which UTF-8 (SQLite, OTLP's protobuf) cannot hold: such a
 * string is made well-formed here (U+FFFD for the half), so what is stored reads back as it was stored. Raw
 * text cannot carry one (invalid UTF-8 decodes to U+FFFD already), so only messages with such an escape pay.
 */
const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
const wellFormed = (_key: string, v: unknown) =>
  typeof v === 'string' ? (v as string & { toWellFormed(): string }).toWellFormed() : v;

/** JSON.parse, with every string made well-formed (see SURROGATE_ESCAPE): how ingest reads a message. */
function parseJsonText(text: string): unknown {
  // includes() first: a memchr-fast scan (~0.01 ms for a batch of 1000 goroutines), where the regex took ~0.25 ms, a
  // tenth of JSON.parse's own time; few messages hold any \u escape at all.
  return text.includes('\\u') && SURROGATE_ESCAPE.test(text) ? JSON.parse(text, wellFormed) : JSON.parse(text);
}

/** Parse and validate one ingest message; never throws. */
export function parseAgentMessage(text: string): ParsedMessage {
  let value: unknown;
  try {
    value = parseJsonText(text);
  } catch (err) {
    return { ok: false, error: `invalid JSON: ${clip((err as Error).message, 200)}`, seq: null };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, error: 'message must be a JSON object', seq: null };
  }
  const obj = value as Record<string, unknown>;
  const seq = Number.isSafeInteger(obj.seq) && (obj.seq as number) >= 0 ? (obj.seq as number) : null;
  // Echoed with an error so the agent can tell which batch it was, when it is one an agent could have sent.
  const epoch = typeof obj.epoch === 'string' && /^[A-Za-z0-9_-]{0,64}$/.test(obj.epoch) ? obj.epoch : undefined;
  if (obj.type === 'hello') {
    if (validateHello(value)) return { ok: true, message: value, kind: 'hello' };
    if (obj.protocol !== undefined && !(Number.isInteger(obj.protocol) && (obj.protocol as number) >= 1 && (obj.protocol as number) <= PROTOCOL_VERSION)) {
      const speaks = Array.from({ length: PROTOCOL_VERSION }, (_, i) => i + 1).join(', ');
      return { ok: false, error: `unsupported protocol version ${quote(obj.protocol)}; this collector speaks ${speaks}`, seq: null };
    }
    return { ok: false, error: `bad hello: ${describeAjvError(validateHello.errors)}`, seq: null };
  }
  if (obj.type === 'batch' && 'rows' in obj) {
    const errors = rowErrors(value);
    if (errors) return { ok: false, error: `bad batch: ${describeAjvError(errors)}`, seq, epoch };
    return { ok: true, message: value as RowBatchMessage, kind: 'batch' };
  }
  if (obj.type === 'batch') {
    const errors = batchErrors(value);
    if (!errors) return { ok: true, message: value as BatchMessage, kind: 'batch' };
    return { ok: false, error: `bad batch: ${describeAjvError(errors)}`, seq, epoch };
  }
  return { ok: false, error: `unknown message type ${quote(obj.type)}; expected "hello" or "batch"`, seq };
}
