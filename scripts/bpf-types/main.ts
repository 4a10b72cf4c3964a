// `npm run gen:bpf`: writes agent/src/events/NAME.bpf.ts for every bpf/.output/NAME.bpf.o that exports types
// (run `make -C bpf` first). `--check` writes nothing and exits 1 when a file is not what the objects say.
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateModule } from './generate.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
export const objectDir = join(root, 'bpf', '.output');
export const generatedDir = join(root, 'agent', 'src', 'events');

/** Each agent object (bench objects are not the agent's) and the module generated from it. */
export function generatedModules(): Array<{ object: string; file: string; text: string }> {
  const objects = readdirSync(objectDir).filter((f) => f.endsWith('.bpf.o')).sort();
  if (!objects.length) throw new Error(`no BPF objects in ${objectDir}: run make -C bpf`);
  return objects
    .map((o) => ({ object: join(objectDir, o), file: join(generatedDir, o.replace(/\.o$/, '.ts')), text: generateModule(join(objectDir, o)) }))
    .filter((m) => m.text.includes('export const'));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const check = process.argv.includes('--check');
  let stale = 0;
  for (const m of generatedModules()) {
    const now = existsSync(m.file) ? readFileSync(m.file, 'utf8') : undefined;
    if (now === m.text) continue;
    if (check) {
      stale++;
      console.error(`${m.file} is not what ${m.object} says: run npm run gen:bpf`);
    } else {
      writeFileSync(m.file, m.text);
      console.log(`wrote ${m.file}`);
    }
  }
  process.exitCode = stale ? 1 : 0;
}
