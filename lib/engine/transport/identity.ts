// The identity a certificate proves: first URI SAN, else first DNS SAN, else the subject CN.
import type { X509Certificate } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';

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
 * Returns the identity a certificate proves: its first non-empty URI SAN (for example
 * `spiffe://aurelia.local/billing`), else its first non-empty DNS SAN, else its subject common
 * name (the first CN when there are several). Accepts a `crypto.X509Certificate` or the object
 * of `tlsSocket.getPeerCertificate()`.
 * Returns `undefined` when the certificate has none of these, when the peer sent no certificate
 * (Node's empty object), or when the SAN text is malformed (the CN is then not consulted, so a
 * SAN that cannot be read never silently falls back to a weaker name). Never throws.
 */
export function certificateIdentity(cert: X509Certificate | PeerCertificate): string | undefined {
  const { sanText, subject } = describe(cert);
  if (sanText !== undefined && sanText.length > 0) {
    const entries = parseSubjectAltName(sanText);
    if (entries === undefined) return undefined;
    const uri = entries.find((entry) => entry.type === 'URI' && entry.value.length > 0);
    if (uri !== undefined) return uri.value;
    const dns = entries.find((entry) => entry.type === 'DNS' && entry.value.length > 0);
    if (dns !== undefined) return dns.value;
  }
  return commonName(subject);
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
