// The sliding-window statistics and the panic-value formatting, on known numbers.
import t from 'tap';
import { SlidingDurations } from '../../agent/src/runtime/pause-stats.ts';
import { formatPanicValue, GoKind } from '../../agent/src/events/runtime-event.ts';

t.test('percentiles over the last samples of the window', async (t) => {
  const s = new SlidingDurations(100, 1e9);
  for (let i = 1; i <= 200; i++) s.add(i, i * 1000); // the window keeps 101..200
  const sum = s.summary(200);
  t.equal(sum.count, 200);
  t.equal(sum.totalNs, (200 * 201 / 2) * 1000);
  t.equal(sum.maxNs, 200_000);
  t.equal(sum.window.samples, 100);
  t.equal(sum.window.p50Ns, 150_000);
  t.equal(sum.window.p90Ns, 190_000);
  t.equal(sum.window.p99Ns, 199_000);
  t.equal(sum.window.maxNs, 200_000);
  const later = s.summary(1e9 + 151); // samples at 101..150 are now older than the window
  t.equal(later.window.samples, 50);
  t.equal(later.window.p50Ns, 175_000);
  t.equal(s.summary(1e12).window.p50Ns, null, 'empty window');
  t.equal(s.summary(1e12).count, 200, 'all-time counts stay');
});

t.test('room grows with the samples: every count keeps the last maxSamples in order', async (t) => {
  const s = new SlidingDurations(100, 1e9);
  for (let n = 1; n <= 250; n++) {
    s.add(n, n);
    const want = Array.from({ length: Math.min(n, 100) }, (_, i) => n - Math.min(n, 100) + 1 + i);
    if (JSON.stringify(s.windowSamples(n)) !== JSON.stringify(want)) return t.fail(`after ${n} samples: ${s.windowSamples(n).join(',')}`);
  }
  t.pass('1..250 samples through rooms of 8, 16, 32, 64 and 100');
});

t.test('panic values of basic kinds print as Go prints them', async (t) => {
  t.equal(formatPanicValue(GoKind.int, 42n), '42');
  t.equal(formatPanicValue(GoKind.int, 0xffff_ffff_ffff_fffen), '-2');
  t.equal(formatPanicValue(GoKind.uint8, 0x1ffn), '255');
  t.equal(formatPanicValue(GoKind.bool, 1n), 'true');
  t.equal(formatPanicValue(GoKind.uint64, 0xffff_ffff_ffff_ffffn), '18446744073709551615');
  t.equal(formatPanicValue(25, 0n), undefined, 'a struct is not formatted');
});
