// The TCP tracer as a part of a command (the agent, a snapshot): one that cannot start is said in one line and
// left out (agent/src/health/parts.ts).
import type { Parts } from '../health/parts.ts';
import { describeAttachMode, TcpTracer, type TcpTracerOptions } from './tcp-tracer.ts';

/** The TCP tracer as a part (off with --no-tcp), saying which programs it runs (BTF or classic tracepoints, raw or
 * per-syscall hooks) in the log, /metrics and the snapshot. */
export function startTcp(parts: Parts, on: boolean, opts: TcpTracerOptions): TcpTracer | undefined {
  if (!on) {
    parts.off('tcp', '--no-tcp');
    return undefined;
  }
  const tcp = parts.start('tcp', () => {
    const t = new TcpTracer(opts);
    try {
      t.start();
    } catch (e) {
      void t.close();
      throw e;
    }
    return t;
  });
  if (tcp) parts.up('tcp', describeAttachMode(tcp.attachMode));
  return tcp;
}
