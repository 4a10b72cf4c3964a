// Child process of the stacks benchmark (scripts/bench/stacks.ts): a fresh Node process that reads every
// goroutine's stack of <pid> once, as `goroscope dump` does (read, walk, symbolize, format), and prints one
// RESULT line: how long it took, what it read, and the process's peak memory.
import { formatDump, openStackTarget, takeDump } from '../../agent/src/stacks/dump.ts';

const pid = Number(process.argv[2]);
if (!Number.isInteger(pid) || pid <= 0) throw new Error('usage: stacks-child.mjs <pid>');
const before = process.memoryUsage();
const t0 = performance.now();
const target = openStackTarget(pid);
const t1 = performance.now();
const d = takeDump(target, { args: true });
const t2 = performance.now();
const text = formatDump(d);
const t3 = performance.now();
const states: Record<string, number> = {};
for (const g of d.goroutines) states[g.stackState] = (states[g.stackState] ?? 0) + 1;
const after = process.memoryUsage();
process.stdout.write(
  `RESULT ${JSON.stringify({
    openMs: t1 - t0,
    readMs: t2 - t1,
    formatMs: t3 - t2,
    goroutines: d.goroutines.length,
    states,
    bytesRead: d.summary.bytesRead,
    reads: d.summary.reads,
    retried: d.summary.retried,
    textBytes: text.length,
    maxRssKb: process.resourceUsage().maxRSS,
    rssBefore: before.rss,
    heapUsedAfter: after.heapUsed,
  })}\n`,
);
