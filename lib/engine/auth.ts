// PKCS#8 authentication material: its config shapes, loading, validation and the TLS 1.3 context.
import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext, type SecureContext } from 'node:tls';
import { inspect } from 'node:util';

import { AureliaError, ErrorId } from './errors.js';
import { certificateIdentity } from './transport/identity.js';

/**
 * PKCS#8 private-key bytes (PEM or DER) that never show themselves: `util.inspect`, `String()`
 * and `JSON.stringify` print `Pkcs8PrivateKey(<redacted>, N bytes)` / `"[redacted]"`.
 * The key takes ownership of the given buffer without copying it; `loadAuthMaterial` zero-fills
 * it once the TLS context holds the key, and `zeroize()` does so on demand.
 */
export class Pkcs8PrivateKey {
  readonly #bytes: Buffer;
  #zeroized = false;

  /** Wraps `bytes` (not copied: the caller hands the buffer over and should drop it). */
  constructor(bytes: Buffer | Uint8Array) {
    this.#bytes = Buffer.isBuffer(bytes)
      ? bytes
      : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Number of key bytes (unchanged by `zeroize()`). */
  get byteLength(): number {
    return this.#bytes.byteLength;
  }

  /** True once `zeroize()` ran (directly or through `loadAuthMaterial`). */
  get zeroized(): boolean {
    return this.#zeroized;
  }

  /**
   * Returns the key bytes themselves, not a copy: do not keep or log them.
   * Throws `AureliaError(InvalidConfig)` when the key was already zeroized.
   */
  exposeSecret(): Buffer {
    if (this.#zeroized) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        'the PKCS#8 private key was already zero-filled (keys are consumed when loaded)',
      );
    }
    return this.#bytes;
  }

  /** Overwrites the key bytes with zeros. Idempotent; never throws. */
  zeroize(): void {
    this.#bytes.fill(0);
    this.#zeroized = true;
  }

  /** `Pkcs8PrivateKey(<redacted>, N bytes)`. */
  toString(): string {
    return `Pkcs8PrivateKey(<redacted>, ${this.#bytes.byteLength} bytes)`;
  }

  /** Always `'[redacted]'`, so configs can be logged as JSON safely. */
  toJSON(): string {
    return '[redacted]';
  }

  /** Used by `util.inspect` and `console.log`. */
  [inspect.custom](): string {
    return this.toString();
  }
}

/**
 * Authentication material in PEM form. `caPem` may hold several CA certificates (all are trusted
 * roots, for example old and new during a rotation); `certPem` holds the node's certificate,
 * optionally followed by intermediate CA certificates; `pkcs8KeyPem` is an unencrypted PKCS#8
 * key (`-----BEGIN PRIVATE KEY-----`), zero-filled by `loadAuthMaterial`.
 */
export interface Pkcs8PemConfig {
  readonly format: 'pem';
  readonly caPem: Buffer;
  readonly certPem: Buffer;
  readonly pkcs8KeyPem: Buffer | Pkcs8PrivateKey;
}

/**
 * Authentication material in DER form: one buffer per CA certificate, the node certificate (or
 * the chain, leaf first) and the PKCS#8 key, zero-filled by `loadAuthMaterial`.
 */
export interface Pkcs8DerConfig {
  readonly format: 'der';
  readonly caDer: Buffer | readonly Buffer[];
  readonly certDer: Buffer | readonly Buffer[];
  readonly pkcs8KeyDer: Buffer | Pkcs8PrivateKey;
}

/**
 * PKCS#8 mTLS material a domus authenticates with, in PEM or DER form. A key given as a plain
 * `Buffer` shows its bytes if the config object itself is logged; wrap it in `Pkcs8PrivateKey`
 * (as `fromFiles` does) to keep it out of logs.
 */
export type Pkcs8AuthConfig = Pkcs8PemConfig | Pkcs8DerConfig;

/** Paths of the files `Pkcs8AuthConfig.fromFiles` reads. */
export interface Pkcs8AuthFiles {
  /** One or several CA certificate files (PEM with one or more certificates, or DER). */
  readonly ca: string | readonly string[];
  /** The node certificate file; a PEM file may append intermediates after the leaf. */
  readonly cert: string;
  /** The unencrypted PKCS#8 key file (PEM or DER). */
  readonly key: string;
}

/**
 * Names shown in error messages instead of the config field names, typically the files the
 * material came from. `ca` may name one source per CA certificate.
 */
