/* SPDX-License-Identifier: Apache-2.0 */
/* Records and numbering of bpf/runtime.bpf.c (stop-the-world pauses, GC cycle ends and fatal errors of Go
 * processes): the one source. The agent's TypeScript for them (agent/src/events/runtime.bpf.ts) is generated
 * from the compiled object's BTF by scripts/bpf-types (`npm run gen:bpf`).
 *
 * The uprobe cookies follow cookie.h, with enum runtime_probe as the probe number and struct rt_layout as the
 * layout. */
#ifndef GOROSCOPE_RUNTIME_H
#define GOROSCOPE_RUNTIME_H

#include "goabi.h"

enum runtime_event_kind {
	RUNTIME_STW = 1,         /* the world restarted: one stop-the-world pause, start to end */
	RUNTIME_GC_MARK_TERMINATION = 2, /* runtime.gcMarkTermination began: a GC cycle is ending (world stopped) */
	RUNTIME_THROW = 3,       /* runtime.throw or runtime.fatal: "fatal error: <msg>" */
	RUNTIME_FATAL_PANIC = 4, /* runtime.fatalpanic: an unrecovered panic kills the process */
};

/* Which probe a hit came from: indexes hit_counts and drop_counts. */
enum runtime_probe {
	RT_PROBE_STOP = 0,       /* runtime.stopTheWorldWithSema, stack-check jump */
	RT_PROBE_START_RET = 1,  /* runtime.startTheWorldWithSema, every RET */
	RT_PROBE_MARK_TERMINATION = 2, /* runtime.gcMarkTermination, stack-check jump */
	RT_PROBE_THROW = 3,      /* runtime.throw, entry */
	RT_PROBE_FATAL = 4,      /* runtime.fatal (Go 1.19+), entry */
	RT_PROBE_FATAL_PANIC = 5, /* runtime.fatalpanic, entry */
	RT_PROBE_START = 6,      /* runtime.startTheWorldWithSema, stack-check jump (Go 1.22+: the worldStop argument) */
};

enum runtime_limits {
	RT_PROBE_KINDS = 8,        /* room in the per-probe counters */
	RUNTIME_MSG_MAX = 256,     /* bytes of a fatal message kept (the rest is cut; msg_full_len says how long) */
	RUNTIME_REASON_MAX = 48,   /* bytes of a Go < 1.21 stop-the-world reason (m.preemptoff) kept */
	RUNTIME_MAX_LAYOUTS = 64,  /* entries of rt_layouts: Go versions traced at once */
	RUNTIME_MAX_PROCS = 4096,  /* bound of the per-process maps */
};

/* runtime_event.flags */
enum rt_flag {
	RT_FLAG_MSG_UNREADABLE = 1, /* the message's bytes could not be read */
	RT_FLAG_NUMGC = 2,          /* value holds memstats.numgc */
	RT_FLAG_PANIC_STRING = 4,   /* FATAL_PANIC: msg is the panic value (a string, or an error's text) */
	RT_FLAG_PANIC_NIL = 8,      /* FATAL_PANIC: the panic value is nil */
	RT_FLAG_LAST_GC = 16,       /* STW: value holds memstats.last_gc_nanotime as the restart found it */
};

/* One record per event. Fixed size, so user space walks a batch by stride. */
struct runtime_event {
	__u64 ts_ns;      /* bpf_ktime_get_ns() (CLOCK_MONOTONIC, as Go's nanotime); STW: when the world restarted */
	__u64 start_ns;   /* STW: when stopTheWorldWithSema was entered */
	__u64 go_now_ns;  /* STW: startTheWorldWithSema's result, Go's own nanotime at the restart */
	__u64 go_start_ns; /* STW: the start the runtime itself accounts the pause from: Go 1.22+, worldStop's
			    * (taken in stopTheWorldWithSema once it holds sched.lock); before, work.pauseStart as
			    * the stop found it (a GC stop's; stale for other stops); 0 when not read */
	__u64 goid;       /* STW: the goroutine that stopped the world; THROW/FATAL_PANIC: the g running (R14) */
	__u64 curg_goid;  /* the thread's user goroutine (g.m.curg): who threw when R14 is g0 */
	__u64 value;      /* GC_MARK_TERMINATION: memstats.numgc (cycles done before this one); STW: memstats.last_gc_nanotime
			   * (RT_FLAG_LAST_GC), the end gcMarkTermination accounts its pause to; THROW: the probe (enum
			   * runtime_probe: throw or fatal); FATAL_PANIC: 8 bytes of a
			   * non-string panic value */
	__u32 pid;        /* tgid of the traced process */
	__u32 tid;
	__u32 msg_len;      /* bytes in msg */
	__u32 msg_full_len; /* the message's length in the process */
	__u8 kind;          /* enum runtime_event_kind */
	__u8 stw_reason;    /* STW, Go 1.21+: the stwReason value (index of stwReasonStrings) */
	__u8 value_kind;    /* FATAL_PANIC: the Go kind of the panic value's type (24 = string) */
	__u8 flags;         /* enum rt_flag */
	__u16 layout_id;
	__u16 reason_len;   /* STW, Go < 1.21: bytes in reason */
	char reason[RUNTIME_REASON_MAX];
	char msg[RUNTIME_MSG_MAX];
};

/* Where the runtime keeps what the probes read, for one Go version (from agent/src/gobinary/layouts.ts). */
struct rt_layout {
	__u32 g_goid;
	__u32 g_m;
	__u32 m_curg;
	__u32 m_preemptoff; /* string: the stop-the-world reason before Go 1.21 */
	__u32 panic_arg;    /* _panic.arg (an eface: type, data) */
	__u32 flags;        /* enum rt_layout_reason: where the stop-the-world reason is */
	__u32 start_arg_reg; /* enum go_abi_reg: startTheWorldWithSema's w.startedStopping (Go 1.22+), or none */
	__u32 reserved;
};

enum rt_layout_reason {
	RT_LAYOUT_REASON_IN_RAX = 1,     /* stopTheWorldWithSema(reason stwReason): Go 1.21+ */
	RT_LAYOUT_REASON_PREEMPTOFF = 2, /* stopTheWorld(reason string) left it in m.preemptoff: Go < 1.21 */
};

/* Per traced process, written by the agent at attach. */
struct rt_proc {
	__u64 numgc_addr; /* runtime address of memstats.numgc (uint32); 0 when unknown (stripped binary) */
	__u64 pause_start_addr; /* Go < 1.22: runtime address of work.pauseStart (int64), the GC pause start the
				 * runtime accounts from, set just before it stops the world; 0 otherwise */
	__u64 last_gc_addr;     /* runtime address of memstats.last_gc_nanotime: Go < 1.22's mark termination
				 * takes its pause's end before startTheWorldWithSema takes its own; 0 when unknown */
};

#endif
