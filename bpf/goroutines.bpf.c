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
BPF_EXPORT(enum runnable_cause);
BPF_EXPORT(struct runnable_stamp);
BPF_EXPORT(struct syscall_stamp);
BPF_EXPORT(struct goid_epoch);

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

static __always_inline struct goroutine_event *reserve_for(__u32 probe, __u64 pid_tgid)
{
	struct goroutine_event *e = event_reserve(&goroutine_events, &goroutine_events_scratch, sizeof(*e));
	if (!e) {
		count(&drop_counts, probe);
		return NULL;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->pid = pid_tgid >> 32;
	e->tid = (__u32)pid_tgid;
	e->other_goid = 0;
	e->pc = 0;
	e->start_pc = 0;
	e->wait_reason = 0;
	e->p_id = 0;
	e->cause = 0;
	e->reserved = 0;
	e->g_addr = 0;
	e->duration_ns = 0;
	return e;
}

static __always_inline struct goroutine_event *reserve(__u32 probe)
{
	return reserve_for(probe, bpf_get_current_pid_tgid());
}

/* The M (thread) of the g in R14, cached per CPU: a thread's M is fixed for the thread's life, so the entry
 * holds while the same thread runs on the CPU, and the read of g.m (~75 ns, often a cache miss) is saved on
 * nearly every ready. Keyed by the g as well as the thread, so a thread id reused for a new M (with a new g0)
 * never finds the old one's. A program can be preempted on its CPU by another that writes the slot: check
 * (of the other three) tells a whole entry from a torn one. 0 when g.m cannot be read. */
struct thread_m {
	__u64 thread; /* pid_tgid */
	__u64 g;
	__u64 m;
	__u64 check;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct thread_m);
} thread_m_cache SEC(".maps");

static __always_inline __u64 thread_m_check(__u64 thread, __u64 g, __u64 m)
{
	return ((thread * 0x9E3779B97F4A7C15ULL) ^ g ^ (m << 1)) | 1;
}

static __always_inline __u64 thread_m(__u64 pid_tgid, __u64 g, const struct runtime_layout *l)
{
	__u32 zero = 0;
	struct thread_m *c = bpf_map_lookup_elem(&thread_m_cache, &zero);
	if (c) {
		__u64 m = *(volatile __u64 *)&c->m;
		if (c->thread == pid_tgid && c->g == g && c->check == thread_m_check(pid_tgid, g, m))
			return m;
	}
	__u64 m = read_u64(g + l->g_m);
	if (c && m) {
		c->thread = pid_tgid;
		c->g = g;
		c->m = m;
		c->check = thread_m_check(pid_tgid, g, m);
	}
	return m;
}

/* p.id of a P, cached per CPU: a process's P keeps its id for life (procresize re-inits a P kept in allp with
 * its own index), so while a thread keeps its P the read is saved. check as thread_m's. */
struct p_id_entry {
	__u64 p;
	__u32 pid;
	__u32 id;
	__u64 check;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct p_id_entry);
} p_id_cache SEC(".maps");

static __always_inline __u32 p_id_of(__u32 pid, __u64 p, const struct runtime_layout *l)
{
	__u32 zero = 0;
	struct p_id_entry *c = bpf_map_lookup_elem(&p_id_cache, &zero);
	if (c) {
		__u32 id = *(volatile __u32 *)&c->id;
		if (c->p == p && c->pid == pid && c->check == thread_m_check(pid, p, id))
			return id;
	}
	__u32 id = 0;
	if (bpf_probe_read_user(&id, sizeof(id), (const void *)(p + l->p_id)))
		return 0;
	if (c) {
		c->p = p;
		c->pid = pid;
		c->id = id;
		c->check = thread_m_check(pid, p, id);
	}
	return id;
}

