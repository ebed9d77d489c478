// Where a domus listens or is dialled: a TLS-over-TCP host and port, or a Unix socket path.
import { isIPv4, isIPv6 } from 'node:net';
import { domainToASCII } from 'node:url';
import { inspect } from 'node:util';
import { AureliaError, ErrorId } from './errors.js';

/** The transport under TLS: `'tcp'` (host and port) or `'socket'` (a Unix domain socket path). */
export type TransportKind = 'tcp' | 'socket';

/** Longest Unix socket path in UTF-8 bytes: `sun_path` holds 108 bytes including the final NUL. */
export const SOCKET_PATH_MAX_BYTES = 107;

/** A `DomusAddr` known to be TCP: `host` and `port` are set, `path` is not. */
export interface TcpDomusAddr extends DomusAddr {
  readonly kind: 'tcp';
  readonly host: string;
  readonly port: number;
  readonly path: undefined;
}

/** A `DomusAddr` known to be a Unix socket: `path` is set, `host` and `port` are not. */
export interface SocketDomusAddr extends DomusAddr {
  readonly kind: 'socket';
  readonly host: undefined;
  readonly port: undefined;
  readonly path: string;
}

const FORMS = 'expected tls://HOST:PORT, tls://[IPV6]:PORT or unix:///ABSOLUTE/PATH';
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const HOST_LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
const HOST_NAME_MAX = 253;

/**
 * The address of a domus: TLS over TCP (`tls://host:port`) or TLS over a Unix socket
 * (`unix:///path`). Immutable; hosts are stored in canonical form (host names lower-cased and
 * IDNA-encoded, IPv6 compressed), so two addresses naming the same endpoint are `equals` and
 * share a `key`. Socket paths are compared as written (no `..` or `//` normalisation).
 */
export class DomusAddr {
  /** Which transport this address uses. */
  readonly kind: TransportKind;
  /** TCP host: an IPv4 address, an IPv6 address (without brackets) or a host name. */
  readonly host: string | undefined;
  /** TCP port; 0 asks the listener to pick a free port. */
  readonly port: number | undefined;
  /** Absolute path of the Unix socket. */
  readonly path: string | undefined;
  /** Canonical text form, usable as a `Map` key: equal addresses have equal keys. */
  readonly key: string;

  private constructor(kind: TransportKind, host?: string, port?: number, path?: string) {
    this.kind = kind;
    this.host = host;
    this.port = port;
    this.path = path;
    this.key =
      host === undefined
        ? `unix://${path}`
        : `tls://${host.includes(':') ? `[${host}]` : host}:${port}`;
    Object.freeze(this);
  }

  /**
   * A TLS-over-TCP address. `host` is an IPv4 address, an IPv6 address (brackets optional) or a
   * host name (IDNA names are converted to ASCII); `port` is an integer in 0..65535, where 0 means
   * "pick a free port" when listening. Throws `AureliaError(InvalidConfig)` saying what is wrong.
   */
  static tcp(host: string, port: number): TcpDomusAddr {
    const hostText =
      typeof host === 'string' && /^\[.*:.*\]$/.test(host) ? host.slice(1, -1) : host;
    const canonical = canonicalHost(hostText);
    if (!('value' in canonical)) {
      throw invalid(`invalid TCP host ${quote(host)}: ${canonical.problem}`);
    }
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535) {
      throw invalid(`invalid TCP port ${quote(port)}: a port is an integer in 0..65535`);
    }
    return new DomusAddr('tcp', canonical.value, port) as TcpDomusAddr;
  }

  /**
   * A TLS-over-Unix-socket address. `path` must be absolute, non-empty, free of NUL and at most
   * `SOCKET_PATH_MAX_BYTES` bytes in UTF-8. Throws `AureliaError(InvalidConfig)` saying what is
   * wrong.
   */
  static socket(path: string): SocketDomusAddr {
    const problem = socketPathProblem(path);
    if (problem !== undefined) throw invalid(`invalid socket path ${quote(path)}: ${problem}`);
    return new DomusAddr('socket', undefined, undefined, path) as SocketDomusAddr;
  }

  /**
   * Parses `tls://127.0.0.1:7000`, `tls://[::1]:7000`, `tls://node-a.internal:7000`,
   * `unix:///run/aurelia/a.sock` or `unix:/run/aurelia/a.sock` (schemes are case-insensitive).
   * `parse(addr.toString())` always equals `addr`. Throws `AureliaError(InvalidConfig)` quoting
   * the input and saying what is wrong: an unknown scheme, a missing host or port, a port outside
   * 0..65535, an unbracketed IPv6 host, a path or query after the port, or a bad socket path.
   */
  static parse(text: string): DomusAddr {
    if (typeof text !== 'string') {
      throw invalid(`invalid address ${quote(text)}: an address is a string; ${FORMS}`);
    }
    const fail = (problem: string): never => {
      throw invalid(`invalid address ${quote(text)}: ${problem}`);
    };
    const scheme = SCHEME.exec(text);
    if (scheme === null) return fail(`no scheme; ${FORMS}`);
    const rest = text.slice(scheme[0].length);
    switch (scheme[1].toLowerCase()) {
      case 'tls': {
        if (!rest.startsWith('//')) return fail(`"tls:" must be followed by "//HOST:PORT"`);
        const { host, portText } = splitAuthority(rest.slice(2), fail);
        const canonical = canonicalHost(host);
        if (!('value' in canonical)) return fail(canonical.problem);
        if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) > 65535) {
          return fail(`port ${quote(portText)} is not an integer in 0..65535`);
        }
        return new DomusAddr('tcp', canonical.value, Number(portText));
      }
      case 'unix': {
        // `unix://` takes the rest as the path; a relative path after it is an error, not a host.
        const path = rest.startsWith('//') ? rest.slice(2) : rest;
        const problem = socketPathProblem(path);
        if (problem !== undefined) return fail(problem);
        return new DomusAddr('socket', undefined, undefined, path);
      }
      default:
        return fail(`unsupported scheme "${scheme[1]}:"; ${FORMS}`);
    }
  }

  /** True when this is a TCP address (narrows `host` and `port` to defined values). */
  isTcp(): this is TcpDomusAddr {
    return this.kind === 'tcp';
  }

  /** True when this is a Unix socket address (narrows `path` to a defined value). */
  isSocket(): this is SocketDomusAddr {
    return this.kind === 'socket';
  }

  /** True when `other` names the same endpoint (same canonical form). */
  equals(other: DomusAddr | null | undefined): boolean {
    return other instanceof DomusAddr && other.key === this.key;
  }

  /** The canonical text form (`tls://[::1]:7000`, `unix:///run/a.sock`), accepted by `parse`. */
  toString(): string {
    return this.key;
  }

  /** Serialises as the canonical text form, so configs and logs show a readable address. */
  toJSON(): string {
    return this.key;
  }

  /** Shows `DomusAddr(tls://127.0.0.1:7000)` in `console.log` and `util.inspect`. */
  [inspect.custom](): string {
    return `DomusAddr(${this.key})`;
  }
}

