// The PKCS#8 private key: a wrapper that never shows its bytes, parsing, type and match checks, zero-filling.
import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { inspect } from 'node:util';

import { AureliaError, ErrorId } from '../errors.js';
import type { Pkcs8AuthConfig } from './auth-config.js';
import { describeSubject } from './certificates.js';
import { type Labels, invalid } from './labels.js';
import { derToPemBuffer } from './pem.js';

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

/** Algorithm of a loaded key: EC on P-256 or P-384, Ed25519, or RSA of at least 2048 bits. */
export type AuthKeyType = 'ec-p256' | 'ec-p384' | 'ed25519' | 'rsa';

const MIN_RSA_BITS = 2048;

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

/**
 * Reads the key of `config` as a `KeyObject` and as PEM bytes for the TLS context (a DER key is
 * converted into a buffer pushed on `scratch`, which the caller zero-fills). Throws
 * `AureliaError(InvalidConfig)` naming the key and what it is instead of an unencrypted PKCS#8 key.
 */
export function parseKey(
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

/** The algorithm of `key`; throws `InvalidConfig` for an unsupported type or a short RSA key. */
export function checkKeyType(key: KeyObject, label: string): AuthKeyType {
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

/** Throws `InvalidConfig` when `key` is not the private half of the certificate's public key. */
export function checkKeyMatches(key: KeyObject, leaf: X509Certificate, labels: Labels): void {
  const fromKey = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const fromCert = leaf.publicKey.export({ type: 'spki', format: 'der' });
  if (!fromKey.equals(fromCert)) {
    throw invalid(
      labels.key,
      `does not match the certificate ${describeSubject(leaf)} in ${labels.cert} (their public keys differ)`,
    );
  }
}

/** Zero-fills the key bytes of `config` (a `Buffer` or a `Pkcs8PrivateKey`). Never throws. */
export function zeroizeConfigKey(config: Pkcs8AuthConfig): void {
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
