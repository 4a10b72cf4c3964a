// SPDX-License-Identifier: Apache-2.0
/* The reader thread (reader.h).
 *
 * Ring buffers: the BPF side wakes the thread only past a threshold (a wakeup per record costs more than the
 * probe, ../shared/FACTS.md) and the thread drains every poll_ms anyway. Records arrive in the order they were
 * reserved, across CPUs. Each ring's data is mapped once: libbpf's ring_buffer maps it twice, back to back, so
 * that a record crossing the end reads as one piece, and the kernel inserts every page of both at mmap time, so
 * each ring counted twice its size in the agent's RSS (26 MiB of the four rings). Records here have one size per
 * ring; the few that cross the end are copied into a scratch record.
 *
 * Perf event arrays (kernels before 5.8): one buffer per CPU, so records of different CPUs arrive out of
 * order, and the agent's model needs a goroutine's creation before its exit. Each round the thread stages what
 * it read, sorts by timestamp, and releases only records older than HOLDBACK_NS: a record stamped earlier on
 * another CPU has been published by then (a BPF program runs for microseconds, without preemption on those
 * kernels). */
#define _GNU_SOURCE
#include "reader.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <linux/perf_event.h>
#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#define HOLDBACK_NS 2000000ULL
/* While its rings stay quiet the thread waits longer between drains, doubling up to idle_ms (1 s by default): each
 * wake-up of the agent costs the node more than its own CPU time shows. On a 2-vCPU VM a wake-up on the load
 * generator's CPU cost the hello server ~0.06% of its throughput per wake-up a second (scripts/bench/http-load.ts),
 * and four readers at 25 wake-ups a second plus a GC trickle holding one at 10 ms were ~140 of the agent's ~250.
 * Records come promptly all the same: the BPF side wakes the thread past a threshold, and a round whose records
 * came at QUICK_RECORDS_PER_S or more since the last brings the wait back to poll_ms. A trickle below that (the GC
 * events of a saturated hello server, ~200 a second) waits up to idle_ms, even when it woke the thread past its
 * threshold; whoever needs the records up to now asks for them (reader_request_drain).
 * A wait as long as idle_ms ends on a grid (the multiples of idle_ms on CLOCK_MONOTONIC) that every reader and the
 * agent's own timers keep (agent/src/tracer/clock.ts): the agent's quiet rounds come as one burst a second, not
 * as one per thread and timer spread over it. */
#define DEFAULT_IDLE_MS 1000
#define QUICK_RECORDS_PER_S 1000
#define STAGE_MAX_BYTES (16u << 20)

/* A BPF ring buffer as the kernel lays it out: a consumer page (the only writable one), a producer page, then
 * the data (max_entries bytes, a power of two), here mapped once. */
struct bpf_ring {
	unsigned long *consumer_pos;
	const unsigned long *producer_pos;
	const unsigned char *data;
	size_t mask;
	size_t mapped; /* bytes of the producer mapping */
	unsigned char *wrapped; /* a record that crosses the end, put together */
};

struct ring_batch {
	struct reader *reader;
	int ring;
	size_t record_size;
	unsigned char *buf;
	size_t len, cap;
	struct bpf_ring *rg; /* ring path */
	/* perf path only */
	struct perf_buffer *pb;
	unsigned char *stage, *stage_spare;
	size_t stage_len, stage_cap;
	struct stage_key *keys;
	size_t keys_cap;
};

struct stage_key {
	__u64 ts;
	size_t index; /* arrival order: breaks ties, keeps one CPU's records in their order */
};

struct batch_msg {
	int ring;
	unsigned char *data;
	size_t len;
};

