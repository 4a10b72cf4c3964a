// One source of truth per record: bpf/*.h. The addon reports what the C compiler made of each struct
// (offsetof/sizeof, compiled from the same headers as the BPF programs); the TypeScript decoders must agree.
import t from 'tap';
import { existsSync } from 'node:fs';
import { loadAddon } from '../../agent/src/bpf/bridge.ts';
import { goroutineEventLayout, runtimeLayoutLayout } from '../../agent/src/events/goroutine-event.ts';
import {
  TCP_EVENT_KINDS,
  TCP_FLAG_FIN_ACKED,
  TCP_FLAG_FIN_RECEIVED,
  TcpEventKind,
  tcpEventLayout,
  tcpProcessLayoutLayout,
  TcpRole,
  TcpStat,
} from '../../agent/src/events/tcp-event.ts';
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

t.test('C and TypeScript number the TCP enums alike', { skip: built ? false : 'the native bridge is not built (scripts/setup.sh)' }, async (t) => {
  const c = loadAddon().enums();
  const k = TcpEventKind;
  t.same(
    c.tcp_event_kind,
    {
      TCP_EVENT_STATE: k.state,
      TCP_EVENT_CONNECT: k.connect,
      TCP_EVENT_ACCEPT: k.accept,
      TCP_EVENT_RETRANSMIT: k.retransmit,
      TCP_EVENT_RESET_SENT: k.resetSent,
      TCP_EVENT_RESET_RECV: k.resetReceived,
      TCP_EVENT_CLOSE: k.close,
      TCP_EVENT_KINDS,
    },
    'enum tcp_event_kind',
  );
  t.same(c.tcp_role, { TCP_ROLE_UNKNOWN: TcpRole.unknown, TCP_ROLE_CLIENT: TcpRole.client, TCP_ROLE_SERVER: TcpRole.server, TCP_ROLE_LISTENER: TcpRole.listener }, 'enum tcp_role');
  t.same(
    c.tcp_stat,
    {
      TCP_STAT_CLOSE_UNOWNED: TcpStat.closeUnowned,
      TCP_STAT_GOID_UNREAD: TcpStat.goidUnread,
      TCP_STAT_ACCEPT_UNRESOLVED: TcpStat.acceptUnresolved,
      TCP_STAT_RETRANSMIT_UNSAMPLED: TcpStat.retransmitUnsampled,
      TCP_STAT_KINDS: Object.keys(TcpStat).length,
    },
    'enum tcp_stat, and a name in TypeScript for every counter',
  );
  t.same(c.tcp_flag, { TCP_FLAG_FIN_RECEIVED, TCP_FLAG_FIN_ACKED }, 'TCP_FLAG_*');
});
