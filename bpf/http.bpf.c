// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Server requests of Go programs, from uprobes on net/http and grpc-go (amd64, register ABI: Go 1.17+). A
 * separate object from goroutines.bpf.c, with its own ring buffer: one record per request or call.
 *
 * Every program reads registers and user memory only; none writes user memory, and none is a uretprobe (Go
 * moves goroutine stacks). Between start and end the request is kept per goroutine: R14 is the running g in Go
 * code, at every probe alike, whatever stack it runs on by then.
 *   - net/http.serverHandler.ServeHTTP(sh, rw, req): HTTP/1 (conn.serve) and HTTP/2 (the server's handler
 *     goroutines) both call the user's handler through it. Entry: the time, req and rw's data word.
 *   - The request's end: the entry of what net/http calls on the same goroutine once ServeHTTP returned,
 *     (*response).finishRequest for HTTP/1 and the HTTP/2 responseWriter's handlerDone, both before the response
 *     is flushed. An entry is one emulated trap; a RET is single-stepped out of line (two traps and a copy, ~5x
 *     the cost here), so the RETs of ServeHTTP (found by decoding it, agent/src/http/http-probes.ts) are probed
 *     only in a build where those two cannot be. Read at the end: method, path, the ServeMux pattern that
 *     matched (Request.Pattern, set during the call), the status and body bytes from the response writer
 *     (http.response for HTTP/1, the HTTP/2 responseWriterState, told apart by Request.ProtoMajor).
 *   - grpc.(*Server).handleStream(t, stream): one call, on its own goroutine. Entry: time and stream. RET: the
 *     full method from the stream.
 *   - transport.(*http2Server).writeStatus(s, st): the status the call ends with, written on the call's goroutine. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "cookie.h"
#include "http.h"
#include "common.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* What the agent shares with this object (agent/src/events/http.bpf.ts). */
BPF_EXPORT(struct http_event);
BPF_EXPORT(struct http_layout);
BPF_EXPORT(enum http_event_kind);
BPF_EXPORT(enum http_probe);
BPF_EXPORT(enum http_limits);
BPF_EXPORT(enum http_flag);
BPF_EXPORT(enum http_layout_absent);
BPF_EXPORT(enum http_swiss);

/* Wake the reader only when this much is waiting (it also drains on a timer). */
const volatile __u64 wakeup_bytes = 256 << 10;

EVENTS_MAP(http_events, struct http_event, 1 << 22); /* resized by the agent before load */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, HTTP_MAX_LAYOUTS);
	__type(key, __u32);
	__type(value, struct http_layout);
} http_layouts SEC(".maps");

struct inflight_key {
	__u32 pid;
	__u32 pad;
	__u64 goid;
};

/* A request between its entry and its RET. */
struct inflight {
	__u64 start_ns;
	__u64 req;     /* HTTP: *http.Request; gRPC: *transport.ServerStream */
	__u64 rw;      /* HTTP: the ResponseWriter's data word */
	__u32 status;  /* gRPC: the code writeStatus wrote */
	__u8 has_status;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, HTTP_MAX_INFLIGHT);
	__type(key, struct inflight_key);
	__type(value, struct inflight);
} http_inflight SEC(".maps");

/* Hits per (layout, probe). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HTTP_MAX_LAYOUTS * HTTP_PROBE_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} http_hit_counts SEC(".maps");

/* Records lost, per probe: ring buffer full, or a RET with no entry seen (attached mid-request). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HTTP_PROBE_KINDS);
	__type(key, __u32);
	__type(value, __u64);
} http_drop_counts SEC(".maps");

static __always_inline const struct http_layout *hit(__u64 cookie, __u32 probe)
{
	__u32 id = COOKIE_LAYOUT(cookie);
	const struct http_layout *l = bpf_map_lookup_elem(&http_layouts, &id);
	if (l)
		count(&http_hit_counts, id * HTTP_PROBE_KINDS + probe);
	return l;
}

static __always_inline struct inflight_key key_of(struct pt_regs *ctx, const struct http_layout *l)
{
	struct inflight_key k = {};
	k.pid = bpf_get_current_pid_tgid() >> 32;
	k.goid = read_u64(ctx->r14 + l->g_goid);
	return k;
}

/* Copies the Go string (ptr, len) into dst; returns its full length, sets *n to what was kept. */
static __always_inline __u64 copy_string(__u64 ptr, __u64 len, char *dst, __u32 max, __u16 *n, __u8 *flags)
{
	__u64 keep = len < max ? len : max;
	if (!ptr || keep == 0)
		return len;
	/* max is a power of two: the mask bounds the read for the verifier. */
	if (bpf_probe_read_user(dst, keep & (max - 1) ? keep & (max - 1) : max, (const void *)ptr) == 0)
		*n = keep;
	else
		*flags |= HTTP_FLAG_UNREADABLE;
	return len;
}

