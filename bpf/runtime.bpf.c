// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Stop-the-world pauses, GC cycle ends and fatal errors of Go processes, from uprobes on the Go runtime
 * (amd64, register ABI: Go 1.17+). A separate object from goroutines.bpf.c, with its own ring buffer.
 *
 * Every program reads registers and user memory only; none writes user memory, and none is a uretprobe
 * (Go moves goroutine stacks). Sites, chosen by agent/src/runtime/runtime-probes.ts:
 *   - runtime.stopTheWorldWithSema: the jump after the stack check. Keeps the start time, the reason and the
 *     goroutine that stops the world, per process, in stw_pending; before Go 1.22 also work.pauseStart, the
 *     start the runtime accounts a GC pause from (taken just before this call).
 *   - runtime.startTheWorldWithSema, Go 1.22+: the jump after the stack check. Its worldStop argument holds
 *     the start the runtime accounts the pause from (PauseNs, /sched/pauses/total/gc:seconds), taken inside
 *     stopTheWorldWithSema after it won sched.lock: the stop probe's own time is earlier by that lock wait,
 *     the probe's traps and the runtime's trace hook, so a pause measured from it came out longer than Go's.
 *   - runtime.startTheWorldWithSema: every RET (RAX = its result, Go's nanotime at the restart, the end the
 *     runtime accounts). Emits the pause with its duration and clears stw_pending.
 *   - runtime.gcMarkTermination: the jump after the stack check; reads memstats.numgc when its address is known.
 *   - runtime.throw, runtime.fatal, runtime.fatalpanic: their entry (they are nosplit: no stack check). These
 *     run once, as the process dies, so they are sleepable and copy the message with bpf_copy_from_user,
 *     which faults in a page of .rodata the process never touched (bpf_probe_read_user would fail on it). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "cookie.h"
#include "runtime.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* What the agent shares with this object (agent/src/events/runtime.bpf.ts). */
BPF_EXPORT(struct runtime_event);
BPF_EXPORT(struct rt_layout);
BPF_EXPORT(struct rt_proc);
BPF_EXPORT(enum runtime_event_kind);
BPF_EXPORT(enum runtime_probe);
BPF_EXPORT(enum runtime_limits);
BPF_EXPORT(enum rt_flag);
BPF_EXPORT(enum rt_layout_reason);
BPF_EXPORT(enum go_abi_reg);

/* Wake the reader only when this much is waiting (it also drains on a timer). Fatal errors always wake it:
 * the process is about to die and the record is what outlives it. */
const volatile __u64 wakeup_bytes = 256 << 10;

EVENTS_MAP(runtime_events, struct runtime_event, 1 << 20); /* resized by the agent before load */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RUNTIME_MAX_LAYOUTS);
	__type(key, __u32);
	__type(value, struct rt_layout);
} rt_layouts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, RUNTIME_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct rt_proc);
} rt_procs SEC(".maps");

/* The stop in progress, per process: at most one at a time (the runtime holds worldsema across it). LRU, so
 * the entry of a process that died mid-pause cannot hold a slot forever. */
struct rt_stw_pending {
	__u64 start_ns;
	__u64 go_start_ns; /* the runtime's own start, from startTheWorldWithSema's argument (Go 1.22+) */
	__u64 goid;
	__u8 reason;
	__u8 pad;
	__u16 reason_len;
	__u32 pad2;
	char reason_text[RUNTIME_REASON_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RUNTIME_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct rt_stw_pending);
} stw_pending SEC(".maps");

