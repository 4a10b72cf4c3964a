// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* TCP connections from tracepoints only (this kernel has neither kprobes nor fentry): lifecycle from
 * sock:inet_sock_set_state, retransmits and resets from tcp:*, and the owner of each socket from the
 * syscalls that run in its owner's context.
 *
 * Two ways in, one logic. Each event has one body (on_*), called from two thin programs:
 *   - *_btf: BTF-typed raw tracepoints (tp_btf/...), found by name through the kernel's BTF: no tracefs,
 *     and no trace record is filled before the program runs (a classic tracepoint copies its fields first).
 *   - *_tp: classic tracepoints (tracepoint/...), for kernels without BTF. Attached by ids from tracefs.
 * The agent loads one set (agent/src/tcp/attach-plan.ts turns the other's autoload off).
 * Syscalls, only when asked for (--tcp-syscall-hooks): any syscall hook puts every syscall of every process on
 * the node on the kernel's slow path (scripts/bench/tcp-attach.ts), so by default none is attached. With them,
 * accept(2)'s owner in any process and connect(2)'s failures before its SYN come from the syscall's exit: the
 * classic per-syscall tracepoints (syscalls:sys_{enter,exit}_*, tracefs ids) or syscalls_exit_btf on the raw
 * sys_exit tracepoint, which keeps connect/accept/accept4 by number.
 *
 * Who owns a socket. State changes often run in softirq or a timer, where the current task is whoever
 * happened to be interrupted, so the owner is bound once, in process context, and kept per struct sock:
 *   - connect: the CLOSE->SYN_SENT change runs inside connect(2) (tcp_v4_connect/tcp_v6_connect) on the
 *     caller's thread: the current task and, for Go, the goroutine in its TLS, are the connecting ones.
 *   - accept: the child socket is created and established in softirq. In traced Go processes, go_accept, a
 *     uprobe in net.(*netFD).accept after accept4(2) returned, on the accepting goroutine, resolves the new fd
 *     to the struct sock through task->files->fdt->fd[fd]->private_data (struct socket)->sk, once per
 *     connection. With the syscall hooks, accept(2)/accept4(2)'s exit does the same in any process.
 *   - listen: the ->LISTEN change runs inside listen(2).
 *   - otherwise (a non-Go server without the syscall hooks): close(2) or shutdown(2) moves the socket to
 *     FIN_WAIT1 or LAST_ACK in the closer's context, which becomes its owner (role unknown); an abortive close
 *     (straight to CLOSE, which may run in softirq) leaves it without one.
 * The owner lives in an LRU hash (bounded) keyed by the struct sock address until the socket reaches
 * TCP_CLOSE, when its totals are read from struct tcp_sock with CO-RE and a CLOSE record carries them.
 *
 * Nothing here writes user memory: the only user reads are the g pointer in TLS, the goid in the g, and the
 * address a failed connect(2) was given. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "tcp.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* What the agent shares with this object (agent/src/events/tcp.bpf.ts). */
BPF_EXPORT(struct tcp_event);
BPF_EXPORT(struct tcp_process_layout);
BPF_EXPORT(enum tcp_event_kind);
BPF_EXPORT(enum tcp_stat);
BPF_EXPORT(enum tcp_role);
BPF_EXPORT(enum tcp_limits);
BPF_EXPORT(enum tcp_flag);

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define EALREADY 114
#define EISCONN 106
#define EINTR 4

/* Wake the reader only when this much is waiting; it also drains on a timer. Set by the agent before load. */
const volatile __u64 wakeup_bytes = 256 << 10;

EVENTS_MAP(tcp_events, struct tcp_event, 4 << 20); /* resized by the agent before load */

/* pid -> where the goroutine is, for Go processes only (written by the agent). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct tcp_process_layout);
} tcp_process_layouts SEC(".maps");

struct tcp_owner {
	__u64 goid;
	__u64 bound_ns;
	__u32 pid;
	__u32 tid;
	__u8 role;
	__u8 pad[7];
	char comm[16];
};

/* struct sock address -> its owner, from connect/accept/listen until TCP_CLOSE. An LRU, so a socket whose
 * close we never see (e.g. it was bound before a restart of the agent) cannot fill it. Resizable before load. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct tcp_owner);
} tcp_owners SEC(".maps");

/* connect(2) in progress, per thread: its fd and address (classic path: from sys_enter_connect; the raw path
 * reads them from the registers at exit) and the socket that went CLOSE->SYN_SENT on this thread, which the
 * call's exit clears. */
struct pending_connect {
	__u64 fd;
	__u64 uaddr; /* the caller's struct sockaddr */
	__u64 syn_sk;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct pending_connect);
} tcp_pending_connect SEC(".maps");

