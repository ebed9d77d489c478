// Certificates made at test time: a CA per test file, node certificates on demand.
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { TLSSocket, connect, type ConnectionOptions, type SecureContext } from 'node:tls';

import {
  createCertificateAuthority,
  issueIntermediateCertificateAuthority,
  issueNodeCertificate,
  type CertificateAuthority,
  type CertificateAuthorityOptions,
  type NodeCertificate,
  type NodeCertificateOptions,
} from '../../lib/cli/pki.js';
import type { Pkcs8DerConfig, Pkcs8PemConfig } from '../../lib/engine/auth.js';
import { certificateIdentity } from '../../lib/engine/transport/identity.js';

const DAY_MS = 24 * 60 * 60 * 1000;

/** A node certificate with its CA, able to produce fresh auth configs. */
export interface TestNode extends NodeCertificate {
  /**
   * A PEM auth config with freshly copied buffers: loading zero-fills the key, so every domus
   * (and every reload) needs its own.
   */
  auth(extraCaPem?: string): Pkcs8PemConfig;
  /** The same material as a DER auth config (fresh buffers; CA list, then chain leaf first). */
  derAuth(extraCaPem?: string): Pkcs8DerConfig;
}

/** A test certificate authority and the nodes it issued. */
export interface TestPki {
  readonly ca: CertificateAuthority;
  /** The node called `name` with default options (made once, then cached). */
  node(name: string): Promise<TestNode>;
  /** A node with custom certificate options (never cached). */
  issue(name: string, options?: Omit<NodeCertificateOptions, 'name'>): Promise<TestNode>;
  /** A node whose certificate expired yesterday. */
  expired(name: string): Promise<TestNode>;
  /** A node whose certificate becomes valid tomorrow. */
  notYetValid(name: string): Promise<TestNode>;
  /** A node with only a DNS SAN (`<name>.aurelia.test` unless given): its identity is that name. */
  dnsOnly(name: string, dnsName?: string): Promise<TestNode>;
  /** A node with no SAN at all: its identity is its subject CN, `name`. */
  cnOnly(name: string): Promise<TestNode>;
  /**
   * A node signed by an intermediate CA below this root (one intermediate per `TestPki`): its
   * `chainPem` is leaf + intermediate, its `caPem` this root.
   */
  viaIntermediate(name: string): Promise<TestNode>;
  /** A node whose key belongs to a different certificate (the certificate is `name`'s). */
  mismatchedKey(name: string): Promise<TestNode>;
  /** A node signed by an unrelated CA this PKI does not trust (its `caPem` is that CA). */
  foreign(name: string): Promise<TestNode>;
}

/** Creates a fresh CA (EC P-256 unless `options` say otherwise) and a node factory over it. */
export async function makeTestPki(
  options: Partial<CertificateAuthorityOptions> = {},
): Promise<TestPki> {
  const ca = await createCertificateAuthority({ commonName: 'Aurelia Test CA', ...options });
  const cache = new Map<string, Promise<TestNode>>();
  let intermediate: Promise<CertificateAuthority> | undefined;
  let foreignCa: Promise<CertificateAuthority> | undefined;
  const issueBy = async (
    issuer: CertificateAuthority,
    name: string,
    nodeOptions: Omit<NodeCertificateOptions, 'name'> = {},
  ): Promise<TestNode> => testNode(await issueNodeCertificate(issuer, { name, ...nodeOptions }));
  const issue = (name: string, nodeOptions: Omit<NodeCertificateOptions, 'name'> = {}) =>
    issueBy(ca, name, nodeOptions);
  return {
    ca,
    node(name) {
      let node = cache.get(name);
      if (!node) {
        node = issue(name);
        cache.set(name, node);
      }
      return node;
    },
    issue,
    expired: (name) =>
      issue(name, {
        notBefore: new Date(Date.now() - 30 * DAY_MS),
        notAfter: new Date(Date.now() - DAY_MS),
      }),
    notYetValid: (name) =>
      issue(name, {
        notBefore: new Date(Date.now() + DAY_MS),
        notAfter: new Date(Date.now() + 30 * DAY_MS),
      }),
    dnsOnly: (name, dnsName = `${name}.aurelia.test`) =>
      issue(name, { uri: false, dnsNames: [dnsName] }),
    cnOnly: (name) => issue(name, { uri: false }),
    async viaIntermediate(name) {
      intermediate ??= issueIntermediateCertificateAuthority(ca, {
        commonName: 'Aurelia Test Intermediate CA',
      });
      return issueBy(await intermediate, name);
    },
    async mismatchedKey(name) {
      const [node, other] = await Promise.all([issue(name), issue(`${name}-other`)]);
      return testNode({ ...node, keyPem: other.keyPem });
    },
    async foreign(name) {
      foreignCa ??= createCertificateAuthority({ commonName: 'Aurelia Foreign CA' });
      return issueBy(await foreignCa, name);
    },
  };
}