struct reader {
	pthread_t thread;
	bool started;
	bool owned_by_tsfn;
	atomic_bool stop;
	int epfd;
	/* Written by reader_stop: the thread leaves its wait at once, however long that wait is (-1: none). */
	int wake_fd;
	napi_threadsafe_function tsfn;
	int nrings;
	struct ring_batch batches[READER_MAX_RINGS];
	struct reader_options opts;
	atomic_long outstanding;
	atomic_ullong records, handed_batches, malformed, stalls, perf_lost, reorder_overflows;
	/* Every record stamped before this was handed over (reader_stats.through_ns). */
	atomic_ullong through_ns;
	/* The longest wait while the rings are quiet (reader_set_idle_ms may change it while the thread runs). */
	atomic_int idle_ms;
	/* When a round was last asked for (reader_request_drain): the round covers the records stamped before it. */
	atomic_ullong asked_ns;
};

static __u64 mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (__u64)ts.tv_sec * 1000000000ULL + (__u64)ts.tv_nsec;
}

/* ---------- batches handed to JavaScript ---------- */

/* False when the batch could not go (it stays for the next flush). */
static bool flush_batch(struct ring_batch *b)
{
	if (!b->len)
		return true;
	struct batch_msg *m = malloc(sizeof(*m));
	if (!m)
		return false; /* keep the batch: it goes with the next flush */
	m->ring = b->ring;
	m->data = b->buf;
	m->len = b->len;
	atomic_fetch_add(&b->reader->outstanding, 1);
	atomic_fetch_add(&b->reader->handed_batches, 1);
	if (napi_call_threadsafe_function(b->reader->tsfn, m, napi_tsfn_nonblocking) != napi_ok) {
		atomic_fetch_sub(&b->reader->outstanding, 1);
		free(m->data);
		free(m);
	}
	b->buf = malloc(b->cap);
	b->len = 0;
	return true;
}

static void append_record(struct ring_batch *b, const void *data)
{
	if (b->len + b->record_size > b->cap)
		flush_batch(b);
	if (!b->buf) { /* out of memory: count as malformed rather than crash */
		atomic_fetch_add(&b->reader->malformed, 1);
		b->buf = malloc(b->cap);
		return;
	}
	memcpy(b->buf + b->len, data, b->record_size);
	b->len += b->record_size;
	atomic_fetch_add(&b->reader->records, 1);
}

/* ---------- the ring path ---------- */

static int ring_map(struct bpf_ring *g, int map_fd, size_t record_size)
{
	struct bpf_map_info info = { 0 };
	__u32 len = sizeof(info);
	if (bpf_obj_get_info_by_fd(map_fd, &info, &len))
		return -errno;
	size_t page = (size_t)sysconf(_SC_PAGESIZE), size = info.max_entries;
	if (info.type != BPF_MAP_TYPE_RINGBUF || !size || (size & (size - 1)))
		return -EINVAL;
	void *c = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (c == MAP_FAILED)
		return -errno;
	void *p = mmap(NULL, page + size, PROT_READ, MAP_SHARED, map_fd, (off_t)page);
	if (p == MAP_FAILED) {
		int err = -errno;
		munmap(c, page);
		return err;
	}
	g->consumer_pos = c;
	g->producer_pos = p;
	g->data = (const unsigned char *)p + page;
	g->mask = size - 1;
	g->mapped = page + size;
	g->wrapped = malloc(record_size);
	return g->wrapped ? 0 : -ENOMEM;
}

static void ring_unmap(struct bpf_ring *g)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	if (g->consumer_pos)
		munmap(g->consumer_pos, page);
	if (g->producer_pos)
		munmap((void *)g->producer_pos, g->mapped);
	free(g->wrapped);
	memset(g, 0, sizeof(*g));
}

/* What libbpf's ringbuf_process_ring does, for one ring mapped once: committed records in order, up to the first
 * one still being written (busy); discarded ones skipped. */
