// How far the machine's load exceeds its cores, for bounds on waits that need a CPU (the agent's event loop, a
// child's start-up): 1 on a machine with a core free per runnable task, 10 at load 20 on 2 cores. Taken when
// called: a test takes it at its start.
import { availableParallelism, loadavg } from 'node:os';

export function overload(): number {
  return Math.max(1, loadavg()[0] / availableParallelism());
}
