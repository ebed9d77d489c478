// A throw-away certificate authority for tests: node certificates made in memory, in the format
// `aurelia-mesh certs` issues, handed to a domus as auth configs.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Pkcs8PemConfig } from '../engine/auth.js';
import {
  DEFAULT_TRUST_DOMAIN,
  createCertificateAuthority,
  issueNodeCertificate,
  type NodeCertificate,
} from '../cli/pki.js';

/**
 * Key algorithms a test PKI can use (as `aurelia-mesh certs --key-type`). Spelled out here so
 * the published types of this entry need no X.509 library's types.
 */
export type TestPkiKeyType = 'ec-p256' | 'ec-p384' | 'ed25519' | 'rsa';

/** Options of `createTestPki`. */
export interface TestPkiOptions {
  /** Trust domain of the node identities (default `'aurelia.local'`, as `aurelia-mesh certs`). */
  readonly trustDomain?: string;
  /** Key algorithm of the CA and the nodes (default `'ec-p256'`, the fastest to make). */
  readonly keyType?: TestPkiKeyType;
}

/** A node certificate of a test PKI. */
export interface TestPkiNode {
  /** The node name given to `node(name)`. */
  readonly name: string;
  /** The identity peers see, `spiffe://<trustDomain>/<name>`: what guards compare against. */
  readonly identity: string;
  /** The node's certificate (PEM). */
  readonly certPem: string;
  /** The node's private key (PKCS#8 PEM). */
  readonly keyPem: Buffer;
  /** The CA certificate every node of this PKI trusts (PEM). */
  readonly caPem: string;
  /**
   * A new auth config for one domus (`AureliaModule` option `auth`, or `domusBuilder`). Call it
   * once per domus: loading a config zero-fills its key buffer.
   */
  auth(): Pkcs8PemConfig;
}

/** A certificate authority made in memory, and the node certificates it issued. */
export interface TestPki {
  /** The CA certificate (PEM). */
  readonly caPem: string;
  /**
   * The node called `name` (made on the first call, then the same one). Rejects with
   * `AureliaError(InvalidConfig)` for a name that cannot form a URI (letters, digits, `.`, `_`,
   * `-`).
   */
  node(name: string): Promise<TestPkiNode>;
}

/**
 * Creates a test certificate authority in memory (nothing is written to disk). Its nodes have
 * the identity `spiffe://<trustDomain>/<name>` and authenticate to each other like the
 * certificates of `aurelia-mesh certs`; use it in tests only (the CA key lives in the process).
 * Rejects with `AureliaError(InvalidConfig)` for an unknown key type or trust domain.
 */
export async function createTestPki(options: TestPkiOptions = {}): Promise<TestPki> {
  const keyType = options.keyType ?? 'ec-p256';
  const trustDomain = options.trustDomain ?? DEFAULT_TRUST_DOMAIN;
  const ca = await createCertificateAuthority({ commonName: 'Aurelia Test CA', keyType });
  const nodes = new Map<string, Promise<TestPkiNode>>();
  return {
    caPem: ca.rootPem,
    node(name) {
      let node = nodes.get(name);
      if (!node) {
        node = issueNodeCertificate(ca, { name, trustDomain, keyType }).then(testNode);
        nodes.set(name, node);
      }
      return node;
    },
  };
}

function testNode(cert: NodeCertificate): TestPkiNode {
  return {
    name: cert.name,
    // Issued with a URI SAN, so the identity is always that URI.
    identity: cert.identity ?? cert.name,
    certPem: cert.chainPem,
    keyPem: cert.keyPem,
    caPem: cert.caPem,
    auth: () => ({
      format: 'pem',
      caPem: Buffer.from(cert.caPem),
      certPem: Buffer.from(cert.chainPem),
      pkcs8KeyPem: Buffer.from(cert.keyPem),
    }),
  };
}

/** A temporary directory for Unix socket addresses. */
export interface TestSocketDir {
  /** The directory. */
  readonly dir: string;
  /** The address `unix://<dir>/<name>.sock`, for `listen` and `routes`. */
  address(name: string): string;
  /** Removes the directory and everything in it. */
  cleanup(): Promise<void>;
}

/**
 * Makes a temporary directory for Unix socket addresses: a test mesh on Unix sockets needs no
 * free TCP port and is reachable only from this machine. Call `cleanup()` when done (after the
 * applications closed).
 */
export async function createTestSocketDir(): Promise<TestSocketDir> {
  const dir = await mkdtemp(path.join(tmpdir(), 'aurelia-test-'));
  return {
    dir,
    address: (name) => `unix://${path.join(dir, `${name}.sock`)}`,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}
