// Certificates in PEM and DER files, and PEM encoding into wipeable buffers.
import { X509Certificate } from 'node:crypto';

import { type AureliaError } from '../errors.js';
import { invalid } from './labels.js';

// PEM blocks of public material (certificates) may be handled as strings.
const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([^-]*)-----END \1-----/g;

/**
 * The DER bytes of every CERTIFICATE block of a PEM buffer. Throws `InvalidConfig` when the
 * buffer holds a private key or is not PEM at all.
 */
export function certificateBlocks(pem: Buffer, label: string): Buffer[] {
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

/**
 * Certificates of a file that may be PEM (one or more blocks) or DER (exactly one); each must
 * parse. Throws `InvalidConfig` naming `label` otherwise, or when the file holds a private key
 * (then zero-filled).
 */
export function certificatesInFile(content: Buffer, label: string): Buffer[] {
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

/** The PEM text of one DER certificate. */
export function certificatePem(der: Buffer): string {
  return new X509Certificate(der).toString();
}

/** Parses one certificate; throws `InvalidConfig` naming `label` and `what` when it does not. */
export function parseCertificate(der: Buffer, label: string, what: string): X509Certificate {
  try {
    return new X509Certificate(der);
  } catch (err) {
    throw invalid(label, `${what} is not a valid X.509 certificate`, err);
  }
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
