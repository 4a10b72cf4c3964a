// enum go_abi_reg of bpf/goabi.h (generated into runtime.bpf.ts): how the agent names an argument register to a
// BPF program, for arguments whose register differs between Go versions (read from each binary's DWARF or the
// layout table).
import type { AbiRegister } from '../gobinary/layouts.ts';
import { GoAbiReg } from './runtime.bpf.ts';

export { GoAbiReg };

/** The enum value of a register, or GoAbiReg.none when the argument is not in one. */
export function goAbiReg(r: AbiRegister | null | undefined): number {
  return r ? GoAbiReg[r.toLowerCase() as Lowercase<AbiRegister>] : GoAbiReg.none;
}
