// SPDX-License-Identifier: Apache-2.0
/* See exits.h. One epoll set holds a pidfd per process and an eventfd that stops the thread. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "exits.h"

#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif

struct watched {
	int pid;
	int pidfd;
};

struct exit_watch {
	exit_fn fn;
	void *ctx;
	int epfd;
	int stopfd;
	pthread_t thread;
	pthread_mutex_t lock;
	struct watched *procs;
	int n, cap;
};

static void *watch_thread(void *arg)
{
	struct exit_watch *w = arg;
	struct epoll_event events[32];
	for (;;) {
		int n = epoll_wait(w->epfd, events, 32, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;
			if (fd == w->stopfd)
				return NULL;
			int pid = 0;
			pthread_mutex_lock(&w->lock);
			for (int j = 0; j < w->n; j++) {
				if (w->procs[j].pidfd == fd) {
					pid = w->procs[j].pid;
					w->procs[j] = w->procs[--w->n];
					break;
				}
			}
			pthread_mutex_unlock(&w->lock);
			epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
			close(fd);
			if (pid)
				w->fn(w->ctx, pid);
		}
	}
}

struct exit_watch *exit_watch_new(exit_fn fn, void *ctx)
{
	struct exit_watch *w = calloc(1, sizeof(*w));
	if (!w)
		return NULL;
	w->fn = fn;
	w->ctx = ctx;
	pthread_mutex_init(&w->lock, NULL);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->stopfd = eventfd(0, EFD_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = w->stopfd };
	if (w->epfd < 0 || w->stopfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->stopfd, &ev) ||
	    pthread_create(&w->thread, NULL, watch_thread, w)) {
		int err = errno;
		if (w->epfd >= 0)
			close(w->epfd);
		if (w->stopfd >= 0)
			close(w->stopfd);
		free(w);
		errno = err;
		return NULL;
	}
	return w;
}

int exit_watch_add(struct exit_watch *w, int pid)
{
	pthread_mutex_lock(&w->lock);
	for (int j = 0; j < w->n; j++) {
		if (w->procs[j].pid == pid) {
			pthread_mutex_unlock(&w->lock);
			return 0;
		}
	}
	int err = 0;
	if (w->n == w->cap) {
		int cap = w->cap ? w->cap * 2 : 64;
		struct watched *p = realloc(w->procs, sizeof(*p) * (size_t)cap);
		if (!p) {
			pthread_mutex_unlock(&w->lock);
			return -ENOMEM;
		}
		w->procs = p;
		w->cap = cap;
	}
	int fd = (int)syscall(__NR_pidfd_open, pid, 0);
	if (fd < 0) {
		err = -errno;
	} else {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev)) {
			err = -errno;
			close(fd);
		} else {
			w->procs[w->n++] = (struct watched){ .pid = pid, .pidfd = fd };
		}
	}
	pthread_mutex_unlock(&w->lock);
	return err;
}

int exit_watch_count(struct exit_watch *w)
{
	pthread_mutex_lock(&w->lock);
	int n = w->n;
	pthread_mutex_unlock(&w->lock);
	return n;
}

void exit_watch_free(struct exit_watch *w)
{
	if (!w)
		return;
	uint64_t one = 1;
	if (write(w->stopfd, &one, sizeof(one)) == sizeof(one))
		pthread_join(w->thread, NULL);
	else
		pthread_detach(w->thread); /* cannot happen with an eventfd; leak rather than hang */
	for (int j = 0; j < w->n; j++)
		close(w->procs[j].pidfd);
	free(w->procs);
	close(w->epfd);
	close(w->stopfd);
	pthread_mutex_destroy(&w->lock);
	free(w);
}