export interface AuthSourceLabels {
  readonly ca?: string | readonly string[];
  readonly cert?: string;
  readonly key?: string;
}

// Configs made by `fromFiles` remember their files, so later errors can name them.
const configSources = new WeakMap<Pkcs8AuthConfig, AuthSourceLabels>();

/** Builds a `Pkcs8AuthConfig` from files; see `Pkcs8AuthConfig.fromFiles`. */
async function fromFiles(files: Pkcs8AuthFiles): Promise<Pkcs8AuthConfig> {
  const caPaths = typeof files.ca === 'string' ? [files.ca] : [...files.ca];
  if (caPaths.length === 0) {
    throw new AureliaError(ErrorId.InvalidConfig, 'ca must name at least one CA file');
  }
  const key = await readAuthFile(files.key, 'key');
  let caFiles: { path: string; ders: Buffer[] }[];
  let certDers: Buffer[];
  try {
    caFiles = await Promise.all(
      caPaths.map(async (path) => {
        const label = caFileLabel(path);
        const ders = certificatesInFile(await readAuthFile(path, 'CA'), label);
        if (ders.length === 0) {
          throw new AureliaError(ErrorId.InvalidConfig, `${label} contains no certificate`);
        }
        return { path, ders };
      }),
    );
    const certLabel = certFileLabel(files.cert);
    certDers = certificatesInFile(await readAuthFile(files.cert, 'certificate'), certLabel);
    if (certDers.length === 0) {
      throw new AureliaError(ErrorId.InvalidConfig, `${certLabel} contains no certificate`);
    }
  } catch (err) {
    key.fill(0);
    throw err;
  }
  const keyIsPem = key.includes('-----BEGIN');
  const caDers = caFiles.flatMap((file) => file.ders);
  let config: Pkcs8AuthConfig;
  if (keyIsPem) {
    config = {
      format: 'pem',
      caPem: Buffer.from(caDers.map((der) => certificatePem(der)).join('')),
      certPem: Buffer.from(certDers.map((der) => certificatePem(der)).join('')),
      pkcs8KeyPem: new Pkcs8PrivateKey(key),
    };
  } else {
    config = {
      format: 'der',
      caDer: caDers,
      certDer: certDers,
      pkcs8KeyDer: new Pkcs8PrivateKey(key),
    };
  }
  configSources.set(config, {
    ca: keyIsPem ? caPaths : caFiles.flatMap((file) => file.ders.map(() => file.path)),
    cert: files.cert,
    key: files.key,
  });
  return config;
}

/**
 * Value side of `Pkcs8AuthConfig`: `Pkcs8AuthConfig.fromFiles({ ca, cert, key })` reads the
 * files, detects PEM or DER per file and returns a config (PEM when the key file is PEM, DER
 * otherwise; certificates are converted to match) whose key is a `Pkcs8PrivateKey`. Errors
 * reported later by `loadAuthMaterial` name these files.
 * Rejects with `AureliaError(InvalidConfig)` naming the file when a file cannot be read, a
 * certificate file holds something that is not a certificate, or a CA file holds no certificate.
 */
export const Pkcs8AuthConfig = { fromFiles } as const;

/** Algorithm of a loaded key: EC on P-256 or P-384, Ed25519, or RSA of at least 2048 bits. */
export type AuthKeyType = 'ec-p256' | 'ec-p384' | 'ed25519' | 'rsa';

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
  /** First URI SAN, else first DNS SAN, else subject CN of the certificate. */
  readonly identity: string;
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

const OID_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const OID_CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const OID_ANY_EXTENDED_KEY_USAGE = '2.5.29.37.0';
const MIN_RSA_BITS = 2048;

