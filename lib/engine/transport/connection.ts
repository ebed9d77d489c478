// The authenticated connection the transport layer hands over, and what both sides share to build it.
import type { X509Certificate } from 'node:crypto';
import { quotePeerText } from '../logger.js';
import { isIPv6 } from 'node:net';
import type { TLSSocket } from 'node:tls';

import type { TransportKind } from '../addr.js';
import { type IdentityKind, readCertificateIdentity } from './identity.js';

/** Facts about the peer's verified certificate (its leaf). */
export interface PeerCertificateInfo {
  /** Subject on one line, RDNs separated by `', '` (for example `'CN=alpha'`); may be empty. */
  readonly subject: string;
  /** Issuer on one line. */
  readonly issuer: string;
  /** Serial number, upper-case hex. */
  readonly serialNumber: string;
  /** SHA-256 fingerprint, colon-separated upper-case hex. */
  readonly fingerprint256: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** Node's text of the subject alternative name, `undefined` when there is none. */
  readonly subjectAltName: string | undefined;
}

/**
 * A TLS 1.3 connection whose peer proved a certificate that chains to the configured CA roots,
 * delivered only after the handshake completed and the identity was extracted.
 * The socket is handed over in its initial, non-flowing state: no application byte has been read
 * (bytes the peer already sent wait in its buffer until the owner attaches a `'data'` listener or
 * calls `read()`). From then on the owner owns the socket: it must listen for `'error'` and
 * destroy the socket when done.
 */
export interface AuthenticatedConnection {
  readonly socket: TLSSocket;
  /**
   * The peer's identity (canonical text): its URI SAN, else its DNS SAN, else its subject CN, by
   * the rule of `readCertificateIdentity`.
   */
  readonly identity: string;
  /** Where `identity` came from: a URI SAN, a DNS SAN or the CN. */
  readonly identityKind: IdentityKind;
  /** The peer's certificate. */
  readonly certificate: PeerCertificateInfo;
  /** The peer's address: `tls://127.0.0.1:53122`, `tls://[::1]:7000` or `unix:///run/a.sock`. */
  readonly remoteAddress: string;
  /** The transport under TLS. */
  readonly transport: TransportKind;
  /**
   * Accepted connections only: gives back the admission slot the connection holds until its owner
   * has heard the peer's first protocol frame (the A1 hello). Until then it counts against
   * `inboundHandshakeLimitTotal` / `inboundHandshakeLimitPerPeer` and, once silent, may be cut
   * (destroyed) to admit a newcomer. Closing the socket gives the slot back too. Idempotent.
   */
  readonly markEstablished?: () => void;
}

/** What a verified peer certificate gives: the identity and facts for logs and reporting. */
export interface VerifiedPeer {
  readonly identity: string;
  readonly identityKind: IdentityKind;
  readonly certificate: PeerCertificateInfo;
}

/**
 * Reads the identity and certificate facts of a TLS socket's peer once the handshake completed.
 * Returns a sentence saying what is missing when the peer presented no certificate or one that
 * proves no identity by the rule of `readCertificateIdentity` (no URI SAN, DNS SAN or CN, an
 * unreadable SAN, a URI SAN that is no URI, a DNS SAN that is no host name, a CN with `:`).
 * Never throws. Does not check the chain: callers check verification first.
 */
export function verifiedPeer(socket: TLSSocket): VerifiedPeer | string {
  const cert: X509Certificate | undefined = socket.getPeerX509Certificate();
  if (cert === undefined) return 'presented no certificate';
  const read = readCertificateIdentity(cert);
  if (read.kind === undefined) {
    return `presented a certificate (subject ${quotePeerText(oneLine(cert.subject))}) that proves no identity: ${read.problem}`;
  }
  return {
    identity: read.name,
    identityKind: read.kind,
    certificate: Object.freeze({
      subject: oneLine(cert.subject),
      issuer: oneLine(cert.issuer),
      serialNumber: cert.serialNumber,
      fingerprint256: cert.fingerprint256,
      notBefore: new Date(cert.validFrom),
      notAfter: new Date(cert.validTo),
      subjectAltName: cert.subjectAltName,
    }),
  };
}

/**
 * The canonical text of a TCP endpoint: `tls://127.0.0.1:53122`, `tls://[::1]:53122`. An
 * IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) is shown as IPv4. Never throws.
 */
