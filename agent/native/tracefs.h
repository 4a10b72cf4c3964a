// SPDX-License-Identifier: Apache-2.0
/* Classic tracepoint ids read from a tracefs mounted in a private mount namespace (tracefs.c). */
#ifndef GOROSCOPE_TRACEFS_H
#define GOROSCOPE_TRACEFS_H

#include <node_api.h>

/* Adds privateTracefsIds(["category/name", ...]) to the addon's exports. */
void tracefs_register(napi_env env, napi_value exports);

#endif