static void ring_consume(struct ring_batch *b)
{
	struct bpf_ring *g = b->rg;
	unsigned long cons = __atomic_load_n(g->consumer_pos, __ATOMIC_ACQUIRE);
	bool more = true;
	while (more) {
		more = false;
		unsigned long prod = __atomic_load_n(g->producer_pos, __ATOMIC_ACQUIRE);
		while (cons < prod) {
			/* The 8-byte header is 8-aligned and the size a power of two: it never crosses the end. */
			const __u32 *hdr = (const __u32 *)(g->data + (cons & g->mask));
			__u32 len = __atomic_load_n(hdr, __ATOMIC_ACQUIRE);
			if (len & BPF_RINGBUF_BUSY_BIT)
				return;
			more = true;
			size_t size = len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
			size_t at = (cons + BPF_RINGBUF_HDR_SZ) & g->mask;
			cons += (size + BPF_RINGBUF_HDR_SZ + 7) & ~(size_t)7;
			if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
				if (size != b->record_size) {
					atomic_fetch_add(&b->reader->malformed, 1);
				} else if (at + size <= g->mask + 1) {
					append_record(b, g->data + at);
				} else {
					size_t head = g->mask + 1 - at;
					memcpy(g->wrapped, g->data + at, head);
					memcpy(g->wrapped + head, g->data, size - head);
					append_record(b, g->wrapped);
				}
			}
			__atomic_store_n(g->consumer_pos, cons, __ATOMIC_RELEASE);
		}
	}
}

/* ---------- the perf path: staging and time order ---------- */

