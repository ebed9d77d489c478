// Development PKI: certificate authorities and node certificates made with @peculiar/x509.
import {
  KeyObject,
  X509Certificate as NodeX509Certificate,
  createPrivateKey,
  randomBytes,
  webcrypto,
} from 'node:crypto';

// @peculiar/x509 resolves its services through tsyringe, which needs the Reflect metadata
// polyfill loaded before the library itself.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

import { AureliaError, ErrorId } from '../engine/errors.js';
import { readCertificateIdentity } from '../engine/transport/identity.js';
import {
  type PkiKeyType,
  exportPkcs8Pem,
  generateKeyPair,
  importAlgorithm,
  keyTypeOf,
  requireKeyType,
  signingAlgorithm,
} from './pki-keys.js';
import { requireCommonName, subjectAltNames, subjectName } from './pki-names.js';

// @peculiar/x509 is typed against the DOM's WebCrypto; Node's implementation is the same API.
const provider = webcrypto;
type CryptoKey = webcrypto.CryptoKey;

export { PKI_KEY_TYPES, type PkiKeyType } from './pki-keys.js';
export { DEFAULT_TRUST_DOMAIN, isValidNodeName, isValidTrustDomain } from './pki-names.js';

const MINUTE_MS = 60_000;
const DAY_MS = 24 * 60 * MINUTE_MS;
// Certificates start a little in the past so a peer whose clock lags slightly accepts them.
const CLOCK_SKEW_MS = 5 * MINUTE_MS;
const DEFAULT_CA_VALIDITY_MS = 3650 * DAY_MS;
const DEFAULT_NODE_VALIDITY_MS = 365 * DAY_MS;

/** Validity and key options shared by every certificate the PKI maker issues. */
export interface CertificateOptions {
  /** Key algorithm of the new certificate's key pair (default `'ec-p256'`). */
  readonly keyType?: PkiKeyType;
  /** RSA modulus length in bits when `keyType` is `'rsa'` (default 2048). */
  readonly rsaModulusLength?: number;
  /** Start of validity (default: five minutes ago, to tolerate clock skew). */
  readonly notBefore?: Date;
  /** End of validity (default: ten years for a CA, one year for a node certificate). */
  readonly notAfter?: Date;
}

/** Options of `createCertificateAuthority` and `issueIntermediateCertificateAuthority`. */
export interface CertificateAuthorityOptions extends CertificateOptions {
  /** Subject common name of the CA certificate. */
  readonly commonName: string;
}

/**
 * A certificate authority able to issue certificates: a self-signed root or an intermediate.
 * Certificates are PEM text; the private key is a PKCS#8 PEM `Buffer`.
 */
export interface CertificateAuthority {
  /** Subject common name. */
  readonly commonName: string;
  /** Algorithm of the CA's key. */
  readonly keyType: PkiKeyType;
  /** This CA's certificate (PEM). */
  readonly certPem: string;
  /** This CA's private key (PKCS#8 PEM). */
  readonly keyPem: Buffer;
  /** The root certificate peers must trust (PEM); equal to `certPem` for a root. */
  readonly rootPem: string;
  /**
   * Certificates between this CA and the root, this CA first and the root excluded (PEM); empty
   * for a root. A node issued by an intermediate presents its leaf followed by this.
   */
  readonly chainPem: string;
  /** Start of the CA certificate's validity. */
  readonly notBefore: Date;
  /** End of the CA certificate's validity. */
  readonly notAfter: Date;
  /** The signing key, usable with WebCrypto. */
  readonly signingKey: CryptoKey;
  /** The parsed CA certificate. */
  readonly certificate: x509.X509Certificate;
}

