// The accepting side of A0: admission, the TLS 1.3 handshake with client certificates, its deadline.
import net from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';

import { DomusAddr } from '../addr.js';
import { AureliaError, ErrorId } from '../errors.js';
import { HandshakeAdmission, type AdmissionTicket } from './admission.js';
import { bind, bindSocketFile, removeSocketFile, type SocketFile } from './bind.js';
import {
  describeCertificate,
  explainTlsFailure,
  failureText,
  tcpAddressText,
  unmapIPv4,
  verifiedPeer,
  type AuthenticatedConnection,
} from './connection.js';

/** Limits a listener reads at every accepted connection (so configuration changes apply live). */
export interface TlsListenerLimits {
  /** Concurrent unauthenticated handshakes overall (`inboundHandshakeLimitTotal`). */
  readonly total: number;
  /** Concurrent unauthenticated handshakes per source IP (`inboundHandshakeLimitPerPeer`). */
  readonly perPeer: number;
  /** Deadline of a TLS handshake over TCP, from accept to verified identity. */
  readonly tcpHandshakeTimeoutMs: number;
  /** Deadline of a TLS handshake over a Unix socket. */
  readonly socketHandshakeTimeoutMs: number;
}

/** Options of `TlsListener.listen`. */
export interface TlsListenerOptions {
  /** Where to listen: a TCP host and port (0 picks a free port) or a Unix socket path. */
  readonly addr: DomusAddr;
  /**
   * TLS 1.3-only context holding this node's certificate, key and CA roots (see
   * `loadAuthMaterial`); replace it later with `setSecureContext`.
   */
  readonly secureContext: SecureContext;
  /** Called at every accepted connection; must not throw. */
  readonly limits: () => TlsListenerLimits;
  /**
   * Receives each mutually authenticated connection, which it then owns (see
   * `AuthenticatedConnection`). A returned promise is not awaited; if it rejects, or the call
   * throws, the socket is destroyed.
   */
  readonly onConnection: (connection: AuthenticatedConnection) => unknown;
  /**
   * Told about every connection refused before authentication completed, with why (see
   * `TlsListener` for the kinds) and the peer's address (`tls://ip:port`, or the socket path
   * for a Unix socket). The connection is already destroyed. Must not throw.
   */
  readonly onRefused: (err: AureliaError, source: string) => void;
}

interface Handshake {
  readonly raw: net.Socket;
  readonly tls: TLSSocket;
  readonly ticket: AdmissionTicket;
  readonly remote: string;
  readonly timer: NodeJS.Timeout;
  readonly detach: () => void;
  readonly fail: (err: AureliaError) => void;
}

/** A connection holding an admission slot: in its TLS handshake, or authenticated and not yet established. */
interface Waiting {
  readonly raw: net.Socket;
  /** The handshake deadline of its transport, from which the stall bound is derived. */
  readonly timeoutMs: number;
  /** `raw.bytesRead` when the current stage began: silent while it has not moved. */
  bytesAtStage: number;
  /** When the current stage began (ms). */
  stageAt: number;
  /** Closes the connection because a newcomer took its slot. */
  readonly cut: (why: string) => void;
}

/**
 * How long a waiting connection that sent nothing in its stage keeps its slot before a newcomer
 * may take it. Honest dialers send their ClientHello (and, once authenticated, their hello) at
 * once, so this only needs to cover scheduling delays.
 */
export const SILENT_GRACE_MS = 250;

/**
 * Accepts connections on a TCP address or a Unix socket and hands over only mutually
 * authenticated TLS 1.3 connections. For each accepted socket, before any TLS work, a slot is
 * taken from the handshake admission (total and per source: the IP for TCP; every Unix socket
 * connection is its own source); the handshake must then finish, the client certificate verify
 * against the CA roots and name an identity, all before the handshake deadline, or the socket is
 * destroyed and its slot released at once.
 *
 * Refusals reported through `onRefused`:
 *
 * | what happened | kind |
 * |---|---|
 * | handshake limit reached (total or per source) | `LocalQueueFull` |
 * | bytes that are not TLS, plain HTTP, a TLS version below 1.3, no client certificate, a certificate from an untrusted CA, expired or not yet valid, a handshake signature that does not verify (the key does not match the certificate), a certificate naming no identity | `ProtocolViolation` |
 * | the peer aborted the handshake with an alert (for example it does not trust our CA) or reset or closed the connection | `ConnectionLost` |
 * | the handshake did not finish before `tcpHandshakeTimeoutMs` / `socketHandshakeTimeoutMs` | `PeerUnavailable` |
 * | accepting a connection failed (for example out of file descriptors) | `PeerUnavailable` |
 * | the context given to `listen` or `setSecureContext` is not a usable `SecureContext` | `InvalidConfig` |
 *
 * A Unix socket file is created with mode 0600 and no window in which it is reachable with
 * another mode: the listener binds in a fresh 0700 directory next to the path, sets the mode,
 * then hard-links the socket to the path (which fails rather than replace anything that appeared
 * there meanwhile). When the path is too long for that staging name, it binds the path directly
 * and sets 0600 right after; until then the file has the mode the umask gives (connecting needs
 * write permission, so the usual umask 022 already keeps other users out).
 */