let shared: Promise<TestPki> | undefined;

/**
 * One EC P-256 test PKI per test file (Jest loads modules afresh for every file), for tests that
 * only need some valid certificates and not a CA of their own.
 */
export function sharedTestPki(): Promise<TestPki> {
  shared ??= makeTestPki();
  return shared;
}

/** DER bytes of every certificate in a PEM text, in order. */
export function pemCertificatesToDer(pem: string): Buffer[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g)].map(
    (match) => new X509Certificate(match[0]).raw,
  );
}

/** The PKCS#8 DER bytes inside a PEM private key. */
export function pemKeyToDer(keyPem: Buffer): Buffer {
  const body = keyPem
    .toString('latin1')
    .replace(/-----(BEGIN|END) PRIVATE KEY-----/g, '')
    .replace(/\s+/g, '');
  return Buffer.from(body, 'base64');
}

function testNode(cert: NodeCertificate): TestNode {
  return {
    ...cert,
    auth: (extraCaPem = '') => ({
      format: 'pem',
      caPem: Buffer.from(cert.caPem + extraCaPem),
      certPem: Buffer.from(cert.chainPem),
      pkcs8KeyPem: Buffer.from(cert.keyPem),
    }),
    derAuth: (extraCaPem = '') => ({
      format: 'der',
      caDer: pemCertificatesToDer(cert.caPem + extraCaPem),
      certDer: pemCertificatesToDer(cert.chainPem),
      pkcs8KeyDer: pemKeyToDer(cert.keyPem),
    }),
  };
}

/** Paths of a node's material written to a temporary directory. */
export interface TestPkiFiles {
  readonly dir: string;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
  /** Removes the directory and everything in it. */
  cleanup(): Promise<void>;
}

/**
 * Writes `node`'s CA, certificate chain and key to a new temporary directory as `ca.<ext>`,
 * `cert.<ext>` and `key.<ext>` (PEM, or DER: the CA and chain files then hold one certificate
 * each, the leaf and the root). Call `cleanup()` when done.
 */