/** Options of `issueNodeCertificate`. */
export interface NodeCertificateOptions extends CertificateOptions {
  /** Node name: the last segment of the default URI SAN and the default common name. */
  readonly name: string;
  /** Trust domain of the default URI SAN (default `'aurelia.local'`). */
  readonly trustDomain?: string;
  /**
   * URI SAN, the node's identity (default `spiffe://<trustDomain>/<name>`). `false` issues a
   * certificate without a URI SAN, whose identity is then its first DNS SAN or its CN.
   */
  readonly uri?: string | false;
  /** DNS SANs (default none). */
  readonly dnsNames?: readonly string[];
  /** IP address SANs, IPv4 or IPv6 (default none). */
  readonly ipAddresses?: readonly string[];
  /** Subject common name (default `name`); `false` issues a certificate with an empty subject. */
  readonly commonName?: string | false;
  /**
   * Issue the certificate even when it would prove no identity (see `readCertificateIdentity`),
   * for tests of how a domus refuses such a certificate. Default `false`: issuing fails instead.
   */
  readonly allowNoIdentity?: boolean;
}

/** A node certificate and its key, as a domus loads them. */
export interface NodeCertificate {
  /** The node name given to `issueNodeCertificate`. */
  readonly name: string;
  /**
   * The identity peers will see (`certificateIdentity` of the certificate); `undefined` only for
   * a certificate issued with `allowNoIdentity`.
   */
  readonly identity: string | undefined;
  /** The leaf certificate alone (PEM). */
  readonly certPem: string;
  /** The leaf followed by any intermediate CA certificates: what the node presents (PEM). */
  readonly chainPem: string;
  /** The node's private key (PKCS#8 PEM). */
  readonly keyPem: Buffer;
  /** The root certificate that verifies this node (PEM). */
  readonly caPem: string;
  /** Algorithm of the node's key. */
  readonly keyType: PkiKeyType;
  /** Start of validity. */
  readonly notBefore: Date;
  /** End of validity. */
  readonly notAfter: Date;
}

/**
 * Creates a self-signed root certificate authority: basicConstraints CA:true (critical),
 * keyUsage keyCertSign + cRLSign (critical), subject key identifier, valid ten years by default.
 * Fails with `AureliaError(InvalidConfig)` for an empty common name, an unknown key type or a
 * validity that ends before it starts.
 */
export async function createCertificateAuthority(
  options: CertificateAuthorityOptions,
): Promise<CertificateAuthority> {
  const commonName = requireCommonName(options.commonName);
  const keyType = requireKeyType(options.keyType);
  const { notBefore, notAfter } = validity(options, DEFAULT_CA_VALIDITY_MS);
  const keys = await generateKeyPair(keyType, options.rsaModulusLength);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: serialNumber(),
      name: subjectName(commonName),
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: signingAlgorithm(keyType),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, provider),
      ],
    },
    provider,
  );
  const certPem = certificate.toString('pem');
  return {
    commonName,
    keyType,
    certPem: withNewline(certPem),
    keyPem: exportPkcs8Pem(keys.privateKey),
    rootPem: withNewline(certPem),
    chainPem: '',
    notBefore,
    notAfter,
    signingKey: keys.privateKey,
    certificate,
  };
}

/**
 * Issues an intermediate certificate authority signed by `parent` (basicConstraints CA:true with
 * path length 0, keyCertSign + cRLSign), for tests and deployments that sign node certificates
 * below a root. Fails with `AureliaError(InvalidConfig)` like `createCertificateAuthority`.
 */
export async function issueIntermediateCertificateAuthority(
  parent: CertificateAuthority,
  options: CertificateAuthorityOptions,
): Promise<CertificateAuthority> {
  const commonName = requireCommonName(options.commonName);
  const keyType = requireKeyType(options.keyType);
  const { notBefore, notAfter } = validity(options, DEFAULT_CA_VALIDITY_MS);
  const keys = await generateKeyPair(keyType, options.rsaModulusLength);
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: subjectName(commonName),
      issuer: parent.certificate.subjectName,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: parent.signingKey,
      signingAlgorithm: signingAlgorithm(parent.keyType),
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, provider),
        await authorityKeyIdentifier(parent),
      ],
    },
    provider,
  );
  const certPem = withNewline(certificate.toString('pem'));
  return {
    commonName,
    keyType,
    certPem,
    keyPem: exportPkcs8Pem(keys.privateKey),
    rootPem: parent.rootPem,
    chainPem: certPem + parent.chainPem,
    notBefore,
    notAfter,
    signingKey: keys.privateKey,
    certificate,
  };
}

