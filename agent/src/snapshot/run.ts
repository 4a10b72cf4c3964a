// `goroscope snapshot`: attach, observe for the duration, detach, print.
import { GoroutineTracer, openTarget } from '../tracer/goroutine-tracer.ts';
import { buildSnapshot, formatSnapshot } from './snapshot.ts';

export interface SnapshotCommand {
  pid: number;
  duration: number;
  json?: boolean;
  system?: boolean;
}

export async function runSnapshot(cmd: SnapshotCommand): Promise<void> {
  // Check the pid before loading anything into the kernel: a wrong pid gets its own clear message.
  const target = openTarget(cmd.pid);
  const tracer = new GoroutineTracer();
  const stop = () => {
    // Detach at once on Ctrl-C or SIGTERM; the kernel would also clean up if we were killed.
    void tracer.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    tracer.start();
    const proc = tracer.attach(cmd.pid, { target });
    await new Promise((r) => setTimeout(r, cmd.duration));
    await tracer.drain();
    const snap = buildSnapshot(proc, { system: cmd.system, lost: tracer.lostTotal() });
    process.stdout.write(cmd.json ? `${JSON.stringify(snap)}\n` : `${formatSnapshot(snap)}\n`);
  } finally {
    await tracer.close();
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
