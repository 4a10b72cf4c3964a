/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Helpers every goroscope BPF program uses. Include after vmlinux.h and bpf_helpers.h. */
#ifndef GOROSCOPE_COMMON_BPF_H
#define GOROSCOPE_COMMON_BPF_H

/* Names a type user space shares with this object: scripts/bpf-types generates its TypeScript from the object's
 * BTF (agent/src/events/NAME.bpf.ts), as bpf2go generates Go types. BTF keeps a type only when something in the
 * object refers to it, and an enum's values otherwise reach the object only as numbers: a pointer to the type in
 * .rodata refers to it, for 8 bytes of the read-only map every object has (use_perf_events). */
#define BPF_EXPORT(type) BPF_EXPORT_(type, __COUNTER__)
#define BPF_EXPORT_(type, n) BPF_EXPORT__(type, n)
#define BPF_EXPORT__(type, n) type *const volatile goroscope_export_##n = 0

/* Adds one to a per-CPU counter (hits, drops). */
static __always_inline void count(void *map, __u32 key)
{
	__u64 *n = bpf_map_lookup_elem(map, &key);
	if (n)
		*n += 1;
}

/* A word of the traced process's memory; 0 when it cannot be read (never a fault in the process). */
static __always_inline __u64 read_u64(__u64 addr)
{
	__u64 v = 0;
	bpf_probe_read_user(&v, sizeof(v), (const void *)addr);
	return v;
}

/* Several words of one object of the traced process in one read. A bpf_probe_read_user costs ~70 ns here whatever
 * its size up to a few hundred bytes (the call, the user-access switch), as much as the rest of a goroutine
 * probe: fields of one struct are read together (span_read), then picked by offset (span_u64). A field outside
 * the span, or a span that could not be read (it would cross into an unmapped page), is read on its own. */
enum { SPAN_BYTES = 192 }; /* goid to startpc of a g: 168 bytes at most (Go 1.19-1.27) */

struct span {
	__u64 addr; /* the object */
	__u32 lo;   /* offset of w[0] in it */
	__u32 ok;
	__u64 w[SPAN_BYTES / 8];
};

static __always_inline void span_read(struct span *s, __u64 addr, __u32 lo)
{
	s->addr = addr;
	s->lo = lo;
	s->ok = bpf_probe_read_user(s->w, sizeof(s->w), (const void *)(addr + lo)) == 0;
}

static __always_inline bool span_has(const struct span *s, __u32 off, __u32 bytes)
{
	__u64 d = (__u64)off - s->lo;
	return s->ok && d < sizeof(s->w) && sizeof(s->w) - d >= bytes;
}

static __always_inline __u64 span_u64(const struct span *s, __u32 off)
{
	__u64 d = (__u64)off - s->lo;
	if (s->ok && !(d & 7) && d < sizeof(s->w)) {
		/* A select over constant offsets, not w[d / 8]: a stack read at a variable offset needs Linux 5.12+
		 * (the agent loads on 5.8+ with ring buffers, earlier with perf buffers). The barrier keeps the
		 * compiler from folding the selects back into one indexed load. */
		__u64 v = 0;
#pragma unroll
		for (__u64 i = 0; i < SPAN_BYTES / 8; i++) {
			__u64 w = s->w[i];
			asm volatile("" : "+r"(w));
			if (d == i * 8)
				v = w;
		}
		return v;
	}
	return read_u64(s->addr + off);
}

/* The hit at a stack check's conditional jump that goes on to morestack (and so will hit again when the
 * function re-runs). The CMP just before set the flags, and the prologue takes the morestack path exactly
 * when SP <= g.stackguard0 unsigned: CF or ZF set (JBE taken, or JA not taken). The flags say what the CPU
 * will do; re-reading stackguard0 would not: other threads set it to stackPreempt at any moment, and a
 * write between the CMP and the probe once made a goroutine's exit go unrecorded. */
#define X86_EFLAGS_CF (1 << 0)
#define X86_EFLAGS_ZF (1 << 6)

static __always_inline bool goes_to_morestack(struct pt_regs *ctx, bool at_stack_check_jump)
{
	return at_stack_check_jump && (ctx->flags & (X86_EFLAGS_CF | X86_EFLAGS_ZF));
}

/* An argument register named by enum go_abi_reg (goabi.h); 0 for GO_REG_NONE or an unknown value. Each
 * case loads its own field: the verifier allows a context load only at a constant offset, and without the
 * barrier the compiler merges the cases into one load at a computed one. */
#define GO_ARG_CASE(n, field)                                                                                    \
	case n: {                                                                                                \
		__u64 v = ctx->field;                                                                            \
		asm volatile("" : "+r"(v));                                                                      \
		return v;                                                                                        \
	}

static __always_inline __u64 go_arg(struct pt_regs *ctx, __u32 reg)
{
	switch (reg) {
	GO_ARG_CASE(1, ax)
	GO_ARG_CASE(2, bx)
	GO_ARG_CASE(3, cx)
	GO_ARG_CASE(4, di)
	GO_ARG_CASE(5, si)
	GO_ARG_CASE(6, r8)
	GO_ARG_CASE(7, r9)
	GO_ARG_CASE(8, r10)
	GO_ARG_CASE(9, r11)
	}
	return 0;
}

/* Where records go. Kernels before 5.8 have no BPF ring buffer: there the agent sets use_perf_events before
 * load and retypes each events map to a perf event array (one buffer per CPU, agent/native/bridge.c). A record
 * is then built in a per-CPU scratch slot and copied out by bpf_perf_event_output. The flag is read-only data,
 * so the verifier prunes the branch not taken and each kernel sees only helpers it has. One slot per CPU is
 * enough: the kernel runs one tracing program per CPU at a time (bpf_prog_active), and on the kernels that
 * need this path those programs run with preemption off. */
const volatile bool use_perf_events = false;

/* An events map (a ring buffer unless retyped) and the scratch slot the perf path builds its record in. */
#define EVENTS_MAP(name, record, bytes)                                                                          \
	struct {                                                                                                 \
		__uint(type, BPF_MAP_TYPE_RINGBUF);                                                              \
		__uint(max_entries, bytes);                                                                      \
	} name SEC(".maps");                                                                                     \
	struct {                                                                                                 \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                                         \
		__uint(max_entries, 1);                                                                          \
		__type(key, __u32);                                                                              \
		__type(value, record);                                                                           \
	} name##_scratch SEC(".maps")

/* Room for one record: in the ring itself, or the CPU's scratch slot. NULL when the ring is full. */
static __always_inline void *event_reserve(void *ring, void *scratch, __u64 size)
{
	__u32 zero = 0;
	if (use_perf_events)
		return bpf_map_lookup_elem(scratch, &zero);
	return bpf_ringbuf_reserve(ring, size, 0);
}

/* Publishes a reserved record. Ring: never fails, wakes the reader as wake_bytes says (0: never; 1: now; else
 * once that much waits). Perf: copies the record out; false when the CPU's buffer was full (a drop). */
static __always_inline bool event_submit(void *ctx, void *ring, void *e, __u64 size, __u64 wake_bytes)
{
	if (use_perf_events)
		return bpf_perf_event_output(ctx, ring, BPF_F_CURRENT_CPU, e, size) == 0;
	__u64 flags = BPF_RB_NO_WAKEUP;
	if (wake_bytes == 1 || (wake_bytes && bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= wake_bytes))
		flags = BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	return true;
}

#endif
