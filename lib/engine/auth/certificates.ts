// Checks on the certificates of auth material: parsing, validity, the chain to a CA root, key usage.
import { X509Certificate } from 'node:crypto';

import type { Pkcs8AuthConfig } from './auth-config.js';
import { type Labels, invalid } from './labels.js';
import { certificateBlocks, parseCertificate } from './pem.js';

const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const OID_ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';

/** The trusted CA certificates of `config`; throws `InvalidConfig` when one does not parse or none is given. */
export function parseCaCertificates(config: Pkcs8AuthConfig, labels: Labels): X509Certificate[] {
  if (config.format === 'pem') {
    const label = labels.ca(0);
    const blocks = certificateBlocks(requireBuffer(config.caPem, label), label);
    if (blocks.length === 0) throw invalid(label, 'contains no CA certificate');
    return blocks.map((der, index) => parseCertificate(der, label, `CA certificate #${index + 1}`));
  }
  const entries = requireBufferList(config.caDer, labels.ca(0));
  if (entries.length === 0) throw invalid(labels.ca(0), 'contains no CA certificate');
  return entries.map((der, index) => {
    const label = labels.ca(index);
    requireBuffer(der, label);
    if (der.length === 0) throw invalid(label, 'contains no CA certificate');
    return parseDerCertificate(der, label, 'CA certificate');
  });
}

/** The node certificate, leaf first, then intermediates; throws `InvalidConfig` when one does not parse. */
export function parseChain(config: Pkcs8AuthConfig, labels: Labels): X509Certificate[] {
  if (config.format === 'pem') {
    const blocks = certificateBlocks(requireBuffer(config.certPem, labels.cert), labels.cert);
    if (blocks.length === 0) {
      throw invalid(labels.cert, 'contains no certificate (expected -----BEGIN CERTIFICATE-----)');
    }
    return blocks.map((der, index) =>
      parseCertificate(
        der,
        labels.cert,
        index === 0 ? 'certificate' : `chain certificate #${index + 1}`,
      ),
    );
  }
  const entries = requireBufferList(config.certDer, labels.cert);
  if (entries.length === 0) throw invalid(labels.cert, 'contains no certificate');
  return entries.map((der, index) => {
    const label = labels.certEntry(index);
    requireBuffer(der, label);
    return parseDerCertificate(
      der,
      label,
      index === 0 ? 'certificate' : `chain certificate #${index + 1}`,
    );
  });
}

function requireBuffer(value: unknown, label: string): Buffer {
  if (!Buffer.isBuffer(value)) throw invalid(label, `must be a Buffer, got ${typeof value}`);
  return value;
}

function requireBufferList(value: unknown, label: string): readonly Buffer[] {
  if (Buffer.isBuffer(value)) return [value];
  if (!Array.isArray(value)) {
    throw invalid(label, `must be a Buffer or an array of Buffers, got ${typeof value}`);
  }
  return value as Buffer[];
}

function parseDerCertificate(der: Buffer, label: string, what: string): X509Certificate {
  if (der.includes('-----BEGIN')) {
    throw invalid(label, `${what} is PEM text, not DER; use format 'pem' for PEM material`);
  }
  return parseCertificate(der, label, what);
}

/** Throws `InvalidConfig` when `cert` (the leaf at index 0, else an intermediate) is not valid at `now`. */
export function checkValidity(
  cert: X509Certificate,
  index: number,
  now: number,
  label: string,
): void {
  const what = index === 0 ? 'certificate' : `intermediate certificate #${index + 1}`;
  const notBefore = new Date(cert.validFrom);
  const notAfter = new Date(cert.validTo);
  if (now < notBefore.getTime()) {
    throw invalid(
      label,
      `${what} ${describeSubject(cert)} is not yet valid: valid from ${notBefore.toISOString()}`,
    );
  }
  if (now > notAfter.getTime()) {
    throw invalid(label, `${what} ${describeSubject(cert)} expired at ${notAfter.toISOString()}`);
  }
}

function issuedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  try {
    return cert.checkIssued(issuer) && cert.verify(issuer.publicKey);
  } catch {
    return false;
  }
}

/**
 * Throws `InvalidConfig` unless the chain leads, through its intermediates, to one of `cas`
 * that is valid at `now`.
 */
export function checkChain(
  chain: X509Certificate[],
  cas: X509Certificate[],
  now: number,
  labels: Labels,
): void {
  const unused = new Set(chain.slice(1));
  let current = chain[0]!;
  for (;;) {
    const anchors = cas.filter((ca) => issuedBy(current, ca));
    if (anchors.length > 0) {
      checkAnchorValidity(anchors, cas, now, labels);
      return;
    }
    const next = [...unused].find((candidate) => issuedBy(current, candidate));
    if (next === undefined) break;
    if (!next.ca) {
      throw invalid(
        labels.cert,
        `chain certificate ${describeSubject(next)} signs ${describeSubject(current)} but is not a CA certificate`,
      );
    }
    unused.delete(next);
    current = next;
  }
  const roots = cas.map((ca) => describeSubject(ca)).join(', ');
  const via = current === chain[0] ? '' : ` (via intermediate ${describeSubject(current)})`;
  throw invalid(
    labels.cert,
    `certificate ${describeSubject(chain[0]!)}${via} is not signed by any configured CA (issuer '${oneLine(current.issuer)}'; trusted: ${roots}); add the issuing CA or append the missing intermediates after the leaf`,
  );
}

// Peers would refuse a chain ending in an expired root; say so now rather than at handshake time.
function checkAnchorValidity(
  anchors: X509Certificate[],
  cas: X509Certificate[],
  now: number,
  labels: Labels,
): void {
  const valid = anchors.some(
    (ca) => now >= new Date(ca.validFrom).getTime() && now <= new Date(ca.validTo).getTime(),
  );
  if (valid) return;
  const ca = anchors[0]!;
  const index = cas.indexOf(ca);
  const notBefore = new Date(ca.validFrom);
  const problem =
    now < notBefore.getTime()
      ? `is not yet valid: valid from ${notBefore.toISOString()}`
      : `expired at ${new Date(ca.validTo).toISOString()}`;
  throw invalid(labels.ca(index), `CA certificate ${describeSubject(ca)} ${problem}`);
}

/** Throws `InvalidConfig` when the leaf restricts extended key usage without serverAuth and clientAuth. */
export function checkExtendedKeyUsage(leaf: X509Certificate, label: string): void {
  const usages = leaf.keyUsage as string[] | undefined;
  if (usages === undefined || usages.includes(OID_ANY_EXTENDED_KEY_USAGE)) return;
  const missing = [
    usages.includes(OID_SERVER_AUTH) ? undefined : 'serverAuth',
    usages.includes(OID_CLIENT_AUTH) ? undefined : 'clientAuth',
  ].filter((usage) => usage !== undefined);
  if (missing.length > 0) {
    throw invalid(
      label,
      `certificate ${describeSubject(leaf)} lacks extended key usage ${missing.join(' and ')}; a domus both accepts and dials, so it needs serverAuth and clientAuth`,
    );
  }
}

/** A distinguished name on one line, RDNs separated by `', '`. */
export function oneLine(name: string): string {
  return name.split('\n').join(', ');
}

/** `'<subject>'`, or `with serial <n>` for a certificate with an empty subject. */
export function describeSubject(cert: X509Certificate): string {
  const subject = oneLine(cert.subject);
  return subject.length > 0 ? `'${subject}'` : `with serial ${cert.serialNumber}`;
}