/**
 * Parses and validates `config` and builds its TLS 1.3 `SecureContext` once.
 * Checks, in order: every CA entry and certificate parses; the key is an unencrypted PKCS#8 key
 * of a supported type (EC P-256/P-384, Ed25519, RSA ≥ 2048 bits); it matches the certificate's
 * public key; the certificate (and each intermediate) is valid at `now`; the chain leads, through
 * the given intermediates, to one of the CA certificates; the certificate names an identity and,
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
    const labels = resolveLabels(config, options.source ?? configSources.get(config));
    const now = options.now ?? Date.now();
    const cas = parseCaCertificates(config, labels);
    const chain = parseChain(config, labels);
    const leaf = chain[0]!;
    const { keyObject, keyPem } = parseKey(config, labels, scratch);
    const keyType = checkKeyType(keyObject, labels.key);
    checkKeyMatches(keyObject, leaf, labels);
    chain.forEach((cert, index) => checkValidity(cert, index, now, labels.cert));
    checkChain(chain, cas, now, labels);
    const identity = certificateIdentity(leaf);
    if (identity === undefined) {
      throw invalid(
        labels.cert,
        `certificate ${describeSubject(leaf)} has no URI SAN, DNS SAN or common name to serve as the node identity`,
      );
    }
    checkExtendedKeyUsage(leaf, labels.cert);
    const secureContext = buildContext(cas, chain, keyPem, labels);
    return {
      identity,
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

interface Labels {
  readonly ca: (index: number) => string;
  readonly cert: string;
  readonly certEntry: (index: number) => string;
  readonly key: string;
}

function resolveLabels(config: Pkcs8AuthConfig, source: AuthSourceLabels | undefined): Labels {
  if (typeof config !== 'object' || config === null) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `auth config must be a Pkcs8AuthConfig object, got ${config === null ? 'null' : typeof config}`,
    );
  }
  const format = (config as { format?: unknown }).format;
  if (format !== 'pem' && format !== 'der') {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `auth config format must be 'pem' or 'der', got ${inspect(format)}`,
    );
  }
  const pem = format === 'pem';
  const caSource = source?.ca;
  const caList = caSource === undefined ? [] : typeof caSource === 'string' ? [caSource] : caSource;
  const caCount = pem ? 1 : listOf((config as Pkcs8DerConfig).caDer).length;
  const certIsList = !pem && Array.isArray((config as Pkcs8DerConfig).certDer);
  const cert =
    source?.cert !== undefined ? certFileLabel(source.cert) : pem ? 'certPem' : 'certDer';
  return {
    ca: (index) => {
      if (caList.length === 0) {
        if (pem) return 'caPem';
        return caCount === 1 && !Array.isArray((config as Pkcs8DerConfig).caDer)
          ? 'caDer'
          : `caDer[${index}]`;
      }
      if (!pem && caList.length === caCount) return caFileLabel(caList[index]!);
      return caList.length === 1
        ? caFileLabel(caList[0]!)
        : `CA files ${[...new Set(caList)].map((path) => `'${path}'`).join(', ')}`;
    },
    cert,
    certEntry: (index) => (source?.cert === undefined && certIsList ? `certDer[${index}]` : cert),
    key:
      source?.key !== undefined ? `key file '${source.key}'` : pem ? 'pkcs8KeyPem' : 'pkcs8KeyDer',
  };
}

function caFileLabel(path: string): string {
  return `CA file '${path}'`;
}

function certFileLabel(path: string): string {
  return `certificate file '${path}'`;
}

function invalid(label: string, problem: string, cause?: unknown): AureliaError {
  return new AureliaError(
    ErrorId.InvalidConfig,
    `${label}: ${problem}`,
    cause === undefined ? undefined : { cause },
  );
}

function listOf(value: Buffer | readonly Buffer[]): readonly Buffer[] {
  return Buffer.isBuffer(value) ? [value] : value;
}

function parseCaCertificates(config: Pkcs8AuthConfig, labels: Labels): X509Certificate[] {
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

function parseChain(config: Pkcs8AuthConfig, labels: Labels): X509Certificate[] {
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

function parseCertificate(der: Buffer, label: string, what: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    throw invalid(label, `${what} is not a valid X.509 certificate`, err);
  }
}

// PEM blocks of public material (certificates) may be handled as strings.
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([^-]*)-----END \1-----/g;

function certificateBlocks(pem: Buffer, label: string): Buffer[] {
  // Checked on the bytes, before any string is made, so a misplaced key never becomes one.
  if (holdsPrivateKey(pem)) throw misplacedKey(label);
  const text = pem.toString('latin1');
  if (!text.includes('-----BEGIN')) {
    throw invalid(
      label,
      "is not PEM (no -----BEGIN CERTIFICATE----- block); use format 'der' for DER material",
    );
  }
  const blocks: Buffer[] = [];
  for (const match of text.matchAll(PEM_BLOCK)) {
    if (match[1] === 'CERTIFICATE') blocks.push(Buffer.from(match[2]!, 'base64'));
  }
  return blocks;
}

function holdsPrivateKey(pem: Buffer): boolean {
  return pem.includes('PRIVATE KEY-----');
}

function misplacedKey(label: string): AureliaError {
  return invalid(
    label,
    'holds a private key; certificate material must contain certificates only (keep the key in its own file)',
  );
}

/** Certificates of a file that may be PEM (one or more blocks) or DER (exactly one). */
function certificatesInFile(content: Buffer, label: string): Buffer[] {
  if (holdsPrivateKey(content)) {
    content.fill(0);
    throw misplacedKey(label);
  }
  if (content.includes('-----BEGIN')) {
    const blocks = certificateBlocks(content, label);
    blocks.forEach((der, index) => parseCertificate(der, label, `certificate #${index + 1}`));
    return blocks;
  }
  if (content.length === 0) return [];
  parseCertificate(content, label, 'content');
  return [content];
}

