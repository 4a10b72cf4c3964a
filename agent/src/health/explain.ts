// Turns the failures an operator can act on into one line: what failed, why, and what would fix it. The agent's
// parts, the snapshot and `goroscope doctor` all say it the same way. Anything not recognised keeps its first
// line (never a stack trace) and says so.

/** An error the user can act on, said in one line (no stack trace); anything else is a bug and keeps its stack. */
export class UserError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UserError';
  }
}

/** A failure explained: `why` names the cause in the operator's terms, `fix` what to change (may be empty). */
export interface Explained {
  why: string;
  fix: string;
  /** True when the error was recognised; false means the first line of an unexpected error. */
  known: boolean;
}

const rules: Array<{ test: RegExp; why: string | ((m: RegExpExecArray) => string); fix: string }> = [
  {
    test: /failed to determine tracepoint|tracefs|debugfs/i,
    why: 'tracefs is not mounted (classic tracepoints find their ids there)',
    fix: 'mount -t tracefs tracefs /sys/kernel/tracing, or give the agent CAP_SYS_ADMIN so it mounts it',
  },
  {
    test: /native bridge is not built|BPF object .* is missing/,
    why: 'goroscope is not built on this machine',
    fix: 'run scripts/setup.sh (or npm run build)',
  },
  {
    test: /EADDRINUSE|address already in use/i,
    why: 'the address is already in use',
    fix: 'pick a free port (e.g. --metrics-listen 127.0.0.1:0 for any)',
  },
  {
    test: /EADDRNOTAVAIL|ENOTFOUND|getaddrinfo/i,
    why: 'the address is not one of this machine',
    fix: 'listen on 127.0.0.1, 0.0.0.0, [::] or an address of this machine',
  },
  {
    test: /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH/,
    why: 'the server cannot be reached',
    fix: 'check that it runs and that this node may reach it',
  },
  {
    test: /KUBERNETES_SERVICE_HOST|in-cluster|service ?account|kube.?config|Unauthorized|Forbidden/i,
    why: 'the Kubernetes API server refused or is not configured',
    fix: "run in a pod with the chart's service account (get/list/watch pods), or set KUBECONFIG",
  },
  {
    test: /vmlinux BTF|kernel BTF|\/sys\/kernel\/btf|BTF is (missing|not found)/i,
    why: 'the kernel has no BTF (/sys/kernel/btf/vmlinux)',
    fix: 'use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since 2021)',
  },
  {
    test: /cookie/i,
    why: 'this kernel does not take BPF cookies on uprobes',
    fix: 'goroutine probes need Linux 5.15 or newer',
  },
  {
    // Linux 6.16 (and stable kernels since July 2025) require CAP_SYS_ADMIN for uprobes again (ba677dbe77af).
    test: /attach uprobe.*(Permission denied|Operation not permitted)/,
    why: 'not permitted to attach uprobes here',
    fix: 'give the agent CAP_SYS_ADMIN (perf uprobes need it since Linux 6.16; uprobe multi-links, 6.6+, do not), or run it as root',
  },
  {
    test: /Operation not permitted|EPERM|Permission denied|EACCES/,
    why: 'not permitted to load BPF programs here',
    fix: 'run as root, or with CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE and CAP_SYS_ADMIN (uprobes need it since Linux 6.16; BPF before 5.8)',
  },
  {
    test: /Function not implemented|ENOSYS|Unknown error 524|ENOTSUPP|Operation not supported/,
    why: 'this kernel lacks a BPF feature the part needs',
    fix: 'run `goroscope doctor` to see which',
  },
];

/** The first line of an error's message. */
export function firstLine(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split('\n')[0].trim();
}

export function explain(e: unknown): Explained {
  const text = e instanceof Error ? `${e.message} ${(e as NodeJS.ErrnoException).code ?? ''}` : String(e);
  for (const r of rules) {
    const m = r.test.exec(text);
    if (m) return { why: typeof r.why === 'string' ? r.why : r.why(m), fix: r.fix, known: true };
  }
  return { why: firstLine(e), fix: '', known: false };
}

/** "what: why (fix: ...)", one line; the error's own first line follows when it adds something. */
export function explainLine(what: string, e: unknown): string {
  const x = explain(e);
  const detail = x.known ? ` [${firstLine(e)}]` : '';
  return `${what}: ${x.why}${x.fix ? ` (fix: ${x.fix})` : ''}${detail}`;
}
