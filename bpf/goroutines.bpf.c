// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Goroutine lifecycle from uprobes on the Go runtime (amd64, register ABI: Go 1.17+).
 *
 * Every program reads only registers and a few words of the g; it never writes user memory, so a traced
 * process cannot be harmed. Sites are chosen by the agent (agent/src/gobinary/probe-sites.ts): for
 * gopark/goready/goexit1 the conditional jump after the stack check (the kernel emulates it: one trap),
 * for newproc1 its RET instructions (the new g is in RAX; never a uretprobe on Go code, Go moves stacks). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "cookie.h"
#include "goroutines.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* What the agent shares with this object (agent/src/events/goroutines.bpf.ts). */
BPF_EXPORT(struct goroutine_event);
BPF_EXPORT(struct runtime_layout);
BPF_EXPORT(enum goroutine_event_kind);
BPF_EXPORT(enum goroutine_probe);
BPF_EXPORT(enum goroutine_limits);
BPF_EXPORT(enum probe_cookie);

EVENTS_MAP(goroutine_events, struct goroutine_event, 16 << 20); /* resized by the agent before load */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_RUNTIME_LAYOUTS);
	__type(key, __u32);
	__type(value, struct runtime_layout);
} runtime_layouts SEC(".maps");

/* Hits per (layout, probe): the agent turns them into an overhead estimate. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, MAX_RUNTIME_LAYOUTS * PROBE_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} hit_counts SEC(".maps");

/* Records lost because the ring buffer was full, per probe. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROBE_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} drop_counts SEC(".maps");

/* Sampling of the park/ready class, by goroutine: a goroutine is skipped when hash(goid) < park_sample_skip,
 * so every park and ready of a kept goroutine is seen and its blocked time is whole. 0 (the default) keeps
 * all; keeping a fraction r means skip = (1 - r) * 2^32. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} park_sample_skip SEC(".maps");

static __always_inline bool park_sampled(__u64 goid)
{
	__u32 zero = 0;
	__u32 *skip = bpf_map_lookup_elem(&park_sample_skip, &zero);
	if (!skip || *skip == 0)
		return true;
	return (__u32)((goid * 0x9E3779B97F4A7C15ULL) >> 32) >= *skip;
}

/* Go before 1.21 has no g.parentGoid: newproc1's entry leaves the creator's goid here for the creation
 * record that follows on the same thread (newproc1 and the runqput after it run on the thread's g0). Keyed by
 * pid_tgid (process in the upper half), so the agent can remove a gone process's entries. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} creator_by_thread SEC(".maps");

static __always_inline const struct runtime_layout *layout_of(__u64 cookie)
{
	__u32 id = COOKIE_LAYOUT(cookie);
	return bpf_map_lookup_elem(&runtime_layouts, &id);
}

static __always_inline struct goroutine_event *reserve(__u32 probe)
{
	struct goroutine_event *e = event_reserve(&goroutine_events, &goroutine_events_scratch, sizeof(*e));
	if (!e) {
		count(&drop_counts, probe);
		return NULL;
	}
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->other_goid = 0;
	e->pc = 0;
	e->start_pc = 0;
	e->wait_reason = 0;
	e->reserved = 0;
	e->g_addr = 0;
	return e;
}

/* Never wake the reader: it drains every pollMs on its own, and a wakeup costs more than the probe
 * (../shared/FACTS.md). The ring is sized for what arrives between two drains (4 MiB: 65k records,
 * 6.5M records/s at a 10 ms poll). */
static __always_inline void submit(void *ctx, struct goroutine_event *e, __u32 probe)
{
	if (!event_submit(ctx, &goroutine_events, e, sizeof(*e), 0))
		count(&drop_counts, probe);
}