/* Copies a Go string at addr (pointer, length) into dst; returns its full length, sets *n to what was kept. */
static __always_inline __u64 read_string(__u64 addr, char *dst, __u32 max, __u16 *n, __u8 *flags)
{
	__u64 hdr[2] = {};
	if (bpf_probe_read_user(hdr, sizeof(hdr), (const void *)addr)) {
		*flags |= HTTP_FLAG_UNREADABLE;
		return 0;
	}
	return copy_string(hdr[0], hdr[1], dst, max, n, flags);
}

/* The same for the string at offset off of a span's object: its header from the span when it lies inside. */
static __always_inline __u64 span_string(const struct span *s, __u32 off, char *dst, __u32 max, __u16 *n, __u8 *flags)
{
	if (span_has(s, off, 16))
		return copy_string(span_u64(s, off), span_u64(s, off + 8), dst, max, n, flags);
	return read_string(s->addr + off, dst, max, n, flags);
}

static __always_inline void enter(struct pt_regs *ctx, __u32 probe, __u64 req, __u64 rw, const struct http_layout *l)
{
	struct inflight_key k = key_of(ctx, l);
	struct inflight v = {};
	v.start_ns = bpf_ktime_get_ns();
	v.req = req;
	v.rw = rw;
	if (bpf_map_update_elem(&http_inflight, &k, &v, BPF_ANY))
		count(&http_drop_counts, probe);
}

static __always_inline struct http_event *reserve(__u32 probe, __u64 cookie, __u8 kind, struct inflight_key *k,
						  struct inflight *v)
{
	struct http_event *e = event_reserve(&http_events, &http_events_scratch, sizeof(*e));
	if (!e) {
		count(&http_drop_counts, probe);
		return NULL;
	}
	e->start_ns = v->start_ns;
	e->end_ns = bpf_ktime_get_ns();
	e->goid = k->goid;
	e->request_bytes = -1;
	e->response_bytes = 0;
	e->pid = k->pid;
	e->tid = (__u32)bpf_get_current_pid_tgid();
	e->status = 0;
	e->layout_id = COOKIE_LAYOUT(cookie);
	e->kind = kind;
	e->flags = 0;
	e->proto_major = 0;
	e->proto_minor = 0;
	e->method_len = 0;
	e->path_len = 0;
	e->route_len = 0;
	e->path_full_len = 0;
	return e;
}

static __always_inline void submit(void *ctx, struct http_event *e, __u32 probe)
{
	if (!event_submit(ctx, &http_events, e, sizeof(*e), wakeup_bytes))
		count(&http_drop_counts, probe);
}

/* The Traceparent header, when the request has one: a walk of Request.Header, a Go 1.24+ map (internal/runtime/maps):
 * one group while the map is small, else a directory of tables, each an array of groups. Keys are canonical
 * ("Traceparent"), as net/http stores them for HTTP/1 and HTTP/2 alike. */
struct header_walk {
	__u64 dir;        /* the map's directory (an array of *table) */
	__u64 dir_len;
	const struct http_layout *l;
	__u64 value;      /* found: the header's first value (a Go string's address) */
};

#define TRACEPAR_LO 0x7261706563617254ULL /* "Tracepar", little-endian */
#define TRACEPAR_HI 0x746e65U             /* "ent" */

/* The value of the Traceparent key in one group, or 0. */
static __always_inline __u64 group_traceparent(__u64 group)
{
	__u64 ctrl = read_u64(group);
	for (int i = 0; i < HTTP_SWISS_SLOTS; i++) {
		if ((ctrl >> (i * 8)) & 0x80)
			continue; /* empty or deleted */
		__u64 slot = group + 8 + i * HTTP_SWISS_SLOT_SIZE;
		__u64 key[2] = {};
		if (bpf_probe_read_user(key, sizeof(key), (const void *)slot) || key[1] != 11)
			continue;
		__u64 name[2] = {};
		if (bpf_probe_read_user(name, 11, (const void *)key[0]))
			continue;
		if (name[0] != TRACEPAR_LO || (name[1] & 0xffffff) != TRACEPAR_HI)
			continue;
		__u64 values[2] = {}; /* []string: data, len */
		if (bpf_probe_read_user(values, sizeof(values), (const void *)(slot + 16)) || values[1] < 1)
			return 0;
		return values[0];
	}
	return 0;
}

static long header_walk_step(__u64 i, void *arg)
{
	struct header_walk *w = arg;
	__u64 t = i / 8, g = i % 8;
	if (t >= w->dir_len)
		return 1;
	__u64 table = read_u64(w->dir + t * 8);
	if (!table)
		return 0;
	if (g > read_u64(table + w->l->table_groups_mask))
		return 0;
	__u64 data = read_u64(table + w->l->table_groups_data);
	w->value = data ? group_traceparent(data + g * HTTP_SWISS_GROUP_SIZE) : 0;
	return w->value ? 1 : 0;
}

