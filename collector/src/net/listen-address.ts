// One reading of a listen address for every listener (the collector's --listen, the agent's --metrics-listen),
// and one-line errors when the value or the bind is wrong.
import { isIP, type Server } from 'node:net';
import { InvalidArgumentError } from 'commander';

export interface ListenAddress {
  /** An IP address or a host name; undefined: every interface (IPv6 and IPv4). */
  host: string | undefined;
  port: number;
}

/** A listen address an operator got wrong, or one that cannot be bound: the message is the whole story. */
export class ListenError extends Error {
  override name = 'ListenError';
  /** The bind's errno code (EADDRINUSE, ...), when a bind failed. */
  readonly code?: string;
  constructor(message: string, code?: string) {
    super(message);
    if (code) this.code = code;
  }
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const EXAMPLES = 'e.g. 127.0.0.1:9464, [::1]:9464, :9464 or 9464 (every interface)';

/**
 * HOST:PORT, [IPv6]:PORT, :PORT or a bare PORT; the last two listen on every interface, as ":PORT" does in
 * Go programs. Port 0 picks a free port.
 */
export function parseListenAddress(value: string): ListenAddress {
  const text = value.trim();
  const bad = (why: string) => new ListenError(`invalid listen address '${text.slice(0, 100)}': ${why} (${EXAMPLES})`);
  let host: string | undefined;
  let portText: string;
  if (/^\d+$/.test(text)) {
    portText = text;
  } else if (text.startsWith('[')) {
    const m = /^\[([^\]]*)\]:(.*)$/.exec(text);
    if (!m) throw bad(text.includes(']') ? 'a port must follow the bracketed address' : 'missing ]');
    if (isIP(m[1]) !== 6) throw bad(`'${m[1]}' in brackets is not an IPv6 address`);
    host = m[1];
    portText = m[2];
  } else {
    const i = text.lastIndexOf(':');
    if (i < 0) throw bad('missing :PORT');
    host = text.slice(0, i) || undefined;
    portText = text.slice(i + 1);
    if (host?.includes(':')) throw bad('put an IPv6 address in brackets, e.g. [::1]:9464');
    if (host !== undefined && isIP(host) !== 4 && !HOSTNAME.test(host)) throw bad(`'${host}' is not an IP address or host name`);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) throw bad(`port '${portText.slice(0, 20)}' is not a number from 0 to 65535`);
  return { host, port: Number(portText) };
}

/** A commander argument parser: checks the value at parse time, keeps the text. */
export function listenAddressOption(value: string): string {
  try {
    parseListenAddress(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return value;
}

/** host:port as an operator writes it back: [::1]:80, 127.0.0.1:80, *:80 for every interface. */
export function formatListenAddress(a: ListenAddress, port = a.port): string {
  const host = a.host === undefined ? '*' : a.host.includes(':') ? `[${a.host}]` : a.host;
  return `${host}:${port}`;
}

/** The host to give listen(): '::' takes IPv4 too unless IPv6 is off (see bindFallbackHost). */
export function bindHost(a: ListenAddress): string {
  return a.host ?? '::';
}

/** Errors of a bind that a retry on IPv4 can cure when listening on every interface. */
export function needsIpv4Fallback(a: ListenAddress, err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException)?.code;
  return a.host === undefined && (code === 'EAFNOSUPPORT' || code === 'EADDRNOTAVAIL');
}

/** The one-line reason a bind failed. */
export function listenFailure(a: ListenAddress, err: unknown): ListenError {
  const e = err as NodeJS.ErrnoException;
  const where = formatListenAddress(a);
  const why: Record<string, string> = {
    EADDRINUSE: 'the port is in use by another process',
    EACCES: 'permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)',
    EADDRNOTAVAIL: 'no network interface of this machine has that address',
    ENOTFOUND: 'the host name does not resolve',
    EAI_AGAIN: 'the host name could not be resolved (DNS unavailable)',
  };
  return new ListenError(`cannot listen on ${where}: ${why[e?.code ?? ''] ?? e?.message ?? String(err)}`, e?.code);
}

/** Binds a node:net (or http) server; resolves with the bound port, rejects with a ListenError. */
export async function listenOn(server: Server, a: ListenAddress): Promise<number> {
  const attempt = (host: string) => new Promise<void>((resolve, reject) => {
    const onError = (e: Error) => reject(e);
    server.once('error', onError);
    server.listen(a.port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  try {
    await attempt(bindHost(a));
  } catch (err) {
    if (!needsIpv4Fallback(a, err)) throw listenFailure(a, err);
    try {
      await attempt('0.0.0.0');
    } catch (err2) {
      throw listenFailure(a, err2);
    }
  }
  const addr = server.address();
  return typeof addr === 'object' && addr ? addr.port : a.port;
}
