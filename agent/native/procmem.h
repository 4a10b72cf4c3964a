/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
#include <node_api.h>

/* Adds readMemory(pid, addrs, lens, out) to the addon's exports (procmem.c). */
void procmem_register(napi_env env, napi_value exports);
