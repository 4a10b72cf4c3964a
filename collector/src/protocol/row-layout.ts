// The row body of protocol 2, derived from the record schemas (records.ts): a record goes as an array of its fields
// in the schema's order, `kind` left out (rows are grouped by kind), and every closed object inside it (createdBy,
// trace, a long park...) as an array too, so no key is sent per record. A JSON object with repeated keys was a third
// of the collector's main thread (JSON.parse) and half of every batch's bytes.
//
// Rules, from the schema alone: an optional field that is absent goes as null, and an optional field read as null is
// absent (an optional nullable one reads as absent: the collector treats the two alike); trailing nulls of optional
// fields are left off. The encoders and decoders are generated from these layouts (rows.gen.ts, `npm run gen:rows`)
// and the collector validates rows with rowSchema's JSON Schema, compiled once.
import type { TSchema } from '@sinclair/typebox';
import { recordSchemas } from './records.ts';

/** A field of a row; `row` when its value is a closed object (sent as a row), `items` when an array of them. */
export interface RowField {
  name: string;
  optional: boolean;
  nullable: boolean;
  row?: RowLayout;
  items?: RowLayout;
}

export interface RowLayout {
  fields: RowField[];
  /** Fields every row carries: up to the last required one (trailing optional nulls may be left off). */
  minItems: number;
}

type Schema = TSchema & { type?: string | string[]; properties?: Record<string, Schema>; required?: string[]; additionalProperties?: unknown; items?: Schema };

const types = (s: Schema) => (Array.isArray(s.type) ? s.type : s.type === undefined ? [] : [s.type]);
const isClosed = (s: Schema) => types(s).includes('object') && s.additionalProperties === false && s.properties !== undefined;

/** The layout of a closed object schema, `skip` fields left out. */
export function layoutOf(schema: Schema, skip: string[] = []): RowLayout {
  const required = new Set(schema.required ?? []);
  const fields = Object.entries(schema.properties ?? {}).filter(([name]) => !skip.includes(name)).map(([name, s]): RowField => {
    const f: RowField = { name, optional: !required.has(name), nullable: types(s).includes('null') };
    if (isClosed(s)) f.row = layoutOf(s);
    else if (types(s).includes('array') && s.items && isClosed(s.items)) f.items = layoutOf(s.items);
    return f;
  });
  let minItems = 0;
  fields.forEach((f, i) => { if (!f.optional) minItems = i + 1; });
  return { fields, minItems };
}

export type RecordKind = (typeof recordSchemas)[number]['properties']['kind']['const'];

/** Every kind's row layout, in recordSchemas' order (a process before the goroutines of a batch). */
export const rowLayouts: ReadonlyArray<{ kind: RecordKind; schema: Schema; layout: RowLayout }> = recordSchemas.map((schema) => ({
  kind: schema.properties.kind.const as RecordKind,
  schema: schema as Schema,
  layout: layoutOf(schema as Schema, ['kind']),
}));

/** The JSON Schema of a row of this closed object schema: what the collector validates a row with. */
export function rowSchema(schema: Schema, skip: string[] = []): Record<string, unknown> {
  const required = new Set(schema.required ?? []);
  const props = Object.entries(schema.properties ?? {}).filter(([name]) => !skip.includes(name));
  const items = props.map(([name, s]) => {
    let v: Record<string, unknown> = { ...s };
    if (isClosed(s)) v = { ...rowSchema(s), type: types(s).map((t) => (t === 'object' ? 'array' : t)) };
    else if (types(s).includes('array') && s.items && isClosed(s.items)) v = { ...s, items: rowSchema(s.items) };
    if (!required.has(name) && !types(v as Schema).includes('null')) v = allowNull(v);
    return v;
  });
  const { minItems } = layoutOf(schema, skip);
  return { type: 'array', items, minItems, maxItems: items.length };
}

/** The schema, or null (an absent optional field). */
function allowNull(v: Record<string, unknown>): Record<string, unknown> {
  if (typeof v.type === 'string') return { ...v, type: [v.type, 'null'] };
  if (Array.isArray(v.type)) return { ...v, type: [...v.type, 'null'] };
  if (Array.isArray(v.enum)) return { ...v, enum: [...v.enum, null] };
  return { anyOf: [v, { type: 'null' }] };
}

/** A row's field by its path in a row (["3", "0"]: the first field of the object in field 3), for error messages. */
export function fieldPath(layout: RowLayout, path: string[]): string {
  const names: string[] = [];
  let l: RowLayout | undefined = layout;
  for (let i = 0; i < path.length && l; i++) {
    const f: RowField | undefined = l.fields[Number(path[i])];
    if (!f) break;
    names.push(f.name);
    if (f.row) l = f.row;
    else if (f.items && i + 1 < path.length) {
      names.push(path[++i]);
      l = f.items;
    } else l = undefined;
  }
  return names.join('.');
}
