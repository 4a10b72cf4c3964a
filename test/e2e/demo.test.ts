// The README's first command, as a new user on a fresh node runs it: scripts/demo.sh in a private mount namespace
// with tracefs unmounted. It must show goroutines by creation site, TCP connections with their goroutines and
// bytes, and the sample service's leak (a poller per /watch request that nobody stops) as a leak suspect.
import t from 'tap';
import { join } from 'node:path';
import { bpfUnavailable } from '../lib/bpf.ts';
import { run } from '../lib/child.ts';
import { repoRoot } from '../lib/go.ts';

const noBpf = await bpfUnavailable();
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'NODE_OPTIONS' && !/TAP/i.test(k)));

async function runDemo(seconds: number, timeoutMs: number): Promise<{ code: number | null; out: string }> {
  const script = `umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null;
    if grep -q ' tracefs ' /proc/self/mounts; then echo 'tracefs still mounted'; exit 3; fi
    exec bash ${join(repoRoot, 'scripts', 'demo.sh')}`;
  // SIGTERM when it runs over: the demo stops what it started on its way out.
  const r = await run('unshare', ['-m', 'sh', '-c', script], { env: { ...cleanEnv, DEMO_SECONDS: String(seconds) }, mergeStderr: true, timeoutMs, killSignal: 'SIGTERM' });
  return { code: r.code, out: r.stdout };
}

t.test('scripts/demo.sh on a node without tracefs shows goroutines, connections and the leak', { skip: noBpf ?? false, timeout: 240_000 }, async (t) => {
  const { code, out } = await runDemo(40, 200_000);
  t.equal(code, 0, code === 0 ? 'the demo exits 0' : `the demo exits 0:\n${out.slice(-3000)}`);
  const last = out.slice(out.lastIndexOf('== after 40s'));
  t.match(last, /goroutines by creation site[\s\S]*main\.handleWatch sample-service\/main\.go:\d+/, 'goroutines by creation site');
  t.match(last, /TCP connections: \d+ established now/, 'established connections counted');
  t.match(last, /client 127\.0\.0\.1:\d+ +-> 127\.0\.0\.1:\d+ +closed +sent [1-9]\d* recv [1-9]\d* goroutine \d+/, 'a closed connection with its bytes and goroutine');
  t.match(last, /leak suspects: [1-9][\s\S]*goroutines of main\.watch created at main\.handleWatch/, 'the leak is a suspect');
  t.match(last, /agent parts: .*goroutines up, runtime up, tcp up/, 'the parts that matter run without tracefs');
});
