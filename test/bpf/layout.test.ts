// One source per kernel record: the bpf/*.h headers. The agent's layouts and enums (agent/src/events/*.bpf.ts) are
// generated from the compiled objects' BTF (scripts/bpf-types), so they say what clang -target bpf laid out,
// which is what the programs write. Here: the committed files are what the objects say now (a header changed
// without `npm run gen:bpf` fails CI), bpftool's own reading of the same BTF agrees with them, and adding a
// field is one header edit plus the generator's run.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatedDir, generatedModules, objectDir } from '../../scripts/bpf-types/main.ts';
import { Btf } from '../../scripts/bpf-types/btf.ts';
import { exportedTypes, generateModule } from '../../scripts/bpf-types/generate.ts';
import { repoRoot } from '../lib/go.ts';

const built = existsSync(join(objectDir, 'goroutines.bpf.o')) ? false : 'the BPF objects are not built (scripts/setup.sh)';
const which = (cmd: string) => {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd} || ls /usr/sbin/${cmd}`], { encoding: 'utf8' }).trim().split('\n')[0] || undefined;
  } catch {
    return undefined;
  }
};

t.test('the generated TypeScript is what the compiled objects say', { skip: built }, async (t) => {
  const modules = generatedModules();
  t.same(modules.map((m) => m.file.replace(`${generatedDir}/`, '')).sort(), ['goroutines.bpf.ts', 'http.bpf.ts', 'runtime.bpf.ts', 'tcp.bpf.ts'], 'one module per agent object');
  for (const m of modules) {
    const committed = existsSync(m.file) ? readFileSync(m.file, 'utf8') : '(missing)';
    t.equal(committed, m.text, `${m.file.replace(`${repoRoot}/`, '')} is current (else: npm run gen:bpf)`);
  }
  const stray = readdirSync(generatedDir).filter((f) => f.endsWith('.bpf.ts') && !modules.some((m) => m.file.endsWith(`/${f}`)));
  t.same(stray, [], 'no generated module outlives its object');
});

interface BpftoolType { id: number; kind: string; name: string; size?: number; type_id?: number; nr_elems?: number; members?: Array<{ name: string; type_id: number; bits_offset: number }>; values?: Array<{ name: string; val: number }> }

t.test("bpftool reads the objects' BTF as the generated layouts do", { skip: built || (which('bpftool') ? false : 'no bpftool (scripts/setup.sh installs it)') }, async (t) => {
  const bpftool = which('bpftool')!;
  for (const m of generatedModules()) {
    const types = (JSON.parse(execFileSync(bpftool, ['btf', 'dump', 'file', m.object, 'format', 'raw', '-j'], { encoding: 'utf8', maxBuffer: 64 << 20 })) as { types: BpftoolType[] }).types;
    const byId = new Map(types.map((x) => [x.id, x]));
    const sizeOf = (id: number): number => {
      const x = byId.get(id)!;
      if (x.kind === 'ARRAY') return x.nr_elems! * sizeOf(x.type_id!);
      if (x.kind === 'PTR') return 8;
      return x.size ?? sizeOf(x.type_id!); // INT, STRUCT, ENUM have a size; TYPEDEF and qualifiers refer on
    };
    const exported = exportedTypes(Btf.fromObject(m.object));
    t.ok(exported.length > 0, `${m.object}: exports types`);
    for (const e of exported) {
      const theirs = types.find((x) => x.kind === e.kind.toUpperCase() && x.name === e.name);
      if (!t.ok(theirs, `${e.kind} ${e.name} is in bpftool's dump`)) continue;
      if (e.kind === 'enum') {
        t.same(e.values, theirs!.values!.map((v) => [v.name, v.val]), `enum ${e.name}: every value`);
      } else {
        t.equal(e.size, theirs!.size, `struct ${e.name}: size`);
        t.same(
          e.fields.map(([name, f]) => [name, f.offset, f.size]),
          theirs!.members!.map((x) => [x.name, x.bits_offset / 8, sizeOf(x.type_id)]),
          `struct ${e.name}: every field's offset and size`,
        );
      }
    }
    // The generated module holds exactly these, with the same numbers (what the agent imports).
    const mod = (await import(m.file)) as Record<string, unknown>;
    for (const e of exported) {
      if (e.kind === 'enum') for (const [name, value] of e.values) t.equal(mod[name], value, `${name} = ${value} in the module`);
      else t.equal((Object.values(mod).find((x) => (x as { name?: string }).name === e.name) as { size: number } | undefined)?.size, e.size, `struct ${e.name} in the module`);
    }
  }
});

t.test("adding a field to a record is one header edit and the generator's run", { skip: built || (which('clang') ? false : 'no clang (scripts/setup.sh installs it)') }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'goroscope-bpf-types-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const bpf = join(repoRoot, 'bpf');
  for (const f of readdirSync(bpf).filter((f) => f.endsWith('.h') || f.endsWith('.bpf.c'))) copyFileSync(join(bpf, f), join(dir, f));
  const header = join(dir, 'goroutines.h');
  const before = readFileSync(header, 'utf8');
  const edited = before.replace(/(struct goroutine_event \{[^}]*)\};/, '$1\t__u32 added_by_test;\n};');
  t.not(edited, before, 'the edit: a field at the end of struct goroutine_event');
  writeFileSync(header, edited);
  const object = join(dir, 'goroutines.bpf.o');
  execFileSync('clang', ['-g', '-O2', '-Wall', '-Werror', '-target', 'bpf', '-D__TARGET_ARCH_x86', `-I${dir}`, `-I${objectDir}`, '-c', join(dir, 'goroutines.bpf.c'), '-o', object]);
  const text = generateModule(object);
  const committed = readFileSync(join(generatedDir, 'goroutines.bpf.ts'), 'utf8');
  t.not(text, committed, 'the committed module is no longer current: the check above fails until it is regenerated');
  const layout = exportedTypes(Btf.fromObject(object)).find((e) => e.name === 'goroutine_event');
  t.same(layout?.kind === 'struct' && Object.fromEntries(layout.fields)['added_by_test'], { offset: 72, size: 4, type: 'u32' }, 'the new field, where clang put it');
  t.equal(layout?.kind === 'struct' && layout.size, 80, 'the record grew to 80 bytes (8-byte alignment)');
  t.match(text, /added_by_test: \{ offset: 72, size: 4, type: 'u32' \}/, 'and the regenerated module has it');
});
