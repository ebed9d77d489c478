// The key material of the development PKI: algorithms, key generation and PKCS#8 export.
import { KeyObject, webcrypto } from 'node:crypto';

import { derToPemBuffer } from '../engine/auth.js';
import { AureliaError, ErrorId } from '../engine/errors.js';

// @peculiar/x509 is typed against the DOM's WebCrypto; Node's implementation is the same API.
const provider = webcrypto;
type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

/**
 * Key algorithms the PKI maker generates: ECDSA on P-256 (the default, fastest) or P-384,
 * Ed25519, or RSA (2048 bits unless `rsaModulusLength` says otherwise).
 */
export type PkiKeyType = 'ec-p256' | 'ec-p384' | 'ed25519' | 'rsa';

/** Every `PkiKeyType`, in the order the CLI lists them. */
export const PKI_KEY_TYPES: readonly PkiKeyType[] = ['ec-p256', 'ec-p384', 'ed25519', 'rsa'];

/**
 * The `PkiKeyType` of `key`. Throws `AureliaError(InvalidConfig)`, naming `label`, for any other
 * algorithm or curve.
 */
export function keyTypeOf(key: KeyObject, label: string): PkiKeyType {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType === 'ed25519') return 'ed25519';
  if (key.asymmetricKeyType === 'rsa') return 'rsa';
  if (key.asymmetricKeyType === 'ec' && curve === 'prime256v1') return 'ec-p256';
  if (key.asymmetricKeyType === 'ec' && curve === 'secp384r1') return 'ec-p384';
  throw new AureliaError(
    ErrorId.InvalidConfig,
    `${label} key type ${key.asymmetricKeyType ?? 'unknown'}${curve ? ` (${curve})` : ''} is not supported; use EC P-256, EC P-384, Ed25519 or RSA`,
  );
}

/** `keyType` (default `'ec-p256'`); throws `AureliaError(InvalidConfig)` when it is unknown. */
export function requireKeyType(keyType: PkiKeyType | undefined): PkiKeyType {
  const type = keyType ?? 'ec-p256';
  if (!PKI_KEY_TYPES.includes(type)) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `keyType '${String(type)}' is not one of ${PKI_KEY_TYPES.join(', ')}`,
    );
  }
  return type;
}

/**
 * A new extractable signing key pair of `keyType`. Throws `AureliaError(InvalidConfig)` for an
 * RSA modulus outside 1024..8192.
 */
export async function generateKeyPair(
  keyType: PkiKeyType,
  rsaModulusLength = 2048,
): Promise<CryptoKeyPair> {
  const usages: webcrypto.KeyUsage[] = ['sign', 'verify'];
  switch (keyType) {
    case 'ec-p256':
      return provider.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, usages);
    case 'ec-p384':
      return provider.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-384' }, true, usages);
    case 'ed25519':
      return provider.subtle.generateKey(
        { name: 'Ed25519' },
        true,
        usages,
      ) as Promise<CryptoKeyPair>;
    case 'rsa':
      if (
        !Number.isInteger(rsaModulusLength) ||
        rsaModulusLength < 1024 ||
        rsaModulusLength > 8192
      ) {
        throw new AureliaError(
          ErrorId.InvalidConfig,
          `rsaModulusLength ${rsaModulusLength} is outside 1024..8192`,
        );
      }
      return provider.subtle.generateKey(
        {
          name: 'RSASSA-PKCS1-v1_5',
          modulusLength: rsaModulusLength,
          publicExponent: new Uint8Array([1, 0, 1]),
          hash: 'SHA-256',
        },
        true,
        usages,
      );
  }
}

/** The WebCrypto import parameters of a key of `keyType`. Never throws. */
export function importAlgorithm(
  keyType: PkiKeyType,
): webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | webcrypto.Algorithm {
  switch (keyType) {
    case 'ec-p256':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ec-p384':
      return { name: 'ECDSA', namedCurve: 'P-384' };
    case 'ed25519':
      return { name: 'Ed25519' };
    case 'rsa':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  }
}

/** The algorithm a CA whose key is of `issuerKeyType` signs with. Never throws. */
export function signingAlgorithm(
  issuerKeyType: PkiKeyType,
): webcrypto.Algorithm | webcrypto.EcdsaParams {
  switch (issuerKeyType) {
    case 'ec-p256':
      return { name: 'ECDSA', hash: 'SHA-256' };
    case 'ec-p384':
      return { name: 'ECDSA', hash: 'SHA-384' };
    case 'ed25519':
      return { name: 'Ed25519' };
    case 'rsa':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  }
}

/**
 * `key` as a PKCS#8 PEM, encoded straight into a Buffer so the key never becomes an (unwipeable)
 * JS string; the intermediate DER is zero-filled. Never throws for a key made here.
 */
export function exportPkcs8Pem(key: CryptoKey): Buffer {
  const der = KeyObject.from(key).export({ format: 'der', type: 'pkcs8' });
  try {
    return derToPemBuffer(der, 'PRIVATE KEY');
  } finally {
    der.fill(0);
  }
}