/* w[off / 8] of four words, by constant offsets as span_u64 picks them (off < 32, a multiple of 8). */
static __always_inline __u64 word4(const __u64 *w, __u32 off)
{
	__u64 v = 0;
#pragma unroll
	for (__u32 i = 0; i < 4; i++) {
		__u64 x = w[i];
		asm volatile("" : "+r"(x));
		if (off == i * 8)
			v = x;
	}
	return v;
}

static __always_inline void read_traceparent(__u64 m, const struct http_layout *l, struct http_event *e)
{
	if (l->map_used == HTTP_FIELD_ABSENT || !m)
		return;
	/* used, dirPtr and dirLen: the map's first words, one read. */
	__u64 hdr[4] = {};
	__u32 used = l->map_used, dir = l->map_dir_ptr, len = l->map_dir_len;
	if (used > 24 || dir > 24 || len > 24 || (used | dir | len) & 7 || bpf_probe_read_user(hdr, sizeof(hdr), (const void *)m))
		return;
	if (!word4(hdr, used))
		return;
	struct header_walk w = { .dir = word4(hdr, dir), .dir_len = word4(hdr, len), .l = l };
	if (!w.dir)
		return;
	if (w.dir_len == 0)
		w.value = group_traceparent(w.dir);
	else
		bpf_loop(HTTP_HEADER_GROUPS, header_walk_step, &w, 0);
	if (!w.value)
		return;
	__u64 str[2] = {};
	if (bpf_probe_read_user(str, sizeof(str), (const void *)w.value) || str[1] != HTTP_TRACEPARENT_LEN)
		return;
	if (bpf_probe_read_user(e->traceparent, HTTP_TRACEPARENT_LEN, (const void *)str[0]) == 0)
		e->flags |= HTTP_FLAG_TRACEPARENT;
}