/* Records lost because the ring buffer was full, per enum tcp_event_kind. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_EVENT_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} drop_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, TCP_STAT_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} tcp_stats SEC(".maps");

/* The goroutine running on the current thread of a Go process: g from TLS (fsbase + tls_g_offset), then its
 * goid. In a syscall the thread's g is the goroutine that made it (entersyscall keeps g). */
static __always_inline __u64 current_goid(__u32 pid)
{
	struct tcp_process_layout *l = bpf_map_lookup_elem(&tcp_process_layouts, &pid);
	if (!l || !l->g_goid)
		return 0; /* not a Go process (g_goid 0: unregistered by the agent) */
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 fsbase = BPF_CORE_READ(task, thread.fsbase);
	__u64 goid = 0;
	if (fsbase) {
		__u64 g = read_u64(fsbase + (__s64)l->tls_g_offset);
		if (g)
			goid = read_u64(g + l->g_goid);
	}
	if (!goid)
		count(&tcp_stats, TCP_STAT_GOID_UNREAD);
	return goid;
}

/* The current task as an owner, with its goroutine (goid, read by the caller). */
static __always_inline void current_owner(struct tcp_owner *o, __u8 role, __u64 now, __u64 goid)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	o->pid = pid_tgid >> 32;
	o->tid = (__u32)pid_tgid;
	o->goid = goid;
	o->bound_ns = now;
	o->role = role;
	bpf_get_current_comm(o->comm, sizeof(o->comm));
}

static __always_inline void bind_current(__u64 skaddr, __u8 role, __u64 now)
{
	struct tcp_owner o = {};
	current_owner(&o, role, now, current_goid(bpf_get_current_pid_tgid() >> 32));
	bpf_map_update_elem(&tcp_owners, &skaddr, &o, BPF_ANY);
}

static __always_inline struct tcp_event *reserve(__u8 kind, __u64 skaddr, __u64 now)
{
	struct tcp_event *e = event_reserve(&tcp_events, &tcp_events_scratch, sizeof(*e));
	if (!e) {
		count(&drop_counts, kind);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = now;
	e->kind = kind;
	e->skaddr = skaddr;
	return e;
}

static __always_inline void submit(void *ctx, struct tcp_event *e)
{
	if (!event_submit(ctx, &tcp_events, e, sizeof(*e), wakeup_bytes))
		count(&drop_counts, e->kind);
}

static __always_inline void set_owner(struct tcp_event *e, const struct tcp_owner *o)
{
	e->pid = o->pid;
	e->tid = o->tid;
	e->goid = o->goid;
	e->bound_ns = o->bound_ns;
	e->role = o->role;
	__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
}

/* Owner from the current task (process context only). */
static __always_inline void set_current(struct tcp_event *e, __u8 role)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->goid = current_goid(e->pid);
	e->bound_ns = e->ts_ns;
	e->role = role;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
}

/* Fields of kernel objects. A tp_btf program's pointers are BTF-typed (`typed`): a field is a direct load,
 * which the verifier makes fault-safe, with no helper call. Any other pointer (a classic tracepoint's fields,
 * or one read from memory) is a plain number: a CO-RE probe read. Every caller passes `typed` as a constant
 * and the bodies are inlined, so each program holds one branch only. */
#define KREAD(typed, ptr, field) ((typed) ? (ptr)->field : BPF_CORE_READ(ptr, field))
#define KREAD_INTO(typed, dst, ptr, field)                                                                     \
	do {                                                                                                   \
		if (typed)                                                                                     \
			__builtin_memcpy(dst, &(ptr)->field, sizeof(*(dst)));                                  \
		else                                                                                           \
			BPF_CORE_READ_INTO(dst, ptr, field);                                                   \
	} while (0)

/* The tcp_sock (and inet_sock) of a full TCP socket. A struct sock pointer does not reach past struct sock
 * when typed: bpf_skc_to_tcp_sock gives the typed tcp_sock (NULL for a time-wait or request sock). */
