/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* Helpers every goroscope BPF program uses. Include after vmlinux.h and bpf_helpers.h. */
#ifndef GOROSCOPE_COMMON_BPF_H
#define GOROSCOPE_COMMON_BPF_H

/* Adds one to a per-CPU counter (hits, drops). */
static __always_inline void count(void *map, __u32 key)
{
	__u64 *n = bpf_map_lookup_elem(map, &key);
	if (n)
		*n += 1;
}

/* A word of the traced process's memory; 0 when it cannot be read (never a fault in the process). */
static __always_inline __u64 read_u64(__u64 addr)
{
	__u64 v = 0;
	bpf_probe_read_user(&v, sizeof(v), (const void *)addr);
	return v;
}

#endif