/* ---- The goid of a g, cached. ----
 * Reading g.goid costs a bpf_probe_read_user (~75 ns, often a cache miss on the g: ~125 ns), as much as the
 * rest of a park; a park and a ready read up to three. A g keeps its goid until the goroutine ends: the runtime
 * gives a g a new goid only in newproc1, and only to a g that is dead (gfget after goexit0's gfput). Every end
 * passes goexit1 (a goroutine's return, runtime.Goexit), but for iter.Pull's coroutines (coroexit destroys the
 * g in coroswitch_m: the agent gives binaries that have them no epoch). So while the exit probe is on, an exit
 * empties its g's slot before the g can be reused, and a slot filled under the process's current epoch is
 * true: the epoch changes each time exits may have gone unseen (goid_epoch in goroutines.h).
 * Filled only for a goroutine that cannot end during the program: the one parking (it runs this program),
 * one being readied (parked until ready returns), a new one (not yet runnable). Never for the waker of a
 * ready (g0.m.curg): the runtime may ready from goexit0 before it lets go of the exiting g (a synctest bubble's
 * wakeup), after goexit1 emptied its slot. A direct-mapped table, as the scheduler stamps: a collision costs a
 * read, never a wrong goid (check tells a whole slot from one two CPUs wrote at once). */
enum { GOID_CACHE_SLOTS = 65536 };

struct goid_slot {
	__u64 g; /* 0: empty */
	__u64 goid;
	__u32 epoch;
	__u32 pad;
	__u64 check;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GOID_CACHE_SLOTS);
	__type(key, __u32);
	__type(value, struct goid_slot);
} goid_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GOID_EPOCH_SLOTS);
	__type(key, __u32);
	__type(value, struct goid_epoch);
} goid_epochs SEC(".maps");

/* The process's epoch, 0 when it has none (its cache is off). */
static __always_inline __u32 goid_epoch_of(__u32 pid)
{
	__u32 i = pid & (GOID_EPOCH_SLOTS - 1);
	struct goid_epoch *e = bpf_map_lookup_elem(&goid_epochs, &i);
	if (!e)
		return 0;
	__u64 v = *(volatile __u64 *)e; /* pid and epoch in one load: never one process's epoch for another */
	return (__u32)v == pid ? (__u32)(v >> 32) : 0;
}

static __always_inline struct goid_slot *goid_slot_of(__u64 g)
{
	__u32 i = (__u32)((g * 0x9E3779B97F4A7C15ULL) >> 32) & (GOID_CACHE_SLOTS - 1);
	return bpf_map_lookup_elem(&goid_cache, &i);
}

static __always_inline __u64 goid_check(__u64 g, __u64 goid, __u32 epoch)
{
	return ((g * 0x9E3779B97F4A7C15ULL) ^ (goid * 0xC2B2AE3D27D4EB4FULL) ^ ((__u64)epoch << 32)) | 1;
}

static __always_inline void goid_fill(struct goid_slot *s, __u64 g, __u64 goid, __u32 epoch)
{
	s->g = g;
	s->goid = goid;
	s->epoch = epoch;
	s->check = goid_check(g, goid, epoch);
}

/* g.goid from the cache under epoch, else from memory; fill: store what was read (see above for which g). */
static __always_inline __u64 goid_of(__u64 g, __u32 epoch, const struct runtime_layout *l, bool fill)
{
	struct goid_slot *s = NULL;
	if (epoch) {
		s = goid_slot_of(g);
		if (s) {
			__u64 goid = *(volatile __u64 *)&s->goid;
			if (s->g == g && s->epoch == epoch && s->check == goid_check(g, goid, epoch))
				return goid;
		}
	}
	__u64 goid = read_u64(g + l->g_goid);
	if (fill && s && goid)
		goid_fill(s, g, goid, epoch);
	return goid;
}

