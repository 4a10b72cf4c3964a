// SPDX-License-Identifier: Apache-2.0
/* The native bridge: a Node-API addon over libbpf.
 *
 * It loads a BPF object, attaches uprobes and tracepoints where the agent says, reads and writes maps, and
 * drains ring buffers on a thread of its own. JavaScript gets one Buffer of fixed-size records per call
 * (never a call per record): the reader thread appends records to a batch and hands over full batches, and
 * whatever is waiting after each poll round. Nothing is pinned, so every probe and link goes away with the
 * process, also after kill -9. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <linux/perf_event.h>

#include <linux/types.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <node_api.h>

#include "reader.h"
#include "procmem.h"
#include "tracefs.h"
#include "exits.h"

#define MAX_LINKS 8192

/* ---------- errors and libbpf's log ---------- */

/* libbpf's warnings (the verifier log above all) go here, so a failed load says why. */
static char libbpf_log[8192];
static size_t libbpf_log_len;
static pthread_mutex_t libbpf_log_lock = PTHREAD_MUTEX_INITIALIZER;

static int capture_libbpf_print(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	pthread_mutex_lock(&libbpf_log_lock);
	if (libbpf_log_len >= sizeof(libbpf_log) - 1)
		libbpf_log_len = 0; /* keep the newest lines */
	int n = vsnprintf(libbpf_log + libbpf_log_len, sizeof(libbpf_log) - libbpf_log_len, fmt, args);
	if (n > 0)
		libbpf_log_len += (size_t)n < sizeof(libbpf_log) - libbpf_log_len ? (size_t)n
										   : sizeof(libbpf_log) - libbpf_log_len - 1;
	pthread_mutex_unlock(&libbpf_log_lock);
	return 0;
}

static void clear_libbpf_log(void)
{
	pthread_mutex_lock(&libbpf_log_lock);
	libbpf_log_len = 0;
	libbpf_log[0] = 0;
	pthread_mutex_unlock(&libbpf_log_lock);
}

/* Throws an Error with the message, the errno text and code, and libbpf's log. */
static napi_value throw_errno(napi_env env, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (err < 0)
		err = -err;
	char full[1024 + 64 + sizeof(libbpf_log)];
	pthread_mutex_lock(&libbpf_log_lock);
	if (err)
		snprintf(full, sizeof(full), "%s: %s%s%s", msg, strerror(err), libbpf_log_len ? "\nlibbpf: " : "",
			 libbpf_log_len ? libbpf_log : "");
	else
		snprintf(full, sizeof(full), "%s", msg);
	pthread_mutex_unlock(&libbpf_log_lock);
	napi_value m, e, code;
	napi_create_string_utf8(env, full, NAPI_AUTO_LENGTH, &m);
	napi_create_error(env, NULL, m, &e);
	napi_create_int32(env, err, &code);
	napi_set_named_property(env, e, "errno", code);
	napi_throw(env, e);
	return NULL;
}

#define NAPI_OK(call)                                                                                     \
	do {                                                                                                  \
		if ((call) != napi_ok) {                                                                          \
			const napi_extended_error_info *info;                                                         \
			napi_get_last_error_info(env, &info);                                                         \
			bool pending;                                                                                 \
			napi_is_exception_pending(env, &pending);                                                     \
			if (!pending)                                                                                 \
				napi_throw_error(env, NULL, info->error_message ? info->error_message : "napi call failed"); \
			return NULL;                                                                                  \
		}                                                                                                 \
	} while (0)

static bool get_string(napi_env env, napi_value v, char *buf, size_t cap)
{
	size_t len;
	return napi_get_value_string_utf8(env, v, buf, cap, &len) == napi_ok && len < cap - 1;
}

/* ---------- detaching links in parallel ---------- */

/* Destroying a uprobe's link waits for the kernel's grace periods (uprobe_unregister_sync: ~100 ms each on this
 * VM), one after another when done in turn: 600 uprobes of 60 exited processes took ~40 s. Waiters at the same
 * time share a grace period, so links destroyed on parallel threads cost about one, whatever their number. */
#define DESTROY_THREADS 32

/* An attached probe: a libbpf link, or the fd of a link made here (uprobe multi-links, which libbpf 1.1 lacks). */
struct link_slot {
	struct bpf_link *bpf;
	int raw_fd;
	bool used;
	/* Destroyed when its process exited (on_process_exit); the slot stays taken until JavaScript detaches it,
	 * so its id never names a newer link. */
	bool dead;
	/* The process a uprobe watches; 0 for every process, or not a uprobe. */
	int pid;
};

static void link_destroy(struct link_slot *l)
{
	if (l->bpf)
		bpf_link__destroy(l->bpf);
	else if (l->used && !l->dead)
		close(l->raw_fd);
	memset(l, 0, sizeof(*l));
}

struct destroy_job {
	struct link_slot *links;
	int n;
	atomic_int next;
};

static void *destroy_worker(void *arg)
{
	struct destroy_job *j = arg;
	for (;;) {
		int i = atomic_fetch_add(&j->next, 1);
		if (i >= j->n)
			return NULL;
		link_destroy(&j->links[i]);
	}
}

/* Destroys n links (the array itself is the caller's); returns when all are gone. */
static void destroy_links(struct link_slot *links, int n)
{
	struct destroy_job job = { .links = links, .n = n };
	atomic_init(&job.next, 0);
	pthread_t threads[DESTROY_THREADS];
	int started = 0;
	for (; started < n - 1 && started < DESTROY_THREADS; started++) {
		if (pthread_create(&threads[started], NULL, destroy_worker, &job))
			break; /* fewer threads: the caller's own share grows */
	}
	destroy_worker(&job);
	for (int i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
}

/* ---------- uprobe multi-links (Linux 6.6+): one link, many offsets, one grace period to detach ---------- */

#define ATTACH_TRACE_UPROBE_MULTI 48 /* enum bpf_attach_type: BPF_TRACE_UPROBE_MULTI; Debian's headers predate it */

/* union bpf_attr's link_create, with the uprobe_multi member (include/uapi/linux/bpf.h, Linux 6.6+). */
struct link_create_uprobe_multi {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__aligned_u64 path;
	__aligned_u64 offsets;
	__aligned_u64 ref_ctr_offsets;
	__aligned_u64 cookies;
	__u32 cnt;
	__u32 uprobe_flags;
	__u32 pid;
};

/* pid 0: every process */
static int create_uprobe_multi(int prog_fd, const char *path, const unsigned long *offsets, const __u64 *cookies,
			       __u32 cnt, __u32 pid)
{
	struct link_create_uprobe_multi attr;
	memset(&attr, 0, sizeof(attr));
	attr.prog_fd = prog_fd;
	attr.attach_type = ATTACH_TRACE_UPROBE_MULTI;
	attr.path = (__u64)(uintptr_t)path;
	attr.offsets = (__u64)(uintptr_t)offsets;
	attr.cookies = (__u64)(uintptr_t)cookies;
	attr.cnt = cnt;
	attr.pid = pid;
	int fd = (int)syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
	return fd < 0 ? -errno : fd;
}

/* libbpf's own probe (1.3+): a multi-link on "/" fails with EBADF where the kernel has them, and an invalid pid
 * fails with EINVAL only where their pid filter is per process (the first version filtered by thread). */
static bool probe_uprobe_multi(void)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = ATTACH_TRACE_UPROBE_MULTI);
	int prog = bpf_prog_load(BPF_PROG_TYPE_KPROBE, NULL, "GPL", insns, 2, &opts);
	if (prog < 0)
		return false;
	unsigned long offset = 0;
	int fd = create_uprobe_multi(prog, "/", &offset, NULL, 1, 0);
	bool supported = fd == -EBADF;
	if (fd >= 0)
		close(fd);
	bool pid_fixed = false;
	if (supported) {
		fd = create_uprobe_multi(prog, "/", &offset, NULL, 1, (__u32)-1);
		pid_fixed = fd == -EINVAL;
		if (fd >= 0)
			close(fd);
	}
	close(prog);
	return supported && pid_fixed;
}

