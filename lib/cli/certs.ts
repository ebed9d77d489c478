// The `certs` command: a development CA and per-node certificates and keys written to a directory.
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { InvalidArgumentError, Option, type Command } from 'commander';

import { AureliaError, ErrorId } from '../engine/errors.js';
import type { CliIo } from './main.js';
import {
  DEFAULT_TRUST_DOMAIN,
  PKI_KEY_TYPES,
  createCertificateAuthority,
  isValidNodeName,
  isValidTrustDomain,
  issueNodeCertificate,
  loadCertificateAuthority,
  type CertificateAuthority,
  type NodeCertificate,
  type PkiKeyType,
} from './pki.js';

/** DNS SANs of node certificates when `dnsNames` is not given. */
export const DEFAULT_CERT_DNS_NAMES: readonly string[] = ['localhost'];
/** IP address SANs of node certificates when `ipAddresses` is not given. */
export const DEFAULT_CERT_IP_ADDRESSES: readonly string[] = ['127.0.0.1', '::1'];
/** Validity of node certificates, in days, when `days` is not given. */
export const DEFAULT_CERT_DAYS = 365;
/** Longest validity `days` accepts. */
export const MAX_CERT_DAYS = 3650;
/** Common name of a CA the `certs` command creates. */
export const DEV_CA_COMMON_NAME = 'Aurelia Development CA';

const CA_CERT_FILE = 'ca.pem';
const CA_KEY_FILE = 'ca-key.pem';
const CERT_MODE = 0o644;
const KEY_MODE = 0o600;
const DAY_MS = 24 * 60 * 60 * 1000;
const CA_VALIDITY_DAYS = 3650;

/** What `generateCerts` should produce. */
export interface CertsOptions {
  /** Directory to write into (created if missing). */
  readonly out: string;
  /** Node names: each gets `<name>.pem` and `<name>-key.pem`. None: only the CA is ensured. */
  readonly nodes?: readonly string[];
  /** DNS SANs of every node certificate (default `localhost`). */
  readonly dnsNames?: readonly string[];
  /** IP address SANs of every node certificate (default `127.0.0.1` and `::1`). */
  readonly ipAddresses?: readonly string[];
  /** Trust domain of the node URIs `spiffe://<trustDomain>/<name>` (default `aurelia.local`). */
  readonly trustDomain?: string;
  /** Key algorithm of new keys (default `ec-p256`); a reused CA keeps its own. */
  readonly keyType?: PkiKeyType;
  /** Validity of node certificates in days, 1 to 3650 (default 365). */
  readonly days?: number;
  /** Replace existing node certificates and keys (and an incomplete CA) instead of refusing. */
  readonly force?: boolean;
}

/** A file `generateCerts` wrote. */
export interface WrittenFile {
  readonly path: string;
  /** Permission bits it was written with (0600 for keys, 0644 for certificates). */
  readonly mode: number;
}

/** What `generateCerts` did, for printing and for tests. */
export interface CertsResult {
  /** The output directory, absolute. */
  readonly dir: string;
  readonly ca: {
    readonly certPath: string;
    readonly keyPath: string;
    /** False when an existing CA in the directory was reused. */
    readonly created: boolean;
    readonly commonName: string;
    readonly notAfter: Date;
  };
  readonly nodes: readonly {
    readonly name: string;
    readonly identity: string;
    readonly certPath: string;
    readonly keyPath: string;
    readonly notAfter: Date;
  }[];
  /** Every file written, in order. */
  readonly written: readonly WrittenFile[];
}

interface Plan {
  readonly dir: string;
  readonly nodes: readonly string[];
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly trustDomain: string;
  readonly keyType: PkiKeyType;
  readonly days: number;
  readonly force: boolean;
}

/**
 * Ensures a development CA in `options.out` (`ca.pem`, `ca-key.pem`: reused when both exist,
 * created when neither does) and issues one certificate and PKCS#8 key per node
 * (`<name>.pem`, `<name>-key.pem`) with the URI SAN `spiffe://<trustDomain>/<name>` and the
 * DNS / IP SANs. Keys are written with mode 0600. Everything is generated before anything is
 * written, and nothing is written when a check fails.
 * Rejects with `AureliaError(InvalidConfig)` naming the problem when an option is invalid (node
 * names must be safe file names: letters, digits, `.`, `_`, `-`, not `ca`), when a target file
 * exists and `force` is not set, when only one of the CA files exists (unless `force`), when the
 * existing CA cannot be loaded, has expired or would expire before the node certificates, or when
 * a file cannot be written.
 */
