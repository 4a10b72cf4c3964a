// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The baseline of scripts/bench/hit-cost.ts, never loaded by the agent: a uprobe program that does nothing,
 * attached at goroscope's own sites, so a figure can tell what a hit costs from what goroscope's programs do. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("uprobe")
int empty(struct pt_regs *ctx)
{
	return 0;
}
