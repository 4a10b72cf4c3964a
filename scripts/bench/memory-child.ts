// Child process of the memory benchmark (scripts/bench/memory.ts): a fresh Node process whose memory is the
// agent's alone. Attaches a GoroutineTracer to <pid> (every probe; the inventory reads runtime.allgs) and
// prints one JSON line with process.memoryUsage() at each step. Run with --expose-gc.
import { readFileSync } from 'node:fs';
import { GoroutineTracer } from '../../agent/src/tracer/goroutine-tracer.ts';
import { openTarget } from '../../agent/src/tracer/target.ts';

/** Resident bytes by kind of mapping (/proc/self/smaps): where the RSS is. */
function rssByMapping(): Record<string, number> {
  const out: Record<string, number> = {};
  let kind = 'anon';
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      const name = head[1].trim();
      if (!name) kind = 'anon';
      else if (name.startsWith('anon_inode:')) kind = name.slice('anon_inode:'.length);
      else if (name.startsWith('[')) kind = name;
      else if (/\/node$|\/nodejs$/.test(name)) kind = 'node binary';
      else if (/\.so/.test(name)) kind = 'shared libraries';
      else if (/\.node$/.test(name)) kind = 'native addons';
      else kind = 'other files';
      continue;
    }
    const m = /^Rss:\s+(\d+) kB$/.exec(line);
    if (m) out[kind] = (out[kind] ?? 0) + Number(m[1]) * 1024;
  }
  return out;
}

const pid = Number(process.argv[2]);
if (!Number.isInteger(pid) || pid <= 0) throw new Error('usage: memory-child.ts <pid>');
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const settle = async () => {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
  }
};
const mem = () => {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers };
};

await settle();
const node = mem(); // Node and the agent's modules loaded, nothing else
const tracer = new GoroutineTracer();
tracer.start();
await new Promise((r) => setTimeout(r, 300));
await settle();
const idle = mem(); // BPF object loaded, ring buffer mapped, reader thread running, nothing attached
const idleMappings = rssByMapping();

let t = process.hrtime.bigint();
const target = openTarget(pid);
const openMs = Number(process.hrtime.bigint() - t) / 1e6;
await settle();
const opened = mem();

t = process.hrtime.bigint();
const proc = tracer.attach(target); // every probe, then the inventory of allgs
const attachMs = Number(process.hrtime.bigint() - t) / 1e6;
await settle();
const attached = mem();
const inventoried = proc.inventory.preexisting;

// What the table alone costs: the tracer keeps the inventory's list of objects in proc.inventory.
proc.inventory = { ...proc.inventory, goroutines: [] };
await settle();
const tableOnly = mem();

const result = {
  pid,
  tableSize: proc.table.size,
  tableColumnBytes: proc.table.columnBytes(),
  inventoried,
  unreadable: proc.inventory.unreadable,
  dead: proc.inventory.dead,
  probes: proc.links.size,
  openMs,
  attachMs,
  node,
  idle,
  opened,
  attached,
  tableOnly,
  idleMappings,
  attachedMappings: rssByMapping(),
};
process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
await tracer.close();