static int uprobe_multi_state = -1; /* -1 not probed yet */

static bool uprobe_multi_supported(void)
{
	if (uprobe_multi_state < 0)
		uprobe_multi_state = probe_uprobe_multi();
	return uprobe_multi_state;
}

/* ---------- the BPF object ---------- */

#define MAX_PID_MAPS 8

struct bpf_handle {
	struct bpf_object *obj;
	/* Uprobe programs were loaded for multi-links (see uprobe_multi_supported): every uprobe attaches as one. */
	bool uprobe_multi;
	/* links (and nlinks_hint) are shared with the exit-watch thread. */
	pthread_mutex_t lock;
	struct link_slot links[MAX_LINKS];
	int nlinks_hint;
	struct reader *reader;
	/* Processes with uprobes: when one exits, its links go and its entries in pid_maps, on the watch thread. */
	struct exit_watch *exits;
	struct bpf_map *pid_maps[MAX_PID_MAPS];
	int npid_maps;
	atomic_uint exited_processes;
	atomic_uint exit_detached_links;
};

/* Deletes a process's entries from a map keyed by pid (4 bytes) or pid_tgid (8 bytes, the pid above). */
static void delete_process_entries(struct bpf_map *m, int pid)
{
	size_t klen = bpf_map__key_size(m);
	if (klen == 4) {
		__u32 key = (__u32)pid;
		bpf_map__delete_elem(m, &key, sizeof(key), 0);
		return;
	}
	if (klen != 8)
		return;
	__u64 keys[256], cur, next;
	int n = 0;
	bool first = true;
	while (n < 256 && !bpf_map__get_next_key(m, first ? NULL : &cur, &next, sizeof(next))) {
		first = false;
		cur = next;
		if ((next >> 32) == (__u64)(__u32)pid)
			keys[n++] = next;
	}
	for (int i = 0; i < n; i++)
		bpf_map__delete_elem(m, &keys[i], sizeof(keys[i]), 0);
}

/* On the exit-watch thread: the process is gone, so are its probes (in parallel: one grace period) and its
 * per-process map entries, without waiting for JavaScript's event loop. */
static void on_process_exit(void *ctx, int pid)
{
	struct bpf_handle *h = ctx;
	struct link_slot gone[256];
	int n = 0;
	pthread_mutex_lock(&h->lock);
	for (int i = 0; i < MAX_LINKS && n < 256; i++) {
		struct link_slot *l = &h->links[i];
		if (!l->used || l->dead || l->pid != pid)
			continue;
		gone[n++] = *l;
		l->bpf = NULL;
		l->raw_fd = -1;
		l->dead = true;
	}
	pthread_mutex_unlock(&h->lock);
	destroy_links(gone, n);
	for (int i = 0; i < h->npid_maps; i++)
		delete_process_entries(h->pid_maps[i], pid);
	atomic_fetch_add(&h->exited_processes, 1);
	atomic_fetch_add(&h->exit_detached_links, (unsigned)n);
}

/* Watch pid's exit (the first uprobe on it starts the thread). Best effort: without pidfds, JavaScript detaches. */
static void watch_exit(struct bpf_handle *h, int pid)
{
	if (pid <= 0)
		return;
	pthread_mutex_lock(&h->lock);
	if (!h->exits)
		h->exits = exit_watch_new(on_process_exit, h);
	struct exit_watch *w = h->exits;
	pthread_mutex_unlock(&h->lock);
	if (w)
		exit_watch_add(w, pid);
}

static void handle_close(struct bpf_handle *h)
{
	/* First, and without the lock: a callback in progress takes it. */
	exit_watch_free(h->exits);
	h->exits = NULL;
	if (h->reader) {
		reader_dispose(h->reader);
		h->reader = NULL;
	}
	int n = 0;
	for (int i = 0; i < MAX_LINKS; i++) /* in place: the used slots to the front */
		if (h->links[i].used) {
			struct link_slot l = h->links[i];
			memset(&h->links[i], 0, sizeof(l));
			h->links[n++] = l;
		}
	destroy_links(h->links, n);
	if (h->obj) {
		bpf_object__close(h->obj);
		h->obj = NULL;
	}
}

