// A reader of BTF, the BPF Type Format (kernel docs: Documentation/bpf/btf.rst): the types clang -target bpf
// wrote into an object's .BTF section, which is what the programs really read and write. Only what the
// TypeScript generator needs: integers, pointers, arrays, structs, unions, enums, typedefs, qualifiers, variables
// and data sections; the other kinds are read past.
import { ElfFile } from '../../agent/src/gobinary/elf.ts';

export type BtfType =
  | { kind: 'void' }
  | { kind: 'int'; name: string; size: number; signed: boolean; bits: number }
  | { kind: 'ptr'; type: number }
  | { kind: 'array'; type: number; count: number }
  | { kind: 'struct' | 'union'; name: string; size: number; members: BtfMember[] }
  | { kind: 'enum'; name: string; size: number; signed: boolean; values: Array<{ name: string; value: number }> }
  | { kind: 'fwd' | 'float' | 'func' | 'func_proto' | 'decl_tag'; name: string }
  | { kind: 'typedef' | 'volatile' | 'const' | 'restrict' | 'type_tag'; name: string; type: number }
  | { kind: 'var'; name: string; type: number }
  | { kind: 'datasec'; name: string; vars: Array<{ type: number; offset: number; size: number }> };

export interface BtfMember {
  name: string;
  type: number;
  /** Offset from the struct's start, in bits. */
  bitOffset: number;
  /** Width of a bitfield; 0 for an ordinary member. */
  bitSize: number;
}

const KIND = [
  'void', 'int', 'ptr', 'array', 'struct', 'union', 'enum', 'fwd', 'typedef', 'volatile', 'const', 'restrict',
  'func', 'func_proto', 'var', 'datasec', 'float', 'decl_tag', 'type_tag', 'enum64',
] as const;

export class Btf {
  /** Indexed by type id; id 0 is void. */
  readonly types: BtfType[] = [{ kind: 'void' }];

  constructor(readonly data: Buffer) {
    if (data.length < 24 || data.readUInt16LE(0) !== 0xeb9f) throw new Error('not little-endian BTF (magic 0xeB9F)');
    const hdrLen = data.readUInt32LE(4);
    const typeOff = hdrLen + data.readUInt32LE(8);
    const typeEnd = typeOff + data.readUInt32LE(12);
    const strOff = hdrLen + data.readUInt32LE(16);
    const str = (off: number) => {
      const start = strOff + off;
      return data.toString('latin1', start, data.indexOf(0, start));
    };
    for (let at = typeOff; at < typeEnd; ) {
      const name = str(data.readUInt32LE(at));
      const info = data.readUInt32LE(at + 4);
      const sizeOrType = data.readUInt32LE(at + 8);
      const vlen = info & 0xffff;
      const kindFlag = info >>> 31 === 1;
      const kind = KIND[(info >>> 24) & 0x1f];
      at += 12;
      switch (kind) {
        case 'int': {
          const enc = data.readUInt32LE(at);
          this.types.push({ kind, name, size: sizeOrType, signed: ((enc >>> 24) & 1) === 1, bits: enc & 0xff });
          at += 4;
          break;
        }
        case 'ptr':
          this.types.push({ kind, type: sizeOrType });
          break;
        case 'array':
          this.types.push({ kind, type: data.readUInt32LE(at), count: data.readUInt32LE(at + 8) });
          at += 12;
          break;
        case 'struct':
        case 'union': {
          const members: BtfMember[] = [];
          for (let i = 0; i < vlen; i++, at += 12) {
            const off = data.readUInt32LE(at + 8);
            members.push({
              name: str(data.readUInt32LE(at)),
              type: data.readUInt32LE(at + 4),
              bitOffset: kindFlag ? off & 0xffffff : off,
              bitSize: kindFlag ? off >>> 24 : 0,
            });
          }
          this.types.push({ kind, name, size: sizeOrType, members });
          break;
        }
        case 'enum': {
          const values = [];
          for (let i = 0; i < vlen; i++, at += 8) {
            values.push({ name: str(data.readUInt32LE(at)), value: kindFlag ? data.readInt32LE(at + 4) : data.readUInt32LE(at + 4) });
          }
          this.types.push({ kind, name, size: sizeOrType, signed: kindFlag, values });
          break;
        }
        case 'enum64': {
          const values = [];
          for (let i = 0; i < vlen; i++, at += 12) {
            const v = BigInt(data.readUInt32LE(at + 4)) | (BigInt(data.readUInt32LE(at + 8)) << 32n);
            values.push({ name: str(data.readUInt32LE(at)), value: Number(kindFlag ? BigInt.asIntN(64, v) : v) });
          }
          this.types.push({ kind: 'enum', name, size: sizeOrType, signed: kindFlag, values });
          break;
        }
        case 'typedef':
        case 'volatile':
        case 'const':
        case 'restrict':
        case 'type_tag':
          this.types.push({ kind, name, type: sizeOrType });
          break;
        case 'var':
          this.types.push({ kind, name, type: sizeOrType });
          at += 4;
          break;
        case 'datasec': {
          const vars = [];
          for (let i = 0; i < vlen; i++, at += 12) {
            vars.push({ type: data.readUInt32LE(at), offset: data.readUInt32LE(at + 4), size: data.readUInt32LE(at + 8) });
          }
          this.types.push({ kind, name, vars });
          break;
        }
        case 'func_proto':
          this.types.push({ kind, name });
          at += 8 * vlen;
          break;
        case 'decl_tag':
          this.types.push({ kind, name });
          at += 4;
          break;
        case 'fwd':
        case 'func':
        case 'float':
          this.types.push({ kind, name });
          break;
        default:
          throw new Error(`BTF type ${this.types.length}: unknown kind ${(info >>> 24) & 0x1f}`);
      }
    }
  }

  /** The .BTF section of a compiled BPF object. */
  static fromObject(path: string): Btf {
    const elf = ElfFile.open(path);
    const s = elf.section('.BTF');
    if (!s) throw new Error(`${path} has no .BTF section (built without -g?)`);
    return new Btf(elf.sectionData(s));
  }

  type(id: number): BtfType {
    const t = this.types[id];
    if (!t) throw new Error(`no BTF type ${id}`);
    return t;
  }

  /** Past typedefs and qualifiers to the type that has a layout. */
  resolve(id: number): BtfType {
    let t = this.type(id);
    while (t.kind === 'typedef' || t.kind === 'volatile' || t.kind === 'const' || t.kind === 'restrict' || t.kind === 'type_tag') t = this.type(t.type);
    return t;
  }

  /** Bytes a type takes. */
  sizeOf(id: number): number {
    const t = this.resolve(id);
    switch (t.kind) {
      case 'int':
      case 'struct':
      case 'union':
      case 'enum':
        return t.size;
      case 'ptr':
        return 8;
      case 'array':
        return t.count * this.sizeOf(t.type);
      default:
        throw new Error(`BTF: no size for a ${t.kind}`);
    }
  }

  /** Every variable of a data section (e.g. ".rodata"). */
  variables(section: string): Array<{ name: string; type: number }> {
    const sec = this.types.find((t) => t.kind === 'datasec' && t.name === section);
    if (!sec || sec.kind !== 'datasec') return [];
    return sec.vars.map((v) => {
      const t = this.type(v.type);
      if (t.kind !== 'var') throw new Error(`BTF: ${section} holds a ${t.kind}, not a variable`);
      return { name: t.name, type: t.type };
    });
  }
}
