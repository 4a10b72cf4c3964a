// The TCP record and numbering as bpf/tcp.h lays them out; test/bpf/layout.test.ts checks both against the
// C compiler's view.

export const TcpEventKind = { state: 1, connect: 2, accept: 3, retransmit: 4, resetSent: 5, resetReceived: 6, close: 7 } as const;
export const TCP_EVENT_KINDS = 8;
export const TcpRole = { unknown: 0, client: 1, server: 2, listener: 3 } as const;

/** The kernel's TCP states (include/net/tcp_states.h). */
export const TcpState = {
  established: 1,
  synSent: 2,
  synRecv: 3,
  finWait1: 4,
  finWait2: 5,
  timeWait: 6,
  close: 7,
  closeWait: 8,
  lastAck: 9,
  listen: 10,
  closing: 11,
  newSynRecv: 12,
} as const;

export const tcpStateNames: Record<number, string> = {
  1: 'established',
  2: 'syn_sent',
  3: 'syn_recv',
  4: 'fin_wait1',
  5: 'fin_wait2',
  6: 'time_wait',
  7: 'closed',
  8: 'close_wait',
  9: 'last_ack',
  10: 'listen',
  11: 'closing',
  12: 'new_syn_recv',
};

/** tcp_stats indexes (bpf/tcp.h enum tcp_stat). */
export const TcpStat = { closeUnowned: 0, goidUnread: 1, acceptUnresolved: 2, retransmitUnsampled: 3 } as const;

export const AF_INET = 2;
export const AF_INET6 = 10;

export const tcpEventLayout = {
  size: 136,
  fields: {
    ts_ns: { offset: 0, size: 8 },
    skaddr: { offset: 8, size: 8 },
    goid: { offset: 16, size: 8 },
    bytes_acked: { offset: 24, size: 8 },
    bytes_received: { offset: 32, size: 8 },
    bytes_sent: { offset: 40, size: 8 },
    bound_ns: { offset: 48, size: 8 },
    pid: { offset: 56, size: 4 },
    tid: { offset: 60, size: 4 },
    srtt_us: { offset: 64, size: 4 },
    total_retrans: { offset: 68, size: 4 },
    saddr: { offset: 72, size: 16 },
    daddr: { offset: 88, size: 16 },
    sport: { offset: 104, size: 2 },
    dport: { offset: 106, size: 2 },
    family: { offset: 108, size: 2 },
    kind: { offset: 110, size: 1 },
    old_state: { offset: 111, size: 1 },
    new_state: { offset: 112, size: 1 },
    role: { offset: 113, size: 1 },
    error: { offset: 114, size: 2 },
    comm: { offset: 116, size: 16 },
    flags: { offset: 132, size: 4 },
  },
} as const;

/** tcp_event.flags */
export const TCP_FLAG_FIN_RECEIVED = 1;
export const TCP_FLAG_FIN_ACKED = 2;

export const tcpProcessLayoutLayout = {
  size: 8,
  fields: {
    tls_g_offset: { offset: 0, size: 4 },
    g_goid: { offset: 4, size: 4 },
  },
} as const;

const F = tcpEventLayout.fields;
const SIZE = tcpEventLayout.size;

/** Walks a batch of records by stride, no object per record; the visitor reads fields through `tcpEv`. */
export function forEachTcpEvent(batch: Buffer, visit: (v: DataView, at: number) => void): number {
  const v = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const n = Math.floor(batch.byteLength / SIZE);
  for (let i = 0, at = 0; i < n; i++, at += SIZE) visit(v, at);
  return n;
}

const u64 = (v: DataView, at: number): number => v.getUint32(at, true) + v.getUint32(at + 4, true) * 0x1_0000_0000;

/** IPv4 as dotted quad; IPv6 in the compressed form (v4-mapped addresses as ::ffff:a.b.c.d). */
export function formatAddress(v: DataView, at: number, family: number): string {
  if (family === AF_INET) return `${v.getUint8(at)}.${v.getUint8(at + 1)}.${v.getUint8(at + 2)}.${v.getUint8(at + 3)}`;
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push(v.getUint16(at + 2 * i, false));
  if (words[0] === 0 && words[1] === 0 && words[2] === 0 && words[3] === 0 && words[4] === 0 && words[5] === 0xffff) {
    return `::ffff:${words[6] >> 8}.${words[6] & 0xff}.${words[7] >> 8}.${words[7] & 0xff}`;
  }
  return compressV6(words);
}