static void finalize_handle(napi_env env, void *data, void *hint)
{
	(void)env;
	(void)hint;
	struct bpf_handle *h = data;
	handle_close(h);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

static struct bpf_handle *unwrap(napi_env env, napi_value self)
{
	struct bpf_handle *h = NULL;
	if (napi_unwrap(env, self, (void **)&h) != napi_ok || !h) {
		napi_throw_error(env, NULL, "not a BPF object");
		return NULL;
	}
	if (!h->obj) {
		napi_throw_error(env, NULL, "the BPF object is closed");
		return NULL;
	}
	return h;
}

/* Sets a `const volatile` global in .rodata (or .data/.bss) by name, before load. */
static int set_global(struct bpf_object *obj, const char *name, const void *val, size_t size)
{
	struct btf *btf = bpf_object__btf(obj);
	if (!btf)
		return -ENOENT;
	struct bpf_map *map;
	bpf_object__for_each_map(map, obj)
	{
		const char *mname = bpf_map__name(map);
		const char *dot = strrchr(mname, '.');
		if (!dot || (strcmp(dot, ".rodata") && strcmp(dot, ".data") && strcmp(dot, ".bss")))
			continue;
		int sec_id = btf__find_by_name_kind(btf, dot, BTF_KIND_DATASEC);
		if (sec_id < 0)
			continue;
		const struct btf_type *sec = btf__type_by_id(btf, sec_id);
		const struct btf_var_secinfo *vs = btf_var_secinfos(sec);
		for (unsigned i = 0; i < btf_vlen(sec); i++, vs++) {
			const struct btf_type *var = btf__type_by_id(btf, vs->type);
			if (strcmp(btf__name_by_offset(btf, var->name_off), name))
				continue;
			if (vs->size != size)
				return -EINVAL;
			size_t total;
			const void *init = bpf_map__initial_value(map, &total);
			if (!init || vs->offset + size > total)
				return -EINVAL;
			unsigned char *copy = malloc(total);
			if (!copy)
				return -ENOMEM;
			memcpy(copy, init, total);
			memcpy(copy + vs->offset, val, size);
			int err = bpf_map__set_initial_value(map, copy, total);
			free(copy);
			return err;
		}
	}
	return -ENOENT;
}

/* new Bpf(objectPath, { ringSizes?: {name: bytes}, perfEventArrays?: [name], skipPrograms?: [name],
 *                      globals?: {name: Buffer} }) */
static napi_value bpf_new(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], self;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	char path[4096];
	if (argc < 1 || !get_string(env, argv[0], path, sizeof(path)))
		return throw_errno(env, 0, "Bpf: the first argument must be the object file's path");

	clear_libbpf_log();
	struct bpf_object *obj = bpf_object__open_file(path, NULL);
	if (!obj)
		return throw_errno(env, errno, "cannot open BPF object %s", path);
	bool uprobe_multi = false;
	char pid_map_names[MAX_PID_MAPS][128];
	int npid_maps = 0;

	napi_valuetype t = napi_undefined;
	if (argc > 1)
		napi_typeof(env, argv[1], &t);
	if (t == napi_object) {
		napi_value sizes, globals, names, key, val;
		bool has;
		uint32_t n;
		char name[256];
		napi_has_named_property(env, argv[1], "ringSizes", &has);
		if (has && napi_get_named_property(env, argv[1], "ringSizes", &sizes) == napi_ok &&
		    napi_get_property_names(env, sizes, &names) == napi_ok) {
			napi_get_array_length(env, names, &n);
			for (uint32_t i = 0; i < n; i++) {
				uint32_t bytes;
				napi_get_element(env, names, i, &key);
				napi_get_property(env, sizes, key, &val);
				if (!get_string(env, key, name, sizeof(name)) || napi_get_value_uint32(env, val, &bytes) != napi_ok) {
					bpf_object__close(obj);
					return throw_errno(env, 0, "Bpf: ringSizes must map names to byte counts");
				}
				struct bpf_map *m = bpf_object__find_map_by_name(obj, name);
				int err = m ? bpf_map__set_max_entries(m, bytes) : -ENOENT;
				if (err) {
					bpf_object__close(obj);
					return throw_errno(env, err, "cannot size ring buffer %s to %u bytes", name, bytes);
				}
			}
		}
		/* Kernels without BPF ring buffers: these maps become perf event arrays (one buffer per CPU; libbpf
		 * sizes an array of max_entries 0 to the CPU count). The programs learn it from use_perf_events. */
		napi_value perf_maps;
		bool perf_is_array = false;
		napi_has_named_property(env, argv[1], "perfEventArrays", &has);
		if (has && napi_get_named_property(env, argv[1], "perfEventArrays", &perf_maps) == napi_ok)
			napi_is_array(env, perf_maps, &perf_is_array);
		if (has && !perf_is_array) {
			bpf_object__close(obj);
			return throw_errno(env, 0, "Bpf: perfEventArrays must be an array of map names");
		}
		if (perf_is_array) {
			napi_get_array_length(env, perf_maps, &n);
			for (uint32_t i = 0; i < n; i++) {
				napi_get_element(env, perf_maps, i, &val);
				struct bpf_map *m = get_string(env, val, name, sizeof(name)) ? bpf_object__find_map_by_name(obj, name) : NULL;
				int err = m ? bpf_map__set_type(m, BPF_MAP_TYPE_PERF_EVENT_ARRAY) : -ENOENT;
				if (!err)
					err = bpf_map__set_key_size(m, 4);
				if (!err)
					err = bpf_map__set_value_size(m, 4);
				if (!err)
					err = bpf_map__set_max_entries(m, 0);
				if (err) {
					bpf_object__close(obj);
					return throw_errno(env, err, "cannot make %s a perf event array", m ? name : "a map");
				}
			}
		}
		/* Uprobe programs load for multi-links: detaching one costs one grace period for all its offsets,
		 * where each classic uprobe costs one under a kernel-wide mutex. */
		napi_value multi;
		bool want_multi = false;
		napi_has_named_property(env, argv[1], "uprobeMulti", &has);
		if (has && napi_get_named_property(env, argv[1], "uprobeMulti", &multi) == napi_ok)
			napi_get_value_bool(env, multi, &want_multi);
		if (want_multi) {
			if (!uprobe_multi_supported()) {
				bpf_object__close(obj);
				return throw_errno(env, EOPNOTSUPP, "uprobeMulti: this kernel has no uprobe multi-links (Linux 6.9+)");
			}
			struct bpf_program *p;
			bpf_object__for_each_program(p, obj)
			{
				if (!strncmp(bpf_program__section_name(p), "uprobe", 6))
					bpf_program__set_expected_attach_type(p, ATTACH_TRACE_UPROBE_MULTI);
			}
			uprobe_multi = true;
		}
		/* Maps keyed by pid or pid_tgid whose entries of a process go when it exits (see on_process_exit). */
		napi_value pmaps;
		bool pmaps_array = false;
		napi_has_named_property(env, argv[1], "perProcessMaps", &has);
		if (has && napi_get_named_property(env, argv[1], "perProcessMaps", &pmaps) == napi_ok)
			napi_is_array(env, pmaps, &pmaps_array);
		if (pmaps_array) {
			napi_get_array_length(env, pmaps, &n);
			for (uint32_t i = 0; i < n && npid_maps < MAX_PID_MAPS; i++) {
				napi_get_element(env, pmaps, i, &val);
				if (!get_string(env, val, pid_map_names[npid_maps], sizeof(pid_map_names[0])) ||
				    !bpf_object__find_map_by_name(obj, pid_map_names[npid_maps])) {
					bpf_object__close(obj);
					return throw_errno(env, ENOENT, "perProcessMaps: no map %s", pid_map_names[npid_maps]);
				}
				npid_maps++;
			}
		}
		/* Programs not to load: the twins the chosen event transport does not use. */
		napi_value skip;
		bool skip_is_array = false;
		napi_has_named_property(env, argv[1], "skipPrograms", &has);
		if (has && napi_get_named_property(env, argv[1], "skipPrograms", &skip) == napi_ok)
			napi_is_array(env, skip, &skip_is_array);
		if (skip_is_array) {
			napi_get_array_length(env, skip, &n);
			for (uint32_t i = 0; i < n; i++) {
				napi_get_element(env, skip, i, &val);
				struct bpf_program *p = get_string(env, val, name, sizeof(name)) ? bpf_object__find_program_by_name(obj, name) : NULL;
				int err = p ? bpf_program__set_autoload(p, false) : -ENOENT;
				if (err) {
					bpf_object__close(obj);
					return throw_errno(env, err, "skipPrograms: no program %s", name);
				}
			}
		}
		napi_has_named_property(env, argv[1], "globals", &has);
		if (has && napi_get_named_property(env, argv[1], "globals", &globals) == napi_ok &&
		    napi_get_property_names(env, globals, &names) == napi_ok) {
			napi_get_array_length(env, names, &n);
			for (uint32_t i = 0; i < n; i++) {
				void *data;
				size_t len;
				napi_get_element(env, names, i, &key);
				napi_get_property(env, globals, key, &val);
				if (!get_string(env, key, name, sizeof(name)) ||
				    napi_get_buffer_info(env, val, &data, &len) != napi_ok) {
					bpf_object__close(obj);
					return throw_errno(env, 0, "Bpf: globals must map names to Buffers");
				}
				int err = set_global(obj, name, data, len);
				if (err) {
					bpf_object__close(obj);
					return throw_errno(env, err, "cannot set BPF global %s (%zu bytes)", name, len);
				}
			}
		}
	}

	/* The verifier gives up with EAGAIN when a signal is pending, and libbpf retries only a few times: a
	 * profiler's SIGPROF (node --cpu-prof, the inspector) every millisecond made every load fail. Hold the
	 * process's asynchronous signals back on this thread while loading; they are delivered right after. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int err = bpf_object__load(obj);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err) {
		napi_value e = throw_errno(env, err, "cannot load BPF object %s", path);
		bpf_object__close(obj);
		return e;
	}
	struct bpf_handle *h = calloc(1, sizeof(*h));
	if (!h) {
		bpf_object__close(obj);
		return throw_errno(env, ENOMEM, "Bpf");
	}
	h->obj = obj;
	h->uprobe_multi = uprobe_multi;
	pthread_mutex_init(&h->lock, NULL);
	for (int i = 0; i < npid_maps; i++) {
		struct bpf_map *m = bpf_object__find_map_by_name(obj, pid_map_names[i]);
		if (m)
			h->pid_maps[h->npid_maps++] = m;
	}
	NAPI_OK(napi_wrap(env, self, h, finalize_handle, NULL, NULL));
	return self;
}

static struct bpf_program *find_prog(napi_env env, struct bpf_handle *h, napi_value v)
{
	char name[256];
	if (!get_string(env, v, name, sizeof(name))) {
		napi_throw_error(env, NULL, "program name must be a string");
		return NULL;
	}
	struct bpf_program *p = bpf_object__find_program_by_name(h->obj, name);
	if (!p)
		throw_errno(env, ENOENT, "no BPF program named %s", name);
	return p;
}

static napi_value store_link(napi_env env, struct bpf_handle *h, struct link_slot link)
{
	link.used = true;
	int found = -1;
	pthread_mutex_lock(&h->lock);
	for (int i = 0; i < MAX_LINKS; i++) {
		int slot = (h->nlinks_hint + i) % MAX_LINKS;
		if (!h->links[slot].used) {
			h->links[slot] = link;
			h->nlinks_hint = slot + 1;
			found = slot;
			break;
		}
	}
	pthread_mutex_unlock(&h->lock);
	if (found < 0) {
		link_destroy(&link);
		return throw_errno(env, EMFILE, "too many attached probes (%d)", MAX_LINKS);
	}
	watch_exit(h, link.pid);
	napi_value id;
	napi_create_int32(env, found, &id);
	return id;
}

static napi_value store_bpf_link(napi_env env, struct bpf_handle *h, struct bpf_link *link)
{
	return store_link(env, h, (struct link_slot){ .bpf = link });
}

/* attachUprobe(program, binaryPath, fileOffset, pid (-1: every process), cookie: bigint) -> link id */
static napi_value bpf_attach_uprobe(napi_env env, napi_callback_info info)
{
	size_t argc = 5;
	napi_value argv[5], self;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	if (argc < 5)
		return throw_errno(env, 0, "attachUprobe(program, binaryPath, fileOffset, pid, cookie)");
	struct bpf_program *prog = find_prog(env, h, argv[0]);
	if (!prog)
		return NULL;
	char path[4096];
	int64_t offset;
	int32_t pid;
	uint64_t cookie;
	bool lossless;
	if (!get_string(env, argv[1], path, sizeof(path)) || napi_get_value_int64(env, argv[2], &offset) != napi_ok ||
	    napi_get_value_int32(env, argv[3], &pid) != napi_ok ||
	    napi_get_value_bigint_uint64(env, argv[4], &cookie, &lossless) != napi_ok)
		return throw_errno(env, 0, "attachUprobe: bad arguments (path string, offset number, pid number, cookie bigint)");
	if (h->uprobe_multi) {
		unsigned long off = (unsigned long)offset;
		__u64 cookie64 = cookie;
		int fd = create_uprobe_multi(bpf_program__fd(prog), path, &off, &cookie64, 1, pid < 0 ? 0 : (__u32)pid);
		if (fd < 0)
			return throw_errno(env, fd, "cannot attach uprobe %s at %s+0x%llx", bpf_program__name(prog), path,
					   (unsigned long long)offset);
		return store_link(env, h, (struct link_slot){ .raw_fd = fd, .pid = pid > 0 ? pid : 0 });
	}
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = cookie, .retprobe = false);
	clear_libbpf_log();
	struct bpf_link *link = bpf_program__attach_uprobe_opts(prog, pid, path, (size_t)offset, &opts);
	if (!link)
		return throw_errno(env, errno, "cannot attach uprobe %s at %s+0x%llx", bpf_program__name(prog), path,
				   (unsigned long long)offset);
	return store_link(env, h, (struct link_slot){ .bpf = link, .pid = pid > 0 ? pid : 0 });
}