export async function generateCerts(options: CertsOptions): Promise<CertsResult> {
  const plan = checkOptions(options);
  const caCertPath = path.join(plan.dir, CA_CERT_FILE);
  const caKeyPath = path.join(plan.dir, CA_KEY_FILE);
  const nodeFiles = plan.nodes.map((name) => ({
    name,
    certPath: path.join(plan.dir, `${name}.pem`),
    keyPath: path.join(plan.dir, `${name}-key.pem`),
  }));

  await checkDirectory(plan.dir);
  const [caCertExists, caKeyExists] = await Promise.all([exists(caCertPath), exists(caKeyPath)]);
  const reuseCa = caCertExists && caKeyExists;
  if (caCertExists !== caKeyExists && !plan.force) {
    const [present, missing] = caCertExists ? [caCertPath, caKeyPath] : [caKeyPath, caCertPath];
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `found ${present} but not ${missing}: restore it, or pass --force to replace the CA with a new one`,
    );
  }
  const existing: string[] = [];
  for (const file of nodeFiles) {
    for (const target of [file.certPath, file.keyPath]) {
      if (await exists(target)) existing.push(target);
    }
  }
  if (existing.length > 0 && !plan.force) {
    const names = existing.map((file) => path.basename(file)).join(', ');
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `refusing to overwrite ${names} in ${plan.dir} (pass --force to replace them)`,
    );
  }

  const now = Date.now();
  const notAfter = new Date(now + plan.days * DAY_MS);
  const ca = reuseCa
    ? await reuseCertificateAuthority(caCertPath, caKeyPath, now, notAfter)
    : await createCertificateAuthority({
        commonName: DEV_CA_COMMON_NAME,
        keyType: plan.keyType,
        notAfter: new Date(now + Math.max(CA_VALIDITY_DAYS, plan.days + 1) * DAY_MS),
      });
  const issued: NodeCertificate[] = [];
  const written: WrittenFile[] = [];
  const write = async (target: string, data: string | Buffer, mode: number) => {
    await writeOutputFile(target, data, mode, plan.force);
    written.push({ path: target, mode });
  };
  try {
    for (const file of nodeFiles) {
      issued.push(
        await issueNodeCertificate(ca, {
          name: file.name,
          trustDomain: plan.trustDomain,
          dnsNames: plan.dnsNames,
          ipAddresses: plan.ipAddresses,
          keyType: plan.keyType,
          notAfter,
        }),
      );
    }
    await createDirectory(plan.dir);
    if (!reuseCa) {
      await write(caKeyPath, ca.keyPem, KEY_MODE);
      await write(caCertPath, ca.certPem, CERT_MODE);
    }
    for (const [index, file] of nodeFiles.entries()) {
      const node = issued[index]!;
      await write(file.keyPath, node.keyPem, KEY_MODE);
      await write(file.certPath, node.certPem, CERT_MODE);
    }
  } finally {
    // The keys live on only in the files (CryptoKey objects are left to the garbage collector).
    ca.keyPem.fill(0);
    for (const node of issued) node.keyPem.fill(0);
  }

  return {
    dir: plan.dir,
    ca: {
      certPath: caCertPath,
      keyPath: caKeyPath,
      created: !reuseCa,
      commonName: ca.commonName,
      notAfter: ca.notAfter,
    },
    nodes: nodeFiles.map((file, index) => ({
      ...file,
      identity: issued[index]!.identity!,
      notAfter: issued[index]!.notAfter,
    })),
    written,
  };
}