function certificatePem(der: Buffer): string {
  return new X509Certificate(der).toString();
}

async function readAuthFile(path: string, what: string): Promise<Buffer> {
  if (typeof path !== 'string' || path.length === 0) {
    throw new AureliaError(ErrorId.InvalidConfig, `${what} file path must be a non-empty string`);
  }
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unknown error';
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${what} file '${path}' cannot be read (${code})`,
      { cause: err },
    );
  }
}

function keyBuffer(config: Pkcs8AuthConfig, label: string): Buffer {
  const key = config.format === 'pem' ? config.pkcs8KeyPem : config.pkcs8KeyDer;
  if (key instanceof Pkcs8PrivateKey) {
    if (key.zeroized) {
      throw invalid(label, 'was already zero-filled by an earlier load; pass fresh key bytes');
    }
    return key.exposeSecret();
  }
  if (!Buffer.isBuffer(key)) {
    throw invalid(label, `must be a Buffer or a Pkcs8PrivateKey, got ${typeof key}`);
  }
  return key;
}

function isAllZero(buffer: Buffer): boolean {
  for (const byte of buffer) if (byte !== 0) return false;
  return true;
}

const PKCS8_PEM_HEADER = '-----BEGIN PRIVATE KEY-----';
const CONVERT_HINT = 'convert it with `openssl pkcs8 -topk8 -nocrypt -in <key> -out <pkcs8-key>`';

function parseKey(
  config: Pkcs8AuthConfig,
  labels: Labels,
  scratch: Buffer[],
): { keyObject: KeyObject; keyPem: Buffer } {
  const label = labels.key;
  const key = keyBuffer(config, label);
  if (key.length === 0 || isAllZero(key)) {
    throw invalid(
      label,
      'is empty or was already zero-filled by an earlier load; pass fresh key bytes',
    );
  }
  if (config.format === 'pem') {
    // Searched as bytes, so the key never becomes a JS string.
    if (!key.includes(PKCS8_PEM_HEADER)) throw invalid(label, describeNonPkcs8Pem(key));
    try {
      return { keyObject: createPrivateKey({ key, format: 'pem' }), keyPem: key };
    } catch (err) {
      throw invalid(label, 'is not a parseable PKCS#8 private key', err);
    }
  }
  if (key.includes('-----BEGIN')) {
    throw invalid(label, "is PEM text, not DER; use format 'pem' for PEM material");
  }
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey({ key, format: 'der', type: 'pkcs8' });
  } catch (err) {
    throw invalid(label, describeNonPkcs8Der(key), err);
  }
  // Node's TLS context only takes PEM keys; the PEM copy lives in a buffer zeroed afterwards.
  const keyPem = derToPemBuffer(key, 'PRIVATE KEY');
  scratch.push(keyPem);
  return { keyObject, keyPem };
}

function describeNonPkcs8Pem(key: Buffer): string {
  if (key.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----')) {
    return 'is an encrypted PKCS#8 key; an unencrypted one is needed (decrypt it with `openssl pkcs8 -in <key> -out <plain-key>`)';
  }
  if (key.includes('-----BEGIN RSA PRIVATE KEY-----')) {
    return `is a PKCS#1 RSA key, not PKCS#8; ${CONVERT_HINT}`;
  }
  if (key.includes('-----BEGIN EC PRIVATE KEY-----')) {
    return `is a SEC1 EC key, not PKCS#8; ${CONVERT_HINT}`;
  }
  if (key.includes('-----BEGIN')) {
    return `contains no PKCS#8 key (expected ${PKCS8_PEM_HEADER})`;
  }
  return `is not PEM (expected ${PKCS8_PEM_HEADER}); use format 'der' for DER material`;
}

