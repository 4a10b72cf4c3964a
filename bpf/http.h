/* SPDX-License-Identifier: Apache-2.0 */
/* Records and numbering of bpf/http.bpf.c (server requests of Go's net/http, HTTP/1 and HTTP/2, and grpc-go
 * server calls): the one source. The agent's TypeScript for them (agent/src/events/http.bpf.ts) is generated
 * from the compiled object's BTF by scripts/bpf-types (`npm run gen:bpf`).
 *
 * The uprobe cookies follow cookie.h, with enum http_probe as the probe number and struct http_layout as the
 * layout. */
#ifndef GOROSCOPE_HTTP_H
#define GOROSCOPE_HTTP_H

#include "goabi.h"

enum http_event_kind {
	HTTP_KIND_REQUEST = 1, /* net/http.serverHandler.ServeHTTP returned: one request, HTTP/1 or HTTP/2 */
	HTTP_KIND_GRPC_CALL = 2,    /* google.golang.org/grpc.(*Server).handleStream returned: one call */
};

/* Which probe a hit came from: indexes http_hit_counts and http_drop_counts. */
enum http_probe {
	HTTP_PROBE_SERVE = 0,       /* net/http.serverHandler.ServeHTTP, stack-check jump */
	HTTP_PROBE_SERVE_RET = 1,   /* net/http.serverHandler.ServeHTTP, every RET (where HTTP_PROBE_SERVE_DONE cannot go) */
	HTTP_PROBE_GRPC_HANDLE = 2,      /* grpc.(*Server).handleStream, stack-check jump */
	HTTP_PROBE_GRPC_HANDLE_RET = 3,  /* grpc.(*Server).handleStream, every RET */
	HTTP_PROBE_GRPC_STATUS = 4,      /* grpc/internal/transport.(*http2Server).writeStatus, stack-check jump */
	HTTP_PROBE_SERVE_DONE = 5,  /* what net/http calls once the handler returned, stack-check jump:
				     * (*response).finishRequest (HTTP/1), the HTTP/2 responseWriter's handlerDone */
	HTTP_PROBE_SERVE_HIJACK = 6, /* net/http.(*conn).hijackLocked, stack-check jump: the handler took the
				      * connection over (a WebSocket upgrade), so finishRequest never comes */
};

enum http_limits {
	HTTP_PROBE_KINDS = 8,       /* room in the per-probe counters */
	HTTP_METHOD_MAX = 16,       /* bytes of the method kept */
	HTTP_PATH_MAX = 128,        /* bytes of the path (gRPC: the full method) kept; path_full_len says how long */
	HTTP_ROUTE_MAX = 64,        /* bytes of the route (the ServeMux pattern that matched, Go 1.23+) kept */
	HTTP_MAX_LAYOUTS = 64,      /* entries of http_layouts: net/http and grpc-go builds traced at once */
	HTTP_MAX_INFLIGHT = 16384,  /* requests in progress at once, all processes (LRU: a handler that never
				     * returns, or panics, ages out) */
	HTTP_TRACEPARENT_LEN = 55,  /* "00-" 32 hex "-" 16 hex "-" 2 hex: W3C trace context, version 00 */
	HTTP_HEADER_GROUPS = 32,    /* Header map groups searched for Traceparent (8 slots each) */
};

/* Go 1.24+ maps (internal/runtime/maps): a map[string][]string group is a control word and 8 slots of key
 * (string, 16 bytes) and value ([]string, 24 bytes). A control byte with its top bit clear is a full slot. */
enum http_swiss {
	HTTP_SWISS_SLOTS = 8,
	HTTP_SWISS_SLOT_SIZE = 40,
	HTTP_SWISS_GROUP_SIZE = 328,
};

/* http_event.flags */
enum http_flag {
	HTTP_FLAG_PATH_CUT = 1,    /* the path was longer than HTTP_PATH_MAX */
	HTTP_FLAG_NO_STATUS = 2,   /* gRPC: no status was written on this goroutine (status left 0) */
	HTTP_FLAG_UNREADABLE = 4,  /* a field could not be read from the process */
	HTTP_FLAG_IMPLICIT_OK = 8, /* HTTP: the handler set no status; net/http sends 200 after it returns */
	HTTP_FLAG_TRACEPARENT = 16, /* traceparent holds the request's Traceparent header (55 bytes) */
	HTTP_FLAG_HIJACKED = 32,   /* HTTP/1: ended at Hijack; with no status set, 101 (the handler writes its own) */
};