/* Never wake the reader: while any of these probes is on it drains at least every 4 polls on its own (40 ms;
 * agent/src/tracer/goroutine-tracer.ts, syncReaderIdle), and a wakeup costs more than the probe
 * (../shared/FACTS.md). The ring is sized for what arrives between two drains (4 MiB: 65k records,
 * 1.6M records/s at 40 ms). */
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
	__u64 creator = goid_of(ctx->bx, goid_epoch_of(thread >> 32), l, true); /* running the go statement */
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
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct goroutine_event *e = reserve_for(PROBE_NEWPROC1_RET, pid_tgid);
	if (!e)
		return 0;
	e->kind = GOROUTINE_CREATE;
	e->layout_id = COOKIE_LAYOUT(cookie);
	/* goid, parentGoid, gopc and startpc lie within SPAN_BYTES of goid in every Go version: one read. */
	struct span g;
	span_read(&g, newg, l->g_goid);
	__u64 goid = span_u64(&g, l->g_goid);
	e->goid = goid;
	/* Its first park or ready finds the goid cached (the g is not runnable yet: no exit can come first). */
	__u32 epoch = goid_epoch_of(pid_tgid >> 32);
	struct goid_slot *slot = epoch && goid ? goid_slot_of(newg) : NULL;
	if (slot)
		goid_fill(slot, newg, goid, epoch);
	e->g_addr = newg;
	e->pc = span_u64(&g, l->g_gopc);
	e->start_pc = span_u64(&g, l->g_startpc);
	if (l->g_parent_goid) {
		e->other_goid = span_u64(&g, l->g_parent_goid);
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
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 goid = goid_of(g, goid_epoch_of(pid_tgid >> 32), l, true);
	if (!park_sampled(goid))
		return 0;
	struct goroutine_event *e = reserve_for(PROBE_GOPARK, pid_tgid);
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
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 epoch = goid_epoch_of(pid_tgid >> 32);
	__u64 goid = goid_of(ctx->ax, epoch, l, true);
	if (!park_sampled(goid))
		return 0;
	struct goroutine_event *e = reserve_for(PROBE_READY, pid_tgid);
	if (!e)
		return 0;
	e->kind = GOROUTINE_READY;
	e->layout_id = COOKIE_LAYOUT(cookie);
	e->goid = goid;
	e->g_addr = ctx->ax;
	__u64 curg = read_u64(thread_m(pid_tgid, g, l) + l->m_curg);
	e->other_goid = curg ? goid_of(curg, epoch, l, false) : 0;
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
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 goid = goid_of(g, goid_epoch_of(pid_tgid >> 32), l, false);
	/* The g may be reused from now on: its slot is emptied whatever the epoch, and before a full ring can stop
	 * the program. */
	struct goid_slot *slot = goid_slot_of(g);
	if (slot && slot->g == g)
		slot->g = 0;
	struct goroutine_event *e = reserve_for(PROBE_GOEXIT1, pid_tgid);
	if (!e)
		return 0;
	e->kind = GOROUTINE_EXIT;
	e->layout_id = COOKIE_LAYOUT(cookie);
	e->goid = goid;
	e->g_addr = g;
	submit(ctx, e, PROBE_GOEXIT1);
	return 0;
}


/* ---- The scheduler: run-queue latency, yields and preemptions, threads and Ps, system calls. ----
 *
 * A goroutine's run-queue latency is the time from becoming runnable to runtime.execute, which runs it (the
 * span Go's /sched/latencies:seconds samples, one transition in 8). The programs below stamp the goroutine
 * where it becomes runnable (runnable_stamps) and execute takes the stamp. They are a probe class of their
 * own (the agent attaches and detaches them together, apart from park/ready), so a stamp is only good within
 * the window it was set in: each time the agent attaches a class (execute first), its probes' cookies carry a
 * new window (bpf/cookie.h; never reused), and a stamp from another window is dropped. A probe with no window
 * (0) does nothing. In the cookie rather than in a map keyed by pid: a hash lookup was ~35-50 ns per hit. */

/* Stamps live in direct-mapped tables (an array indexed by a hash of the key), not in hash maps: setting or
 * taking one is a few loads and stores (~10 ns here), where an LRU hash's update or lookup-and-delete costs ~200
 * ns. A slot holds one key: a colliding stamp replaces the other, whose run-queue or system call time then goes
 * unknown (as an evicted LRU entry's did), never wrong: a stamp is taken only under its own key and window, and
 * check (of the other fields) tells a whole slot from one that two CPUs wrote at once. A slot outlives its
 * process, so the agent never reuses a window number (nor the maps keyed by pid need cleaning). */
enum { RUNNABLE_SLOTS = 65536, SYSCALL_SLOTS = 16384 };

struct runnable_slot {
	__u64 key; /* sched_key(pid, goid); 0: empty */
	struct runnable_stamp st;
	__u64 check;
};

struct syscall_slot {
	__u64 key; /* pid_tgid: the thread; 0: empty */
	struct syscall_stamp st;
	__u64 check;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RUNNABLE_SLOTS);
	__type(key, __u32);
	__type(value, struct runnable_slot);
} runnable_stamps SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SYSCALL_SLOTS);
	__type(key, __u32);
	__type(value, struct syscall_slot);
} syscall_stamps SEC(".maps");

