// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Benchmark baselines for scripts/bench/tcp-attach.ts, never loaded by the agent: programs that are attached
 * and do nothing, so a figure can tell what attaching costs from what goroscope's programs do. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("tracepoint/sock/inet_sock_set_state")
int empty_set_state_tp(void *ctx)
{
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(empty_set_state_btf)
{
	return 0;
}

/* Every syscall's exit, doing nothing: the raw syscall path's floor. */
SEC("tp_btf/sys_exit")
int BPF_PROG(empty_sys_exit_btf)
{
	return 0;
}
