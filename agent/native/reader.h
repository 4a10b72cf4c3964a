// SPDX-License-Identifier: Apache-2.0
/* The reader thread: drains BPF ring buffers (or, on kernels before 5.8, perf event arrays) and hands
 * JavaScript one Buffer of fixed-size records per call, never a call per record. */
#ifndef GOROSCOPE_READER_H
#define GOROSCOPE_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <node_api.h>

#define READER_MAX_RINGS 8

struct reader;

struct reader_options {
	int poll_ms;          /* drain at least this often while records come quickly (reader.c) */
	int idle_ms;          /* ... and at least this often while they trickle or none come (0: 1 s) */
	size_t batch_bytes;   /* records per handed Buffer, at most */
	long max_outstanding; /* batches JavaScript has not taken yet before the thread stops draining */
};

struct reader_stats {
	unsigned long long records, batches, malformed, stalls, outstanding;
	unsigned long long perf_lost;        /* records the kernel could not write to a full perf buffer */
	unsigned long long reorder_overflows; /* perf path: staged records released early, order not guaranteed */
	unsigned long long through_ns;        /* every record stamped before this (CLOCK_MONOTONIC) is in a batch
						 counted in `batches` (0 before the first round) */
};

struct reader *reader_new(const struct reader_options *opts);

/* Adds a source read as ring `index` (the order of calls). A perf event array gets one buffer of
 * perf_pages_per_cpu pages per CPU; its records are put back in time order (the first 8 bytes of every record
 * are a CLOCK_MONOTONIC timestamp). wakeup_bytes: how much a perf buffer holds before it wakes the thread
 * (0: only the poll timer). Returns 0 or -errno. */
int reader_add_ring(struct reader *r, int map_fd, bool perf, size_t record_size, size_t perf_pages_per_cpu,
		    size_t wakeup_bytes);

/* Starts the thread; on_batch(ring, buffer) runs on the JavaScript thread. Returns 0 or -errno; on failure
 * the caller still owns the reader (reader_dispose). */
int reader_start(struct reader *r, napi_env env, napi_value on_batch);

/* Asks the thread for a round now (ring buffers; a perf-buffer reader keeps its poll_ms round): for whoever
 * needs the records up to now (reader_stats.through_ns) while the thread waits out a long idle wait. */
void reader_request_drain(struct reader *r);

/* The longest wait while the rings are quiet, from now on: a caller that knows records may come in a flood
 * without waking the thread (a ring whose BPF side never wakes it) keeps it short while they can. */
void reader_set_idle_ms(struct reader *r, int idle_ms);

/* Stops the thread after a last drain. Batches already handed over still arrive through the event loop. */
void reader_stop(struct reader *r);

/* Stops the reader and lets it go: freed now, or by the thread-safe function's finalizer once the last
 * queued batch has been delivered (delivery reads the reader). */
void reader_dispose(struct reader *r);

void reader_get_stats(struct reader *r, struct reader_stats *s);

#endif