/* slots: a power of two. */
static __always_inline void *stamp_slot(void *map, __u64 key, __u32 slots)
{
	__u32 i = (__u32)((key * 0x9E3779B97F4A7C15ULL) >> 32) & (slots - 1);
	return bpf_map_lookup_elem(map, &i);
}

static __always_inline __u64 stamp_check(__u64 key, __u64 ts, __u32 window, __u64 x)
{
	return (key * 0x9E3779B97F4A7C15ULL) ^ (ts * 0xC2B2AE3D27D4EB4FULL) ^ ((__u64)window << 32) ^ (x * 0x165667B19E3779F9ULL);
}

/* Process in the upper half; goids past 2^32 share a key. */
static __always_inline __u64 sched_key(__u32 pid, __u64 goid)
{
	return ((__u64)pid << 32) | (__u32)goid;
}

static __always_inline void stamp_runnable(__u32 pid, __u32 window, __u64 goid, __u8 cause, __u64 now)
{
	__u64 key = sched_key(pid, goid);
	struct runnable_slot *s = stamp_slot(&runnable_stamps, key, RUNNABLE_SLOTS);
	if (!s)
		return;
	s->key = key;
	s->st.ts_ns = now;
	s->st.window = window;
	s->st.cause = cause;
	s->check = stamp_check(key, now, window, cause);
}

/* Takes (and empties) the goroutine's runnable stamp: false when there is none whole under its key. */
static __always_inline bool take_runnable(__u64 key, struct runnable_stamp *out)
{
	struct runnable_slot *s = stamp_slot(&runnable_stamps, key, RUNNABLE_SLOTS);
	if (!s || s->key != key)
		return false;
	out->ts_ns = *(volatile __u64 *)&s->st.ts_ns;
	out->window = *(volatile __u32 *)&s->st.window;
	out->cause = *(volatile __u8 *)&s->st.cause;
	bool whole = s->check == stamp_check(key, out->ts_ns, out->window, out->cause) && s->key == key;
	s->key = 0;
	return whole;
}

/* Common head of the runnable-stamp programs: the layout and window, or NULL to do nothing. */
static __always_inline const struct runtime_layout *sched_begin(struct pt_regs *ctx, __u32 probe, __u32 *window, __u32 *pid)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct runtime_layout *l = layout_of(cookie);
	if (!l)
		return NULL;
	count(&hit_counts, COOKIE_LAYOUT(cookie) * PROBE_KINDS + probe);
	if (goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return NULL;
	*window = COOKIE_WINDOW(cookie);
	if (!*window)
		return NULL;
	*pid = bpf_get_current_pid_tgid() >> 32;
	return l;
}

/* runtime.ready(gp, ...) (gp in RAX): the same site as the park/ready class's program, apart from it. */
SEC("uprobe")
int sched_ready(struct pt_regs *ctx)
{
	__u32 window, pid;
	const struct runtime_layout *l = sched_begin(ctx, PROBE_RUNNABLE, &window, &pid);
	if (!l)
		return 0;
	stamp_runnable(pid, window, goid_of(ctx->ax, goid_epoch_of(pid), l, true), RUNNABLE_READY, bpf_ktime_get_ns());
	return 0;
}

/* The CALL of runqput after newproc1 (RBX = the new g), or a RET of newproc1 (RAX). */
static __always_inline int stamp_created(struct pt_regs *ctx, __u64 newg)
{
	__u32 window, pid;
	const struct runtime_layout *l = sched_begin(ctx, PROBE_RUNNABLE, &window, &pid);
	if (!l)
		return 0;
	stamp_runnable(pid, window, goid_of(newg, goid_epoch_of(pid), l, true), RUNNABLE_CREATED, bpf_ktime_get_ns());
	return 0;
}

SEC("uprobe")
int sched_created_runqput(struct pt_regs *ctx)
{
	return stamp_created(ctx, ctx->bx);
}

SEC("uprobe")
int sched_created_ret(struct pt_regs *ctx)
{
	return stamp_created(ctx, ctx->ax);
}