/* attachUprobes(program, binaryPath, fileOffsets: number[], cookies: bigint[], pid (-1: every process)) -> link id.
 * One multi-link for all the offsets; only on an object opened with { uprobeMulti: true }. */
static napi_value bpf_attach_uprobes(napi_env env, napi_callback_info info)
{
	size_t argc = 5;
	napi_value argv[5], self;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	if (!h->uprobe_multi)
		return throw_errno(env, EOPNOTSUPP, "attachUprobes: the object was not opened with uprobeMulti");
	if (argc < 5)
		return throw_errno(env, 0, "attachUprobes(program, binaryPath, fileOffsets, cookies, pid)");
	struct bpf_program *prog = find_prog(env, h, argv[0]);
	if (!prog)
		return NULL;
	char path[4096];
	uint32_t n = 0, nc = 0;
	int32_t pid;
	bool is_array = false, cookies_array = false;
	if (!get_string(env, argv[1], path, sizeof(path)) || napi_is_array(env, argv[2], &is_array) != napi_ok || !is_array ||
	    napi_is_array(env, argv[3], &cookies_array) != napi_ok || !cookies_array ||
	    napi_get_array_length(env, argv[2], &n) != napi_ok || napi_get_array_length(env, argv[3], &nc) != napi_ok ||
	    n == 0 || n != nc || n > 4096 || napi_get_value_int32(env, argv[4], &pid) != napi_ok)
		return throw_errno(env, 0, "attachUprobes: bad arguments (path, offsets: number[], cookies: bigint[] of the same length, pid)");
	unsigned long *offsets = calloc(n, sizeof(*offsets));
	__u64 *cookies = calloc(n, sizeof(*cookies));
	if (!offsets || !cookies) {
		free(offsets);
		free(cookies);
		return throw_errno(env, ENOMEM, "attachUprobes");
	}
	for (uint32_t i = 0; i < n; i++) {
		napi_value v;
		int64_t off;
		bool lossless;
		if (napi_get_element(env, argv[2], i, &v) != napi_ok || napi_get_value_int64(env, v, &off) != napi_ok || off < 0 ||
		    napi_get_element(env, argv[3], i, &v) != napi_ok ||
		    napi_get_value_bigint_uint64(env, v, (uint64_t *)&cookies[i], &lossless) != napi_ok) {
			free(offsets);
			free(cookies);
			return throw_errno(env, 0, "attachUprobes: offsets must be numbers >= 0 and cookies bigints");
		}
		offsets[i] = (unsigned long)off;
	}
	int fd = create_uprobe_multi(bpf_program__fd(prog), path, offsets, cookies, n, pid < 0 ? 0 : (__u32)pid);
	free(offsets);
	free(cookies);
	if (fd < 0)
		return throw_errno(env, fd, "cannot attach %u uprobes of %s in %s", n, bpf_program__name(prog), path);
	return store_link(env, h, (struct link_slot){ .raw_fd = fd, .pid = pid > 0 ? pid : 0 });
}