export function tcpAddressText(ip: string | undefined, port: number | undefined): string {
  const host = ip === undefined ? 'unknown' : unmapIPv4(ip);
  return `tls://${isIPv6(host) ? `[${host}]` : host}:${port ?? 0}`;
}

/** `::ffff:10.0.0.1` → `10.0.0.1`; any other address unchanged. */
export function unmapIPv4(ip: string): string {
  return ip.toLowerCase().startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;
}

/** Who caused a TLS failure, for choosing an error kind. */
export type TlsFailureOrigin = 'certificate' | 'peer-alert' | 'peer-closed' | 'local' | 'network';

/** A TLS or socket failure explained for a person: what happened and what to check. */
export interface TlsFailure {
  /** A short phrase naming the cause, e.g. `'certificate signed by an unknown authority'`. */
  readonly cause: string;
  /** The OpenSSL, verification or system code when there is one (`'CERT_HAS_EXPIRED'`). */
  readonly code: string | undefined;
  /**
   * `'certificate'`: the peer's certificate failed verification (the cause starts with
   * "certificate"); `'peer-alert'`: the peer aborted the handshake with a TLS alert (it refused us);
   * `'peer-closed'`: the peer reset or closed the connection; `'network'`: the connection could not
   * be made (refused, no such socket, unreachable); `'local'`: our side refused what the peer did.
   */
  readonly origin: TlsFailureOrigin;
}

// Verification results (X509_V_ERR_*) as Node names them, with what they mean for a mesh peer.
const VERIFY_CAUSES: Readonly<Record<string, string>> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate signed by an unknown authority',
  UNABLE_TO_GET_ISSUER_CERT: 'certificate signed by an unknown authority',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'certificate signed by an unknown authority',
  SELF_SIGNED_CERT_IN_CHAIN: 'certificate signed by an unknown authority',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'certificate is self-signed and not one of the CA roots',
  CERT_SIGNATURE_FAILURE: 'certificate signature does not verify against its issuer',
  CERT_HAS_EXPIRED: 'certificate has expired',
  CERT_NOT_YET_VALID: 'certificate is not yet valid',
  CERT_REVOKED: 'certificate is revoked',
  INVALID_CA: 'an intermediate certificate is not a valid CA',
  INVALID_PURPOSE: 'certificate does not allow TLS client and server authentication',
  CERT_CHAIN_TOO_LONG: 'certificate chain is too long',
  PATH_LENGTH_EXCEEDED: 'certificate chain exceeds a CA path length',
};

// OpenSSL and system errors raised while connecting or handshaking.
const LOCAL_CAUSES: Readonly<Record<string, string>> = {
  ERR_SSL_WRONG_VERSION_NUMBER: 'bytes that are not TLS (wrong record version)',
  ERR_SSL_PACKET_LENGTH_TOO_LONG: 'bytes that are not TLS (impossible record length)',
  ERR_SSL_UNKNOWN_PROTOCOL: 'bytes that are not TLS (unknown protocol)',
  ERR_SSL_RECORD_LAYER_FAILURE: 'bytes that are not TLS (record layer failure)',
  ERR_SSL_HTTP_REQUEST: 'a plain HTTP request on a TLS port',
  ERR_SSL_HTTPS_PROXY_REQUEST: 'an HTTP proxy CONNECT request on a TLS port',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'a TLS version older than 1.3 (only TLS 1.3 is accepted)',
  ERR_SSL_NO_PROTOCOLS_AVAILABLE: 'no common TLS version (only TLS 1.3 is accepted)',
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE:
    'no client certificate presented (client certificates are required)',
  ERR_SSL_BAD_SIGNATURE:
    "handshake signature does not verify: the peer does not hold its certificate's private key",
  ERR_SSL_DIGEST_CHECK_FAILED: 'handshake integrity check failed',
  ERR_SSL_NO_SHARED_CIPHER: 'no shared cipher suite',
  ERR_SSL_UNEXPECTED_MESSAGE: 'an unexpected TLS handshake message',
  ERR_SSL_DECODE_ERROR: 'a malformed TLS handshake message',
  ERR_SSL_LENGTH_MISMATCH: 'a malformed TLS handshake message',
};