/* Hits per (layout, probe). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RUNTIME_MAX_LAYOUTS * RT_PROBE_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} rt_hit_counts SEC(".maps");

/* Records lost, per probe: ring buffer full, stw_pending full, or a restart with no stop seen (attached
 * mid-pause). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, RT_PROBE_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} rt_drop_counts SEC(".maps");

static __always_inline const struct rt_layout *layout_of(__u64 cookie)
{
	__u32 id = COOKIE_LAYOUT(cookie);
	return bpf_map_lookup_elem(&rt_layouts, &id);
}

static __always_inline const struct rt_layout *hit(__u64 cookie, __u32 probe)
{
	const struct rt_layout *l = layout_of(cookie);
	if (l)
		count(&rt_hit_counts, COOKIE_LAYOUT(cookie) * RT_PROBE_KINDS + probe);
	return l;
}

static __always_inline __u64 goid_of(__u64 g, const struct rt_layout *l)
{
	return g ? read_u64(g + l->g_goid) : 0;
}

/* The goroutine the thread runs for the user: g.m.curg (0 when none). */
static __always_inline __u64 curg_goid(__u64 g, const struct rt_layout *l)
{
	__u64 m = read_u64(g + l->g_m);
	if (!m)
		return 0;
	return goid_of(read_u64(m + l->m_curg), l);
}