/**
 * Issues a node certificate signed by `ca`: basicConstraints CA:false, keyUsage
 * digitalSignature (+ keyEncipherment for RSA), extended key usage serverAuth + clientAuth (every
 * domus both accepts and dials), and SANs: the URI `spiffe://<trustDomain>/<name>` unless `uri`
 * says otherwise, plus the given DNS names and IP addresses. The subject CN is `name` unless
 * `commonName` says otherwise. Valid one year by default.
 * Fails with `AureliaError(InvalidConfig)` for a name or trust domain that cannot form a URI, an
 * invalid IP address or DNS name, a bad validity, or a certificate that would prove no identity
 * (no name at all, a URI SAN that is no absolute URI, or — with no SAN naming it — a common name
 * containing ':', which could pass for a URI), unless `allowNoIdentity` is set.
 */
export async function issueNodeCertificate(
  ca: CertificateAuthority,
  options: NodeCertificateOptions,
): Promise<NodeCertificate> {
  const keyType = requireKeyType(options.keyType);
  const names = subjectAltNames(options);
  const commonName = options.commonName === undefined ? options.name : options.commonName;
  if (commonName !== false && commonName.length === 0) {
    throw new AureliaError(ErrorId.InvalidConfig, 'commonName must not be empty');
  }
  if (names.length === 0 && commonName === false) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `node certificate '${options.name}' would have no URI SAN, DNS SAN or common name`,
    );
  }
  const { notBefore, notAfter } = validity(options, DEFAULT_NODE_VALIDITY_MS);
  const keys = await generateKeyPair(keyType, options.rsaModulusLength);
  const usage =
    keyType === 'rsa'
      ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment
      : x509.KeyUsageFlags.digitalSignature;
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(usage, true),
    new x509.ExtendedKeyUsageExtension(
      [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, provider),
    await authorityKeyIdentifier(ca),
  ];
  if (names.length > 0) {
    // RFC 5280: the SAN is critical when the subject is empty.
    extensions.push(new x509.SubjectAlternativeNameExtension(names, commonName === false));
  }
  const certificate = await x509.X509CertificateGenerator.create(
    {
      serialNumber: serialNumber(),
      subject: commonName === false ? [] : subjectName(commonName),
      issuer: ca.certificate.subjectName,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: ca.signingKey,
      signingAlgorithm: signingAlgorithm(ca.keyType),
      extensions,
    },
    provider,
  );
  const certPem = withNewline(certificate.toString('pem'));
  // The very rule a domus applies at the handshake, so what is issued here is what peers see.
  const read = readCertificateIdentity(new NodeX509Certificate(certPem));
  if (read.kind === undefined && options.allowNoIdentity !== true) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `node certificate '${options.name}' would prove no identity: ${read.problem}. ` +
        'Give it a URI SAN (the default spiffe://<trust domain>/<name>), a DNS name, or a ' +
        "common name without ':' or control characters",
    );
  }
  return {
    name: options.name,
    identity: read.kind === undefined ? undefined : read.name,
    certPem,
    chainPem: certPem + ca.chainPem,
    keyPem: exportPkcs8Pem(keys.privateKey),
    caPem: ca.rootPem,
    keyType,
    notBefore,
    notAfter,
  };
}