/* attachTracepoint(program, category, name) -> link id */
static napi_value bpf_attach_tracepoint(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3], self;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	if (argc < 3)
		return throw_errno(env, 0, "attachTracepoint(program, category, name)");
	struct bpf_program *prog = find_prog(env, h, argv[0]);
	if (!prog)
		return NULL;
	char cat[128], name[128];
	if (!get_string(env, argv[1], cat, sizeof(cat)) || !get_string(env, argv[2], name, sizeof(name)))
		return throw_errno(env, 0, "attachTracepoint: category and name must be strings");
	clear_libbpf_log();
	struct bpf_link *link = bpf_program__attach_tracepoint(prog, cat, name);
	if (!link)
		return throw_errno(env, errno, "cannot attach %s to tracepoint %s:%s", bpf_program__name(prog), cat, name);
	return store_bpf_link(env, h, link);
}

/* attach(program) -> link id: for programs whose section says where (tp_btf, raw_tp, tracepoint/x/y). */
static napi_value bpf_attach(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], self;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	struct bpf_program *prog = argc ? find_prog(env, h, argv[0]) : NULL;
	if (!prog)
		return argc ? NULL : throw_errno(env, 0, "attach(program)");
	clear_libbpf_log();
	struct bpf_link *link = bpf_program__attach(prog);
	if (!link)
		return throw_errno(env, errno, "cannot attach %s", bpf_program__name(prog));
	return store_bpf_link(env, h, link);
}

/* attachTracepointId(program, id) -> link id: a classic tracepoint by its id (agent/src/bpf/tracefs.ts finds
 * it, from a mounted tracefs or a private mount), so attaching needs no tracefs now. One perf event (every
 * task, cpu 0) runs the program for hits on every CPU, as libbpf's own tracepoint attach opens it. */
static napi_value bpf_attach_tracepoint_id(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], self;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	int64_t id;
	if (argc < 2 || napi_get_value_int64(env, argv[1], &id) != napi_ok || id <= 0)
		return throw_errno(env, 0, "attachTracepointId(program, id): id must be a positive number");
	struct bpf_program *prog = find_prog(env, h, argv[0]);
	if (!prog)
		return NULL;
	struct perf_event_attr attr;
	memset(&attr, 0, sizeof(attr));
	attr.type = PERF_TYPE_TRACEPOINT;
	attr.size = sizeof(attr);
	attr.config = (__u64)id;
	int pfd = (int)syscall(__NR_perf_event_open, &attr, -1 /* every task */, 0 /* cpu */, -1, PERF_FLAG_FD_CLOEXEC);
	if (pfd < 0)
		return throw_errno(env, errno, "cannot open tracepoint %lld for %s", (long long)id, bpf_program__name(prog));
	clear_libbpf_log();
	struct bpf_link *link = bpf_program__attach_perf_event(prog, pfd);
	if (!link) {
		int err = errno;
		close(pfd);
		return throw_errno(env, err, "cannot attach %s to tracepoint %lld", bpf_program__name(prog), (long long)id);
	}
	return store_bpf_link(env, h, link); /* the link owns pfd: destroying it closes it */
}

/* detach(linkId) */
static napi_value bpf_detach(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], self;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	int32_t id;
	if (argc < 1 || napi_get_value_int32(env, argv[0], &id) != napi_ok || id < 0 || id >= MAX_LINKS)
		return throw_errno(env, 0, "detach: no such link");
	pthread_mutex_lock(&h->lock);
	struct link_slot l = h->links[id];
	memset(&h->links[id], 0, sizeof(l));
	pthread_mutex_unlock(&h->lock);
	if (!l.used)
		return throw_errno(env, 0, "detach: no such link");
	link_destroy(&l);
	return NULL;
}

struct detach_work {
	napi_async_work work;
	napi_deferred deferred;
	struct link_slot *links;
	int n;
};

static void detach_execute(napi_env env, void *data)
{
	(void)env;
	struct detach_work *w = data;
	destroy_links(w->links, w->n);
}

static void detach_complete(napi_env env, napi_status status, void *data)
{
	struct detach_work *w = data;
	napi_value undefined;
	napi_get_undefined(env, &undefined);
	napi_resolve_deferred(env, w->deferred, undefined);
	napi_delete_async_work(env, w->work);
	free(w->links);
	free(w);
}

/* detachAsync(linkIds: number[]) -> Promise<void>: the links leave the table now and are destroyed together
 * off the JavaScript thread (see destroy_links); the promise settles when the kernel has let go of all. */
