// The sample's development PKI: a CA and one certificate per service, made on first run.
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
// The same generator as `aurelia-mesh certs`. Outside this repository, make the files with
//   npx aurelia-mesh certs --out .sample-pki --node orders --node billing --node audit
import { generateCerts } from '../lib/cli/certs.js';

/** Certificates with less validity left than this are remade rather than reused. */
const MIN_REMAINING_MS = 24 * 60 * 60 * 1000;
/** Validity of the node certificates the sample makes. */
const NODE_CERT_DAYS = 30;

/** What `ensureSamplePki` found or did. */
export interface SamplePki {
  /** True when the CA and certificates were (re)made on this run. */
  readonly created: boolean;
  /** Why they were made (`undefined` when reused). */
  readonly reason: string | undefined;
  /** When the first of the node certificates expires. */
  readonly notAfter: Date;
}

/**
 * Makes sure `dir` holds a usable dev PKI for `services`: `ca.pem` and, per service,
 * `<service>.pem` issued by that CA and the matching `<service>-key.pem`, all valid for at least
 * another day. Reuses them when they are; otherwise removes those files and makes a new CA and
 * new certificates (private keys mode 0600). Rejects with `AureliaError(InvalidConfig)` when the
 * files cannot be written.
 */
export async function ensureSamplePki(
  dir: string,
  services: readonly string[],
): Promise<SamplePki> {
  const existing = await inspectPki(dir, services);
  if (existing.problem === undefined) {
    return { created: false, reason: undefined, notAfter: existing.notAfter };
  }
  const files = ['ca.pem', 'ca-key.pem', ...services.flatMap((s) => [`${s}.pem`, `${s}-key.pem`])];
  await Promise.all(files.map((file) => rm(path.join(dir, file), { force: true })));
  const made = await generateCerts({ out: dir, nodes: services, days: NODE_CERT_DAYS });
  const notAfter = Math.min(...made.nodes.map((node) => node.notAfter.getTime()));
  return { created: true, reason: existing.problem, notAfter: new Date(notAfter) };
}

type Inspection =
  | { readonly problem: string; readonly notAfter?: undefined }
  | { readonly problem: undefined; readonly notAfter: Date };

async function inspectPki(dir: string, services: readonly string[]): Promise<Inspection> {
  const ca = await readCertificate(path.join(dir, 'ca.pem'));
  if (typeof ca === 'string') return { problem: ca };
  let notAfter = Infinity;
  for (const service of services) {
    const cert = await readCertificate(path.join(dir, `${service}.pem`));
    if (typeof cert === 'string') return { problem: cert };
    if (!cert.verify(ca.publicKey)) return { problem: `${service}.pem was not issued by ca.pem` };
    const keyProblem = await checkKey(path.join(dir, `${service}-key.pem`), cert);
    if (keyProblem !== undefined) return { problem: keyProblem };
    notAfter = Math.min(notAfter, Date.parse(cert.validTo));
  }
  return { problem: undefined, notAfter: new Date(notAfter) };
}

/** The certificate in `file`, or why it cannot be used. */
async function readCertificate(file: string): Promise<X509Certificate | string> {
  const name = path.basename(file);
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(await readFile(file));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? `${name} is missing` : `${name} is unreadable`;
  }
  const now = Date.now();
  if (Date.parse(cert.validFrom) > now) return `${name} is not valid before ${cert.validFrom}`;
  if (Date.parse(cert.validTo) - now < MIN_REMAINING_MS) return `${name} expires ${cert.validTo}`;
  return cert;
}

/** Why the key in `file` cannot be used with `cert`, or `undefined` when it can. */
async function checkKey(file: string, cert: X509Certificate): Promise<string | undefined> {
  const name = path.basename(file);
  let pem: Buffer;
  try {
    pem = await readFile(file);
  } catch {
    return `${name} is missing`;
  }
  try {
    return cert.checkPrivateKey(createPrivateKey(pem)) ? undefined : `${name} does not match`;
  } catch {
    return `${name} is unreadable`;
  } finally {
    pem.fill(0);
  }
}
