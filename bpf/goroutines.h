/* SPDX-License-Identifier: Apache-2.0 */
/* Records and numbering of bpf/goroutines.bpf.c: the one source. The agent's TypeScript for them
 * (agent/src/events/goroutines.bpf.ts) is generated from the compiled object's BTF by scripts/bpf-types
 * (`npm run gen:bpf`); test/bpf/layout.test.ts fails when it is not current. */
#ifndef GOROSCOPE_GOROUTINES_H
#define GOROSCOPE_GOROUTINES_H

enum goroutine_event_kind {
	GOROUTINE_CREATE = 1, /* runtime.newproc1 returned a new g */
	GOROUTINE_PARK = 2,   /* runtime.gopark: the goroutine blocks */
	GOROUTINE_READY = 3,  /* runtime.ready (goready's body): a parked goroutine becomes runnable */
	GOROUTINE_EXIT = 4,   /* runtime.goexit1: the goroutine ends */
	GOROUTINE_RUN = 5,    /* runtime.execute: a runnable goroutine starts running on a thread (M) and P */
	GOROUTINE_YIELD = 6,  /* runtime.goschedImpl / preemptPark: it stops running without parking (cause says why) */
	GOROUTINE_SYSCALL = 7, /* runtime.exitsyscall: back from a system call (or cgo call) entered on this thread */
};

/* Why a goroutine was runnable, as the scheduler probes saw it become so (RUN, YIELD records' cause). */
enum runnable_cause {
	RUNNABLE_UNKNOWN = 0,   /* no probe saw it become runnable: its run-queue time is not known */
	RUNNABLE_READY = 1,     /* runtime.ready: woken (channel, mutex, timer, GC) */
	RUNNABLE_CREATED = 2,   /* a go statement queued it */
	RUNNABLE_YIELDED = 3,   /* runtime.Gosched (goschedImpl, not preempted) */
	RUNNABLE_PREEMPTED = 4, /* preempted by the scheduler (sysmon's time slice, a GC request): gopreempt_m */
	RUNNABLE_SYSCALL = 5,   /* back from a system call with no P free: queued (exitsyscall0 / exitsyscallNoP) */
	RUNNABLE_INJECTED = 6,  /* injectglist: woken in a batch (the network poller, timers) */
	RUNNABLE_PREEMPT_PARKED = 7, /* YIELD only: suspended in place by preemptPark (a GC stack scan) */
};

/* Which probe a hit came from: indexes hit_counts and drop_counts. */
enum goroutine_probe {
	PROBE_NEWPROC1_ENTRY = 0,
	PROBE_NEWPROC1_RET = 1,
	PROBE_GOPARK = 2,
	PROBE_READY = 3,
	PROBE_GOEXIT1 = 4,
	PROBE_EXECUTE = 5,   /* runtime.execute */
	PROBE_RUNNABLE = 6,  /* where goroutines become runnable: ready, create, goschedImpl, exitsyscall0, injectglist */
	PROBE_SYSCALL = 7,   /* runtime.entersyscall, entersyscallblock, exitsyscall */
};

enum goroutine_limits {
	PROBE_KINDS = 8,          /* room in the per-probe counters */
	MAX_RUNTIME_LAYOUTS = 64, /* entries of runtime_layouts: Go versions traced at once */
	GOID_EPOCH_SLOTS = 4096,  /* entries of goid_epochs, indexed by pid modulo this: a process whose slot
	                           * another traced process holds goes without the goid cache */
};

/* A process's goid cache epoch (goid_epochs[pid % GOID_EPOCH_SLOTS]). The agent gives a process a new epoch,
 * never used before, each time the exit probe has come on for it (after attaching), and sets 0 before it
 * detaches that probe: a cached goid is good only under its own epoch, so none filled before a window in
 * which exits went unseen is ever used. */
struct goid_epoch {
	__u32 pid;
	__u32 epoch; /* 0: no cache for this process now */
};

/* One record per lifecycle event. Fixed size, so user space walks a batch by stride. */
struct goroutine_event {
	__u64 ts_ns;      /* bpf_ktime_get_ns(): CLOCK_MONOTONIC, the clock Go's nanotime uses */
	__u64 goid;       /* the goroutine the event is about */
	__u64 other_goid; /* CREATE: creator; READY: waker (0 when the runtime readies from g0) */
	__u64 pc;         /* CREATE: the go statement's return address (g.gopc) */
	__u64 start_pc;   /* CREATE: entry of the goroutine's function (g.startpc) */
	__u32 pid;        /* tgid of the traced process */
	__u32 tid;
	__u8 kind;        /* enum goroutine_event_kind */
	__u8 wait_reason; /* PARK: the runtime's waitReason, numbered as in that Go version */
	__u16 layout_id;  /* which runtime_layout decoded this process */
	__u16 p_id;       /* RUN: the P (p.id) it runs on */
	__u8 cause;       /* RUN, YIELD: enum runnable_cause */
	__u8 reserved;
	__u64 g_addr;     /* the g itself: lets the agent re-read the goroutine's status from memory later */
	__u64 duration_ns; /* RUN: time runnable before it ran (0 if cause is unknown); SYSCALL: time in the call */
};

/* A goroutine's runnable stamp, keyed by sched_key(pid, goid): set where it becomes runnable, taken by execute.
 * window: the scheduler window of the probe that set it (its cookie); a stamp from another window is stale
 * (set while execute was off, or before it was last turned on) and is never used. */
struct runnable_stamp {
	__u64 ts_ns;
	__u32 window;
	__u8 cause;
	__u8 pad[3];
};

/* Entered system call of one thread (pid_tgid): exitsyscall on the same thread ends it. */
struct syscall_stamp {
	__u64 ts_ns;
	__u64 goid;
	__u32 window; /* as runnable_stamp's */
	__u32 pad;
};

/* Where the runtime keeps what the probes read, for one Go version (agent/src/gobinary/layouts.ts). */
struct runtime_layout {
	__u32 g_goid;
	__u32 g_parent_goid; /* 0: the g has no parentGoid (before Go 1.21); creator comes from newproc1's entry */
	__u32 g_gopc;
	__u32 g_startpc;
	__u32 g_m;           /* g.m: the thread running the g */
	__u32 m_curg;        /* m.curg: the user goroutine of a thread that runs on g0 */
	__u32 flags;
	__u32 m_p;           /* m.p: the thread's P (puintptr) */
	__u32 p_id;          /* p.id (int32) */
	__u32 g_schedlink;   /* g.schedlink: the next g in a gList (injectglist) */
};

#endif