function checkOptions(options: CertsOptions): Plan {
  if (typeof options.out !== 'string' || options.out.length === 0) {
    throw new AureliaError(ErrorId.InvalidConfig, 'the output directory (--out) must be given');
  }
  const nodes = [...(options.nodes ?? [])];
  const seen = new Map<string, string>();
  for (const name of nodes) {
    if (!isValidNodeName(name)) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `node name '${name}' must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
      );
    }
    // `ca` would collide with ca.pem / ca-key.pem; compared case-insensitively for macOS.
    if (name.toLowerCase() === 'ca' || name.toLowerCase() === 'ca-key') {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `node name '${name}' is reserved: its files would replace the CA's ${CA_CERT_FILE} / ${CA_KEY_FILE}`,
      );
    }
    for (const file of [`${name}.pem`, `${name}-key.pem`]) {
      const key = file.toLowerCase();
      const other = seen.get(key);
      if (other !== undefined) {
        throw new AureliaError(
          ErrorId.InvalidConfig,
          other === name
            ? `node '${name}' is given twice`
            : `nodes '${other}' and '${name}' would both write ${file}`,
        );
      }
      seen.set(key, name);
    }
  }
  const trustDomain = options.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  if (!isValidTrustDomain(trustDomain)) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `trust domain '${trustDomain}' must be lowercase letters, digits, '.', '_' or '-'`,
    );
  }
  const keyType = options.keyType ?? 'ec-p256';
  if (!PKI_KEY_TYPES.includes(keyType)) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `key type '${String(keyType)}' is not one of ${PKI_KEY_TYPES.join(', ')}`,
    );
  }
  const days = options.days ?? DEFAULT_CERT_DAYS;
  if (!Number.isInteger(days) || days < 1 || days > MAX_CERT_DAYS) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `days ${days} is outside 1..${MAX_CERT_DAYS} (a whole number of days)`,
    );
  }
  return {
    dir: path.resolve(options.out),
    nodes,
    dnsNames: [...(options.dnsNames ?? DEFAULT_CERT_DNS_NAMES)],
    ipAddresses: [...(options.ipAddresses ?? DEFAULT_CERT_IP_ADDRESSES)],
    trustDomain,
    keyType,
    days,
    force: options.force === true,
  };
}

async function reuseCertificateAuthority(
  certPath: string,
  keyPath: string,
  now: number,
  nodesNotAfter: Date,
): Promise<CertificateAuthority> {
  const [certPem, keyPem] = await Promise.all([readInput(certPath), readInput(keyPath)]);
  const restart = `delete ${certPath} and ${keyPath} to create a new CA`;
  let ca: CertificateAuthority;
  try {
    ca = await loadCertificateAuthority(certPem, keyPem);
  } catch (err) {
    if (!AureliaError.is(err)) throw err;
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `cannot reuse the existing CA: ${err.message}; ${restart}`,
      { cause: err },
    );
  } finally {
    keyPem.fill(0);
  }
  if (ca.notAfter.getTime() <= now || ca.notBefore.getTime() > now) {
    ca.keyPem.fill(0);
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `the existing CA ${certPath} is valid only from ${ca.notBefore.toISOString()} to ${ca.notAfter.toISOString()}; ${restart}`,
    );
  }
  if (ca.notAfter.getTime() < nodesNotAfter.getTime()) {
    ca.keyPem.fill(0);
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `the existing CA ${certPath} expires at ${ca.notAfter.toISOString()}, before certificates valid until ${nodesNotAfter.toISOString()}; use fewer --days or ${restart}`,
    );
  }
  return ca;
}

// Only checked up front: the directory is created once everything was generated.
async function checkDirectory(dir: string): Promise<void> {
  let stats;
  try {
    stats = await stat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw fileError(`cannot inspect the output directory ${dir}`, err);
  }
  if (!stats.isDirectory()) {
    throw new AureliaError(ErrorId.InvalidConfig, `${dir} exists and is not a directory`);
  }
}

async function createDirectory(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw fileError(`cannot create the output directory ${dir}`, err);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await lstat(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw fileError(`cannot inspect ${file}`, err);
  }
}

async function readInput(file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw fileError(`cannot read ${file}`, err);
  }
}

/**
 * Creates `target` with `mode`. Without `overwrite` the file must not exist (`wx`); with it, a
 * temporary file in the same directory is renamed over the target, so a replaced key gets the
 * new mode too and never exists half-written.
 */
async function writeOutputFile(
  target: string,
  data: string | Buffer,
  mode: number,
  overwrite: boolean,
): Promise<void> {
  if (!overwrite) {
    try {
      await writeFile(target, data, { mode, flag: 'wx' });
    } catch (err) {
      throw fileError(`cannot write ${target}`, err);
    }
    return;
  }
  const temp = path.join(
    path.dirname(target),
    `.${path.basename(target)}.${randomBytes(6).toString('hex')}.tmp`,
  );
  try {
    await writeFile(temp, data, { mode, flag: 'wx' });
    await rename(temp, target);
  } catch (err) {
    await rm(temp, { force: true });
    throw fileError(`cannot write ${target}`, err);
  }
}