export class TlsListener {
  /** The bound address: the requested one, with the real port when port 0 was asked for. */
  readonly localAddr: DomusAddr;
  readonly #server: net.Server;
  readonly #options: TlsListenerOptions;
  readonly #admission: HandshakeAdmission;
  readonly #handshakes = new Set<Handshake>();
  readonly #waiting = new Map<AdmissionTicket, Waiting>();
  readonly #socketFile: SocketFile | undefined;
  #secureContext: SecureContext;
  #unixConnections = 0;
  #closing: Promise<void> | undefined;

  private constructor(
    server: net.Server,
    localAddr: DomusAddr,
    options: TlsListenerOptions,
    socketFile: SocketFile | undefined,
  ) {
    this.#server = server;
    this.localAddr = localAddr;
    this.#options = options;
    this.#socketFile = socketFile;
    this.#secureContext = options.secureContext;
    this.#admission = new HandshakeAdmission(
      () => {
        const limits = options.limits();
        return { total: limits.total, perSource: limits.perPeer };
      },
      (ticket, now) => this.#cuttable(ticket, now),
    );
    server.on('connection', (raw: net.Socket) => this.#accept(raw));
    server.on('error', (err: Error) => {
      this.#refuse(
        new AureliaError(
          ErrorId.PeerUnavailable,
          `${localAddr.key} could not accept a connection: ${failureText(explainTlsFailure(err))}`,
          { cause: err },
        ),
        localAddr.key,
      );
    });
  }

  /**
   * Binds `options.addr` and starts accepting; resolves once bound. For a Unix socket, an
   * existing socket file nothing answers on is removed first.
   * Rejects with `AureliaError(AddressInUse)` naming the address when the TCP address is in use
   * or a live listener holds the socket path, and with `AureliaError(InvalidConfig)` when the
   * address is not local or not permitted, or the socket path exists and is not a socket, or
   * cannot be created.
   */
  static async listen(options: TlsListenerOptions): Promise<TlsListener> {
    const { addr } = options;
    const server = net.createServer({ noDelay: true });
    if (addr.isTcp()) {
      await bind(server, { host: addr.host, port: addr.port, exclusive: true }, addr.key);
      const bound = server.address() as net.AddressInfo;
      return new TlsListener(server, DomusAddr.tcp(addr.host, bound.port), options, undefined);
    }
    const socketPath = addr.path!;
    const socketFile = await bindSocketFile(server, socketPath);
    return new TlsListener(server, addr, options, socketFile);
  }

  /**
   * Uses `secureContext` for handshakes that start from now on (new certificate, key or CA
   * roots); handshakes in progress and handed-over connections keep the material they started with.
   */
  setSecureContext(secureContext: SecureContext): void {
    this.#secureContext = secureContext;
  }

  /** Unauthenticated handshakes in progress now. */
  get handshakesInProgress(): number {
    return this.#handshakes.size;
  }

  /** True once `close` was called. */
  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * Stops accepting, destroys the connections still handshaking (without reporting them as
   * refused) and removes the socket file this listener created; resolves when those sockets
   * are closed. Connections already handed over belong to their owner and stay open.
   * Idempotent; never rejects.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutdown();
    return this.#closing;
  }

  async #shutdown(): Promise<void> {
    // Closing the listening handle releases the port (or the socket) at once; the server's own
    // 'close' event would also wait for handed-over connections, which are not ours.
    this.#server.close();
    const closing: Promise<void>[] = [];
    for (const handshake of [...this.#handshakes]) {
      this.#settle(handshake);
      closing.push(destroyed(handshake.raw));
      handshake.tls.on('error', ignore);
      handshake.tls.destroy();
    }
    await Promise.all(closing);
    if (this.#socketFile !== undefined) await removeSocketFile(this.#socketFile);
  }

  #accept(raw: net.Socket): void {
    if (this.#closing !== undefined) {
      raw.destroy();
      return;
    }
    const tcp = this.localAddr.kind === 'tcp';
    const remote = tcp ? tcpAddressText(raw.remoteAddress, raw.remotePort) : this.localAddr.key;
    const source = tcp
      ? unmapIPv4(raw.remoteAddress ?? 'unknown')
      : `unix#${++this.#unixConnections}`;
    const decision = this.#admission.tryAdmit(source, Date.now());
    if (!decision.admitted) {
      raw.destroy();
      const limit =
        decision.limit === 'total'
          ? `${decision.inFlight} handshakes already in progress (inboundHandshakeLimitTotal ${decision.max})`
          : `${decision.inFlight} handshakes from ${source} already in progress (inboundHandshakeLimitPerPeer ${decision.max})`;
      this.#refuse(
        new AureliaError(
          ErrorId.LocalQueueFull,
          `refused ${remote} before the TLS handshake: ${limit}`,
        ),
        remote,
      );
      return;
    }
    if (decision.cut !== undefined) this.#cut(decision.cut, remote);
    const limits = this.#options.limits();
    const timeoutMs = tcp ? limits.tcpHandshakeTimeoutMs : limits.socketHandshakeTimeoutMs;
    const timeoutField = tcp ? 'tcpHandshakeTimeoutMs' : 'socketHandshakeTimeoutMs';
    let tls: TLSSocket;
    try {
      tls = new TLSSocket(raw, {
        isServer: true,
        secureContext: this.#secureContext,
        requestCert: true,
        rejectUnauthorized: true,
      });
    } catch (err) {
      // Only a context that is not a usable SecureContext gets here: a local mistake.
      this.#admission.release(decision.ticket);
      raw.destroy();
      this.#refuse(
        new AureliaError(
          ErrorId.InvalidConfig,
          `refused ${remote}: the listener's TLS context cannot serve connections: ${failureText(explainTlsFailure(err))}`,
          { cause: err },
        ),
        remote,
      );
      return;
    }
    const fail = (err: AureliaError): void => {
      if (!this.#handshakes.has(handshake)) return;
      this.#settle(handshake);
      // A late error from a socket we already gave up on must not become an uncaught exception.
      tls.on('error', ignore);
      // Destroying the TLS socket closes the raw one under it, in the order Node expects.
      tls.destroy();
      this.#refuse(err, remote);
    };
    const onError = (err: Error): void => {
      const failure = explainTlsFailure(err);
      const kind =
        failure.origin === 'peer-alert' || failure.origin === 'peer-closed'
          ? ErrorId.ConnectionLost
          : ErrorId.ProtocolViolation;
      fail(
        new AureliaError(
          kind,
          `refused ${remote} during the TLS handshake: ${failureText(failure)}`,
          { cause: err },
        ),
      );
    };
    const onClose = (): void => {
      fail(
        new AureliaError(
          ErrorId.ConnectionLost,
          `${remote} closed the connection during the TLS handshake`,
        ),
      );
    };
    const onSecure = (): void => this.#verify(handshake, fail);
    tls.on('error', onError);
    tls.once('close', onClose);
    tls.once('secure', onSecure);
    raw.on('error', onError);
    const handshake: Handshake = {
      raw,
      tls,
      ticket: decision.ticket,
      remote,
      timer: setTimeout(() => {
        fail(
          new AureliaError(
            ErrorId.PeerUnavailable,
            `${remote} did not complete the TLS handshake within ${timeoutMs} ms (${timeoutField}); connection dropped`,
          ),
        );
      }, timeoutMs),
      detach: () => {
        tls.off('error', onError);
        tls.off('close', onClose);
        tls.off('secure', onSecure);
        raw.off('error', onError);
      },
      fail,
    };
    this.#handshakes.add(handshake);
    this.#waiting.set(decision.ticket, {
      raw,
      timeoutMs,
      bytesAtStage: 0,
      stageAt: decision.ticket.admittedAt,
      cut: (why) =>
        fail(
          new AureliaError(
            ErrorId.LocalQueueFull,
            `cut ${remote} during the TLS handshake: ${why}`,
          ),
        ),
    });
  }

  /**
   * May a newcomer take this connection's slot? Yes when it sent nothing in its current stage for
   * `SILENT_GRACE_MS`, or has waited half its handshake deadline without finishing.
   */
  #cuttable(ticket: AdmissionTicket, now: number): boolean {
    const waiting = this.#waiting.get(ticket);
    if (waiting === undefined) return false;
    const silent = waiting.raw.bytesRead === waiting.bytesAtStage;
    return (
      (silent && now - waiting.stageAt >= SILENT_GRACE_MS) ||
      now - ticket.admittedAt >= waiting.timeoutMs / 2
    );
  }

  #cut(ticket: AdmissionTicket, newcomer: string): void {
    const waiting = this.#waiting.get(ticket);
    if (waiting === undefined) return;
    this.#waiting.delete(ticket);
    const silentMs = Date.now() - waiting.stageAt;
    waiting.cut(
      waiting.raw.bytesRead === waiting.bytesAtStage
        ? `it sent nothing for ${silentMs} ms and ${newcomer} needed its slot`
        : `it did not finish within half its deadline and ${newcomer} needed its slot`,
    );
  }

  #release(ticket: AdmissionTicket): void {
    this.#waiting.delete(ticket);
    this.#admission.release(ticket);
  }

  #verify(handshake: Handshake, fail: (err: AureliaError) => void): void {
    const { tls, remote } = handshake;
    // The context decides the versions; a context that allows older ones must not weaken A0.
    const protocol = tls.getProtocol();
    if (protocol !== 'TLSv1.3') {
      fail(
        new AureliaError(
          ErrorId.ProtocolViolation,
          `refused ${remote}: negotiated ${protocol ?? 'an unknown protocol'}; only TLS 1.3 is accepted`,
        ),
      );
      return;
    }
    const verifyError = peerVerifyError(tls);
    if (verifyError !== undefined) {
      const failure = explainTlsFailure(verifyError);
      const cert = describeCertificate(tls.getPeerX509Certificate());
      fail(
        new AureliaError(
          ErrorId.ProtocolViolation,
          `refused ${remote}: client ${failureText(failure)}${cert.length > 0 ? `; ${cert}` : ''}; it must chain to one of this node's CA roots and be valid now`,
          { cause: verifyError },
        ),
      );
      return;
    }
    const peer = verifiedPeer(tls);
    if (typeof peer === 'string') {
      fail(new AureliaError(ErrorId.ProtocolViolation, `refused ${remote}: the client ${peer}`));
      return;
    }
    this.#settle(handshake, false);
    const { ticket, raw } = handshake;
    const waiting = this.#waiting.get(ticket);
    let released = false;
    const markEstablished = (): void => {
      if (released) return;
      released = true;
      tls.off('close', markEstablished);
      this.#release(ticket);
    };
    if (waiting !== undefined) {
      // The slot is held until the owner hears the peer's first protocol frame.
      waiting.bytesAtStage = raw.bytesRead;
      waiting.stageAt = Date.now();
      this.#waiting.set(ticket, {
        ...waiting,
        cut: (why) => {
          markEstablished();
          tls.destroy();
          this.#refuse(
            new AureliaError(
              ErrorId.LocalQueueFull,
              `cut ${remote} before its first frame: ${why}`,
            ),
            remote,
          );
        },
      });
      tls.once('close', markEstablished);
    } else {
      released = true;
    }
    const connection: AuthenticatedConnection = Object.freeze({
      socket: tls,
      identity: peer.identity,
      identityKind: peer.identityKind,
      certificate: peer.certificate,
      remoteAddress: remote,
      transport: this.localAddr.kind,
      markEstablished,
    });
    try {
      const outcome = this.#options.onConnection(connection);
      if (isPromiseLike(outcome)) outcome.then(undefined, () => tls.destroy());
    } catch {
      tls.destroy();
    }
  }

  // Ends the TLS stage; the slot goes back too unless the connection keeps it until established.
  #settle(handshake: Handshake, release = true): void {
    if (!this.#handshakes.delete(handshake)) return;
    clearTimeout(handshake.timer);
    handshake.detach();
    if (release) this.#release(handshake.ticket);
  }

  #refuse(err: AureliaError, source: string): void {
    try {
      this.#options.onRefused(err, source);
    } catch {
      // A reporting callback that throws must not take the listener down.
    }
  }
}

// Node verifies the client chain during the handshake but leaves the verdict to the server
// object; a TLSSocket used without `tls.Server` exposes it through its native handle.
function peerVerifyError(tls: TLSSocket): Error | undefined {
  const handle = (tls as unknown as { ssl?: { verifyError?: () => Error | null } | null }).ssl;
  if (typeof handle?.verifyError !== 'function') {
    return Object.assign(
      new Error('the TLS session is gone; the client certificate cannot be checked'),
      {
        code: 'ERR_TLS_HANDLE_GONE',
      },
    );
  }
  return handle.verifyError() ?? undefined;
}

function ignore(): void {}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { then?: unknown }).then === 'function'
  );
}

function destroyed(socket: net.Socket): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return new Promise((resolve) => socket.once('close', () => resolve()));
}
