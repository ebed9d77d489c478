// The shapes of PKCS#8 auth config (PEM or DER) and reading one from files.
import { readFile } from 'node:fs/promises';

import { AureliaError, ErrorId } from '../errors.js';
import { caFileLabel, certFileLabel } from './labels.js';
import { certificatePem, certificatesInFile } from './pem.js';
import { Pkcs8PrivateKey } from './private-key.js';

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

/** The files a config made by `fromFiles` came from, for error messages. */
export function configSourcesOf(config: Pkcs8AuthConfig): AuthSourceLabels | undefined {
  return configSources.get(config);
}

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