export async function writeTestNodeFiles(
  node: NodeCertificate,
  format: 'pem' | 'der' = 'pem',
): Promise<TestPkiFiles> {
  const dir = await mkdtemp(path.join(tmpdir(), 'aurelia-pki-'));
  const files = {
    dir,
    ca: path.join(dir, `ca.${format}`),
    cert: path.join(dir, `cert.${format}`),
    key: path.join(dir, `key.${format}`),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
  if (format === 'pem') {
    await writeFile(files.ca, node.caPem);
    await writeFile(files.cert, node.chainPem);
    await writeFile(files.key, node.keyPem, { mode: 0o600 });
  } else {
    await writeFile(files.ca, pemCertificatesToDer(node.caPem)[0]!);
    await writeFile(files.cert, pemCertificatesToDer(node.certPem)[0]!);
    await writeFile(files.key, pemKeyToDer(node.keyPem), { mode: 0o600 });
  }
  return files;
}

/** What each side of `mutualTlsHandshake` saw. */
export interface HandshakeOutcome {
  /** Identity of the client certificate, as the accepting side saw it. */
  readonly serverSaw: string | undefined;
  /** Identity of the server certificate, as the dialing side saw it. */
  readonly clientSaw: string | undefined;
  /**
   * OpenSSL's verdict on the client certificate at the accepting side: `undefined` when it chains
   * to the CA roots, else the error code (e.g. `'SELF_SIGNED_CERT_IN_CHAIN'`). A bare accepting
   * `TLSSocket` completes the handshake either way and leaves `authorized` false: only
   * `tls.Server` applies `rejectUnauthorized` for accepted sockets, so a listener that wraps
   * sockets itself must check this verdict.
   */
  readonly serverVerifyError: string | undefined;
  /** Whether the dialing side verified the server certificate against its CA roots. */
  readonly clientAuthorized: boolean;
  /** Negotiated protocol, e.g. `'TLSv1.3'`. */
  readonly protocol: string | null;
}

/**
 * Runs one TLS handshake over loopback: a `net` server wraps each accepted socket in
 * `new tls.TLSSocket(socket, { isServer: true, secureContext, requestCert: true,
 * rejectUnauthorized: true })`, the client dials with `tls.connect({ secureContext })`.
 * Resolves when both sides finished the handshake, rejects with the first side's error (or after
 * `timeoutMs`). Closes every socket and the server before settling.
 */
export async function mutualTlsHandshake(
  server: { readonly secureContext: SecureContext },
  client: { readonly secureContext: SecureContext },
  options: { readonly client?: Partial<ConnectionOptions>; readonly timeoutMs?: number } = {},
): Promise<HandshakeOutcome> {
  const sockets: Socket[] = [];
  const listener = createServer();
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = listener.address() as AddressInfo;
    const accepted = new Promise<TLSSocket>((resolve, reject) => {
      listener.once('connection', (raw) => {
        // Only the TLSSocket is destroyed later: destroying the plain socket under a live
        // TLSSocket crashes Node 20 (SSL_read on freed state) when bytes are still in flight.
        const socket = new TLSSocket(raw, {
          isServer: true,
          secureContext: server.secureContext,
          requestCert: true,
          rejectUnauthorized: true,
        });
        sockets.push(socket);
        socket.once('secure', () => resolve(socket));
        socket.once('error', reject);
        socket.once('close', () => reject(new Error('accepted socket closed during handshake')));
      });
    });
    const dialed = new Promise<TLSSocket>((resolve, reject) => {
      const socket = connect({
        host: '127.0.0.1',
        port,
        secureContext: client.secureContext,
        // Identities are certificate identities, not host names: checked by the caller.
        checkServerIdentity: () => undefined,
        ...options.client,
      });
      sockets.push(socket);
      socket.once('secureConnect', () => resolve(socket));
      socket.once('error', reject);
      socket.once('close', () => reject(new Error('dialed socket closed during handshake')));
    });
    const timeoutMs = options.timeoutMs ?? 5000;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`handshake took over ${timeoutMs} ms`)), timeoutMs);
    });
    const [serverSide, clientSide] = await Promise.race([Promise.all([accepted, dialed]), timeout]);
    return {
      serverSaw: certificateIdentity(serverSide.getPeerCertificate()),
      clientSaw: certificateIdentity(clientSide.getPeerCertificate()),
      serverVerifyError: verifyErrorOf(serverSide),
      clientAuthorized: clientSide.authorized,
      protocol: clientSide.getProtocol(),
    };
  } finally {
    clearTimeout(timer);
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => listener.close(() => resolve()));
  }
}

// Node keeps the verification result of an accepted socket on its handle (what tls.Server reads).
function verifyErrorOf(socket: TLSSocket): string | undefined {
  const handle = (socket as unknown as { _handle?: { verifyError(): { code?: string } | null } })
    ._handle;
  const error = handle?.verifyError();
  return error ? (error.code ?? 'UNKNOWN') : undefined;
}
