// Names of the auth material's parts in error messages: config fields, or the files they came from.
import { inspect } from 'node:util';

import { AureliaError, ErrorId } from '../errors.js';
import type { AuthSourceLabels, Pkcs8AuthConfig, Pkcs8DerConfig } from './auth-config.js';

/** How each part of one auth config is named in messages. */
export interface Labels {
  readonly ca: (index: number) => string;
  readonly cert: string;
  readonly certEntry: (index: number) => string;
  readonly key: string;
}

/**
 * The labels for `config`: the files in `source` when known, else the config field names. Throws
 * `AureliaError(InvalidConfig)` when `config` is not an object with format `'pem'` or `'der'`.
 */
export function resolveLabels(
  config: Pkcs8AuthConfig,
  source: AuthSourceLabels | undefined,
): Labels {
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

/** `CA file '<path>'`. */
export function caFileLabel(path: string): string {
  return `CA file '${path}'`;
}

/** `certificate file '<path>'`. */
export function certFileLabel(path: string): string {
  return `certificate file '${path}'`;
}

/** An `InvalidConfig` error: `<label>: <problem>`, with `cause` when given. */
export function invalid(label: string, problem: string, cause?: unknown): AureliaError {
  return new AureliaError(
    ErrorId.InvalidConfig,
    `${label}: ${problem}`,
    cause === undefined ? undefined : { cause },
  );
}

/** One buffer or a list of them, as a list. */
export function listOf(value: Buffer | readonly Buffer[]): readonly Buffer[] {
  return Buffer.isBuffer(value) ? [value] : value;
}