static __always_inline const struct tcp_sock *tcp_of(const struct sock *sk, const bool typed)
{
	return typed ? (const struct tcp_sock *)bpf_skc_to_tcp_sock((void *)sk) : (const struct tcp_sock *)sk;
}

/* Totals at close, from struct tcp_sock. */
static __always_inline void read_totals(struct tcp_event *e, const struct sock *sk, int oldstate, const bool typed)
{
	const struct tcp_sock *tp = tcp_of(sk, typed);
	if (!tp)
		return;
	e->bytes_acked = KREAD(typed, tp, bytes_acked);
	e->bytes_received = KREAD(typed, tp, bytes_received);
	e->bytes_sent = KREAD(typed, tp, bytes_sent) - KREAD(typed, tp, bytes_retrans);
	if (KREAD(typed, sk, __sk_common.skc_flags) & (1UL << SOCK_DONE))
		e->flags |= TCP_FLAG_FIN_RECEIVED;
	/* FIN_WAIT2 means our FIN was acked; from LAST_ACK or CLOSING it was if nothing is left unacked (the FIN
	 * took a sequence number: write_seq counts it). Any other way to CLOSE is an abort before it was acked. */
	if (oldstate == TCP_FIN_WAIT2 ||
	    ((oldstate == TCP_LAST_ACK || oldstate == TCP_CLOSING) && KREAD(typed, tp, snd_una) == KREAD(typed, tp, write_seq)))
		e->flags |= TCP_FLAG_FIN_ACKED;
	e->srtt_us = KREAD(typed, tp, srtt_us) >> 3;
	e->total_retrans = KREAD(typed, tp, total_retrans);
}

static __always_inline __u32 read_srtt_us(const struct sock *sk, const bool typed)
{
	const struct tcp_sock *tp = tcp_of(sk, typed);
	return tp ? KREAD(typed, tp, srtt_us) >> 3 : 0;
}

/* Addresses and ports of a full socket, read as the tracepoints read them: the local port from inet_sport,
 * not skc_num, which a closing socket's port release has zeroed by the time it reaches TCP_CLOSE. */
