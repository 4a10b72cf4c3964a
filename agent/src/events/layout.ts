// Reading and writing the structs the BPF objects share with the agent, by the layouts generated from the objects'
// BTF (NAME.bpf.ts, scripts/bpf-types). Records are walked by stride with a DataView and read field by field,
// with no object per record.

export interface FieldLayout {
  offset: number;
  size: number;
  /** u8..u64, s8..s64, char, ptr, "enum x", "struct x", or an array of one: "u8[16]". */
  type: string;
}
export interface StructLayout {
  name: string;
  size: number;
  fields: Record<string, FieldLayout>;
}

type Camel<S extends string> = S extends `${infer H}_${infer T}` ? `${H}${Capitalize<Camel<T>>}` : S;
/** The integer fields of a struct: those a reader or an encoder takes. */
type IntegerField<L extends StructLayout> = {
  [K in keyof L['fields']]: L['fields'][K]['type'] extends `${'u' | 's'}${8 | 16 | 32 | 64}` | 'ptr' ? K : never;
}[keyof L['fields']] & string;

export type Reader = (v: DataView, at: number) => number;
/** One reader per integer field, named in camelCase (goid, otherGoid, tsNs). */
export type Readers<L extends StructLayout> = { [K in IntegerField<L> as Camel<K>]: Reader };

const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** 64-bit fields are read as numbers: goids, PCs, times and byte counts stay below 2^53. */
function reader(f: FieldLayout): Reader | undefined {
  const o = f.offset;
  switch (f.type) {
    case 'u8': return (v, at) => v.getUint8(at + o);
    case 's8': return (v, at) => v.getInt8(at + o);
    case 'u16': return (v, at) => v.getUint16(at + o, true);
    case 's16': return (v, at) => v.getInt16(at + o, true);
    case 'u32': return (v, at) => v.getUint32(at + o, true);
    case 's32': return (v, at) => v.getInt32(at + o, true);
    case 'u64': case 'ptr': return (v, at) => v.getUint32(at + o, true) + v.getUint32(at + o + 4, true) * 0x1_0000_0000;
    case 's64': return (v, at) => v.getUint32(at + o, true) + v.getInt32(at + o + 4, true) * 0x1_0000_0000;
    default: return undefined;
  }
}

/** Readers of every integer field of a struct, made once per layout. */
export function readers<L extends StructLayout>(layout: L): Readers<L> {
  const out: Record<string, Reader> = {};
  for (const [name, f] of Object.entries(layout.fields)) {
    const r = reader(f);
    if (r) out[camel(name)] = r;
  }
  return out as Readers<L>;
}

/** A struct's bytes with the integer fields given (the rest zero), e.g. a BPF map's value. */
export function encode<L extends StructLayout>(layout: L, values: Partial<Record<IntegerField<L>, number | bigint>>): Buffer {
  const b = Buffer.alloc(layout.size);
  for (const [name, value] of Object.entries(values) as Array<[string, number | bigint | undefined]>) {
    const f = layout.fields[name];
    if (value === undefined) continue;
    if (!f) throw new Error(`struct ${layout.name} has no field ${name}`);
    const signed = f.type.startsWith('s');
    switch (f.size) {
      case 1: signed ? b.writeInt8(Number(value), f.offset) : b.writeUInt8(Number(value), f.offset); break;
      case 2: signed ? b.writeInt16LE(Number(value), f.offset) : b.writeUInt16LE(Number(value), f.offset); break;
      case 4: signed ? b.writeInt32LE(Number(value), f.offset) : b.writeUInt32LE(Number(value), f.offset); break;
      case 8: signed ? b.writeBigInt64LE(BigInt(value), f.offset) : b.writeBigUInt64LE(BigInt(value), f.offset); break;
      default: throw new Error(`struct ${layout.name}: ${name} (${f.type}) is not an integer`);
    }
  }
  return b;
}

/** Walks a batch of records by stride; returns how many there were. */
export function forEachRecord(layout: StructLayout, batch: Buffer, visit: (v: DataView, at: number) => void): number {
  const v = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const size = layout.size;
  const n = Math.floor(batch.byteLength / size);
  for (let i = 0, at = 0; i < n; i++, at += size) visit(v, at);
  return n;
}