static int by_time(const void *a, const void *b)
{
	const struct stage_key *x = a, *y = b;
	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Releases staged records in time order, those stamped at or before cutoff. */
static void release_staged(struct ring_batch *b, __u64 cutoff)
{
	size_t rs = b->record_size, n = b->stage_len / rs;
	if (!n)
		return;
	if (n > b->keys_cap) {
		struct stage_key *k = realloc(b->keys, n * sizeof(*k));
		if (!k) { /* no room to sort: release in arrival order rather than lose records */
			atomic_fetch_add(&b->reader->reorder_overflows, 1);
			for (size_t i = 0; i < n; i++)
				append_record(b, b->stage + i * rs);
			b->stage_len = 0;
			return;
		}
		b->keys = k;
		b->keys_cap = n;
	}
	for (size_t i = 0; i < n; i++) {
		memcpy(&b->keys[i].ts, b->stage + i * rs, sizeof(__u64));
		b->keys[i].index = i;
	}
	qsort(b->keys, n, sizeof(*b->keys), by_time);
	size_t i = 0;
	for (; i < n && b->keys[i].ts <= cutoff; i++)
		append_record(b, b->stage + b->keys[i].index * rs);
	/* What is held back goes to the front of the stage, already in order. */
	size_t kept = 0;
	for (; i < n; i++, kept++)
		memcpy(b->stage_spare + kept * rs, b->stage + b->keys[i].index * rs, rs);
	unsigned char *t = b->stage;
	b->stage = b->stage_spare;
	b->stage_spare = t;
	b->stage_len = kept * rs;
}

static bool stage_grow(struct ring_batch *b)
{
	if (b->stage_cap >= STAGE_MAX_BYTES)
		return false;
	size_t cap = b->stage_cap * 2;
	unsigned char *s = realloc(b->stage, cap);
	if (!s)
		return false;
	b->stage = s;
	unsigned char *spare = realloc(b->stage_spare, cap);
	if (!spare)
		return false; /* stage is bigger now; the capacity stays until both are */
	b->stage_spare = spare;
	b->stage_cap = cap;
	return true;
}

struct perf_sample {
	struct perf_event_header header;
	__u32 size;
	unsigned char data[];
};

struct perf_lost {
	struct perf_event_header header;
	__u64 id;
	__u64 lost;
};

static enum bpf_perf_event_ret on_perf_event(void *ctx, int cpu, struct perf_event_header *ev)
{
	(void)cpu;
	struct ring_batch *b = ctx;
	if (ev->type == PERF_RECORD_LOST) {
		atomic_fetch_add(&b->reader->perf_lost, ((struct perf_lost *)ev)->lost);
		return LIBBPF_PERF_EVENT_CONT;
	}
	if (ev->type != PERF_RECORD_SAMPLE)
		return LIBBPF_PERF_EVENT_CONT;
	struct perf_sample *s = (struct perf_sample *)ev;
	/* The kernel pads raw samples to 8 bytes (with the size word): up to 7 bytes past the record. */
	if (s->size < b->record_size || s->size >= b->record_size + 8) {
		atomic_fetch_add(&b->reader->malformed, 1);
		return LIBBPF_PERF_EVENT_CONT;
	}
	if (b->stage_len + b->record_size > b->stage_cap && !stage_grow(b)) {
		atomic_fetch_add(&b->reader->reorder_overflows, 1);
		release_staged(b, ~0ULL);
	}
	memcpy(b->stage + b->stage_len, s->data, b->record_size);
	b->stage_len += b->record_size;
	return LIBBPF_PERF_EVENT_CONT;
}

/* ---------- the thread ---------- */

/* Records the round read. */
static unsigned long long drain(struct reader *r, bool final)
{
	__u64 before = atomic_load(&r->records);
	/* Taken before any buffer is read: a record stamped before this, less the holdback, was published by the
	 * time each buffer is read in this round, whatever the order of CPUs and however long the round takes. */
	__u64 start = mono_ns();
	__u64 cutoff = final ? ~0ULL : start - HOLDBACK_NS;
	bool all = true;
	for (int i = 0; i < r->nrings; i++) {
		struct ring_batch *b = &r->batches[i];
		if (b->rg)
			ring_consume(b);
		if (b->pb) {
			perf_buffer__consume(b->pb);
			release_staged(b, cutoff);
		}
		all &= flush_batch(b);
	}
	/* A record stamped before start less the holdback was published before this round read its ring (a ring
	 * stops at a record still being written) and has been handed over: stored after the batches are counted. */
	if (all)
		atomic_store(&r->through_ns, start - HOLDBACK_NS);
	return atomic_load(&r->records) - before;
}

/* ms until the next multiple of period_ms on CLOCK_MONOTONIC, at least half a period away. */
static int ms_to_grid(int period_ms)
{
	__u64 period = (__u64)period_ms * 1000000ULL, now = mono_ns();
	__u64 due = (now + period / 2) / period * period + period;
	return (int)((due - now + 999999ULL) / 1000000ULL);
}

/* True when any of its rings is a perf buffer (old kernels): those keep the fixed poll_ms round and stop. */
static bool reads_perf_buffers(const struct reader *r)
{
	for (int i = 0; i < r->nrings; i++)
		if (r->batches[i].pb)
			return true;
	return false;
}

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct epoll_event events[READER_MAX_RINGS + 1];
	/* Perf buffers are a few pages per CPU, never woken for (perfWakeupBytes 0): drained every poll_ms whatever. */
	bool perf = reads_perf_buffers(r);
	int wait_ms = r->opts.poll_ms;
	__u64 last_round = mono_ns();
	while (!atomic_load(&r->stop)) {
		if (atomic_load(&r->outstanding) >= r->opts.max_outstanding) {
			atomic_fetch_add(&r->stalls, 1);
			usleep(1000);
			continue;
		}
		/* Woken past a threshold, asked, or by the timer: either way everything waiting is drained. */
		int n = epoll_wait(r->epfd, events, READER_MAX_RINGS + 1, !perf && wait_ms >= atomic_load(&r->idle_ms) ? ms_to_grid(wait_ms) : wait_ms);
		if (atomic_load(&r->stop))
			break;
		for (int i = 0; i < n; i++) {
			if (events[i].data.fd != r->wake_fd)
				continue; /* a ring past its threshold: drained below */
			__u64 asked;
			if (read(r->wake_fd, &asked, sizeof(asked)) < 0) {
				/* another round took it */
			}
			/* Through the time it was asked: a round covers what was stamped HOLDBACK_NS before it began. */
			__u64 due = atomic_load(&r->asked_ns) + HOLDBACK_NS, now = mono_ns();
			if (due > now && due - now <= HOLDBACK_NS) {
				struct timespec ts = { 0, (long)(due - now) };
				nanosleep(&ts, NULL);
			}
		}
		int max_wait = perf ? r->opts.poll_ms : atomic_load(&r->idle_ms);
		if (max_wait < r->opts.poll_ms)
			max_wait = r->opts.poll_ms;
		unsigned long long got = drain(r, false);
		__u64 now = mono_ns();
		bool quick = got * 1000000000ULL >= QUICK_RECORDS_PER_S * (now - last_round);
		last_round = now;
		if (quick)
			wait_ms = r->opts.poll_ms;
		else
			wait_ms = wait_ms * 2 < max_wait ? wait_ms * 2 : max_wait;
	}
	drain(r, true);
	return NULL;
}