static __always_inline void read_addrs(struct tcp_event *e, const struct sock *sk, const bool typed)
{
	const struct tcp_sock *tp = tcp_of(sk, typed);
	if (!tp)
		return;
	e->family = KREAD(typed, sk, __sk_common.skc_family);
	e->sport = __builtin_bswap16(KREAD(typed, tp, inet_conn.icsk_inet.inet_sport));
	e->dport = __builtin_bswap16(KREAD(typed, sk, __sk_common.skc_dport));
	if (e->family == AF_INET6) {
		KREAD_INTO(typed, (__u8(*)[16])e->saddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		KREAD_INTO(typed, (__u8(*)[16])e->daddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	} else {
		KREAD_INTO(typed, (__u32 *)e->saddr, tp, inet_conn.icsk_inet.inet_saddr);
		KREAD_INTO(typed, (__u32 *)e->daddr, sk, __sk_common.skc_daddr);
	}
}

/* ---------- sock:inet_sock_set_state: the lifecycle, and the owner bound in connect(2)/listen(2) ---------- */

static __always_inline int on_set_state(void *ctx, const struct sock *sk, int oldstate, int newstate, __u16 protocol,
					const bool typed)
{
	if (protocol != IPPROTO_TCP)
		return 0;
	__u64 skaddr = (__u64)sk;
	__u64 now;
	struct tcp_event *e;
	struct tcp_owner *o;

	if (newstate == TCP_SYN_SENT && oldstate == TCP_CLOSE) {
		/* In connect(2) (or a fast-open sendmsg): process context, the caller is current. */
		now = bpf_ktime_get_ns();
		bind_current(skaddr, TCP_ROLE_CLIENT, now);
		/* Tell this thread's connect(2) exit that its socket sent a SYN (a later close reports it). */
		__u32 tid = (__u32)bpf_get_current_pid_tgid();
		struct pending_connect *pc = bpf_map_lookup_elem(&tcp_pending_connect, &tid);
		if (pc) {
			pc->syn_sk = skaddr;
		} else {
			struct pending_connect fresh = { .syn_sk = skaddr };
			bpf_map_update_elem(&tcp_pending_connect, &tid, &fresh, BPF_ANY);
		}
		e = reserve(TCP_EVENT_CONNECT, skaddr, now);
		if (!e)
			return 0;
		o = bpf_map_lookup_elem(&tcp_owners, &skaddr);
		if (o)
			set_owner(e, o);
		else
			set_current(e, TCP_ROLE_CLIENT);
	} else if (newstate == TCP_LISTEN) {
		/* In listen(2): process context. */
		now = bpf_ktime_get_ns();
		bind_current(skaddr, TCP_ROLE_LISTENER, now);
		e = reserve(TCP_EVENT_STATE, skaddr, now);
		if (!e)
			return 0;
		o = bpf_map_lookup_elem(&tcp_owners, &skaddr);
		if (o)
			set_owner(e, o);
		else
			set_current(e, TCP_ROLE_LISTENER);
	} else if (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_SENT) {
		/* The client's handshake completed (softirq, usually): the owner comes from the map. */
		now = bpf_ktime_get_ns();
		e = reserve(TCP_EVENT_STATE, skaddr, now);
		if (!e)
			return 0;
		o = bpf_map_lookup_elem(&tcp_owners, &skaddr);
		if (o)
			set_owner(e, o);
		e->srtt_us = read_srtt_us(sk, typed);
	} else if (newstate == TCP_CLOSE && oldstate != TCP_CLOSE) {
		now = bpf_ktime_get_ns();
		e = reserve(TCP_EVENT_CLOSE, skaddr, now);
		if (!e) {
			bpf_map_delete_elem(&tcp_owners, &skaddr);
			return 0;
		}
		o = bpf_map_lookup_elem(&tcp_owners, &skaddr);
		if (o)
			set_owner(e, o);
		else
			count(&tcp_stats, TCP_STAT_CLOSE_UNOWNED);
		if (oldstate != TCP_LISTEN)
			read_totals(e, sk, oldstate, typed);
		e->error = (__u16)KREAD(typed, sk, sk_err);
		bpf_map_delete_elem(&tcp_owners, &skaddr);
	} else if ((oldstate == TCP_ESTABLISHED && newstate == TCP_FIN_WAIT1) ||
		   (oldstate == TCP_CLOSE_WAIT && newstate == TCP_LAST_ACK)) {
		/* close(2)/shutdown(2) (tcp_close_state): process context, the closer is current. A socket nobody
		 * bound (accepted by a process the accept probe does not see, without the syscall hooks) takes
		 * the closer as its owner, role unknown, so its close is reported with a pid; no record now. */
		if (!bpf_map_lookup_elem(&tcp_owners, &skaddr))
			bind_current(skaddr, TCP_ROLE_UNKNOWN, bpf_ktime_get_ns());
		return 0;
	} else {
		return 0;
	}
	e->old_state = oldstate;
	e->new_state = newstate;
	read_addrs(e, sk, typed);
	submit(ctx, e);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(inet_sock_set_state_btf, const struct sock *sk, int oldstate, int newstate)
{
	return on_set_state(ctx, sk, oldstate, newstate, sk->sk_protocol, true);
}

SEC("tracepoint/sock/inet_sock_set_state")
int inet_sock_set_state_tp(struct trace_event_raw_inet_sock_set_state *ctx)
{
	return on_set_state(ctx, ctx->skaddr, ctx->oldstate, ctx->newstate, ctx->protocol, false);
}

/* ---------- connect(2) and accept(2)/accept4(2), at the syscall's exit ---------- */

/* fd -> struct sock of the current task, or NULL when the fd is not a socket. */
static __always_inline struct sock *sock_of_fd(__u64 fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt || fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	if (!f)
		return NULL;
	umode_t mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	struct socket *so = BPF_CORE_READ(f, private_data);
	if (!so)
		return NULL;
	return BPF_CORE_READ(so, sk);
}

static __always_inline bool is_tcp(const struct sock *sk)
{
	if (!sk)
		return false;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	return (family == AF_INET || family == AF_INET6) && BPF_CORE_READ(sk, sk_protocol) == IPPROTO_TCP &&
	       BPF_CORE_READ(sk, sk_type) == 1 /* SOCK_STREAM */;
}

/* The address connect(2) was asked for, from the caller's struct sockaddr (the socket has none yet when the
 * call failed before routing): AF_INET port at 2, address at 4; AF_INET6 port at 2, address at 8. */
static __always_inline void read_connect_dest(struct tcp_event *e, __u64 uaddr)
{
	__u8 sa[24] = {};
	if (!uaddr || bpf_probe_read_user(sa, sizeof(sa), (const void *)uaddr))
		return;
	__u16 family = sa[0] | (sa[1] << 8);
	if (family != e->family)
		return;
	e->dport = (sa[2] << 8) | sa[3];
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	if (family == AF_INET6)
		__builtin_memcpy(e->daddr, sa + 8, 16);
	else
		__builtin_memcpy(e->daddr, sa + 4, 4);
}

/* connect(fd, uaddr) returned ret: report a failure that came before any SYN (no route, no local port, bad
 * address...), which no state change will. A SYN sent in the call means the socket's close reports it. */
static __always_inline int on_connect_exit(void *ctx, __u64 fd, __u64 uaddr, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_connect *pc = bpf_map_lookup_elem(&tcp_pending_connect, &tid);
	__u64 syn_sk = pc ? pc->syn_sk : 0;
	if (pc)
		bpf_map_delete_elem(&tcp_pending_connect, &tid);
	if (ret >= 0 || ret == -EINPROGRESS || ret == -EALREADY || ret == -EISCONN || ret == -EINTR)
		return 0;
	struct sock *sk = sock_of_fd(fd);
	if (!is_tcp(sk) || (__u64)sk == syn_sk)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct tcp_event *e = reserve(TCP_EVENT_CONNECT, (__u64)sk, now);
	if (!e)
		return 0;
	set_current(e, TCP_ROLE_CLIENT);
	read_addrs(e, sk, false);
	read_connect_dest(e, uaddr);
	e->error = (__u16)-ret;
	e->old_state = e->new_state = TCP_CLOSE;
	submit(ctx, e);
	return 0;
}

/* An accepted TCP socket now belongs to the current task (and goroutine goid): bound, and reported. */
static __always_inline int on_accepted(void *ctx, const struct sock *sk, __u8 state, __u64 goid)
{
	__u64 skaddr = (__u64)sk;
	__u64 now = bpf_ktime_get_ns();
	struct tcp_owner o = {};
	current_owner(&o, TCP_ROLE_SERVER, now, goid);
	/* A connection reset while it waited in the queue is closed already: nothing to bind. */
	if (state != TCP_CLOSE)
		bpf_map_update_elem(&tcp_owners, &skaddr, &o, BPF_ANY);
	struct tcp_event *e = reserve(TCP_EVENT_ACCEPT, skaddr, now);
	if (!e)
		return 0;
	set_owner(e, &o);
	read_addrs(e, sk, false);
	e->old_state = e->new_state = state;
	e->srtt_us = read_srtt_us(sk, false);
	submit(ctx, e);
	return 0;
}

/* Whether an accepted socket is TCP (unix sockets are accepted too, and left alone). */
static __always_inline bool accepted_tcp(const struct sock *sk)
{
	if (!sk)
		return false;
	__u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return false; /* unix sockets and the like */
	if (!is_tcp(sk)) {
		count(&tcp_stats, TCP_STAT_ACCEPT_UNRESOLVED);
		return false;
	}
	return true;
}

/* accept(2)/accept4(2) returned ret: the fd's socket now belongs to the caller. */
static __always_inline int on_accept_exit(void *ctx, long ret)
{
	if (ret < 0)
		return 0;
	struct sock *sk = sock_of_fd((__u64)ret);
	if (!accepted_tcp(sk))
		return 0;
	return on_accepted(ctx, sk, BPF_CORE_READ(sk, __sk_common.skc_state), current_goid((__u32)(bpf_get_current_pid_tgid() >> 32)));
}

/* Raw syscalls (no tracefs): every syscall's exit on the node comes here; all but three leave at once. The
 * numbers and registers are x86-64's (the Makefile builds for x86 only); a 32-bit task's numbers mean
 * other calls, so those are left alone, as the classic syscall tracepoints do. */
#define NR_CONNECT 42
#define NR_ACCEPT 43
#define NR_ACCEPT4 288
#define TS_COMPAT 0x0002

SEC("tp_btf/sys_exit")
int BPF_PROG(syscalls_exit_btf, struct pt_regs *regs, long ret)
{
	long nr = regs->orig_ax;
	if (nr != NR_CONNECT && nr != NR_ACCEPT && nr != NR_ACCEPT4)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	if (task->thread_info.status & TS_COMPAT)
		return 0;
	if (nr == NR_CONNECT)
		return on_connect_exit(ctx, regs->di, regs->si, ret); /* connect's fd and address, as the call saved them */
	return on_accept_exit(ctx, ret);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int sys_enter_connect_tp(struct trace_event_raw_sys_enter *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_connect pc = { .fd = ctx->args[0], .uaddr = ctx->args[1] };
	bpf_map_update_elem(&tcp_pending_connect, &tid, &pc, BPF_ANY);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int sys_exit_connect_tp(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct pending_connect *pc = bpf_map_lookup_elem(&tcp_pending_connect, &tid);
	if (!pc)
		return 0; /* its enter was before we attached */
	return on_connect_exit(ctx, pc->fd, pc->uaddr, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int sys_exit_accept4_tp(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept_exit(ctx, ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int sys_exit_accept_tp(struct trace_event_raw_sys_exit *ctx)
{
	return on_accept_exit(ctx, ctx->ret);
}

/* ---------- accept's owner in Go processes, without syscall hooks ---------- */

/* Where poll.FD keeps the descriptor: after its fdMutex (state uint64, rsema and wsema uint32), Go 1.19-1.27. */
#define GO_POLL_FD_SYSFD 16

/* net.(*netFD).accept, at its CALL of internal/poll.(*FD).Init (the agent sites it, agent/src/tcp/go-owner.ts;
 * a CALL is emulated: one trap). accept4(2) has returned the new socket and Go registers it with its netpoller
 * on the accepting goroutine: RAX = &netfd.pfd (the call's receiver, amd64's register ABI), R14 = g. Only
 * traced Go processes have this probe; it runs once per accepted connection, and nowhere else (never for
 * files, dials or listens). A socket bound already was bound by accept(2)'s exit (the syscall hooks). */
SEC("uprobe")
int go_accept(struct pt_regs *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct tcp_process_layout *l = bpf_map_lookup_elem(&tcp_process_layouts, &pid);
	if (!l)
		return 0;
	struct sock *sk = sock_of_fd(read_u64(ctx->ax + GO_POLL_FD_SYSFD));
	if (!accepted_tcp(sk))
		return 0;
	__u64 skaddr = (__u64)sk;
	if (bpf_map_lookup_elem(&tcp_owners, &skaddr))
		return 0;
	__u64 goid = l->g_goid ? read_u64(ctx->r14 + l->g_goid) : 0;
	if (!goid)
		count(&tcp_stats, TCP_STAT_GOID_UNREAD);
	return on_accepted(ctx, sk, BPF_CORE_READ(sk, __sk_common.skc_state), goid);
}

/* ---------- retransmits and resets ---------- */

static __always_inline struct tcp_event *reserve_owned(__u8 kind, __u64 skaddr)
{
	struct tcp_event *e = reserve(kind, skaddr, bpf_ktime_get_ns());
	if (!e)
		return NULL;
	if (skaddr) {
		struct tcp_owner *o = bpf_map_lookup_elem(&tcp_owners, &skaddr);
		if (o)
			set_owner(e, o);
	}
	return e;
}

/* Retransmit details kept, out of 2^32 (0xffffffff: all). A lossy link retransmits a lot, and the count per
 * connection is exact anyway (tcp_sock.total_retrans at close): the details can be a sample. Set before load. */
const volatile __u32 retransmit_keep = 0xffffffff;

static __always_inline int on_retransmit(void *ctx, const struct sock *sk, const bool typed)
{
	if (retransmit_keep != 0xffffffff && bpf_get_prandom_u32() >= retransmit_keep) {
		count(&tcp_stats, TCP_STAT_RETRANSMIT_UNSAMPLED);
		return 0;
	}
	struct tcp_event *e = reserve_owned(TCP_EVENT_RETRANSMIT, (__u64)sk);
	if (!e)
		return 0;
	read_addrs(e, sk, typed);
	e->old_state = e->new_state = KREAD(typed, sk, __sk_common.skc_state);
	submit(ctx, e);
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(tcp_retransmit_skb_btf, const struct sock *sk)
{
	return on_retransmit(ctx, sk, true);
}

SEC("tracepoint/tcp/tcp_retransmit_skb")
int tcp_retransmit_skb_tp(struct trace_event_raw_tcp_retransmit_skb *ctx)
{
	return on_retransmit(ctx, ctx->skaddr, false);
}

static __always_inline int on_receive_reset(void *ctx, const struct sock *sk, const bool typed)
{
	struct tcp_event *e = reserve_owned(TCP_EVENT_RESET_RECEIVED, (__u64)sk);
	if (!e)
		return 0;
	if (sk) {
		read_addrs(e, sk, typed);
		e->old_state = e->new_state = KREAD(typed, sk, __sk_common.skc_state);
	}
	submit(ctx, e);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(tcp_receive_reset_btf, const struct sock *sk)
{
	return on_receive_reset(ctx, sk, true);
}

SEC("tracepoint/tcp/tcp_receive_reset")
int tcp_receive_reset_tp(struct trace_event_raw_tcp_event_sk *ctx)
{
	return on_receive_reset(ctx, ctx->skaddr, false);
}

/* A reset answers the packet in skb: its 4-tuple reversed is ours (local = the packet's destination). The
 * TCP header is at skb->data when the reset is sent, the IP header at skb->head + network_header. */
static __always_inline void read_skb_addrs_reversed(struct tcp_event *e, const struct sk_buff *skb)
{
	unsigned char *head = BPF_CORE_READ(skb, head);
	unsigned char *nh = head + BPF_CORE_READ(skb, network_header);
	__u16 ports[2] = {};
	bpf_probe_read_kernel(ports, sizeof(ports), BPF_CORE_READ(skb, data)); /* th->source, th->dest */
	e->sport = __builtin_bswap16(ports[1]);
	e->dport = __builtin_bswap16(ports[0]);
	__u8 version = 0;
	bpf_probe_read_kernel(&version, 1, nh);
	if (version >> 4 == 6) {
		struct ipv6hdr *ip6 = (struct ipv6hdr *)nh;
		e->family = AF_INET6;
		BPF_CORE_READ_INTO(&e->saddr, ip6, daddr);
		BPF_CORE_READ_INTO(&e->daddr, ip6, saddr);
	} else {
		struct iphdr *ip = (struct iphdr *)nh;
		e->family = AF_INET;
		BPF_CORE_READ_INTO((__u32 *)e->saddr, ip, daddr);
		BPF_CORE_READ_INTO((__u32 *)e->daddr, ip, saddr);
	}
}

/* sk may be NULL (a reset for no socket, e.g. a closed port), a time-wait or request sock (not full: no
 * struct inet_sock to read), or a full socket; skb is NULL for an active reset (close with unread data,
 * SO_LINGER 0). The same choice the tracepoint makes for its own fields. */
static __always_inline int on_send_reset(void *ctx, const struct sock *sk, const struct sk_buff *skb, const bool typed)
{
	struct tcp_event *e = reserve_owned(TCP_EVENT_RESET_SENT, (__u64)sk);
	if (!e)
		return 0;
	__u8 state = sk ? KREAD(typed, sk, __sk_common.skc_state) : 0;
	if (sk && state != TCP_TIME_WAIT && state != TCP_NEW_SYN_RECV)
		read_addrs(e, sk, typed);
	else if (skb)
		read_skb_addrs_reversed(e, skb);
	e->old_state = e->new_state = state;
	submit(ctx, e);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(tcp_send_reset_btf, const struct sock *sk, const struct sk_buff *skb)
{
	return on_send_reset(ctx, sk, skb, true);
}

SEC("tracepoint/tcp/tcp_send_reset")
int tcp_send_reset_tp(struct trace_event_raw_tcp_send_reset *ctx)
{
	return on_send_reset(ctx, ctx->skaddr, ctx->skbaddr, false);
}

/* ---------- process exit: a Go process's layout goes with it ---------- */

/* So a reused pid never reads another program's TLS as a g. */
static __always_inline int on_process_exit(void)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	if (pid != (__u32)pid_tgid)
		return 0; /* a thread, not the process */
	bpf_map_delete_elem(&tcp_process_layouts, &pid);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(sched_process_exit_btf)
{
	return on_process_exit();
}

SEC("tracepoint/sched/sched_process_exit")
int sched_process_exit_tp(void *ctx)
{
	return on_process_exit();
}
