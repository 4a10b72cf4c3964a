/* SPDX-License-Identifier: Apache-2.0 */
/* Records and numbering of bpf/tcp.bpf.c: the one source. The agent's TypeScript for them
 * (agent/src/events/tcp.bpf.ts) is generated from the compiled object's BTF by scripts/bpf-types
 * (`npm run gen:bpf`). */
#ifndef GOROSCOPE_TCP_H
#define GOROSCOPE_TCP_H

enum tcp_event_kind {
	TCP_EVENT_STATE = 1,       /* sock:inet_sock_set_state: SYN_SENT->ESTABLISHED (client) and ->LISTEN */
	TCP_EVENT_CONNECT = 2,     /* CLOSE->SYN_SENT in connect(2)'s context: binds the socket to pid/tid/goid;
				    * also a connect(2) that failed before any SYN (error set, skaddr of the socket) */
	TCP_EVENT_ACCEPT = 3,      /* accept/accept4(2) returned a TCP socket, in the caller's context */
	TCP_EVENT_RETRANSMIT = 4,  /* tcp:tcp_retransmit_skb */
	TCP_EVENT_RESET_SENT = 5,  /* tcp:tcp_send_reset (skaddr 0: a reset for no socket, e.g. a closed port) */
	TCP_EVENT_RESET_RECEIVED = 6, /* tcp:tcp_receive_reset */
	TCP_EVENT_CLOSE = 7,       /* the socket reached TCP_CLOSE: totals read from the socket */
};

/* Indexes of the tcp_stats counters: what the BPF side saw besides records and drops. */
enum tcp_stat {
	TCP_STAT_CLOSE_UNOWNED = 0,        /* a socket closed whose owner we never bound (preexisting, never accepted...) */
	TCP_STAT_GOID_UNREAD = 1,          /* a Go process's goroutine could not be read (TLS or g not readable) */
	TCP_STAT_ACCEPT_UNRESOLVED = 2,    /* accept returned an fd we could not resolve to a TCP sock */
	TCP_STAT_RETRANSMIT_UNSAMPLED = 3, /* a retransmit left out by retransmit_keep (its total stays exact at close) */
};

enum tcp_limits {
	TCP_EVENT_KINDS = 8, /* room in drop_counts, indexed by enum tcp_event_kind */
	TCP_STAT_KINDS = 4,  /* entries of tcp_stats, indexed by enum tcp_stat */
};

enum tcp_role {
	TCP_ROLE_UNKNOWN = 0,
	TCP_ROLE_CLIENT = 1,
	TCP_ROLE_SERVER = 2,
	TCP_ROLE_LISTENER = 3,
};

/* One record per event; fixed size (136 bytes) so user space walks a batch by stride. */
struct tcp_event {
	__u64 ts_ns;         /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 skaddr;        /* the kernel's struct sock address: the connection's identity while it lives */
	__u64 goid;          /* the goroutine that called connect/accept/listen, 0 if unknown or not Go */
	__u64 bytes_acked;   /* tcp_sock.bytes_acked: sequence space acknowledged (payload, plus 1 for an acked SYN
			      * of an active open and 1 for an acked FIN), as ss -i shows it */
	__u64 bytes_received;/* tcp_sock.bytes_received: payload received, plus 1 for a FIN (flags & TCP_FLAG_FIN_RECEIVED) */
	__u64 bytes_sent;    /* tcp_sock.bytes_sent - bytes_retrans: payload transmitted (a segment a local qdisc
			      * dropped counts twice: prefer bytes_acked less SYN and FIN) */
	__u64 bound_ns;      /* CLOSE/STATE/RETRANSMIT/RESET: when the owner was bound (connect, accept, listen); 0 unknown */
	__u32 pid;           /* owning process (tgid); 0 when the event ran outside process context and no owner is known */
	__u32 tid;           /* the thread that called connect/accept/listen */
	__u32 srtt_us;       /* smoothed RTT, microseconds (tcp_sock.srtt_us >> 3) */
	__u32 total_retrans; /* tcp_sock.total_retrans */
	__u8 saddr[16];      /* IPv4 in the first 4 bytes (network order) */
	__u8 daddr[16];
	__u16 sport;         /* host byte order */
	__u16 dport;
	__u16 family;        /* AF_INET or AF_INET6 */
	__u8 kind;           /* enum tcp_event_kind */
	__u8 old_state;      /* TCP_* states as the kernel numbers them */
	__u8 new_state;
	__u8 role;           /* enum tcp_role */
	__u16 error;         /* CLOSE: sk->sk_err (ECONNREFUSED, ETIMEDOUT, ECONNRESET...); CONNECT: -ret of connect(2) */
	char comm[16];       /* the owner's comm */
	__u32 flags;         /* enum tcp_flag */
};

enum tcp_flag {
	TCP_FLAG_FIN_RECEIVED = 1, /* the peer's FIN arrived (SOCK_DONE): bytes_received counts it */
	TCP_FLAG_FIN_ACKED = 2,    /* our FIN was acknowledged: bytes_acked counts it */
};

/* Per Go process: where the g pointer sits in TLS and where goid sits in the g. */
struct tcp_process_layout {
	__s32 tls_g_offset;  /* g is at fsbase + tls_g_offset (-8 usually; other values in some external links) */
	__u32 g_goid;
};

#endif
