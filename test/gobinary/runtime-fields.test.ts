// The runtime's fields and functions the agent reads are listed once (agent/src/gobinary/layouts.ts
// runtimeFields); the table's generator is Go and keeps its own copy, held to that list here so they cannot drift.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runtimeFields } from '../../agent/src/gobinary/runtime-fields.ts';
import { repoRoot } from '../lib/go.ts';

const src = readFileSync(join(repoRoot, 'scripts', 'runtime-layouts', 'main.go'), 'utf8');

/** The strings of a Go `var name = []string{...}` or `map[string]bool{"a": true, ...}`. */
function goList(name: string): string[] {
  const m = new RegExp(`var ${name} = (?:\\[\\]string|map\\[string\\]bool)\\{([^}]*)\\}`).exec(src);
  if (!m) throw new Error(`scripts/runtime-layouts/main.go has no var ${name}`);
  return [...m[1].matchAll(/"([^"]+)"/g)].map((x) => x[1]);
}

const pairs: Array<[keyof typeof runtimeFields, string]> = [
  ['g', 'gFields'],
  ['gOptional', 'gOptional'],
  ['m', 'mFields'],
  ['p', 'pFields'],
  ['panic', 'panicFields'],
  ['mstats', 'mstatsFields'],
  ['work', 'workFields'],
  ['sched', 'schedFields'],
  ['functions', 'probeFunctions'],
];
for (const [ours, theirs] of pairs) {
  t.same(goList(theirs), [...runtimeFields[ours]], `runtimeFields.${ours} is the generator's ${theirs}, in its order`);
}
