// The dialing side of A0: connect, TLS 1.3 handshake, server verification and identity check.
import { connect, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';

import type { DomusAddr } from '../addr.js';
import { AureliaError, ErrorId } from '../errors.js';
import {
  describeCertificate,
  explainTlsFailure,
  failureText,
  tcpAddressText,
  verifiedPeer,
  type AuthenticatedConnection,
} from './connection.js';

/** Options of `dial`. */
export interface DialOptions {
  /**
   * TLS 1.3-only context holding this node's certificate (presented to the listener), key and
   * the CA roots the listener's certificate must chain to (see `loadAuthMaterial`).
   */
  readonly secureContext: SecureContext;
  /** Deadline for connecting, the handshake and verification together, in ms. */
  readonly timeoutMs: number;
  /** When given, the listener's identity must be exactly this (else `AddressMismatch`). */
  readonly expectedIdentity?: string | undefined;
  /** Cancels the dial: the socket is destroyed and the promise rejects. */
  readonly signal?: AbortSignal | undefined;
}

/**
 * Connects to `addr` (TCP or Unix socket), runs a TLS 1.3 handshake presenting this node's
 * certificate, verifies the listener's certificate against the CA roots of `secureContext` and
 * extracts its identity. Host name matching does not apply to mesh identities: the listener is
 * whoever its certificate names, and when `expectedIdentity` is given that name must match.
 * Resolves with the connection, its socket in its initial non-flowing state (see
 * `AuthenticatedConnection`).
 *
 * Rejects with `AureliaError(PeerUnavailable)` naming the address and the cause when the
 * connection is refused, the socket file does not exist, the host does not resolve, the
 * handshake fails (certificate signed by an unknown authority, expired, not yet valid, no TLS
 * 1.3, ...), the listener's certificate names no identity, or `timeoutMs` passes; with
 * `AureliaError(AddressMismatch)` naming both identities when another identity answers; with
 * `AureliaError(InvalidConfig)` when Node refuses the options (a `secureContext` that is not
 * one); and, when `signal` aborts, with the signal's reason if it is an `AureliaError`, else
 * `PeerUnavailable` saying the dial was cancelled.
 *
 * In TLS 1.3 the listener checks the dialer's certificate after the dialer considers the
 * handshake complete, so a listener that refuses this node's certificate shows here as a
 * connection that closes right after `dial` resolved.
 */
export function dial(addr: DomusAddr, options: DialOptions): Promise<AuthenticatedConnection> {
  const label = addr.key;
  const { signal, timeoutMs, expectedIdentity } = options;
  if (signal?.aborted) return Promise.reject(cancelled(signal, label));
  return new Promise((resolve, reject) => {
    const target: ConnectionOptions = addr.isTcp()
      ? { host: addr.host, port: addr.port }
      : { path: addr.path };
    let socket: TLSSocket;
    try {
      socket = connect({
        ...target,
        secureContext: options.secureContext,
        rejectUnauthorized: true,
        // The chain is still verified; only host name matching is replaced by the identity check.
        checkServerIdentity: () => undefined,
      });
    } catch (err) {
      // Only options Node rejects up front get here, such as a value that is not a SecureContext.
      reject(
        new AureliaError(
          ErrorId.InvalidConfig,
          `could not dial ${label}: ${failureText(explainTlsFailure(err))}`,
          { cause: err },
        ),
      );
      return;
    }
    let settled = false;
    const finish = (): void => {
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('secureConnect', onSecureConnect);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    const fail = (err: AureliaError): void => {
      if (settled) return;
      finish();
      socket.on('error', () => undefined);
      socket.destroy();
      reject(err);
    };
    const onAbort = (): void => fail(cancelled(signal!, label));
    const onError = (err: Error): void => {
      const failure = explainTlsFailure(err);
      const detail =
        failure.origin === 'certificate'
          ? `server ${failureText(failure)}${certificateSuffix(socket)}`
          : failureText(failure);
      fail(
        new AureliaError(ErrorId.PeerUnavailable, `could not dial ${label}: ${detail}`, {
          cause: err,
        }),
      );
    };
    const onClose = (): void => {
      fail(
        new AureliaError(
          ErrorId.PeerUnavailable,
          `could not dial ${label}: the connection closed during the TLS handshake`,
        ),
      );
    };
    const onSecureConnect = (): void => {
      if (settled) return;
      // The context decides the versions; a context that allows older ones must not weaken A0.
      const protocol = socket.getProtocol();
      if (protocol !== 'TLSv1.3') {
        fail(
          new AureliaError(
            ErrorId.PeerUnavailable,
            `could not dial ${label}: negotiated ${protocol ?? 'an unknown protocol'}; only TLS 1.3 is accepted`,
          ),
        );
        return;
      }
      const peer = verifiedPeer(socket);
      if (typeof peer === 'string') {
        fail(
          new AureliaError(ErrorId.PeerUnavailable, `could not dial ${label}: the server ${peer}`),
        );
        return;
      }
      if (expectedIdentity !== undefined && peer.identity !== expectedIdentity) {
        fail(
          new AureliaError(
            ErrorId.AddressMismatch,
            `${label} is served by ${peer.identity}, not by the expected ${expectedIdentity}`,
          ),
        );
        return;
      }
      finish();
      // A1 coalesces its writes itself; Nagle would only add latency.
      if (addr.isTcp()) socket.setNoDelay(true);
      resolve(
        Object.freeze({
          socket,
          identity: peer.identity,
          identityKind: peer.identityKind,
          certificate: peer.certificate,
          remoteAddress: addr.isTcp()
            ? tcpAddressText(socket.remoteAddress ?? addr.host, socket.remotePort ?? addr.port)
            : label,
          transport: addr.kind,
        }),
      );
    };
    const timer = setTimeout(() => {
      fail(
        new AureliaError(
          ErrorId.PeerUnavailable,
          `could not dial ${label}: timed out after ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    socket.once('secureConnect', onSecureConnect);
    socket.on('error', onError);
    socket.once('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function cancelled(signal: AbortSignal, label: string): AureliaError {
  const reason: unknown = signal.reason;
  if (reason instanceof AureliaError) return reason;
  return new AureliaError(ErrorId.PeerUnavailable, `dial to ${label} was cancelled`, {
    cause: reason,
  });
}

function certificateSuffix(socket: TLSSocket): string {
  const text = describeCertificate(socket.getPeerX509Certificate());
  return text.length > 0 ? `; ${text}` : '';
}