/* net/http.serverHandler.ServeHTTP(sh serverHandler, rw ResponseWriter, req *Request), after the stack check. */
SEC("uprobe")
int http_serve(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct http_layout *l = hit(cookie, HTTP_PROBE_SERVE);
	if (!l || goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	enter(ctx, HTTP_PROBE_SERVE, go_arg(ctx, l->serve_req_reg), go_arg(ctx, l->serve_rw_reg), l);
	return 0;
}

/* The handler is done: one record from what the request and its response writer hold. */
static __always_inline void serve_end(struct pt_regs *ctx, __u64 cookie, __u32 probe, const struct http_layout *l,
				      bool hijacked)
{
	struct inflight_key k = key_of(ctx, l);
	struct inflight *v = bpf_map_lookup_elem(&http_inflight, &k);
	if (!v) {
		count(&http_drop_counts, probe);
		return;
	}
	struct http_event *e = reserve(probe, cookie, HTTP_KIND_REQUEST, &k, v);
	if (e) {
		__u64 req = v->req, rw = v->rw;
		/* The Request's first fields (Method, URL, ProtoMajor/Minor, Header, ContentLength) in one read. */
		struct span req_span;
		struct span *r = &req_span;
		span_read(r, req, 0);
		__u64 major = span_u64(r, l->req_proto_major);
		e->proto_major = (__u8)major;
		e->proto_minor = (__u8)span_u64(r, l->req_proto_minor);
		e->request_bytes = (__s64)span_u64(r, l->req_content_length);
		span_string(r, l->req_method, e->method, HTTP_METHOD_MAX, &e->method_len, &e->flags);
		__u64 url = span_u64(r, l->req_url);
		if (url) {
			__u64 full = read_string(url + l->url_path, e->path, HTTP_PATH_MAX, &e->path_len, &e->flags);
			e->path_full_len = full > 0xffff ? 0xffff : (__u16)full;
			if (full > HTTP_PATH_MAX)
				e->flags |= HTTP_FLAG_PATH_CUT;
		}
		if (l->req_pattern != HTTP_FIELD_ABSENT)
			span_string(r, l->req_pattern, e->route, HTTP_ROUTE_MAX, &e->route_len, &e->flags);
		read_traceparent(span_u64(r, l->req_header), l, e);
		/* The response writer's status and byte count lie near each other: one read (the span reused). */
		__u64 status, written;
		if (major == 2) {
			__u64 rws = read_u64(rw + l->h2rw_rws);
			span_read(r, rws, l->rws_status < l->rws_wrote_bytes ? l->rws_status : l->rws_wrote_bytes);
			status = span_u64(r, l->rws_status);
			written = span_u64(r, l->rws_wrote_bytes);
		} else {
			span_read(r, rw, l->resp_status < l->resp_written ? l->resp_status : l->resp_written);
			status = span_u64(r, l->resp_status);
			written = span_u64(r, l->resp_written);
		}
		if (hijacked) {
			e->flags |= HTTP_FLAG_HIJACKED;
			if (status == 0)
				status = 101;
		} else if (status == 0) {
			status = 200;
			e->flags |= HTTP_FLAG_IMPLICIT_OK;
		}
		e->status = (__u16)status;
		e->response_bytes = (__s64)written;
		submit(ctx, e, probe);
	}
	bpf_map_delete_elem(&http_inflight, &k);
}

/* (*response).finishRequest or the HTTP/2 responseWriter's handlerDone, after the stack check: net/http calls it
 * on the serving goroutine once ServeHTTP returned. A goroutine with no request in flight (an answer net/http
 * makes without the handler, a 417 or HTTP/2's 431; a probe attached mid-request) is counted as a drop. */
SEC("uprobe")
int http_serve_done(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct http_layout *l = hit(cookie, HTTP_PROBE_SERVE_DONE);
	if (!l || goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	serve_end(ctx, cookie, HTTP_PROBE_SERVE_DONE, l, false);
	return 0;
}

/* net/http.(*conn).hijackLocked, after the stack check, on the handler's goroutine: the handler took the HTTP/1
 * connection over (a WebSocket upgrade). The request ends here: finishRequest never comes for it. */
SEC("uprobe")
int http_serve_hijack(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct http_layout *l = hit(cookie, HTTP_PROBE_SERVE_HIJACK);
	if (!l || goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	serve_end(ctx, cookie, HTTP_PROBE_SERVE_HIJACK, l, true);
	return 0;
}

/* A RET of net/http.serverHandler.ServeHTTP, in a build whose post-handler calls cannot be probed. */
SEC("uprobe")
int http_serve_ret(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct http_layout *l = hit(cookie, HTTP_PROBE_SERVE_RET);
	if (l)
		serve_end(ctx, cookie, HTTP_PROBE_SERVE_RET, l, false);
	return 0;
}

/* google.golang.org/grpc.(*Server).handleStream(t ServerTransport, stream *transport.ServerStream). */
SEC("uprobe")
int grpc_handle(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct http_layout *l = hit(cookie, HTTP_PROBE_GRPC_HANDLE);
	if (!l || goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	enter(ctx, HTTP_PROBE_GRPC_HANDLE, go_arg(ctx, l->grpc_stream_reg), 0, l);
	return 0;
}

/* transport.(*http2Server).writeStatus(s, st *status.Status): the call's status, on the call's goroutine. */
SEC("uprobe")
int grpc_status(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct http_layout *l = hit(cookie, HTTP_PROBE_GRPC_STATUS);
	if (!l || goes_to_morestack(ctx, COOKIE_STACK_CHECK(cookie)))
		return 0;
	struct inflight_key k = key_of(ctx, l);
	struct inflight *v = bpf_map_lookup_elem(&http_inflight, &k);
	if (!v)
		return 0;
	__u64 st = go_arg(ctx, l->status_st_reg);
	__u64 s = st ? read_u64(st + l->status_s) : 0;
	__u32 code = 0;
	if (s)
		bpf_probe_read_user(&code, sizeof(code), (const void *)(s + l->spb_code));
	v->status = code;
	v->has_status = 1;
	return 0;
}

/* A RET of grpc.(*Server).handleStream: the call is over. */
SEC("uprobe")
int grpc_handle_ret(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	const struct http_layout *l = hit(cookie, HTTP_PROBE_GRPC_HANDLE_RET);
	if (!l)
		return 0;
	struct inflight_key k = key_of(ctx, l);
	struct inflight *v = bpf_map_lookup_elem(&http_inflight, &k);
	if (!v) {
		count(&http_drop_counts, HTTP_PROBE_GRPC_HANDLE_RET);
		return 0;
	}
	struct http_event *e = reserve(HTTP_PROBE_GRPC_HANDLE_RET, cookie, HTTP_KIND_GRPC_CALL, &k, v);
	if (e) {
		e->proto_major = 2;
		e->request_bytes = 0;
		__u64 stream = l->ss_stream == HTTP_FIELD_ABSENT ? v->req : read_u64(v->req + l->ss_stream);
		__u64 full = read_string(stream + l->stream_method, e->path, HTTP_PATH_MAX, &e->path_len, &e->flags);
		e->path_full_len = full > 0xffff ? 0xffff : (__u16)full;
		if (full > HTTP_PATH_MAX)
			e->flags |= HTTP_FLAG_PATH_CUT;
		e->status = (__u16)v->status;
		if (!v->has_status)
			e->flags |= HTTP_FLAG_NO_STATUS;
		submit(ctx, e, HTTP_PROBE_GRPC_HANDLE_RET);
	}
	bpf_map_delete_elem(&http_inflight, &k);
	return 0;
}
