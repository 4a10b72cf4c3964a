/**
 * The runtime's fields and functions the agent reads, in one place: the layout types (layouts.ts), the DWARF
 * reader (dwarf-layout.ts) and the table's generator (scripts/runtime-layouts/main.go, held to these lists by
 * test/gobinary/runtime-fields.test.ts) all take them from here. Dotted names are members of an inner struct.
 */
export const runtimeFields = {
  /** runtime.g; parentGoid (Go 1.21+) and lockedm are optional. */
  g: ['goid', 'parentGoid', 'gopc', 'startpc', 'atomicstatus', 'waitreason', 'waitsince', 'stackguard0', 'stack',
    'stack.lo', 'stack.hi', 'sched', 'sched.sp', 'sched.pc', 'sched.bp', 'sched.g', 'schedlink', 'm', 'labels', 'lockedm'],
  gOptional: ['parentGoid', 'lockedm'],
  m: ['g0', 'curg', 'procid', 'id', 'p', 'preemptoff'],
  /** goidcache..goidcacheend: the ids a P took from sched.goidgen and has not handed out yet. */
  p: ['id', 'status', 'm', 'goidcache', 'goidcacheend'],
  /** runtime._panic (fatalpanic's argument). */
  panic: ['arg', 'link'],
  /** runtime.mstats (the type of runtime.memstats). */
  mstats: ['numgc', 'last_gc_nanotime'],
  /** runtime.workType (runtime.work): pauseStart, the GC pause start before Go 1.22 (null since). */
  work: ['pauseStart'],
  /** runtime.schedt (runtime.sched): goidgen, the last goroutine id handed to a P's cache (batches of 16). */
  sched: ['goidgen'],
  /** The runtime functions probed (their parameters' registers are read from DWARF). */
  functions: ['newproc1', 'gopark', 'goready', 'goexit1', 'ready', 'injectglist',
    'stopTheWorldWithSema', 'startTheWorldWithSema', 'gcMarkTermination', 'throw', 'fatal', 'fatalpanic'],
} as const;