static napi_value bpf_detach_async(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], self, promise, name;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	bool is_array = false;
	uint32_t len = 0;
	if (argc < 1 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
	    napi_get_array_length(env, argv[0], &len) != napi_ok)
		return throw_errno(env, 0, "detachAsync(linkIds: number[])");
	struct detach_work *w = calloc(1, sizeof(*w));
	if (w)
		w->links = calloc(len ? len : 1, sizeof(*w->links));
	if (!w || !w->links) {
		free(w ? w->links : NULL);
		free(w);
		return throw_errno(env, ENOMEM, "detachAsync");
	}
	pthread_mutex_lock(&h->lock);
	for (uint32_t i = 0; i < len; i++) {
		napi_value v;
		int32_t id;
		if (napi_get_element(env, argv[0], i, &v) != napi_ok || napi_get_value_int32(env, v, &id) != napi_ok ||
		    id < 0 || id >= MAX_LINKS || !h->links[id].used)
			continue; /* already gone */
		if (!h->links[id].dead) /* a dead one's process took it already */
			w->links[w->n++] = h->links[id];
		memset(&h->links[id], 0, sizeof(h->links[id]));
	}
	pthread_mutex_unlock(&h->lock);
	NAPI_OK(napi_create_promise(env, &w->deferred, &promise));
	napi_create_string_utf8(env, "goroscope:detach", NAPI_AUTO_LENGTH, &name);
	NAPI_OK(napi_create_async_work(env, NULL, name, detach_execute, detach_complete, w, &w->work));
	NAPI_OK(napi_queue_async_work(env, w->work));
	return promise;
}

static struct bpf_map *find_map(napi_env env, struct bpf_handle *h, napi_value v)
{
	char name[256];
	if (!get_string(env, v, name, sizeof(name))) {
		napi_throw_error(env, NULL, "map name must be a string");
		return NULL;
	}
	struct bpf_map *m = bpf_object__find_map_by_name(h->obj, name);
	if (!m)
		throw_errno(env, ENOENT, "no BPF map named %s", name);
	return m;
}

static bool is_percpu(struct bpf_map *m)
{
	enum bpf_map_type t = bpf_map__type(m);
	return t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

static size_t value_bytes(struct bpf_map *m)
{
	size_t v = bpf_map__value_size(m);
	if (is_percpu(m))
		return ((v + 7) & ~(size_t)7) * (size_t)libbpf_num_possible_cpus();
	return v;
}

/* updateElem(map, key: Buffer, value: Buffer) */
static napi_value bpf_update_elem(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3], self;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	if (argc < 3)
		return throw_errno(env, 0, "updateElem(map, key, value)");
	struct bpf_map *m = find_map(env, h, argv[0]);
	if (!m)
		return NULL;
	void *k, *v;
	size_t klen, vlen;
	if (napi_get_buffer_info(env, argv[1], &k, &klen) != napi_ok || napi_get_buffer_info(env, argv[2], &v, &vlen) != napi_ok)
		return throw_errno(env, 0, "updateElem: key and value must be Buffers");
	int err = bpf_map__update_elem(m, k, klen, v, vlen, 0);
	if (err)
		return throw_errno(env, err, "cannot update map %s (key %zu bytes, value %zu bytes)", bpf_map__name(m), klen, vlen);
	return NULL;
}

/* lookupElem(map, key: Buffer) -> Buffer | null (per-CPU maps: one 8-byte-aligned value per possible CPU) */
static napi_value bpf_lookup_elem(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], self, out;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	if (argc < 2)
		return throw_errno(env, 0, "lookupElem(map, key)");
	struct bpf_map *m = find_map(env, h, argv[0]);
	if (!m)
		return NULL;
	void *k, *v;
	size_t klen, vlen = value_bytes(m);
	if (napi_get_buffer_info(env, argv[1], &k, &klen) != napi_ok)
		return throw_errno(env, 0, "lookupElem: key must be a Buffer");
	NAPI_OK(napi_create_buffer(env, vlen, &v, &out));
	int err = bpf_map__lookup_elem(m, k, klen, v, vlen, 0);
	if (err == -ENOENT) {
		napi_get_null(env, &out);
		return out;
	}
	if (err)
		return throw_errno(env, err, "cannot look up map %s", bpf_map__name(m));
	return out;
}

/* deleteElem(map, key: Buffer) -> true if it was there */
static napi_value bpf_delete_elem(napi_env env, napi_callback_info info)
{
	size_t argc = 2;
	napi_value argv[2], self, out;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	if (argc < 2)
		return throw_errno(env, 0, "deleteElem(map, key)");
	struct bpf_map *m = find_map(env, h, argv[0]);
	if (!m)
		return NULL;
	void *k;
	size_t klen;
	if (napi_get_buffer_info(env, argv[1], &k, &klen) != napi_ok)
		return throw_errno(env, 0, "deleteElem: key must be a Buffer");
	int err = bpf_map__delete_elem(m, k, klen, 0);
	if (err && err != -ENOENT)
		return throw_errno(env, err, "cannot delete from map %s", bpf_map__name(m));
	napi_get_boolean(env, err == 0, &out);
	return out;
}

/* keys(map) -> Buffer[]: every key of a hash map now (at most max_entries; entries may come and go meanwhile). */
static napi_value bpf_keys(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], self, out;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	struct bpf_map *m = argc ? find_map(env, h, argv[0]) : NULL;
	if (!m)
		return argc ? NULL : throw_errno(env, 0, "keys(map)");
	size_t klen = bpf_map__key_size(m);
	unsigned char prev[512], next[512];
	if (klen > sizeof(prev))
		return throw_errno(env, EINVAL, "keys: %s has %zu-byte keys", bpf_map__name(m), klen);
	NAPI_OK(napi_create_array(env, &out));
	uint32_t n = 0, max = bpf_map__max_entries(m);
	const void *cur = NULL;
	while (n < max) {
		int err = bpf_map__get_next_key(m, cur, next, klen);
		if (err == -ENOENT)
			break;
		if (err)
			return throw_errno(env, err, "cannot walk map %s", bpf_map__name(m));
		void *data;
		napi_value key;
		NAPI_OK(napi_create_buffer_copy(env, klen, next, &data, &key));
		napi_set_element(env, out, n++, key);
		memcpy(prev, next, klen);
		cur = prev;
	}
	return out;
}

/* mapInfo(map) -> { type, keySize, valueSize, maxEntries, possibleCpus, percpu } */
static napi_value bpf_map_info(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], self, out, v;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	struct bpf_map *m = argc ? find_map(env, h, argv[0]) : NULL;
	if (!m)
		return argc ? NULL : throw_errno(env, 0, "mapInfo(map)");
	napi_create_object(env, &out);
	napi_create_uint32(env, bpf_map__type(m), &v);
	napi_set_named_property(env, out, "type", v);
	napi_create_uint32(env, bpf_map__key_size(m), &v);
	napi_set_named_property(env, out, "keySize", v);
	napi_create_uint32(env, bpf_map__value_size(m), &v);
	napi_set_named_property(env, out, "valueSize", v);
	napi_create_uint32(env, bpf_map__max_entries(m), &v);
	napi_set_named_property(env, out, "maxEntries", v);
	napi_create_int32(env, libbpf_num_possible_cpus(), &v);
	napi_set_named_property(env, out, "possibleCpus", v);
	napi_get_boolean(env, is_percpu(m), &v);
	napi_set_named_property(env, out, "percpu", v);
	return out;
}