/**
 * Rebuilds a `CertificateAuthority` from its certificate and PKCS#8 key (for example the
 * `ca.pem` / `ca-key.pem` the `certs` command wrote earlier), so it can issue more certificates.
 * `label` names the source in error messages (default `'CA'`).
 * Fails with `AureliaError(InvalidConfig)` when the certificate is not a parseable CA
 * certificate, the key is not a parseable PKCS#8 key of a supported type, or the key does not
 * belong to the certificate.
 */
export async function loadCertificateAuthority(
  certPem: string | Buffer,
  keyPem: Buffer,
  label = 'CA',
): Promise<CertificateAuthority> {
  let nodeCert: NodeX509Certificate;
  let certificate: x509.X509Certificate;
  try {
    nodeCert = new NodeX509Certificate(certPem);
    certificate = new x509.X509Certificate(nodeCert.raw);
  } catch {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${label} certificate is not a valid PEM certificate`,
    );
  }
  if (!nodeCert.ca) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${label} certificate is not a CA certificate (basicConstraints CA:false)`,
    );
  }
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey({ key: keyPem, format: 'pem' });
  } catch {
    throw new AureliaError(ErrorId.InvalidConfig, `${label} key is not a parseable private key`);
  }
  if (!nodeCert.checkPrivateKey(keyObject)) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${label} key does not belong to the ${label} certificate`,
    );
  }
  const keyType = keyTypeOf(keyObject, label);
  const pkcs8 = keyObject.export({ format: 'der', type: 'pkcs8' });
  try {
    const signingKey = await provider.subtle.importKey(
      'pkcs8',
      pkcs8,
      importAlgorithm(keyType),
      false,
      ['sign'],
    );
    const pem = withNewline(nodeCert.toString());
    return {
      commonName: commonNameOf(nodeCert) ?? '',
      keyType,
      certPem: pem,
      keyPem: Buffer.from(keyPem),
      rootPem: pem,
      chainPem: '',
      notBefore: new Date(nodeCert.validFrom),
      notAfter: new Date(nodeCert.validTo),
      signingKey,
      certificate,
    };
  } finally {
    pkcs8.fill(0);
  }
}

function commonNameOf(cert: NodeX509Certificate): string | undefined {
  const cn = (cert.toLegacyObject().subject as unknown as Record<string, unknown>).CN;
  const first = Array.isArray(cn) ? (cn as unknown[])[0] : cn;
  return typeof first === 'string' ? first : undefined;
}

function validity(
  options: CertificateOptions,
  defaultLengthMs: number,
): { notBefore: Date; notAfter: Date } {
  const now = Date.now();
  const notBefore = options.notBefore ?? new Date(now - CLOCK_SKEW_MS);
  const notAfter = options.notAfter ?? new Date(now + defaultLengthMs);
  if (Number.isNaN(notBefore.getTime()) || Number.isNaN(notAfter.getTime())) {
    throw new AureliaError(ErrorId.InvalidConfig, 'notBefore and notAfter must be valid dates');
  }
  if (notAfter.getTime() <= notBefore.getTime()) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `notAfter (${notAfter.toISOString()}) must be later than notBefore (${notBefore.toISOString()})`,
    );
  }
  return { notBefore, notAfter };
}

async function authorityKeyIdentifier(
  issuer: CertificateAuthority,
): Promise<x509.AuthorityKeyIdentifierExtension> {
  // Reuse the issuer's own key identifier, so chains built by other tools still link up.
  const ski = issuer.certificate.getExtension(x509.SubjectKeyIdentifierExtension);
  if (ski !== null) return new x509.AuthorityKeyIdentifierExtension(ski.keyId, false);
  return x509.AuthorityKeyIdentifierExtension.create(issuer.certificate.publicKey, false, provider);
}

function serialNumber(): string {
  const bytes = randomBytes(16);
  // A positive, non-zero, 16-byte serial (RFC 5280 allows up to 20 octets).
  bytes[0] = (bytes[0]! & 0x7f) | 0x01;
  return bytes.toString('hex');
}

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}