type Checked = { value: string } | { problem: string };

/** Splits `HOST:PORT` or `[IPV6]:PORT`, rejecting anything else in the authority. */
function splitAuthority(
  authority: string,
  fail: (problem: string) => never,
): { host: string; portText: string } {
  if (/[/?#@]/.test(authority)) {
    fail('a TLS address is only HOST:PORT, without user, path, query or fragment');
  }
  let host: string;
  let afterHost: string;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) fail('the IPv6 host is missing its closing "]"');
    host = authority.slice(1, close);
    afterHost = authority.slice(close + 1);
    if (host === '') fail('the host is missing');
    if (!host.includes(':')) {
      fail(`${quote(host)} is not a valid IPv6 address; only IPv6 hosts go in brackets`);
    }
    if (afterHost !== '' && !afterHost.startsWith(':')) {
      fail(`unexpected ${quote(afterHost)} after the IPv6 host; expected ":PORT"`);
    }
  } else {
    const colon = authority.lastIndexOf(':');
    host = colon < 0 ? authority : authority.slice(0, colon);
    afterHost = colon < 0 ? '' : authority.slice(colon);
    if (host.includes(':')) fail('an IPv6 host must be written in brackets, e.g. tls://[::1]:7000');
    if (host === '') fail('the host is missing');
  }
  if (afterHost === '' || afterHost === ':') fail('the port is missing; write HOST:PORT');
  return { host, portText: afterHost.slice(1) };
}

function canonicalHost(host: unknown): Checked {
  if (typeof host !== 'string') return { problem: 'a host is a string' };
  if (host === '') return { problem: 'the host is empty' };
  if (host.includes(':')) {
    if (host.includes('%')) return { problem: 'IPv6 zone ids (%iface) are not supported' };
    if (!isIPv6(host)) return { problem: `${quote(host)} is not a valid IPv6 address` };
    // The WHATWG URL parser prints IPv6 in its canonical compressed, lower-case form.
    return { value: new URL(`http://[${host}]/`).hostname.slice(1, -1) };
  }
  if (isIPv4(host)) return { value: host };
  // Non-ASCII names become their IDNA (punycode) form, which is what DNS and TLS SNI use.
  const ascii = /^[\x21-\x7e]*$/.test(host) ? host.toLowerCase() : domainToASCII(host);
  const labels = ascii.split('.');
  if (ascii === '' || ascii.length > HOST_NAME_MAX || !labels.every((l) => HOST_LABEL.test(l))) {
    return {
      problem:
        `${quote(host)} is neither an IP address nor a host name ` +
        `(dot-separated labels of letters, digits, "-" and "_", at most ${HOST_NAME_MAX} characters)`,
    };
  }
  if (/^[0-9]+$/.test(labels[labels.length - 1])) {
    return { problem: `${quote(host)} looks like an IPv4 address but is not a valid one` };
  }
  return { value: ascii };
}

function socketPathProblem(path: unknown): string | undefined {
  if (typeof path !== 'string') return 'a socket path is a string';
  if (path === '') return 'the socket path is empty';
  if (!path.startsWith('/')) return `socket path ${quote(path)} is not absolute`;
  if (path.includes('\0')) return 'the socket path contains a NUL character';
  const bytes = Buffer.byteLength(path, 'utf8');
  if (bytes > SOCKET_PATH_MAX_BYTES) {
    return `the socket path is ${bytes} bytes in UTF-8; the limit is ${SOCKET_PATH_MAX_BYTES}`;
  }
  return undefined;
}

function quote(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : inspect(value, { depth: 0 });
}

function invalid(message: string): AureliaError {
  return new AureliaError(ErrorId.InvalidConfig, message);
}