/* runtime.goschedImpl(gp *g, preempted bool): RAX, RBX. Gosched, and every preemption the scheduler makes
 * (gopreempt_m: sysmon's 10 ms time slice, a GC's request): the goroutine goes back to a run queue. */
SEC("uprobe")
int sched_gosched(struct pt_regs *ctx)
{
	__u32 window, pid;
	const struct runtime_layout *l = sched_begin(ctx, PROBE_RUNNABLE, &window, &pid);
	if (!l)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 gp = ctx->ax;
	__u8 cause = (__u8)ctx->bx ? RUNNABLE_PREEMPTED : RUNNABLE_YIELDED;
	__u64 goid = goid_of(gp, goid_epoch_of(pid), l, true); /* it was running: it goes back to a run queue */
	stamp_runnable(pid, window, goid, cause, now);
	struct goroutine_event *e = reserve(PROBE_RUNNABLE);
	if (!e)
		return 0;
	e->ts_ns = now;
	e->kind = GOROUTINE_YIELD;
	e->layout_id = COOKIE_LAYOUT(bpf_get_attach_cookie(ctx));
	e->goid = goid;
	e->g_addr = gp;
	e->cause = cause;
	submit(ctx, e, PROBE_RUNNABLE);
	return 0;
}

/* runtime.preemptPark(gp *g) (RAX): suspended where it stands for the GC (async preemption); a later ready
 * makes it runnable. Counted as a preemption, no stamp. */
SEC("uprobe")
int sched_preempt_park(struct pt_regs *ctx)
{
	__u32 window, pid;
	const struct runtime_layout *l = sched_begin(ctx, PROBE_RUNNABLE, &window, &pid);
	if (!l)
		return 0;
	struct goroutine_event *e = reserve(PROBE_RUNNABLE);
	if (!e)
		return 0;
	e->kind = GOROUTINE_YIELD;
	e->layout_id = COOKIE_LAYOUT(bpf_get_attach_cookie(ctx));
	e->goid = goid_of(ctx->ax, goid_epoch_of(pid), l, true); /* suspended, not ended */
	e->g_addr = ctx->ax;
	e->cause = RUNNABLE_PREEMPT_PARKED;
	submit(ctx, e, PROBE_RUNNABLE);
	return 0;
}

/* runtime.exitsyscall0(gp) (Go < 1.26) / exitsyscallNoP(gp) (RAX): back from a system call with no P to run
 * on, the goroutine is queued. */
SEC("uprobe")
int sched_syscall_queued(struct pt_regs *ctx)
{
	__u32 window, pid;
	const struct runtime_layout *l = sched_begin(ctx, PROBE_RUNNABLE, &window, &pid);
	if (!l)
		return 0;
	stamp_runnable(pid, window, goid_of(ctx->ax, goid_epoch_of(pid), l, true), RUNNABLE_SYSCALL, bpf_ktime_get_ns());
	return 0;
}

enum { INJECT_MAX = 64 };

/* runtime.injectglist(glist *gList) (RAX): a batch made runnable at once (the network poller's wakeups, timers
 * run by another thread). Its first INJECT_MAX goroutines, through g.schedlink. */
SEC("uprobe")
int sched_inject(struct pt_regs *ctx)
{
	__u32 window, pid;
	const struct runtime_layout *l = sched_begin(ctx, PROBE_RUNNABLE, &window, &pid);
	if (!l)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 gp = read_u64(ctx->ax); /* gList.head */
	/* g.schedlink follows g.goid in every Go version so far (1.19-1.27): both in one read. */
	bool pair = l->g_schedlink == l->g_goid + 8;
	for (int i = 0; i < INJECT_MAX && gp; i++) {
		__u64 w[2] = {};
		if (pair) {
			bpf_probe_read_user(w, sizeof(w), (const void *)(gp + l->g_goid));
		} else {
			w[0] = read_u64(gp + l->g_goid);
			w[1] = read_u64(gp + l->g_schedlink);
		}
		stamp_runnable(pid, window, w[0], RUNNABLE_INJECTED, now);
		gp = w[1];
	}
	return 0;
}

/* runtime.execute(gp *g, inheritTime bool) (gp in RAX), on the thread's g0 (R14) before gp is running: the
 * goroutine's run-queue time ends here, and it runs on this thread and g0.m.p. */
