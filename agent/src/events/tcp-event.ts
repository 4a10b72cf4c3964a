// The TCP record as bpf/tcp.h lays it out; test/bpf/layout.test.ts checks it against the C compiler's view.

export const TcpEventKind = { state: 1, connect: 2, accept: 3, retransmit: 4, resetSent: 5, resetReceived: 6, close: 7 } as const;
export const TcpRole = { unknown: 0, client: 1, server: 2, listener: 3 } as const;

export const tcpEventLayout = {
  size: 120,
  fields: {
    ts_ns: { offset: 0, size: 8 },
    skaddr: { offset: 8, size: 8 },
    goid: { offset: 16, size: 8 },
    bytes_acked: { offset: 24, size: 8 },
    bytes_received: { offset: 32, size: 8 },
    pid: { offset: 40, size: 4 },
    tid: { offset: 44, size: 4 },
    srtt_us: { offset: 48, size: 4 },
    total_retrans: { offset: 52, size: 4 },
    saddr: { offset: 56, size: 16 },
    daddr: { offset: 72, size: 16 },
    sport: { offset: 88, size: 2 },
    dport: { offset: 90, size: 2 },
    family: { offset: 92, size: 2 },
    kind: { offset: 94, size: 1 },
    old_state: { offset: 95, size: 1 },
    new_state: { offset: 96, size: 1 },
    role: { offset: 97, size: 1 },
    comm: { offset: 100, size: 16 },
  },
} as const;

export const tcpProcessLayoutLayout = {
  size: 8,
  fields: {
    tls_g_offset: { offset: 0, size: 4 },
    g_goid: { offset: 4, size: 4 },
  },
} as const;
