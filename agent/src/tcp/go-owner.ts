// Where the owner of an accepted socket is learnt in a Go process without syscall hooks. Go's
// net.(*netFD).accept calls accept4(2), wraps the new descriptor, and registers it with the netpoller through
// internal/poll.(*FD).Init, on the accepting goroutine; bpf/tcp.bpf.c's go_accept runs at that CALL (emulated by
// the kernel: one trap, the arguments in place: RAX = &netfd.pfd, R14 = g). That call is made for accepted
// sockets only: files, dials and listens register through other callers and cost nothing here (a probe on
// runtime_pollOpen would run for every file a Go program opens).
import { findProbeSites, type GoBinary } from '../gobinary/index.ts';

export const ACCEPT_FUNC = 'net.(*netFD).accept';
/** What accept calls to register the socket: FD.Init (Go 1.19-1.27 inline netFD.init into accept), or netFD.init. */
export const FD_INIT_FUNCS = ['internal/poll.(*FD).Init', 'net.(*netFD).init'] as const;

export interface AcceptSite {
  callee: string;
  vaddr: number;
  fileOffset: number;
}

/** The probe site in one binary, or why there is none (the connections are traced all the same; accepted ones
 * get the owner that closes them, or the accepting one with the syscall hooks). */
export function acceptSite(bin: GoBinary): AcceptSite | string {
  const accept = bin.func(ACCEPT_FUNC);
  if (!accept) return `${ACCEPT_FUNC} is not in the binary (it accepts no connections)`;
  const found = findProbeSites(bin.elf.read(accept.entry, accept.end - accept.entry), accept.entry);
  for (const callee of FD_INIT_FUNCS) {
    const f = bin.func(callee);
    const calls = f ? found.callsTo(f.entry) : [];
    // One call: accept registers its socket once. Anything else is a build this was not made for.
    if (calls.length === 1) return { callee, vaddr: calls[0].addr, fileOffset: bin.fileOffset(calls[0].addr) };
  }
  return `${ACCEPT_FUNC} has no single call of ${FD_INIT_FUNCS.join(' or ')} to probe`;
}
