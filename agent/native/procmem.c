// SPDX-License-Identifier: Apache-2.0
/* Batched reads of another process's memory with process_vm_readv(2): one system call per up to IOV_MAX
 * ranges, where /proc/PID/mem would take one per range. Reading the goroutines and stacks of a process with
 * 100k goroutines is then a few hundred calls. The target is never stopped or written: the kernel copies from
 * its pages (a page that is not mapped just ends that range short).
 *
 * readMemory(pid, addrs: Float64Array, lens: Uint32Array, out: Buffer) -> Int32Array of bytes read per range.
 * Range i lands at the sum of lens[0..i) in out. A range that cannot be read whole reads as far as it can. */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include <node_api.h>

#include "procmem.h"

#define BATCH 1024

static napi_value throw_error(napi_env env, const char *msg)
{
	napi_throw_error(env, NULL, msg);
	return NULL;
}

/* Reads ranges [from, to) one batch at a time; after a short batch, finds the range that stopped it, reads that
 * one alone as far as it goes (a page at a time) and carries on with the next. */
static void read_ranges(pid_t pid, const double *addrs, const uint32_t *lens, uint8_t *out, int32_t *got, size_t n)
{
	struct iovec local[BATCH], remote[BATCH];
	size_t pos = 0, i = 0;
	while (i < n) {
		size_t k = 0, want = 0, start = i, p = pos;
		for (; k < BATCH && i + k < n; k++) {
			local[k].iov_base = out + p;
			local[k].iov_len = lens[i + k];
			remote[k].iov_base = (void *)(uintptr_t)addrs[i + k];
			remote[k].iov_len = lens[i + k];
			p += lens[i + k];
			want += lens[i + k];
		}
		ssize_t r = process_vm_readv(pid, local, k, remote, k, 0);
		if (r == (ssize_t)want) {
			for (size_t j = 0; j < k; j++) got[start + j] = (int32_t)lens[start + j];
			i += k;
			pos = p;
			continue;
		}
		/* Ranges before the first short one are whole. */
		size_t done = r > 0 ? (size_t)r : 0, j = 0;
		while (j < k && done >= lens[start + j]) {
			got[start + j] = (int32_t)lens[start + j];
			done -= lens[start + j];
			pos += lens[start + j];
			j++;
		}
		if (j == k) { /* cannot happen, but never loop forever */
			i += k;
			continue;
		}
		/* Range start+j: read it alone, a page at a time, as far as it goes. */
		size_t len = lens[start + j], have = 0;
		uintptr_t a = (uintptr_t)addrs[start + j];
		while (have < len) {
			size_t chunk = 4096 - ((a + have) & 4095);
			if (chunk > len - have) chunk = len - have;
			struct iovec l = { out + pos + have, chunk }, rm = { (void *)(a + have), chunk };
			ssize_t q = process_vm_readv(pid, &l, 1, &rm, 1, 0);
			if (q <= 0) break;
			have += (size_t)q;
			if ((size_t)q < chunk) break;
		}
		got[start + j] = (int32_t)have;
		if (have == 0 && r < 0 && (errno == ESRCH || errno == EPERM)) {
			/* The process is gone or not ours: every range left is unreadable. */
			for (size_t m = start + j + 1; m < n; m++) got[m] = 0;
			return;
		}
		pos += len;
		i = start + j + 1;
	}
}

static napi_value read_memory(napi_env env, napi_callback_info info)
{
	size_t argc = 4;
	napi_value argv[4];
	napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
	if (argc < 4) return throw_error(env, "readMemory(pid, addrs, lens, out)");
	int32_t pid;
	if (napi_get_value_int32(env, argv[0], &pid) != napi_ok || pid <= 0) return throw_error(env, "readMemory: bad pid");
	napi_typedarray_type t1, t2;
	size_t n1, n2, off;
	void *d1, *d2;
	napi_value ab;
	if (napi_get_typedarray_info(env, argv[1], &t1, &n1, &d1, &ab, &off) != napi_ok || t1 != napi_float64_array)
		return throw_error(env, "readMemory: addrs must be a Float64Array");
	if (napi_get_typedarray_info(env, argv[2], &t2, &n2, &d2, &ab, &off) != napi_ok || t2 != napi_uint32_array)
		return throw_error(env, "readMemory: lens must be a Uint32Array");
	if (n1 != n2) return throw_error(env, "readMemory: addrs and lens differ in length");
	void *out;
	size_t outLen;
	if (napi_get_buffer_info(env, argv[3], &out, &outLen) != napi_ok) return throw_error(env, "readMemory: out must be a Buffer");
	size_t total = 0;
	for (size_t i = 0; i < n2; i++) total += ((uint32_t *)d2)[i];
	if (total > outLen) return throw_error(env, "readMemory: out is smaller than the ranges");
	napi_value gotAb, got;
	void *gotData;
	napi_create_arraybuffer(env, n1 * sizeof(int32_t), &gotData, &gotAb);
	memset(gotData, 0, n1 * sizeof(int32_t));
	read_ranges((pid_t)pid, (const double *)d1, (const uint32_t *)d2, (uint8_t *)out, (int32_t *)gotData, n1);
	napi_create_typedarray(env, napi_int32_array, n1, gotAb, 0, &got);
	return got;
}

void procmem_register(napi_env env, napi_value exports)
{
	napi_value fn;
	napi_create_function(env, "readMemory", NAPI_AUTO_LENGTH, read_memory, NULL, &fn);
	napi_set_named_property(env, exports, "readMemory", fn);
}