function describeNonPkcs8Der(key: Buffer): string {
  for (const type of ['pkcs1', 'sec1'] as const) {
    try {
      createPrivateKey({ key, format: 'der', type });
      return `is a ${type === 'pkcs1' ? 'PKCS#1 RSA' : 'SEC1 EC'} key, not PKCS#8; ${CONVERT_HINT}`;
    } catch {
      // Not this encoding either.
    }
  }
  return 'is not a parseable PKCS#8 private key';
}

function checkKeyType(key: KeyObject, label: string): AuthKeyType {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails;
  if (type === 'ed25519') return 'ed25519';
  if (type === 'ec' && details?.namedCurve === 'prime256v1') return 'ec-p256';
  if (type === 'ec' && details?.namedCurve === 'secp384r1') return 'ec-p384';
  if (type === 'rsa') {
    const bits = details?.modulusLength ?? 0;
    if (bits >= MIN_RSA_BITS) return 'rsa';
    throw invalid(label, `RSA key has ${bits} bits; at least ${MIN_RSA_BITS} are required`);
  }
  const shown =
    type === 'ec' ? `EC ${details?.namedCurve ?? 'unknown curve'}` : (type ?? 'unknown');
  throw invalid(
    label,
    `key type ${shown} is not supported; use EC P-256, EC P-384, Ed25519 or RSA (${MIN_RSA_BITS}+ bits)`,
  );
}

function checkKeyMatches(key: KeyObject, leaf: X509Certificate, labels: Labels): void {
  const fromKey = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const fromCert = leaf.publicKey.export({ type: 'spki', format: 'der' });
  if (!fromKey.equals(fromCert)) {
    throw invalid(
      labels.key,
      `does not match the certificate ${describeSubject(leaf)} in ${labels.cert} (their public keys differ)`,
    );
  }
}

function checkValidity(cert: X509Certificate, index: number, now: number, label: string): void {
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

function checkChain(
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

function checkExtendedKeyUsage(leaf: X509Certificate, label: string): void {
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

function zeroizeConfigKey(config: Pkcs8AuthConfig): void {
  if (typeof config !== 'object' || config === null) return;
  const key =
    config.format === 'pem'
      ? config.pkcs8KeyPem
      : config.format === 'der'
        ? config.pkcs8KeyDer
        : undefined;
  if (key instanceof Pkcs8PrivateKey) key.zeroize();
  else if (Buffer.isBuffer(key)) key.fill(0);
}

function oneLine(name: string): string {
  return name.split('\n').join(', ');
}

function describeSubject(cert: X509Certificate): string {
  const subject = oneLine(cert.subject);
  return subject.length > 0 ? `'${subject}'` : `with serial ${cert.serialNumber}`;
}

const BASE64_ALPHABET = Buffer.from(
  'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/',
  'latin1',
);
const PAD = 0x3d;
const NEWLINE = 0x0a;

/**
 * Encodes DER bytes as a PEM block (`-----BEGIN <label>-----`, base64 in 64-column lines,
 * `-----END <label>-----`, each line ending in `\n`) directly into a new zero-initialised Buffer.
 * Node only base64-encodes into strings, which cannot be wiped; this keeps key material in a
 * buffer the caller zero-fills. Never throws.
 */
export function derToPemBuffer(der: Uint8Array, label: string): Buffer {
  const header = `-----BEGIN ${label}-----\n`;
  const footer = `-----END ${label}-----\n`;
  const encodedLength = 4 * Math.ceil(der.length / 3);
  const lineBreaks = Math.ceil(encodedLength / 64);
  const out = Buffer.alloc(header.length + encodedLength + lineBreaks + footer.length);
  let offset = out.write(header, 0, 'latin1');
  let column = 0;
  for (let i = 0; i < der.length; i += 3) {
    const remaining = der.length - i;
    const b0 = der[i]!;
    const b1 = remaining > 1 ? der[i + 1]! : 0;
    const b2 = remaining > 2 ? der[i + 2]! : 0;
    out[offset++] = BASE64_ALPHABET[b0 >> 2]!;
    out[offset++] = BASE64_ALPHABET[((b0 & 0x03) << 4) | (b1 >> 4)]!;
    out[offset++] = remaining > 1 ? BASE64_ALPHABET[((b1 & 0x0f) << 2) | (b2 >> 6)]! : PAD;
    out[offset++] = remaining > 2 ? BASE64_ALPHABET[b2 & 0x3f]! : PAD;
    column += 4;
    if (column === 64) {
      out[offset++] = NEWLINE;
      column = 0;
    }
  }
  if (column > 0) out[offset++] = NEWLINE;
  out.write(footer, offset, 'latin1');
  return out;
}
