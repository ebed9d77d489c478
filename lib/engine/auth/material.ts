// Loading auth material: every check in order, the identity it proves and its TLS 1.3 context.
import { X509Certificate } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';

import { type IdentityKind, readCertificateIdentity } from '../transport/identity.js';
import { type Pkcs8AuthConfig, type AuthSourceLabels, configSourcesOf } from './auth-config.js';
import {
  checkChain,
  checkExtendedKeyUsage,
  checkValidity,
  describeSubject,
  oneLine,
  parseCaCertificates,
  parseChain,
} from './certificates.js';
import { type Labels, invalid, resolveLabels } from './labels.js';
import {
  type AuthKeyType,
  checkKeyMatches,
  checkKeyType,
  parseKey,
  zeroizeConfigKey,
} from './private-key.js';

/** What `loadAuthMaterial` learned about the node certificate (the leaf). */
export interface AuthCertificateInfo {
  /** Subject on one line, RDNs separated by `', '` (for example `'CN=alpha'`). */
  readonly subject: string;
  /** Issuer on one line. */
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** SHA-256 fingerprint, colon-separated upper-case hex. */
  readonly fingerprint256: string;
  /** Node's text of the subject alternative name, `undefined` when there is none. */
  readonly subjectAltName: string | undefined;
  /** Algorithm of the certificate's key. */
  readonly keyType: AuthKeyType;
}

/**
 * Validated authentication material: the identity this domus proves, facts about its
 * certificate, the number of trusted CA roots, and a TLS 1.3-only `SecureContext` holding the
 * roots, the chain and the key. The context serves accepted sockets
 * (`new tls.TLSSocket(socket, { isServer: true, secureContext, requestCert: true,
 * rejectUnauthorized: true })`) and dialed ones (`tls.connect({ secureContext, ... })`) alike.
 *
 * Accepting side: Node applies `rejectUnauthorized` only inside `tls.Server`. A bare accepting
 * `TLSSocket` completes the handshake even when the client certificate does not chain to the
 * roots (it only refuses a client without any certificate) and leaves `authorized` false, so its
 * owner must check the verification result itself. `tls.createServer({ SNICallback: (_name, cb)
 * => cb(null, secureContext), requestCert: true, rejectUnauthorized: true })` enforces it, provided
 * dialers send a `servername` (a host name, not an IP address).
 */
export interface AuthMaterial {
  /**
   * The identity the certificate proves (canonical text): its URI SAN, else its DNS SAN, else its
   * subject CN, by the rule of `readCertificateIdentity`.
   */
  readonly identity: string;
  /** Where `identity` came from: a URI SAN, a DNS SAN or the CN. */
  readonly identityKind: IdentityKind;
  readonly certificate: AuthCertificateInfo;
  /** Number of trusted CA certificates. */
  readonly caCount: number;
  readonly secureContext: SecureContext;
}

/** Options of `loadAuthMaterial`. */
export interface LoadAuthMaterialOptions {
  /** Time to check validity against, in ms since the epoch (default `Date.now()`). */
  readonly now?: number;
  /** Names for error messages (default: the files of `fromFiles`, else the field names). */
  readonly source?: AuthSourceLabels;
}

/**
 * Parses and validates `config` and builds its TLS 1.3 `SecureContext` once.
 * Checks, in order: every CA entry and certificate parses; the key is an unencrypted PKCS#8 key
 * of a supported type (EC P-256/P-384, Ed25519, RSA ≥ 2048 bits); it matches the certificate's
 * public key; the certificate (and each intermediate) is valid at `now`; the chain leads, through
 * the given intermediates, to one of the CA certificates; the certificate proves an identity (see `readCertificateIdentity`) and,
 * if it restricts extended key usage, allows both serverAuth and clientAuth.
 * The key bytes (the caller's `Buffer` or `Pkcs8PrivateKey`, and any buffer made from them) are
 * zero-filled before this returns or throws, so a config can be loaded once; keys never appear in
 * messages. Throws `AureliaError(InvalidConfig)` naming the file or field and the problem.
 */
export function loadAuthMaterial(
  config: Pkcs8AuthConfig,
  options: LoadAuthMaterialOptions = {},
): AuthMaterial {
  const scratch: Buffer[] = [];
  try {
    const labels = resolveLabels(config, options.source ?? configSourcesOf(config));
    const now = options.now ?? Date.now();
    const cas = parseCaCertificates(config, labels);
    const chain = parseChain(config, labels);
    const leaf = chain[0]!;
    const { keyObject, keyPem } = parseKey(config, labels, scratch);
    const keyType = checkKeyType(keyObject, labels.key);
    checkKeyMatches(keyObject, leaf, labels);
    chain.forEach((cert, index) => checkValidity(cert, index, now, labels.cert));
    checkChain(chain, cas, now, labels);
    const identity = readCertificateIdentity(leaf);
    if (identity.kind === undefined) {
      throw invalid(
        labels.cert,
        `certificate ${describeSubject(leaf)} proves no node identity: ${identity.problem}`,
      );
    }
    checkExtendedKeyUsage(leaf, labels.cert);
    const secureContext = buildContext(cas, chain, keyPem, labels);
    return {
      identity: identity.name,
      identityKind: identity.kind,
      certificate: {
        subject: oneLine(leaf.subject),
        issuer: oneLine(leaf.issuer),
        notBefore: new Date(leaf.validFrom),
        notAfter: new Date(leaf.validTo),
        fingerprint256: leaf.fingerprint256,
        subjectAltName: leaf.subjectAltName,
        keyType,
      },
      caCount: cas.length,
      secureContext,
    };
  } finally {
    for (const buffer of scratch) buffer.fill(0);
    zeroizeConfigKey(config);
  }
}

function buildContext(
  cas: X509Certificate[],
  chain: X509Certificate[],
  keyPem: Buffer,
  labels: Labels,
): SecureContext {
  try {
    return createSecureContext({
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ca: cas.map((ca) => ca.toString()),
      cert: chain.map((cert) => cert.toString()).join('\n'),
      key: keyPem,
    });
  } catch (err) {
    // OpenSSL's reason strings carry no key bytes; keep only the code-level reason.
    const reason = err instanceof Error ? err.message : String(err);
    throw invalid(labels.key, `TLS context could not be built: ${reason}`, err);
  }
}