export function compressV6(words: number[]): string {
  // The longest run of two or more zero words becomes "::" (RFC 5952).
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

function cstr(v: DataView, at: number, len: number): string {
  let s = '';
  for (let i = 0; i < len; i++) {
    const c = v.getUint8(at + i);
    if (c === 0) break;
    s += String.fromCharCode(c);
  }
  return s;
}

export const tcpEv = {
  ts: (v: DataView, at: number): number => u64(v, at + F.ts_ns.offset),
  /** The struct sock address's low 48 bits: unique for canonical kernel addresses, and exact as a number. */
  skKey: (v: DataView, at: number): number =>
    v.getUint32(at + F.skaddr.offset, true) + (v.getUint32(at + F.skaddr.offset + 4, true) & 0xffff) * 0x1_0000_0000,
  goid: (v: DataView, at: number): number => u64(v, at + F.goid.offset),
  bytesAcked: (v: DataView, at: number): number => u64(v, at + F.bytes_acked.offset),
  bytesReceived: (v: DataView, at: number): number => u64(v, at + F.bytes_received.offset),
  bytesSent: (v: DataView, at: number): number => u64(v, at + F.bytes_sent.offset),
  flags: (v: DataView, at: number): number => v.getUint32(at + F.flags.offset, true),
  boundNs: (v: DataView, at: number): number => u64(v, at + F.bound_ns.offset),
  pid: (v: DataView, at: number): number => v.getUint32(at + F.pid.offset, true),
  tid: (v: DataView, at: number): number => v.getUint32(at + F.tid.offset, true),
  srttUs: (v: DataView, at: number): number => v.getUint32(at + F.srtt_us.offset, true),
  totalRetrans: (v: DataView, at: number): number => v.getUint32(at + F.total_retrans.offset, true),
  sport: (v: DataView, at: number): number => v.getUint16(at + F.sport.offset, true),
  dport: (v: DataView, at: number): number => v.getUint16(at + F.dport.offset, true),
  family: (v: DataView, at: number): number => v.getUint16(at + F.family.offset, true),
  saddr: (v: DataView, at: number): string => formatAddress(v, at + F.saddr.offset, v.getUint16(at + F.family.offset, true)),
  daddr: (v: DataView, at: number): string => formatAddress(v, at + F.daddr.offset, v.getUint16(at + F.family.offset, true)),
  kind: (v: DataView, at: number): number => v.getUint8(at + F.kind.offset),
  oldState: (v: DataView, at: number): number => v.getUint8(at + F.old_state.offset),
  newState: (v: DataView, at: number): number => v.getUint8(at + F.new_state.offset),
  role: (v: DataView, at: number): number => v.getUint8(at + F.role.offset),
  error: (v: DataView, at: number): number => v.getUint16(at + F.error.offset, true),
  comm: (v: DataView, at: number): string => cstr(v, at + F.comm.offset, 16),
};

/** Encodes struct tcp_process_layout for the tcp_process_layouts map. */
export function encodeTcpProcessLayout(tlsGOffset: number, goidOffset: number): Buffer {
  const b = Buffer.alloc(tcpProcessLayoutLayout.size);
  b.writeInt32LE(tlsGOffset, tcpProcessLayoutLayout.fields.tls_g_offset.offset);
  b.writeUInt32LE(goidOffset, tcpProcessLayoutLayout.fields.g_goid.offset);
  return b;
}

const errnoNames: Record<number, string> = {
  1: 'EPERM',
  4: 'EINTR',
  11: 'EAGAIN',
  13: 'EACCES',
  22: 'EINVAL',
  32: 'EPIPE',
  97: 'EAFNOSUPPORT',
  98: 'EADDRINUSE',
  99: 'EADDRNOTAVAIL',
  100: 'ENETDOWN',
  101: 'ENETUNREACH',
  103: 'ECONNABORTED',
  104: 'ECONNRESET',
  110: 'ETIMEDOUT',
  111: 'ECONNREFUSED',
  113: 'EHOSTUNREACH',
};

export function errnoName(n: number): string {
  return errnoNames[n] ?? `errno ${n}`;
}
