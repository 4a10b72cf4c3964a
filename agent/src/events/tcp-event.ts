// The TCP records of bpf/tcp.bpf.c, read by the layout generated from the object's BTF (tcp.bpf.ts), and what
// user space makes of them: addresses, states, errno names.
import { tcpEventLayout, tcpProcessLayoutLayout } from './tcp.bpf.ts';
import { encode, forEachRecord, readers } from './layout.ts';

export {
  TCP_EVENT_KINDS,
  TCP_FLAG_FIN_ACKED,
  TCP_FLAG_FIN_RECEIVED,
  TcpEventKind,
  tcpEventLayout,
  TcpFlag,
  tcpProcessLayoutLayout,
  TcpRole,
  TcpStat,
} from './tcp.bpf.ts';

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

export const AF_INET = 2;
export const AF_INET6 = 10;

const F = tcpEventLayout.fields;

/** Walks a batch of records by stride, no object per record; the visitor reads fields through `tcpEv`. */
export function forEachTcpEvent(batch: Buffer, visit: (v: DataView, at: number) => void): number {
  return forEachRecord(tcpEventLayout, batch, visit);
}

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

/** Field readers of struct tcp_event, and what the agent makes of the addresses, comm and socket. */
export const tcpEv = {
  ...readers(tcpEventLayout),
  /** The struct sock address's low 48 bits: unique for canonical kernel addresses, and exact as a number. */
  skKey: (v: DataView, at: number): number =>
    v.getUint32(at + F.skaddr.offset, true) + (v.getUint32(at + F.skaddr.offset + 4, true) & 0xffff) * 0x1_0000_0000,
  saddr: (v: DataView, at: number): string => formatAddress(v, at + F.saddr.offset, v.getUint16(at + F.family.offset, true)),
  daddr: (v: DataView, at: number): string => formatAddress(v, at + F.daddr.offset, v.getUint16(at + F.family.offset, true)),
  comm: (v: DataView, at: number): string => cstr(v, at + F.comm.offset, F.comm.size),
};

/** Encodes struct tcp_process_layout for the tcp_process_layouts map. */
export function encodeTcpProcessLayout(tlsGOffset: number, goidOffset: number): Buffer {
  return encode(tcpProcessLayoutLayout, { tls_g_offset: tlsGOffset, g_goid: goidOffset });
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