struct reader *reader_new(const struct reader_options *opts)
{
	struct reader *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->opts = *opts;
	r->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (r->epfd < 0) {
		free(r);
		return NULL;
	}
	atomic_init(&r->idle_ms, r->opts.idle_ms > 0 ? r->opts.idle_ms : DEFAULT_IDLE_MS);
	r->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = r->wake_fd };
	if (r->wake_fd >= 0 && epoll_ctl(r->epfd, EPOLL_CTL_ADD, r->wake_fd, &ev)) {
		close(r->wake_fd);
		r->wake_fd = -1; /* a stop then waits out the thread's poll */
	}
	return r;
}

static int watch(struct reader *r, int fd)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	return epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

int reader_add_ring(struct reader *r, int map_fd, bool perf, size_t record_size, size_t perf_pages_per_cpu,
		    size_t wakeup_bytes)
{
	if (r->nrings >= READER_MAX_RINGS || record_size == 0)
		return -EINVAL;
	struct ring_batch *b = &r->batches[r->nrings];
	memset(b, 0, sizeof(*b));
	b->reader = r;
	b->ring = r->nrings;
	b->record_size = record_size;
	b->cap = r->opts.batch_bytes - r->opts.batch_bytes % record_size;
	if (b->cap < record_size)
		b->cap = record_size;
	b->buf = malloc(b->cap);
	if (!b->buf)
		return -ENOMEM;
	int err;
	if (perf) {
		/* libbpf's default wakes the reader on every record; a watermark wakes it once per wakeup_bytes. */
		size_t pages = perf_pages_per_cpu ? perf_pages_per_cpu : 64;
		struct perf_event_attr attr = {
			.type = PERF_TYPE_SOFTWARE,
			.config = PERF_COUNT_SW_BPF_OUTPUT,
			.sample_type = PERF_SAMPLE_RAW,
			.sample_period = 1,
			.watermark = 1,
			.wakeup_watermark = wakeup_bytes ? wakeup_bytes : pages * (size_t)sysconf(_SC_PAGESIZE),
		};
		b->stage_cap = 64 << 10;
		b->stage = malloc(b->stage_cap);
		b->stage_spare = malloc(b->stage_cap);
		if (!b->stage || !b->stage_spare) {
			free(b->stage);
			free(b->stage_spare);
			free(b->buf);
			return -ENOMEM;
		}
		b->pb = perf_buffer__new_raw(map_fd, pages, &attr, on_perf_event, b, NULL);
		err = b->pb ? watch(r, perf_buffer__epoll_fd(b->pb)) : -errno;
	} else {
		b->rg = calloc(1, sizeof(*b->rg));
		err = !b->rg ? -ENOMEM : ring_map(b->rg, map_fd, record_size);
		if (!err)
			err = watch(r, map_fd); /* a ring's fd is readable while records wait */
	}
	r->nrings++; /* counted even on failure, so reader_stop frees what was made */
	return err;
}

static void free_reader(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	free(data);
}

static void free_external(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	free(data);
}

/* Runs on the JavaScript thread: on_batch(ring, buffer). */
static void deliver_batch(napi_env env, napi_value fn, void *context, void *data)
{
	struct reader *r = context;
	struct batch_msg *m = data;
	atomic_fetch_sub(&r->outstanding, 1);
	if (!env) {
		free(m->data);
		free(m);
		return;
	}
	napi_value args[2], undefined;
	napi_create_int32(env, m->ring, &args[0]);
	if (napi_create_external_buffer(env, m->len, m->data, free_external, NULL, &args[1]) != napi_ok) {
		free(m->data);
		free(m);
		return;
	}
	free(m);
	napi_get_undefined(env, &undefined);
	napi_call_function(env, undefined, fn, 2, args, NULL);
}

