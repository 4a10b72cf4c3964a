/* SPDX-License-Identifier: Apache-2.0 */
/* Go's register ABI (ABIInternal, amd64) as the agent names it to the BPF programs: which register holds an
 * argument whose place differs between Go versions (agent/src/gobinary/layouts.ts, from each toolchain's DWARF).
 * The order is ABIInternal's integer argument order; 0 means "not in a register" (the probe reads nothing). */
#ifndef GOROSCOPE_GOABI_H
#define GOROSCOPE_GOABI_H

enum go_abi_reg {
	GO_REG_NONE = 0,
	GO_REG_RAX = 1,
	GO_REG_RBX = 2,
	GO_REG_RCX = 3,
	GO_REG_RDI = 4,
	GO_REG_RSI = 5,
	GO_REG_R8 = 6,
	GO_REG_R9 = 7,
	GO_REG_R10 = 8,
	GO_REG_R11 = 9,
};

#endif