static bool get_u32_prop(napi_env env, napi_value obj, const char *key, uint32_t *out)
{
	bool has = false;
	napi_value v;
	return napi_has_named_property(env, obj, key, &has) == napi_ok && has &&
	       napi_get_named_property(env, obj, key, &v) == napi_ok && napi_get_value_uint32(env, v, out) == napi_ok;
}

/* startReader([{ map, recordSize, perfPagesPerCpu?, wakeupBytes? }], onBatch(ring, buffer), { pollMs, idleMs,
 * batchBytes, maxOutstanding }). A map retyped to a perf event array at open (perfEventArrays) is read as one. */
static napi_value bpf_start_reader(napi_env env, napi_callback_info info)
{
	size_t argc = 3;
	napi_value argv[3], self;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	if (h->reader)
		return throw_errno(env, EBUSY, "the reader is already running");
	uint32_t n = 0;
	bool is_array = false;
	if (argc >= 2)
		napi_is_array(env, argv[0], &is_array);
	if (!is_array || napi_get_array_length(env, argv[0], &n) != napi_ok || n == 0 || n > READER_MAX_RINGS)
		return throw_errno(env, 0, "startReader: rings must be an array of 1..%d { map, recordSize }",
				   READER_MAX_RINGS);

	struct reader_options opts = { .poll_ms = 10, .batch_bytes = 256 * 1024, .max_outstanding = 256 };
	napi_valuetype t = napi_undefined;
	if (argc > 2)
		napi_typeof(env, argv[2], &t);
	if (t == napi_object) {
		uint32_t x;
		if (get_u32_prop(env, argv[2], "pollMs", &x) && x > 0)
			opts.poll_ms = (int)x;
		if (get_u32_prop(env, argv[2], "idleMs", &x) && x > 0)
			opts.idle_ms = (int)x;
		if (get_u32_prop(env, argv[2], "batchBytes", &x) && x >= 4096)
			opts.batch_bytes = x;
		if (get_u32_prop(env, argv[2], "maxOutstanding", &x) && x > 0)
			opts.max_outstanding = x;
	}
	struct reader *r = reader_new(&opts);
	if (!r)
		return throw_errno(env, errno ? errno : ENOMEM, "startReader");
	for (uint32_t i = 0; i < n; i++) {
		napi_value ring, mapname;
		uint32_t record_size = 0, pages = 0, wakeup = 0;
		napi_get_element(env, argv[0], i, &ring);
		if (napi_get_named_property(env, ring, "map", &mapname) != napi_ok ||
		    !get_u32_prop(env, ring, "recordSize", &record_size) || record_size == 0) {
			reader_dispose(r);
			return throw_errno(env, 0, "startReader: ring %u needs { map, recordSize }", i);
		}
		get_u32_prop(env, ring, "perfPagesPerCpu", &pages);
		get_u32_prop(env, ring, "wakeupBytes", &wakeup);
		if (pages & (pages - 1)) {
			reader_dispose(r);
			return throw_errno(env, 0, "startReader: perfPagesPerCpu must be a power of two (got %u)", pages);
		}
		struct bpf_map *m = find_map(env, h, mapname);
		if (!m) {
			reader_dispose(r);
			return NULL;
		}
		bool perf = bpf_map__type(m) == BPF_MAP_TYPE_PERF_EVENT_ARRAY;
		int err = reader_add_ring(r, bpf_map__fd(m), perf, record_size, pages, wakeup);
		if (err) {
			reader_dispose(r);
			return throw_errno(env, err, "cannot read %s %s", perf ? "perf event array" : "ring buffer",
					   bpf_map__name(m));
		}
	}
	int err = reader_start(r, env, argv[1]);
	if (err) {
		reader_dispose(r);
		return throw_errno(env, err, err == -EINVAL ? "startReader: onBatch must be a function"
							    : "cannot start the reader thread");
	}
	h->reader = r;
	return NULL;
}

static void set_u64(napi_env env, napi_value obj, const char *key, unsigned long long x)
{
	napi_value v;
	napi_create_double(env, (double)x, &v);
	napi_set_named_property(env, obj, key, v);
}

static napi_value reader_stats_object(napi_env env, struct reader *r)
{
	struct reader_stats s;
	reader_get_stats(r, &s);
	napi_value out;
	napi_create_object(env, &out);
	set_u64(env, out, "records", s.records);
	set_u64(env, out, "batches", s.batches);
	set_u64(env, out, "malformed", s.malformed);
	set_u64(env, out, "stalls", s.stalls);
	set_u64(env, out, "outstanding", s.outstanding);
	set_u64(env, out, "perfLost", s.perf_lost);
	set_u64(env, out, "reorderOverflows", s.reorder_overflows);
	set_u64(env, out, "throughNs", s.through_ns);
	return out;
}