SEC("uprobe")
int sched_execute(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct runtime_layout *l = layout_of(cookie);
	if (!l)
		return 0;
	count(&hit_counts, COOKIE_LAYOUT(cookie) * PROBE_KINDS + PROBE_EXECUTE);
	if (goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	__u32 window = COOKIE_WINDOW(cookie);
	if (!window)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	__u64 gp = ctx->ax;
	__u64 goid = goid_of(gp, goid_epoch_of(pid), l, true); /* runnable: it cannot end before it runs */
	__u64 key = sched_key(pid, goid);
	__u64 since = 0;
	__u8 cause = RUNNABLE_UNKNOWN;
	struct runnable_stamp st;
	if (take_runnable(key, &st) && st.window == window && st.ts_ns <= now) {
		since = st.ts_ns;
		cause = st.cause;
	}
	struct goroutine_event *e = reserve_for(PROBE_EXECUTE, pid_tgid);
	if (!e)
		return 0;
	e->ts_ns = now;
	e->kind = GOROUTINE_RUN;
	e->layout_id = COOKIE_LAYOUT(cookie);
	e->goid = goid;
	e->g_addr = gp;
	e->cause = cause;
	e->duration_ns = since ? now - since : 0;
	__u64 p = read_u64(thread_m(pid_tgid, ctx->r14, l) + l->m_p);
	e->p_id = p ? (__u16)p_id_of(pid, p, l) : 0;
	submit(ctx, e, PROBE_EXECUTE);
	return 0;
}

/* runtime.entersyscall() / entersyscallblock() (nosplit: the entry), on the goroutine itself (R14). */
SEC("uprobe")
int sched_entersyscall(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct runtime_layout *l = layout_of(cookie);
	if (!l)
		return 0;
	count(&hit_counts, COOKIE_LAYOUT(cookie) * PROBE_KINDS + PROBE_SYSCALL);
	__u32 window = COOKIE_WINDOW(cookie);
	if (!window)
		return 0;
	__u64 thread = bpf_get_current_pid_tgid();
	__u64 goid = goid_of(ctx->r14, goid_epoch_of(thread >> 32), l, true); /* the goroutine making the call */
	__u64 now = bpf_ktime_get_ns();
	struct syscall_slot *s = stamp_slot(&syscall_stamps, thread, SYSCALL_SLOTS);
	if (!s)
		return 0;
	s->key = thread;
	s->st.ts_ns = now;
	s->st.goid = goid;
	s->st.window = window;
	s->check = stamp_check(thread, now, window, goid);
	return 0;
}

/* runtime.exitsyscall() (nosplit: the entry), on the goroutine back from the call on the same thread. */
SEC("uprobe")
int sched_exitsyscall(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct runtime_layout *l = layout_of(cookie);
	if (!l)
		return 0;
	count(&hit_counts, COOKIE_LAYOUT(cookie) * PROBE_KINDS + PROBE_SYSCALL);
	__u64 now = bpf_ktime_get_ns();
	__u64 thread = bpf_get_current_pid_tgid();
	struct syscall_slot *s = stamp_slot(&syscall_stamps, thread, SYSCALL_SLOTS);
	if (!s || s->key != thread)
		return 0;
	__u64 since = *(volatile __u64 *)&s->st.ts_ns;
	__u64 goid = *(volatile __u64 *)&s->st.goid;
	__u32 window = *(volatile __u32 *)&s->st.window;
	bool whole = s->check == stamp_check(thread, since, window, goid) && s->key == thread;
	s->key = 0;
	if (!whole)
		return 0;
	if (COOKIE_WINDOW(cookie) != window || goid != goid_of(ctx->r14, goid_epoch_of(thread >> 32), l, true) || since > now)
		return 0;
	struct goroutine_event *e = reserve(PROBE_SYSCALL);
	if (!e)
		return 0;
	e->ts_ns = now;
	e->kind = GOROUTINE_SYSCALL;
	e->layout_id = COOKIE_LAYOUT(cookie);
	e->goid = goid;
	e->g_addr = ctx->r14;
	e->duration_ns = now - since;
	submit(ctx, e, PROBE_SYSCALL);
	return 0;
}