function fileError(what: string, err: unknown): AureliaError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason = code === 'EEXIST' ? 'it already exists (pass --force to replace it)' : code;
  return new AureliaError(ErrorId.InvalidConfig, `${what}: ${reason ?? String(err)}`, {
    cause: err,
  });
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function parseDays(value: string): number {
  const days = Number(value);
  if (!/^\d+$/.test(value) || days < 1 || days > MAX_CERT_DAYS) {
    throw new InvalidArgumentError(`expected a whole number of days from 1 to ${MAX_CERT_DAYS}.`);
  }
  return days;
}

interface CertsCommandOptions {
  readonly out: string;
  readonly node?: string[];
  readonly dns?: string[];
  readonly ip?: string[];
  readonly trustDomain: string;
  readonly keyType: PkiKeyType;
  readonly days: number;
  readonly force?: boolean;
}

/**
 * Adds the `certs` subcommand to `program`; its action runs `generateCerts` and prints what was
 * written to `io`. Failures propagate as `AureliaError` for the caller to report.
 */
export function registerCertsCommand(program: Command, io: CliIo): Command {
  return program
    .command('certs')
    .summary('create a development CA and node certificates')
    .description(
      'Create (or reuse) a development CA in <dir> (ca.pem, ca-key.pem) and, for each --node, ' +
        'a certificate <name>.pem and PKCS#8 key <name>-key.pem (mode 0600) whose identity is ' +
        'the URI SAN spiffe://<trust-domain>/<name>. Existing node files are never overwritten ' +
        'without --force. For development and tests only: keep production CAs elsewhere.',
    )
    .requiredOption('-o, --out <dir>', 'directory to write into (created if missing)')
    .option('-n, --node <name>', 'node to issue a certificate for (repeatable)', collect)
    .option(
      '--dns <name>',
      `DNS SAN of every node certificate (repeatable; default: ${DEFAULT_CERT_DNS_NAMES.join(', ')})`,
      collect,
    )
    .option(
      '--ip <addr>',
      `IP address SAN of every node certificate (repeatable; default: ${DEFAULT_CERT_IP_ADDRESSES.join(', ')})`,
      collect,
    )
    .option('--trust-domain <domain>', 'trust domain of the node URIs', DEFAULT_TRUST_DOMAIN)
    .addOption(
      new Option('--key-type <type>', 'key algorithm of new keys')
        .choices(PKI_KEY_TYPES)
        .default('ec-p256'),
    )
    .option(
      '--days <n>',
      `validity of node certificates in days (1-${MAX_CERT_DAYS})`,
      parseDays,
      DEFAULT_CERT_DAYS,
    )
    .option('-f, --force', 'replace existing node certificates and keys')
    .addHelpText(
      'after',
      [
        '',
        'Examples:',
        '  $ aurelia-mesh certs --out ./dev-pki --node alpha --node beta',
        '  $ aurelia-mesh certs --out ./dev-pki --node gamma --dns gamma.internal --ip 10.0.0.7',
        '  $ aurelia-mesh certs --out ./dev-pki --node alpha --force --key-type ed25519',
      ].join('\n'),
    )
    .action(async (options: CertsCommandOptions) => {
      const result = await generateCerts({
        out: options.out,
        nodes: options.node,
        dnsNames: options.dns,
        ipAddresses: options.ip,
        trustDomain: options.trustDomain,
        keyType: options.keyType,
        days: options.days,
        force: options.force,
      });
      printResult(result, io);
    });
}

function printResult(result: CertsResult, io: CliIo): void {
  const shown = (file: string) => path.relative(process.cwd(), file) || '.';
  const until = (date: Date) => date.toISOString().slice(0, 10);
  const { ca } = result;
  io.stdout(
    ca.created
      ? `created CA ${shown(ca.certPath)} and key ${shown(ca.keyPath)} (${ca.commonName}, valid until ${until(ca.notAfter)})\n`
      : `reused CA ${shown(ca.certPath)} (${ca.commonName}, valid until ${until(ca.notAfter)})\n`,
  );
  for (const node of result.nodes) {
    io.stdout(
      `wrote ${shown(node.certPath)} and key ${shown(node.keyPath)} for ${node.identity} (valid until ${until(node.notAfter)})\n`,
    );
  }
  if (result.nodes.length === 0) {
    io.stdout('no --node given: only the CA was ensured\n');
  }
}
