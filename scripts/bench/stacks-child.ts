// Child process of the stacks benchmark (scripts/bench/stacks.ts): a fresh Node process that reads every
// goroutine's stack of <pid> once, as `goroscope dump` does (read, walk, symbolize, format, streamed), and prints one
// RESULT line: how long it took, what it read, and the process's peak memory.
import { openStackTarget, streamDump } from '../../agent/src/stacks/dump.ts';

const pid = Number(process.argv[2]);
if (!Number.isInteger(pid) || pid <= 0) throw new Error('usage: stacks-child.mjs <pid>');
const before = process.memoryUsage();
const t0 = performance.now();
const target = openStackTarget(pid);
const t1 = performance.now();
// As `goroscope dump --pid` does, the text written as it is made (here to nowhere, its size counted).
const d = streamDump(target, () => {});
const t2 = performance.now();
const after = process.memoryUsage();
process.stdout.write(
  `RESULT ${JSON.stringify({
    openMs: t1 - t0,
    readMs: t2 - t1,
    goroutines: d.goroutines,
    states: d.states,
    bytesRead: d.summary.bytesRead,
    reads: d.summary.reads,
    retried: d.summary.retried,
    textBytes: d.bytes,
    maxRssKb: process.resourceUsage().maxRSS,
    rssBefore: before.rss,
    heapUsedAfter: after.heapUsed,
  })}\n`,
);
