// SPDX-License-Identifier: Apache-2.0
/* Classic tracepoint ids without a mounted tracefs, and without changing the node's mounts.
 *
 * A classic tracepoint is attached by its id (perf_event_open, PERF_TYPE_TRACEPOINT), and the id is only
 * published in tracefs (events/<category>/<name>/id). Where tracefs is not mounted, a child process enters
 * a mount namespace of its own, makes every mount private (so nothing propagates back to the node), mounts
 * tracefs there, reads the ids and exits: its namespace, and the mount, go with it. Attaching by id later
 * needs no tracefs at all. Needs CAP_SYS_ADMIN (unshare and mount); agent/src/bpf/tracefs.ts decides.
 *
 * The child of a multithreaded process may only make async-signal-safe calls: every path is built before
 * fork(), and the child uses raw syscalls (unshare, mount, open, read, write, _exit) and nothing else. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <node_api.h>

#include "tracefs.h"

#define MAX_TRACEPOINTS 32

/* Where the child mounts tracefs, in its own namespace: the usual place, else any directory. */
static const char *const mountpoints[] = { "/sys/kernel/tracing", "/tmp" };
#define NMOUNTPOINTS (sizeof(mountpoints) / sizeof(mountpoints[0]))

enum step { STEP_OK = 0, STEP_UNSHARE = 1, STEP_PRIVATE = 2, STEP_MOUNT = 3 };
static const char *const step_names[] = { "", "unshare(CLONE_NEWNS)", "mount --make-rprivate /", "mount -t tracefs" };

struct reply {
	int32_t step; /* enum step that failed, STEP_OK when the ids were read */
	int32_t err;  /* its errno */
	int64_t ids[MAX_TRACEPOINTS]; /* the id, or -errno when that tracepoint's id file could not be read */
};

static int64_t read_id(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char buf[32];
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	int err = errno;
	close(fd);
	if (n <= 0)
		return n < 0 ? -err : -EINVAL;
	int64_t id = 0;
	ssize_t i = 0;
	for (; i < n && buf[i] >= '0' && buf[i] <= '9'; i++)
		id = id * 10 + (buf[i] - '0');
	return i ? id : -EINVAL;
}

static void child(int out, char *const *paths, int n)
{
	struct reply r;
	memset(&r, 0, sizeof(r));
	size_t mp = 0;
	if (unshare(CLONE_NEWNS)) {
		r.step = STEP_UNSHARE;
		r.err = errno;
	} else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		r.step = STEP_PRIVATE;
		r.err = errno;
	} else {
		for (; mp < NMOUNTPOINTS; mp++) {
			if (!mount("tracefs", mountpoints[mp], "tracefs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL))
				break;
			r.err = errno;
		}
		if (mp == NMOUNTPOINTS) {
			r.step = STEP_MOUNT;
		} else {
			r.err = 0;
			for (int i = 0; i < n; i++)
				r.ids[i] = read_id(paths[mp * n + i]);
		}
	}
	ssize_t w = write(out, &r, sizeof(r));
	_exit(w == (ssize_t)sizeof(r) ? 0 : 1);
}

/* privateTracefsIds(["sock/inet_sock_set_state", ...]) -> [id or -errno, ...]; throws when the child could
 * not mount tracefs (the message names the step and errno: EPERM means no CAP_SYS_ADMIN). */
static napi_value tracefs_private_ids(napi_env env, napi_callback_info info)
{
	size_t argc = 1;
	napi_value argv[1], out;
	bool is_array = false;
	uint32_t n = 0;
	if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 ||
	    napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array ||
	    napi_get_array_length(env, argv[0], &n) != napi_ok || n == 0 || n > MAX_TRACEPOINTS) {
		napi_throw_error(env, NULL, "privateTracefsIds: an array of 1..32 \"category/name\" strings");
		return NULL;
	}
	/* Every path, for every mount point, before fork(). */
	char **paths = calloc(NMOUNTPOINTS * n, sizeof(char *));
	if (!paths) {
		napi_throw_error(env, NULL, "privateTracefsIds: out of memory");
		return NULL;
	}
	napi_value result = NULL;
	for (uint32_t i = 0; i < n; i++) {
		napi_value v;
		char name[128];
		size_t len = 0;
		if (napi_get_element(env, argv[0], i, &v) != napi_ok ||
		    napi_get_value_string_utf8(env, v, name, sizeof(name), &len) != napi_ok || len == 0 ||
		    len >= sizeof(name) - 1 || !strchr(name, '/') || strstr(name, "..")) {
			napi_throw_error(env, NULL, "privateTracefsIds: each tracepoint is \"category/name\"");
			goto done;
		}
		for (size_t mp = 0; mp < NMOUNTPOINTS; mp++) {
			if (asprintf(&paths[mp * n + i], "%s/events/%s/id", mountpoints[mp], name) < 0) {
				paths[mp * n + i] = NULL;
				napi_throw_error(env, NULL, "privateTracefsIds: out of memory");
				goto done;
			}
		}
	}
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC)) {
		char msg[128];
		snprintf(msg, sizeof(msg), "privateTracefsIds: pipe: %s", strerror(errno));
		napi_throw_error(env, NULL, msg);
		goto done;
	}
	pid_t pid = fork();
	if (pid == 0) {
		close(pipefd[0]);
		child(pipefd[1], paths, (int)n);
	}
	int fork_err = errno;
	close(pipefd[1]);
	struct reply r;
	size_t got = 0;
	while (pid > 0 && got < sizeof(r)) {
		ssize_t k = read(pipefd[0], (char *)&r + got, sizeof(r) - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(pipefd[0]);
	if (pid > 0)
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	char msg[256];
	if (pid < 0) {
		snprintf(msg, sizeof(msg), "privateTracefsIds: fork: %s", strerror(fork_err));
		napi_throw_error(env, NULL, msg);
		goto done;
	}
	if (got != sizeof(r)) {
		napi_throw_error(env, NULL, "privateTracefsIds: the child process gave no answer");
		goto done;
	}
	if (r.step != STEP_OK) {
		napi_value m, e, code;
		snprintf(msg, sizeof(msg), "cannot mount tracefs in a private mount namespace: %s: %s", step_names[r.step],
			 strerror(r.err));
		napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m);
		napi_create_error(env, NULL, m, &e);
		napi_create_int32(env, r.err, &code);
		napi_set_named_property(env, e, "errno", code);
		napi_throw(env, e);
		goto done;
	}
	napi_create_array_with_length(env, n, &out);
	for (uint32_t i = 0; i < n; i++) {
		napi_value v;
		napi_create_int64(env, r.ids[i], &v);
		napi_set_element(env, out, i, v);
	}
	result = out;
done:
	for (size_t i = 0; i < NMOUNTPOINTS * n; i++)
		free(paths[i]);
	free(paths);
	return result;
}

void tracefs_register(napi_env env, napi_value exports)
{
	napi_value fn;
	napi_create_function(env, "privateTracefsIds", NAPI_AUTO_LENGTH, tracefs_private_ids, NULL, &fn);
	napi_set_named_property(env, exports, "privateTracefsIds", fn);
}
