// What bpf/goroutines.bpf.c's records mean for one process: lifecycle records (create, park, ready, exit) go to
// its goroutine table, scheduler records (run, yield, syscall) to its scheduler table. The tracer only routes a
// batch's records to their process, so this is tested with synthetic batches as well as with the kernel's.
import { ev, GoroutineEventKind } from '../events/goroutine-event.ts';
import type { SchedTable } from '../sched/sched-table.ts';
import type { GoroutineTable } from './goroutine-table.ts';

/** One process's model of its goroutines. */
export interface GoroutineModel {
  table: GoroutineTable;
  sched: SchedTable;
}

/** Applies one record (a view of its batch, at its offset); false for a kind this agent does not know. */
export function applyGoroutineRecord(m: GoroutineModel, kind: number, v: DataView, at: number): boolean {
  const t = m.table;
  switch (kind) {
    case GoroutineEventKind.create:
      t.onCreate(ev.goid(v, at), ev.otherGoid(v, at), ev.pc(v, at), ev.startPc(v, at), ev.tsNs(v, at), ev.gAddr(v, at));
      return true;
    case GoroutineEventKind.park:
      t.onPark(ev.goid(v, at), ev.waitReason(v, at), ev.tsNs(v, at), ev.gAddr(v, at));
      return true;
    case GoroutineEventKind.ready:
      t.onReady(ev.goid(v, at), ev.otherGoid(v, at), ev.tsNs(v, at));
      return true;
    case GoroutineEventKind.exit: {
      const goid = ev.goid(v, at);
      t.onExit(goid, ev.tsNs(v, at));
      m.sched.onExit(goid);
      return true;
    }
    case GoroutineEventKind.run: {
      const goid = ev.goid(v, at);
      m.sched.onRun(goid, ev.tid(v, at), ev.pId(v, at), ev.cause(v, at), ev.durationNs(v, at), t.gopcOf(goid));
      return true;
    }
    case GoroutineEventKind.yield:
      m.sched.onYield(ev.goid(v, at), ev.cause(v, at));
      return true;
    case GoroutineEventKind.syscall:
      m.sched.onSyscall(ev.goid(v, at), ev.durationNs(v, at));
      return true;
    default:
      return false;
  }
}