static __always_inline struct runtime_event *reserve(__u32 probe, __u64 cookie, __u8 kind)
{
	struct runtime_event *e = event_reserve(&runtime_events, &runtime_events_scratch, sizeof(*e));
	if (!e) {
		count(&rt_drop_counts, probe);
		return NULL;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->start_ns = 0;
	e->go_now_ns = 0;
	e->go_start_ns = 0;
	e->goid = 0;
	e->curg_goid = 0;
	e->value = 0;
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->msg_len = 0;
	e->msg_full_len = 0;
	e->kind = kind;
	e->stw_reason = 0;
	e->value_kind = 0;
	e->flags = 0;
	e->layout_id = COOKIE_LAYOUT(cookie);
	e->reason_len = 0;
	return e;
}

static __always_inline void submit(void *ctx, struct runtime_event *e, bool wake, __u32 probe)
{
	if (!event_submit(ctx, &runtime_events, e, sizeof(*e), wake ? 1 : wakeup_bytes))
		count(&rt_drop_counts, probe);
}

/* runtime.stopTheWorldWithSema: (reason stwReason) since Go 1.21, () before, when stopTheWorld(reason string)
 * left the reason in m.preemptoff. It runs on the system stack: R14 is g0, g0.m.curg the goroutine that asked. */
SEC("uprobe")
int stw_stop(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct rt_layout *l = hit(cookie, RT_PROBE_STOP);
	if (!l)
		return 0;
	__u64 g = ctx->r14;
	if (goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct rt_stw_pending p = {};
	p.start_ns = bpf_ktime_get_ns();
	p.goid = curg_goid(g, l);
	if (!p.goid)
		p.goid = goid_of(g, l);
	if (l->flags & RT_LAYOUT_REASON_IN_RAX)
		p.reason = (__u8)ctx->ax;
	if (l->flags & RT_LAYOUT_REASON_PREEMPTOFF) {
		__u64 m = read_u64(g + l->g_m);
		__u64 ptr = read_u64(m + l->m_preemptoff);
		__u64 len = read_u64(m + l->m_preemptoff + 8);
		if (len > RUNTIME_REASON_MAX)
			len = RUNTIME_REASON_MAX;
		if (ptr && len > 0 && bpf_probe_read_user(p.reason_text, len & 63, (const void *)ptr) == 0)
			p.reason_len = len;
	}
	struct rt_proc *proc = bpf_map_lookup_elem(&rt_procs, &pid);
	if (proc && proc->pause_start_addr)
		p.go_start_ns = read_u64(proc->pause_start_addr);
	if (bpf_map_update_elem(&stw_pending, &pid, &p, BPF_ANY))
		count(&rt_drop_counts, RT_PROBE_STOP);
	return 0;
}

/* runtime.startTheWorldWithSema(now int64, w worldStop), Go 1.22+: keeps w.startedStopping (w.start in 1.22),
 * the start the runtime will account this pause from, for the RET that follows. */
SEC("uprobe")
int stw_start(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct rt_layout *l = hit(cookie, RT_PROBE_START);
	if (!l)
		return 0;
	if (goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct rt_stw_pending *p = bpf_map_lookup_elem(&stw_pending, &pid);
	if (p)
		p->go_start_ns = go_arg(ctx, l->start_arg_reg);
	return 0;
}

/* A RET of runtime.startTheWorldWithSema: the world runs again. RAX is its result (Go's nanotime). */
SEC("uprobe")
int stw_start_ret(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct rt_layout *l = hit(cookie, RT_PROBE_START_RET);
	if (!l)
		return 0;
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	struct rt_stw_pending *p = bpf_map_lookup_elem(&stw_pending, &pid);
	if (!p) {
		count(&rt_drop_counts, RT_PROBE_START_RET);
		return 0;
	}
	struct runtime_event *e = reserve(RT_PROBE_START_RET, cookie, RUNTIME_STW);
	if (e) {
		e->start_ns = p->start_ns;
		e->go_start_ns = p->go_start_ns;
		e->go_now_ns = ctx->ax;
		e->goid = p->goid;
		e->curg_goid = p->goid;
		struct rt_proc *proc = bpf_map_lookup_elem(&rt_procs, &pid);
		if (proc && proc->last_gc_addr) {
			e->value = read_u64(proc->last_gc_addr);
			e->flags |= RT_FLAG_LAST_GC;
		}
		e->stw_reason = p->reason;
		e->reason_len = p->reason_len;
		__builtin_memcpy(e->reason, p->reason_text, RUNTIME_REASON_MAX);
		submit(ctx, e, false, RT_PROBE_START_RET);
	}
	bpf_map_delete_elem(&stw_pending, &pid);
	return 0;
}

/* runtime.gcMarkTermination: the world is stopped and this GC cycle ends; memstats.numgc is the number of
 * cycles finished before it (the runtime increments it a little later). */
SEC("uprobe")
int gc_mark_termination(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct rt_layout *l = hit(cookie, RT_PROBE_MARK_TERMINATION);
	if (!l)
		return 0;
	__u64 g = ctx->r14;
	if (goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	struct runtime_event *e = reserve(RT_PROBE_MARK_TERMINATION, cookie, RUNTIME_GC_MARK_TERMINATION);
	if (!e)
		return 0;
	e->goid = goid_of(g, l);
	e->curg_goid = curg_goid(g, l);
	__u32 pid = e->pid;
	struct rt_proc *proc = bpf_map_lookup_elem(&rt_procs, &pid);
	if (proc && proc->numgc_addr) {
		__u32 n = 0;
		if (bpf_probe_read_user(&n, sizeof(n), (const void *)proc->numgc_addr) == 0) {
			e->value = n;
			e->flags |= RT_FLAG_NUMGC;
		}
	}
	submit(ctx, e, false, RT_PROBE_MARK_TERMINATION);
	return 0;
}

/* Copies a Go string's bytes into e->msg (sleepable context: may fault pages in). */
/* Fatal records read the process's memory at the moment it is dying, when a page may well be swapped out:
 * sleepable programs (bpf_copy_from_user) can fault it in. Perf event arrays are not allowed in sleepable
 * programs, so the perf transport (kernels before 5.8, which have no sleepable uprobes anyway) loads the
 * *_nosleep twins instead, which use bpf_probe_read_user. */
static __always_inline long read_user(void *dst, __u32 len, __u64 src, bool sleepable)
{
	if (sleepable)
		return bpf_copy_from_user(dst, len, (const void *)src);
	return bpf_probe_read_user(dst, len, (const void *)src);
}

static __always_inline void copy_msg(struct runtime_event *e, __u64 ptr, __u64 len, bool sleepable)
{
	e->msg_full_len = len > 0xffffffffULL ? 0xffffffffU : (__u32)len;
	if (len > RUNTIME_MSG_MAX - 1)
		len = RUNTIME_MSG_MAX - 1;
	len &= RUNTIME_MSG_MAX - 1;
	if (!ptr || len == 0)
		return;
	if (read_user(e->msg, len, ptr, sleepable) == 0)
		e->msg_len = len;
	else
		e->flags |= RT_FLAG_MSG_UNREADABLE;
}

static __always_inline int fatal_message(struct pt_regs *ctx, __u32 probe, bool sleepable)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct rt_layout *l = hit(cookie, probe);
	if (!l)
		return 0;
	struct runtime_event *e = reserve(probe, cookie, RUNTIME_THROW);
	if (!e)
		return 0;
	__u64 g = ctx->r14;
	e->goid = goid_of(g, l);
	e->curg_goid = curg_goid(g, l);
	e->value = probe;
	copy_msg(e, ctx->ax, ctx->bx, sleepable); /* s string: pointer in RAX, length in RBX */
	submit(ctx, e, true, probe);
	return 0;
}

/* runtime.throw(s string): a runtime-internal fatal error. */
SEC("uprobe.s")
int rt_throw(struct pt_regs *ctx)
{
	return fatal_message(ctx, RT_PROBE_THROW, true);
}

SEC("uprobe")
int rt_throw_nosleep(struct pt_regs *ctx)
{
	return fatal_message(ctx, RT_PROBE_THROW, false);
}

/* runtime.fatal(s string): a fatal error the user's code caused (concurrent map writes, deadlock). */
SEC("uprobe.s")
int rt_fatal(struct pt_regs *ctx)
{
	return fatal_message(ctx, RT_PROBE_FATAL, true);
}

SEC("uprobe")
int rt_fatal_nosleep(struct pt_regs *ctx)
{
	return fatal_message(ctx, RT_PROBE_FATAL, false);
}

#define GO_KIND_MASK 31
#define GO_KIND_STRING 24
#define GO_TYPE_KIND_OFFSET 23 /* runtime._type.kind / internal/abi.Type.Kind_, Go 1.19 to 1.27 */

/* runtime.fatalpanic(msgs *_panic): the panic was not recovered. gopanic's preprintpanics has already turned
 * an error or Stringer value into its string, so a string covers most panics; for other kinds 8 bytes of the
 * value are kept for the agent to format. */
static __always_inline int fatal_panic(struct pt_regs *ctx, bool sleepable)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct rt_layout *l = hit(cookie, RT_PROBE_FATAL_PANIC);
	if (!l)
		return 0;
	struct runtime_event *e = reserve(RT_PROBE_FATAL_PANIC, cookie, RUNTIME_FATAL_PANIC);
	if (!e)
		return 0;
	__u64 g = ctx->r14;
	e->goid = goid_of(g, l);
	e->curg_goid = curg_goid(g, l);
	__u64 msgs = ctx->ax;
	if (msgs) {
		__u64 eface[2] = {};
		if (read_user(eface, sizeof(eface), msgs + l->panic_arg, sleepable) == 0) {
			__u64 typ = eface[0], data = eface[1];
			if (!typ) {
				e->flags |= RT_FLAG_PANIC_NIL;
			} else {
				__u8 kind = 0;
				read_user(&kind, 1, typ + GO_TYPE_KIND_OFFSET, sleepable);
				e->value_kind = kind & GO_KIND_MASK;
				if (e->value_kind == GO_KIND_STRING) {
					__u64 hdr[2] = {};
					if (read_user(hdr, sizeof(hdr), data, sleepable) == 0) {
						e->flags |= RT_FLAG_PANIC_STRING;
						copy_msg(e, hdr[0], hdr[1], sleepable);
					} else {
						e->flags |= RT_FLAG_MSG_UNREADABLE;
					}
				} else if (data) {
					__u64 v = 0;
					read_user(&v, sizeof(v), data, sleepable);
					e->value = v;
				}
			}
		} else {
			e->flags |= RT_FLAG_MSG_UNREADABLE;
		}
	}
	submit(ctx, e, true, RT_PROBE_FATAL_PANIC);
	return 0;
}

SEC("uprobe.s")
int rt_fatalpanic(struct pt_regs *ctx)
{
	return fatal_panic(ctx, true);
}

SEC("uprobe")
int rt_fatalpanic_nosleep(struct pt_regs *ctx)
{
	return fatal_panic(ctx, false);
}
