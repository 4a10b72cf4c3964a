// One source of truth per record: bpf/*.h. The addon reports what the C compiler made of each struct
// (offsetof/sizeof, compiled from the same headers as the BPF programs); the TypeScript decoders must agree.
import t from 'tap';
import { existsSync } from 'node:fs';
import { loadAddon } from '../../agent/src/bpf/bridge.ts';
import { goroutineEventLayout, runtimeLayoutLayout } from '../../agent/src/events/goroutine-event.ts';
import { tcpEventLayout, tcpProcessLayoutLayout } from '../../agent/src/events/tcp-event.ts';
import { rtLayoutLayout, rtProcLayout, runtimeEventLayout } from '../../agent/src/events/runtime-event.ts';
import { repoRoot } from '../lib/go.ts';

const built = existsSync(`${repoRoot}/agent/native/build/Release/goroscope_bridge.node`);

t.test('C and TypeScript agree on every record layout', { skip: built ? false : 'the native bridge is not built (scripts/setup.sh)' }, async (t) => {
  const c = loadAddon().layouts();
  const ts: Record<string, { size: number; fields: Record<string, { offset: number; size: number }> }> = {
    goroutine_event: goroutineEventLayout,
    runtime_layout: runtimeLayoutLayout,
    tcp_event: tcpEventLayout,
    tcp_process_layout: tcpProcessLayoutLayout,
    runtime_event: runtimeEventLayout,
    rt_layout: rtLayoutLayout,
    rt_proc: rtProcLayout,
  };
  t.same(Object.keys(c).sort(), Object.keys(ts).sort(), 'the same structs on both sides');
  for (const [name, layout] of Object.entries(ts)) {
    t.equal(layout.size, c[name].size, `${name}: size`);
    t.same(layout.fields, c[name].fields, `${name}: every field's offset and size`);
  }
});