/* runtime.newproc1(fn *funcval, callergp *g, callerpc uintptr, ...) *g, at its entry; only for Go < 1.21. */
SEC("uprobe")
int newproc1_entry(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct runtime_layout *l = layout_of(cookie);
	if (!l)
		return 0;
	count(&hit_counts, COOKIE_LAYOUT(cookie) * PROBE_KINDS + PROBE_NEWPROC1_ENTRY);
	/* newproc1 runs on g0 (R14); callergp (RBX) is the goroutine that ran the go statement. */
	if (goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	__u64 thread = bpf_get_current_pid_tgid();
	__u64 creator = read_u64(ctx->bx + l->g_goid);
	bpf_map_update_elem(&creator_by_thread, &thread, &creator, BPF_ANY);
	return 0;
}

static __always_inline int record_create(struct pt_regs *ctx, __u64 newg)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct runtime_layout *l = layout_of(cookie);
	if (!l)
		return 0;
	count(&hit_counts, COOKIE_LAYOUT(cookie) * PROBE_KINDS + PROBE_NEWPROC1_RET);
	struct goroutine_event *e = reserve(PROBE_NEWPROC1_RET);
	if (!e)
		return 0;
	e->kind = GOROUTINE_CREATE;
	e->layout_id = COOKIE_LAYOUT(cookie);
	e->goid = read_u64(newg + l->g_goid);
	e->g_addr = newg;
	e->pc = read_u64(newg + l->g_gopc);
	e->start_pc = read_u64(newg + l->g_startpc);
	if (l->g_parent_goid) {
		e->other_goid = read_u64(newg + l->g_parent_goid);
	} else {
		__u64 thread = bpf_get_current_pid_tgid();
		__u64 *creator = bpf_map_lookup_elem(&creator_by_thread, &thread);
		if (creator) {
			e->other_goid = *creator;
			bpf_map_delete_elem(&creator_by_thread, &thread);
		}
	}
	submit(ctx, e, PROBE_NEWPROC1_RET);
	return 0;
}

/* The CALL of runtime.runqput in runtime.newproc's closure, right after newproc1 returned: RBX holds the
 * new g (runqput's second argument). A CALL is emulated by the kernel: one trap, where a RET takes two. */
SEC("uprobe")
int newproc_runqput(struct pt_regs *ctx)
{
	return record_create(ctx, ctx->bx);
}

/* A RET of runtime.newproc1 (the fallback site): RAX holds the new g, its goid, gopc and startpc set. */
SEC("uprobe")
int newproc1_ret(struct pt_regs *ctx)
{
	return record_create(ctx, ctx->ax);
}

/* runtime.gopark(unlockf, lock, reason waitReason, ...): runs on the goroutine that parks (R14). */
SEC("uprobe")
int gopark(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct runtime_layout *l = layout_of(cookie);
	if (!l)
		return 0;
	count(&hit_counts, COOKIE_LAYOUT(cookie) * PROBE_KINDS + PROBE_GOPARK);
	__u64 g = ctx->r14;
	if (goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	__u64 goid = read_u64(g + l->g_goid);
	if (!park_sampled(goid))
		return 0;
	struct goroutine_event *e = reserve(PROBE_GOPARK);
	if (!e)
		return 0;
	e->kind = GOROUTINE_PARK;
	e->layout_id = COOKIE_LAYOUT(cookie);
	e->goid = goid;
	e->g_addr = g;
	e->wait_reason = (__u8)ctx->cx; /* third integer argument */
	submit(ctx, e, PROBE_GOPARK);
	return 0;
}

/* runtime.ready(gp *g, traceskip int, next bool): the body of goready (which recent Go versions inline
 * everywhere) and of the GC's own wakeups. It runs on g0, so the goroutine that readies is g0.m.curg. */
SEC("uprobe")
int ready(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct runtime_layout *l = layout_of(cookie);
	if (!l)
		return 0;
	count(&hit_counts, COOKIE_LAYOUT(cookie) * PROBE_KINDS + PROBE_READY);
	__u64 g = ctx->r14;
	if (goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	__u64 goid = read_u64(ctx->ax + l->g_goid);
	if (!park_sampled(goid))
		return 0;
	struct goroutine_event *e = reserve(PROBE_READY);
	if (!e)
		return 0;
	e->kind = GOROUTINE_READY;
	e->layout_id = COOKIE_LAYOUT(cookie);
	e->goid = goid;
	e->g_addr = ctx->ax;
	__u64 curg = read_u64(read_u64(g + l->g_m) + l->m_curg);
	e->other_goid = curg ? read_u64(curg + l->g_goid) : 0;
	submit(ctx, e, PROBE_READY);
	return 0;
}

/* runtime.goexit1(): runs on the goroutine that ends, from its function's return or runtime.Goexit. */
SEC("uprobe")
int goexit1(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct runtime_layout *l = layout_of(cookie);
	if (!l)
		return 0;
	count(&hit_counts, COOKIE_LAYOUT(cookie) * PROBE_KINDS + PROBE_GOEXIT1);
	__u64 g = ctx->r14;
	if (goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	struct goroutine_event *e = reserve(PROBE_GOEXIT1);
	if (!e)
		return 0;
	e->kind = GOROUTINE_EXIT;
	e->layout_id = COOKIE_LAYOUT(cookie);
	e->goid = read_u64(g + l->g_goid);
	e->g_addr = g;
	submit(ctx, e, PROBE_GOEXIT1);
	return 0;
}
