// SPDX-License-Identifier: Apache-2.0
/* Process exits, as they happen: a thread waits on a pidfd per watched process (Linux 5.3+) and calls back
 * on that thread when one exits, whatever JavaScript's event loop is busy with. */
#ifndef GOROSCOPE_EXITS_H
#define GOROSCOPE_EXITS_H

struct exit_watch;

/* Called on the watch thread, once per watched process, after it exited (it may be a zombie). */
typedef void (*exit_fn)(void *ctx, int pid);

/* NULL when the thread or epoll cannot be had (errno says why). */
struct exit_watch *exit_watch_new(exit_fn fn, void *ctx);
/* Watches pid (again: no-op). 0, or -errno (ESRCH: already gone; ENOSYS: no pidfd_open here). */
int exit_watch_add(struct exit_watch *w, int pid);
/* Processes watched now. */
int exit_watch_count(struct exit_watch *w);
/* Stops the thread (a callback in progress finishes first) and frees everything. */
void exit_watch_free(struct exit_watch *w);

#endif
