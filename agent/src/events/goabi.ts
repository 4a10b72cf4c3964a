// enum go_abi_reg of bpf/goabi.h: how the agent names an argument register to a BPF program, for arguments
// whose register differs between Go versions (read from each binary's DWARF or the layout table).
import type { AbiRegister } from '../gobinary/layouts.ts';

export const GoAbiReg = { none: 0, RAX: 1, RBX: 2, RCX: 3, RDI: 4, RSI: 5, R8: 6, R9: 7, R10: 8, R11: 9 } as const;

/** The enum value of a register, or GoAbiReg.none when the argument is not in one. */
export function goAbiReg(r: AbiRegister | null | undefined): number {
  return r ? GoAbiReg[r] : GoAbiReg.none;
}