int reader_start(struct reader *r, napi_env env, napi_value on_batch)
{
	napi_value name;
	napi_create_string_utf8(env, "goroscope-ring-reader", NAPI_AUTO_LENGTH, &name);
	if (napi_create_threadsafe_function(env, on_batch, NULL, name, 0, 1, r, free_reader, r, deliver_batch,
					    &r->tsfn) != napi_ok) {
		r->tsfn = NULL;
		return -EINVAL;
	}
	r->owned_by_tsfn = true;
	if (pthread_create(&r->thread, NULL, reader_main, r))
		return -errno;
	pthread_setname_np(r->thread, "gs-ring-reader"); /* its wake-ups can be told apart (top -H, /proc) */
	r->started = true;
	return 0;
}

void reader_stop(struct reader *r)
{
	if (!r)
		return;
	if (r->started) {
		atomic_store(&r->stop, true);
		/* Ring buffers only: a perf-buffer reader keeps its 10 ms round, so its stop keeps the timing it had
		 * (records written while drain() swaps the perf buffers are lost; a quicker stop moved that gap into
		 * test/agent/lifecycle.test.ts's work). */
		if (r->wake_fd >= 0 && !reads_perf_buffers(r)) {
			__u64 one = 1;
			if (write(r->wake_fd, &one, sizeof(one)) < 0) {
				/* the thread leaves at its next poll */
			}
		}
		pthread_join(r->thread, NULL);
		r->started = false;
	}
	if (r->tsfn) {
		napi_release_threadsafe_function(r->tsfn, napi_tsfn_release);
		r->tsfn = NULL;
	}
	for (int i = 0; i < r->nrings; i++) {
		struct ring_batch *b = &r->batches[i];
		perf_buffer__free(b->pb);
		b->pb = NULL;
		if (b->rg) {
			ring_unmap(b->rg);
			free(b->rg);
			b->rg = NULL;
		}
		free(b->buf);
		free(b->stage);
		free(b->stage_spare);
		free(b->keys);
		b->buf = b->stage = b->stage_spare = NULL;
		b->keys = NULL;
		b->len = b->stage_len = b->keys_cap = 0;
	}
	if (r->epfd >= 0) {
		close(r->epfd);
		r->epfd = -1;
	}
	if (r->wake_fd >= 0) {
		close(r->wake_fd);
		r->wake_fd = -1;
	}
}

void reader_request_drain(struct reader *r)
{
	if (!r || !r->started || r->wake_fd < 0 || reads_perf_buffers(r))
		return;
	atomic_store(&r->asked_ns, mono_ns());
	__u64 one = 1;
	if (write(r->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter is full: a round is due anyway */
	}
}

void reader_set_idle_ms(struct reader *r, int idle_ms)
{
	if (!r || idle_ms <= 0)
		return;
	atomic_store(&r->idle_ms, idle_ms);
	reader_request_drain(r); /* a shorter wait holds from now, not from the end of the current one */
}

void reader_dispose(struct reader *r)
{
	if (!r)
		return;
	reader_stop(r);
	if (!r->owned_by_tsfn)
		free(r);
}

void reader_get_stats(struct reader *r, struct reader_stats *s)
{
	memset(s, 0, sizeof(*s));
	if (!r)
		return;
	s->through_ns = atomic_load(&r->through_ns); /* before the batches: they count all its records */
	s->records = atomic_load(&r->records);
	s->batches = atomic_load(&r->handed_batches);
	s->malformed = atomic_load(&r->malformed);
	s->stalls = atomic_load(&r->stalls);
	s->outstanding = (unsigned long long)atomic_load(&r->outstanding);
	s->perf_lost = atomic_load(&r->perf_lost);
	s->reorder_overflows = atomic_load(&r->reorder_overflows);
}
