// The identity a certificate proves, with its kind: a URI SAN, else a DNS SAN, else the subject CN.
import type { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';

import { quotePeerText } from '../logger.js';

/** One entry of a certificate's subject alternative name, as Node prints it. */
export interface SubjectAltNameEntry {
  /** Node's name for the kind of entry: `'URI'`, `'DNS'`, `'IP Address'`, `'email'`, ... */
  readonly type: string;
  /** The value with Node's JSON-style quoting removed. */
  readonly value: string;
}

// Node quotes a SAN value as a JSON string literal when it contains a separator, a quote, a
// backslash or a control character, so a crafted value can never pose as a second entry.
// Raw control characters are exactly what JSON forbids inside a string literal, hence the range.
// eslint-disable-next-line no-control-regex
const JSON_STRING_PREFIX = /^"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/;

/**
 * Parses Node's textual subject alternative name (`'DNS:a.example, URI:spiffe://mesh/a'`, as in
 * `X509Certificate.subjectAltName` or `PeerCertificate.subjectaltname`) into entries, undoing
 * Node's quoting of values that contain `, `, quotes or control characters.
 * Returns `undefined` when the text is not in Node's format (an unterminated or invalid quoted
 * value, or an entry without a `type:` prefix): such a certificate must not be given an identity
 * from its SAN. Never throws.
 */
export function parseSubjectAltName(text: string): SubjectAltNameEntry[] | undefined {
  const entries: SubjectAltNameEntry[] = [];
  if (text.length === 0) return entries;
  let token = '';
  let offset = 0;
  for (;;) {
    const nextSeparator = text.indexOf(', ', offset);
    const nextQuote = text.indexOf('"', offset);
    if (nextQuote !== -1 && (nextSeparator === -1 || nextQuote < nextSeparator)) {
      token += text.slice(offset, nextQuote);
      const quoted = JSON_STRING_PREFIX.exec(text.slice(nextQuote));
      if (quoted === null) return undefined;
      token += JSON.parse(quoted[0]) as string;
      offset = nextQuote + quoted[0].length;
      if (offset === text.length) break;
      continue;
    }
    if (nextSeparator === -1) {
      token += text.slice(offset);
      break;
    }
    token += text.slice(offset, nextSeparator);
    const entry = splitEntry(token);
    if (entry === undefined) return undefined;
    entries.push(entry);
    token = '';
    offset = nextSeparator + 2;
  }
  const last = splitEntry(token);
  if (last === undefined) return undefined;
  entries.push(last);
  return entries;
}

function splitEntry(token: string): SubjectAltNameEntry | undefined {
  const colon = token.indexOf(':');
  if (colon <= 0) return undefined;
  return { type: token.slice(0, colon), value: token.slice(colon + 1) };
}

/**
 * Where an identity came from: a URI SAN (`'uri'`, for example `spiffe://aurelia.local/billing`),
 * a DNS SAN (`'dns'`) or the subject common name (`'cn'`).
 */
export type IdentityKind = 'uri' | 'dns' | 'cn';

/**
 * The identity a certificate proves, with its kind. `name` is the identity's canonical text, the
 * string compared everywhere (sessions, expected identities, reports). The kinds can never be
 * confused through it: a URI identity always has a scheme and so a `:`, and no DNS or CN identity
 * contains one (see `readCertificateIdentity`). DNS and CN identities share one namespace, the
 * host-name-like names TLS has always matched a CN against.
 */
export interface CertificateIdentity {
  readonly kind: IdentityKind;
  readonly name: string;
}

/** Why a certificate proves no identity, as a phrase ("its common name ... looks like a URI"). */
export interface IdentityProblem {
  readonly kind: undefined;
  readonly problem: string;
}

// An absolute URI: a scheme (RFC 3986 section 3.1), a colon, then no whitespace or control byte.
// eslint-disable-next-line no-control-regex
const ABSOLUTE_URI = /^[A-Za-z][A-Za-z0-9+.-]*:[^\s\u0000-\u001f\u007f]+$/;
// A host name: letters, digits, `-` and `_` in dot-separated labels (no wildcard, no colon).
const HOST_NAME = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/**
 * Reads the identity a certificate proves, with its kind. The rule, in order:
 * 1. a certificate with a URI SAN is its first non-empty URI SAN, which must be an absolute URI
 *    (`scheme:...`);
 * 2. otherwise a certificate with a DNS SAN is its first non-empty DNS SAN, which must be a host
 *    name (letters, digits, `-`, `_` and dots);
 * 3. otherwise it is the subject common name (the first CN when there are several), which must not
 *    contain `:` (a CN that looks like a URI is never a URI identity: URI identities come only
 *    from URI SANs) nor a control character.
 * When the chosen entry breaks its rule, the certificate proves no identity: it never falls back to
 * a weaker name. Likewise when the SAN text is malformed. Accepts a `crypto.X509Certificate` or the
 * object of `tlsSocket.getPeerCertificate()`. Never throws.
 */
export function readCertificateIdentity(
  cert: X509Certificate | PeerCertificate,
): CertificateIdentity | IdentityProblem {
  const { sanText, subject } = describe(cert);
  if (sanText !== undefined && sanText.length > 0) {
    const entries = parseSubjectAltName(sanText);
    if (entries === undefined) return problem('its subject alternative name cannot be read');
    const uri = entries.find((entry) => entry.type === 'URI' && entry.value.length > 0);
    if (uri !== undefined) {
      return ABSOLUTE_URI.test(uri.value)
        ? { kind: 'uri', name: uri.value }
        : problem(`its URI SAN ${quotePeerText(uri.value)} is not an absolute URI (scheme:...)`);
    }
    const dns = entries.find((entry) => entry.type === 'DNS' && entry.value.length > 0);
    if (dns !== undefined) {
      return HOST_NAME.test(dns.value)
        ? { kind: 'dns', name: dns.value }
        : problem(`its DNS SAN ${quotePeerText(dns.value)} is not a host name`);
    }
  }
  const cn = commonName(subject);
  if (cn === undefined) return problem('it has no URI SAN, DNS SAN or common name');
  if (cn.includes(':')) {
    return problem(
      `its common name ${quotePeerText(cn)} contains ':' (looks like a URI); a URI identity must be a URI SAN`,
    );
  }
  if (CONTROL.test(cn)) {
    return problem(`its common name ${quotePeerText(cn)} contains a control character`);
  }
  return { kind: 'cn', name: cn };
}

/**
 * The canonical text of the identity a certificate proves (see `readCertificateIdentity` for
 * the rule), or `undefined` when it proves none. Never throws.
 */
export function certificateIdentity(cert: X509Certificate | PeerCertificate): string | undefined {
  const read = readCertificateIdentity(cert);
  return read.kind === undefined ? undefined : read.name;
}

/**
 * The kind an identity's canonical text belongs to: `'uri'` when it contains `:`, else `'name'`
 * (a DNS or CN identity). Two texts of different kinds are never equal. Never throws.
 */
export function identityNamespace(name: string): 'uri' | 'name' {
  return name.includes(':') ? 'uri' : 'name';
}

function problem(text: string): IdentityProblem {
  return { kind: undefined, problem: text };
}

function describe(cert: X509Certificate | PeerCertificate): {
  sanText: string | undefined;
  subject: unknown;
} {
  if (isX509Certificate(cert)) {
    // The legacy object carries the subject as already-unescaped fields, so no RFC 2253
    // unescaping is needed here.
    const legacy = cert.toLegacyObject();
    return { sanText: cert.subjectAltName, subject: legacy.subject };
  }
  const peer = cert as Partial<PeerCertificate>;
  return {
    sanText: typeof peer.subjectaltname === 'string' ? peer.subjectaltname : undefined,
    subject: peer.subject,
  };
}

function isX509Certificate(cert: X509Certificate | PeerCertificate): cert is X509Certificate {
  return typeof (cert as Partial<X509Certificate>).toLegacyObject === 'function';
}

function commonName(subject: unknown): string | undefined {
  if (typeof subject !== 'object' || subject === null) return undefined;
  const cn = (subject as Record<string, unknown>).CN;
  const first = Array.isArray(cn) ? (cn as unknown[])[0] : cn;
  return typeof first === 'string' && first.length > 0 ? first : undefined;
}
