// Run-time material every workload shares: an in-memory CA, node certificates and temp socket paths.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createSecureContext, type SecureContext, type TlsOptions } from 'node:tls';

import type { Pkcs8PemConfig } from '../../engine/auth.js';
import {
  createCertificateAuthority,
  issueNodeCertificate,
  type CertificateAuthority,
  type NodeCertificate,
} from '../pki.js';

/** A node certificate able to produce what each system under test loads. */
export interface BenchNode {
  readonly certificate: NodeCertificate;
  /** A fresh domus auth config (loading zero-fills the key, so each domus needs its own). */
  auth(): Pkcs8PemConfig;
  /** A TLS context presenting this node and trusting the bench CA (for dialing). */
  readonly secureContext: SecureContext;
  /** The same material as `tls.createServer` options (a server cannot take a SecureContext). */
  readonly serverOptions: TlsOptions;
  /** PEM material for libraries that take it directly (gRPC, Nest `tlsOptions`). */
  readonly pem: { readonly ca: string; readonly cert: string; readonly key: Buffer };
}

/**
 * The certificates and scratch directory of one benchmark run: a fresh EC P-256 CA made in
 * memory, node certificates on demand, and a temporary directory for Unix socket paths. Nothing
 * is read from or written to the user's certificate files.
 */
export class BenchFixture {
  private readonly nodes = new Map<string, Promise<BenchNode>>();
  private socketCount = 0;

  private constructor(
    private readonly ca: CertificateAuthority,
    /** The temporary directory holding this run's Unix sockets. */
    readonly dir: string,
  ) {}

  /** Creates the CA and the scratch directory; rejects if either cannot be made. */
  static async create(): Promise<BenchFixture> {
    const ca = await createCertificateAuthority({ commonName: 'Aurelia Bench CA' });
    const dir = await mkdtemp(path.join(tmpdir(), 'aur-bench-'));
    return new BenchFixture(ca, dir);
  }

  /** The node called `name` (issued once, then cached), identity `spiffe://aurelia.local/<name>`. */
  node(name: string): Promise<BenchNode> {
    let node = this.nodes.get(name);
    if (!node) {
      node = this.issue(name);
      this.nodes.set(name, node);
    }
    return node;
  }

  /** A fresh Unix socket path inside the scratch directory, named after `label`. */
  socketPath(label: string): string {
    this.socketCount++;
    return path.join(this.dir, `${label}-${this.socketCount}.sock`);
  }

  /** Removes the scratch directory and everything in it. */
  async cleanup(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  private async issue(name: string): Promise<BenchNode> {
    const certificate = await issueNodeCertificate(this.ca, {
      name,
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
    });
    const pem = { ca: certificate.caPem, cert: certificate.chainPem, key: certificate.keyPem };
    return {
      certificate,
      pem,
      serverOptions: { ca: pem.ca, cert: pem.cert, key: Buffer.from(pem.key) },
      secureContext: createSecureContext({
        ca: pem.ca,
        cert: pem.cert,
        key: Buffer.from(pem.key),
        minVersion: 'TLSv1.3',
      }),
      auth: () => ({
        format: 'pem',
        caPem: Buffer.from(certificate.caPem),
        certPem: Buffer.from(certificate.chainPem),
        pkcs8KeyPem: Buffer.from(certificate.keyPem),
      }),
    };
  }
}
