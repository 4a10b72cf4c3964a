/* SPDX-License-Identifier: Apache-2.0 */
/* The BPF cookie of a goroscope uprobe (bpf/goroutines.bpf.c, bpf/runtime.bpf.c): which runtime layout, which
 * probe, and whether the site is the stack check's jump. Go's prologue compares SP (or SP less the frame, in R12)
 * with g.stackguard0 and, when it is not above, calls morestack, which re-runs the function from its entry: a
 * probe on the jump is hit a second time.
 *   bits  0-15 layout id
 *   bits 16-23 the object's probe enum (enum goroutine_probe, enum runtime_probe)
 *   bit  24    the site is the conditional jump of the stack check: skip the hit that goes to morestack
 *   bits 32-63 the scheduler window of a scheduler probe (bpf/goroutines.bpf.c): the agent gives each attachment of
 *              a scheduler probe class a new one, never reused; 0 for every other probe */
#ifndef GOROSCOPE_COOKIE_H
#define GOROSCOPE_COOKIE_H

enum probe_cookie {
	COOKIE_LAYOUT_MASK = 0xffff,
	COOKIE_PROBE_SHIFT = 16,
	COOKIE_PROBE_MASK = 0xff,
	COOKIE_STACK_CHECK_SHIFT = 24,
	COOKIE_WINDOW_SHIFT = 32,
};

#define COOKIE_LAYOUT(c) ((__u32)((c) & COOKIE_LAYOUT_MASK))
#define COOKIE_PROBE(c) ((__u32)(((c) >> COOKIE_PROBE_SHIFT) & COOKIE_PROBE_MASK))
#define COOKIE_STACK_CHECK(c) ((__u32)(((c) >> COOKIE_STACK_CHECK_SHIFT) & 1))
#define COOKIE_WINDOW(c) ((__u32)((c) >> COOKIE_WINDOW_SHIFT))

#endif