// Alerts the peer sent: it aborted the handshake and tells us why.
const ALERT_CAUSES: Readonly<Record<string, string>> = {
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA:
    "the peer refused this node's certificate: it does not trust our CA (alert unknown_ca)",
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE:
    "the peer refused this node's certificate (alert bad_certificate)",
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED:
    "the peer refused this node's certificate as expired (alert certificate_expired)",
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN:
    "the peer refused this node's certificate (alert certificate_unknown)",
  ERR_SSL_SSLV3_ALERT_UNSUPPORTED_CERTIFICATE:
    "the peer refused this node's certificate (alert unsupported_certificate)",
  ERR_SSL_TLSV1_ALERT_DECRYPT_ERROR:
    "the peer could not verify this node's handshake signature (alert decrypt_error): does the key match the certificate?",
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: 'the peer does not speak TLS 1.3 (alert protocol_version)',
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED:
    'the peer requires a client certificate and none was sent (alert certificate_required)',
  ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE: 'the peer aborted the handshake (alert handshake_failure)',
  ERR_SSL_TLSV1_ALERT_INTERNAL_ERROR: 'the peer aborted the handshake (alert internal_error)',
  ERR_SSL_TLSV1_ALERT_ACCESS_DENIED: 'the peer denied access (alert access_denied)',
};

// Connection-level failures: nothing answered, or the other end went away.
const NETWORK_CAUSES: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused: nothing listens there',
  ENOENT: 'no such socket file',
  ENOTSOCK: 'the path is not a socket',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name could not be resolved (temporary DNS failure)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'the connection attempt timed out in the network',
  EADDRNOTAVAIL: 'the address is not available',
};

const PEER_CLOSED_CAUSES: Readonly<Record<string, string>> = {
  ECONNRESET: 'the peer reset the connection during the handshake',
  EPIPE: 'the peer closed the connection during the handshake',
  ECONNABORTED: 'the connection was aborted during the handshake',
};

/**
 * Explains a failure of `net`/`tls` while connecting or handshaking, or a certificate
 * verification error (`tls.TLSSocket` verification codes such as `CERT_HAS_EXPIRED`), as a
 * phrase a user can act on, with who caused it. Unknown errors keep the first line of their own
 * message. Never throws.
 */
export function explainTlsFailure(err: unknown): TlsFailure {
  const code = errorCode(err);
  if (code !== undefined) {
    const verify = VERIFY_CAUSES[code];
    if (verify !== undefined) return { cause: verify, code, origin: 'certificate' };
    const local = LOCAL_CAUSES[code];
    if (local !== undefined) return { cause: local, code, origin: 'local' };
    const alert = ALERT_CAUSES[code];
    if (alert !== undefined) return { cause: alert, code, origin: 'peer-alert' };
    const network = NETWORK_CAUSES[code];
    if (network !== undefined) return { cause: network, code, origin: 'network' };
    const closed = PEER_CLOSED_CAUSES[code];
    if (closed !== undefined) return { cause: closed, code, origin: 'peer-closed' };
  }
  const text = firstLine(err);
  const origin: TlsFailureOrigin = code?.includes('_ALERT_') ? 'peer-alert' : 'local';
  return { cause: text, code, origin };
}

/** `cause (CODE)`, or the cause alone when there is no code. */
export function failureText(failure: TlsFailure): string {
  return failure.code === undefined ? failure.cause : `${failure.cause} (${failure.code})`;
}

function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && code.length > 0 ? code : undefined;
}

function firstLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  // OpenSSL messages look like `8000:error:0A00010B:SSL routines:fn:reason:file:line:`; keep the reason.
  const line = message.split('\n', 1)[0] ?? '';
  const openssl = /:SSL routines:[^:]*:([^:]+):/.exec(line);
  return openssl?.[1] ?? (line.length > 0 ? line : 'unknown error');
}

function oneLine(name: string): string {
  return name.split('\n').join(', ');
}

/**
 * `certificate 'CN=alpha' (valid 2026-01-01T00:00:00.000Z to 2027-01-01T00:00:00.000Z)` for
 * messages about a refused certificate; empty when there is no certificate. Never throws.
 */
export function describeCertificate(cert: X509Certificate | undefined): string {
  if (cert === undefined) return '';
  const subject = oneLine(cert.subject);
  const name =
    subject.length > 0 ? quotePeerText(subject) : `with serial ${quotePeerText(cert.serialNumber)}`;
  return `certificate ${name} (valid ${isoDate(cert.validFrom)} to ${isoDate(cert.validTo)})`;
}

function isoDate(text: string): string {
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toISOString();
}