/* readerStats() -> { records, batches, malformed, stalls, outstanding, perfLost, reorderOverflows, throughNs } */
static napi_value bpf_reader_stats(napi_env env, napi_callback_info info)
{
	napi_value self;
	NAPI_OK(napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	return reader_stats_object(env, h->reader);
}

/* requestDrain(): the reader thread drains now, not at the end of its wait (a no-op when none runs). */
static napi_value bpf_request_drain(napi_env env, napi_callback_info info)
{
	napi_value self;
	NAPI_OK(napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	reader_request_drain(h->reader);
	return NULL;
}

/* setReaderIdleMs(ms): the reader's longest wait while its rings are quiet, from now on. */
static napi_value bpf_set_reader_idle_ms(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], self;
	NAPI_OK(napi_get_cb_info(env, info, &argc, argv, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	uint32_t ms = 0;
	if (argc < 1 || napi_get_value_uint32(env, argv[0], &ms) != napi_ok || ms == 0)
		return throw_errno(env, 0, "setReaderIdleMs: give a positive number of ms");
	reader_set_idle_ms(h->reader, (int)ms);
	return NULL;
}

/* stopReader() -> final stats: drains what is left; the last batches reach onBatch through the event loop. */
static napi_value bpf_stop_reader(napi_env env, napi_callback_info info)
{
	napi_value self;
	NAPI_OK(napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	struct reader *r = h->reader;
	h->reader = NULL;
	reader_stop(r);
	napi_value stats = reader_stats_object(env, r); /* before the reader can go: its finalizer runs later, here */
	reader_dispose(r);
	return stats;
}

/* close(): detaches every probe and frees the object. */
static napi_value bpf_close(napi_env env, napi_callback_info info)
{
	napi_value self;
	NAPI_OK(napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
	struct bpf_handle *h = NULL;
	napi_unwrap(env, self, (void **)&h);
	if (h)
		handle_close(h);
	return NULL;
}

/* libbpfVersion() -> "1.1" */
static napi_value bridge_libbpf_version(napi_env env, napi_callback_info info)
{
	(void)info;
	napi_value v;
	napi_create_string_utf8(env, libbpf_version_string(), NAPI_AUTO_LENGTH, &v);
	return v;
}

/* trimNativeHeap(): gives the C heap's free pages back to the kernel (malloc_trim); true when it gave some.
 * Buffers (a binary's code and tables read for an analysis, record batches) and libbpf's links live in glibc's
 * heap, which keeps what is freed inside it: an agent whose traced processes exited kept their peak. */
static napi_value bridge_trim_native_heap(napi_env env, napi_callback_info info)
{
	(void)info;
	napi_value v;
	napi_get_boolean(env, malloc_trim(0) != 0, &v);
	return v;
}

/* hasRingbuf(): whether this kernel has BPF ring buffers (5.8+); without them events go through perf buffers. */
static napi_value bridge_has_ringbuf(napi_env env, napi_callback_info info)
{
	(void)info;
	napi_value v;
	napi_get_boolean(env, libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, NULL) > 0, &v);
	return v;
}

/* exitStats() -> { watched, exitedProcesses, detachedLinks }: what the exit watch did (see on_process_exit) */
static napi_value bpf_exit_stats(napi_env env, napi_callback_info info)
{
	napi_value self, out, v;
	NAPI_OK(napi_get_cb_info(env, info, NULL, NULL, &self, NULL));
	struct bpf_handle *h = unwrap(env, self);
	if (!h)
		return NULL;
	pthread_mutex_lock(&h->lock);
	struct exit_watch *w = h->exits;
	pthread_mutex_unlock(&h->lock);
	napi_create_object(env, &out);
	napi_create_uint32(env, w ? (uint32_t)exit_watch_count(w) : 0, &v);
	napi_set_named_property(env, out, "watched", v);
	napi_create_uint32(env, atomic_load(&h->exited_processes), &v);
	napi_set_named_property(env, out, "exitedProcesses", v);
	napi_create_uint32(env, atomic_load(&h->exit_detached_links), &v);
	napi_set_named_property(env, out, "detachedLinks", v);
	return out;
}

/* hasUprobeMulti() -> true when uprobe multi-links work here, with a per-process pid filter */
static napi_value bridge_has_uprobe_multi(napi_env env, napi_callback_info info)
{
	(void)info;
	napi_value v;
	napi_get_boolean(env, uprobe_multi_supported(), &v);
	return v;
}

/* Allocations from this size up get pages of their own (mmap), given back the moment they are freed. glibc's
 * default threshold moves: freeing a 32 MiB buffer (a big binary's decompressed DWARF, its pclntab) raises it to
 * 32 MiB, and from then on every buffer below that came from the heap, where the small allocations made among
 * them pinned its pages: an agent that traced 60 processes kept ~20 MiB of heap after they exited, malloc_trim or
 * not. 1 MiB keeps the reader's 256 KiB record batches in the heap (reused, no mmap per batch). */
#define NATIVE_MMAP_THRESHOLD (1 << 20)

static napi_value init(napi_env env, napi_value exports)
{
	mallopt(M_MMAP_THRESHOLD, NATIVE_MMAP_THRESHOLD);
	libbpf_set_print(capture_libbpf_print);
	libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
	napi_property_descriptor methods[] = {
		{ "attachUprobe", NULL, bpf_attach_uprobe, NULL, NULL, NULL, napi_default_method, NULL },
		{ "attachUprobes", NULL, bpf_attach_uprobes, NULL, NULL, NULL, napi_default_method, NULL },
		{ "attachTracepoint", NULL, bpf_attach_tracepoint, NULL, NULL, NULL, napi_default_method, NULL },
		{ "attach", NULL, bpf_attach, NULL, NULL, NULL, napi_default_method, NULL },
		{ "attachTracepointId", NULL, bpf_attach_tracepoint_id, NULL, NULL, NULL, napi_default_method, NULL },
		{ "detach", NULL, bpf_detach, NULL, NULL, NULL, napi_default_method, NULL },
		{ "detachAsync", NULL, bpf_detach_async, NULL, NULL, NULL, napi_default_method, NULL },
		{ "deleteElem", NULL, bpf_delete_elem, NULL, NULL, NULL, napi_default_method, NULL },
		{ "keys", NULL, bpf_keys, NULL, NULL, NULL, napi_default_method, NULL },
		{ "updateElem", NULL, bpf_update_elem, NULL, NULL, NULL, napi_default_method, NULL },
		{ "lookupElem", NULL, bpf_lookup_elem, NULL, NULL, NULL, napi_default_method, NULL },
		{ "mapInfo", NULL, bpf_map_info, NULL, NULL, NULL, napi_default_method, NULL },
		{ "startReader", NULL, bpf_start_reader, NULL, NULL, NULL, napi_default_method, NULL },
		{ "stopReader", NULL, bpf_stop_reader, NULL, NULL, NULL, napi_default_method, NULL },
		{ "readerStats", NULL, bpf_reader_stats, NULL, NULL, NULL, napi_default_method, NULL },
		{ "requestDrain", NULL, bpf_request_drain, NULL, NULL, NULL, napi_default_method, NULL },
		{ "setReaderIdleMs", NULL, bpf_set_reader_idle_ms, NULL, NULL, NULL, napi_default_method, NULL },
		{ "exitStats", NULL, bpf_exit_stats, NULL, NULL, NULL, napi_default_method, NULL },
		{ "close", NULL, bpf_close, NULL, NULL, NULL, napi_default_method, NULL },
	};
	napi_value cls, fn;
	NAPI_OK(napi_define_class(env, "Bpf", NAPI_AUTO_LENGTH, bpf_new, NULL, sizeof(methods) / sizeof(methods[0]), methods, &cls));
	napi_set_named_property(env, exports, "Bpf", cls);
	napi_create_function(env, "libbpfVersion", NAPI_AUTO_LENGTH, bridge_libbpf_version, NULL, &fn);
	napi_set_named_property(env, exports, "libbpfVersion", fn);
	napi_create_function(env, "hasRingbuf", NAPI_AUTO_LENGTH, bridge_has_ringbuf, NULL, &fn);
	napi_set_named_property(env, exports, "hasRingbuf", fn);
	napi_create_function(env, "hasUprobeMulti", NAPI_AUTO_LENGTH, bridge_has_uprobe_multi, NULL, &fn);
	napi_set_named_property(env, exports, "hasUprobeMulti", fn);
	napi_create_function(env, "trimNativeHeap", NAPI_AUTO_LENGTH, bridge_trim_native_heap, NULL, &fn);
	napi_set_named_property(env, exports, "trimNativeHeap", fn);
	procmem_register(env, exports);
	tracefs_register(env, exports);
	return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