/* One record per request or call. Fixed size, so user space walks a batch by stride. */
struct http_event {
	__u64 start_ns;       /* bpf_ktime_get_ns() (CLOCK_MONOTONIC) at the handler's entry */
	__u64 end_ns;         /* at its return */
	__u64 goid;           /* the goroutine that served it (R14's g at entry and return) */
	__s64 request_bytes;  /* HTTP: Request.ContentLength (-1: unknown, e.g. chunked) */
	__s64 response_bytes; /* HTTP: body bytes the handler wrote */
	__u32 pid;            /* tgid of the traced process */
	__u32 tid;
	__u16 status;         /* HTTP status code; gRPC: the status code (0 = OK) */
	__u16 layout_id;
	__u8 kind;            /* enum http_event_kind */
	__u8 flags;           /* enum http_flag */
	__u8 proto_major;     /* HTTP: 1 or 2; gRPC: 2 */
	__u8 proto_minor;
	__u16 method_len;
	__u16 path_len;
	__u16 route_len;
	__u16 path_full_len;
	char method[HTTP_METHOD_MAX];
	char path[HTTP_PATH_MAX];
	char route[HTTP_ROUTE_MAX];
	char traceparent[HTTP_TRACEPARENT_LEN + 1];
};

/* Where net/http and grpc-go keep what the probes read, for one build (agent/src/http/http-layout.ts, from the
 * binary's DWARF). Offsets are bytes; HTTP_FIELD_ABSENT for a field the build lacks. */
struct http_layout {
	__u32 g_goid;
	__u32 serve_rw_reg;       /* enum go_abi_reg: ServeHTTP's rw (an interface: its data word) */
	__u32 serve_req_reg;      /* enum go_abi_reg: ServeHTTP's req */
	__u32 req_method;         /* Request.Method (string) */
	__u32 req_url;            /* Request.URL (*url.URL) */
	__u32 url_path;           /* URL.Path (string) */
	__u32 req_proto_major;    /* Request.ProtoMajor (int) */
	__u32 req_proto_minor;
	__u32 req_content_length; /* Request.ContentLength (int64) */
	__u32 req_pattern;        /* Request.Pattern (string, Go 1.23+) */
	__u32 resp_status;        /* http.response.status (int): HTTP/1 */
	__u32 resp_written;       /* http.response.written (int64) */
	__u32 h2rw_rws;           /* http2responseWriter.rws (*http2responseWriterState): HTTP/2 */
	__u32 rws_status;         /* http2responseWriterState.status (int) */
	__u32 rws_wrote_bytes;    /* http2responseWriterState.wroteBytes (int64) */
	__u32 grpc_stream_reg;    /* enum go_abi_reg: handleStream's stream (*transport.ServerStream) */
	__u32 ss_stream;          /* ServerStream.Stream (*transport.Stream, embedded) */
	__u32 stream_method;      /* Stream.method (string) */
	__u32 status_st_reg;      /* enum go_abi_reg: writeStatus's st (*status.Status) */
	__u32 status_s;           /* status.Status.s (*spb.Status) */
	__u32 spb_code;           /* spb.Status.Code (int32) */
	__u32 req_header;         /* Request.Header (a map pointer) */
	__u32 map_used;           /* internal/runtime/maps.Map.used (Go 1.24+; absent: Traceparent is not read) */
	__u32 map_dir_ptr;        /* Map.dirPtr: one group when dirLen is 0, else an array of *table */
	__u32 map_dir_len;        /* Map.dirLen */
	__u32 table_groups_data;  /* table.groups.data */
	__u32 table_groups_mask;  /* table.groups.lengthMask (groups - 1) */
};

enum http_layout_absent {
	HTTP_FIELD_ABSENT = 0x7fffffff,
};

#endif
