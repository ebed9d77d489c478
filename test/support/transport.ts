// Helpers for A0 transport tests: listeners that record what they see, raw and misbehaving clients.
import {
  X509Certificate,
  createPrivateKey,
  generateKeyPairSync,
  type JsonWebKey,
} from 'node:crypto';
import net from 'node:net';
import tls, { type SecureContext } from 'node:tls';

import { afterAll, afterEach } from '@jest/globals';

import { DomusAddr, type TransportKind } from '../../lib/engine/addr.js';
import { loadAuthMaterial, type AuthMaterial } from '../../lib/engine/auth.js';
import type { AureliaError } from '../../lib/engine/errors.js';
import type { AuthenticatedConnection } from '../../lib/engine/transport/connection.js';
import { dial, type DialOptions } from '../../lib/engine/transport/dial.js';
import { TlsListener, type TlsListenerLimits } from '../../lib/engine/transport/tls-listener.js';
import { socketDir } from './mesh.js';
import type { TestNode } from './pki.js';

/** Default wait for anything a transport test expects to happen. */
export const WAIT_MS = 5000;

/** Rejects with a message naming `what` unless `promise` settles within `ms`. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A queue of events that tests await one at a time, each wait bounded. */
export class EventQueue<T> {
  readonly #items: T[] = [];
  readonly #waiters: ((item: T) => void)[] = [];

  constructor(private readonly what: string) {}

  /** Delivers `item` to the oldest waiter, or keeps it for the next `next()`. */
  push(item: T): void {
    const waiter = this.#waiters.shift();
    if (waiter) waiter(item);
    else this.#items.push(item);
  }

  /** Items received and not yet taken. */
  get size(): number {
    return this.#items.length;
  }

  /** The next item; rejects when none arrives within `ms`. */
  next(ms = WAIT_MS): Promise<T> {
    const item = this.#items.shift();
    if (item !== undefined) return Promise.resolve(item);
    let deliver!: (item: T) => void;
    const arrived = new Promise<T>((resolve) => {
      deliver = resolve;
    });
    this.#waiters.push(deliver);
    return within(arrived, ms, this.what).catch((err: unknown) => {
      const index = this.#waiters.indexOf(deliver);
      if (index >= 0) this.#waiters.splice(index, 1);
      throw err;
    });
  }

  /** Takes the next `count` items, each within `ms`. */
  async take(count: number, ms = WAIT_MS): Promise<T[]> {
    const taken: T[] = [];
    for (let i = 0; i < count; i++) taken.push(await this.next(ms));
    return taken;
  }
}

/** Runs registered clean-up steps in reverse order; use one per test in `afterEach`. */
export class Cleanup {
  readonly #steps: (() => unknown)[] = [];

  /** Registers `step` and returns `value`, so creation and registration read as one line. */
  add<T>(value: T, step: (value: T) => unknown): T {
    this.#steps.push(() => step(value));
    return value;
  }

  /** Runs every step (newest first), even when some fail; rethrows the first failure. */
  async run(): Promise<void> {
    let first: unknown;
    while (this.#steps.length > 0) {
      const step = this.#steps.pop()!;
      try {
        await step();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
  }
}

/** Loads a test node's material (a fresh config each time, since loading consumes the key). */
export function material(node: TestNode, extraCaPem?: string): AuthMaterial {
  return loadAuthMaterial(node.auth(extraCaPem));
}

/** Generous limits with short deadlines, so a failing test fails fast. */
export function testLimits(patch: Partial<TlsListenerLimits> = {}): TlsListenerLimits {
  return {
    total: 16,
    perPeer: 8,
    tcpHandshakeTimeoutMs: 2000,
    socketHandshakeTimeoutMs: 2000,
    ...patch,
  };
}

/** A listener refusal as `onRefused` reported it. */
export interface Refusal {
  readonly err: AureliaError;
  readonly source: string;
}

/** A running listener that queues what it accepts and refuses. */
export interface RecordingListener {
  readonly listener: TlsListener;
  readonly addr: DomusAddr;
  /** Authenticated connections, in arrival order (destroyed by the clean-up). */
  readonly connections: EventQueue<AuthenticatedConnection>;
  readonly refusals: EventQueue<Refusal>;
  /** The limits the listener reads at each connection; assign new limits to change them live. */
  limits: TlsListenerLimits;
}

/**
 * Starts a listener on `addr` authenticated as `node` (or with the given context), recording
 * accepted connections and refusals; registers closing it (and destroying every accepted
 * socket) with `cleanup`.
 */
export async function startListener(
  cleanup: Cleanup,
  addr: DomusAddr,
  auth: TestNode | SecureContext,
  limits: TlsListenerLimits = testLimits(),
): Promise<RecordingListener> {
  const connections = new EventQueue<AuthenticatedConnection>('an authenticated connection');
  const refusals = new EventQueue<Refusal>('a refused connection');
  const accepted: AuthenticatedConnection[] = [];
  const secureContext = 'auth' in auth ? material(auth).secureContext : auth;
  const recording = { limits } as { limits: TlsListenerLimits };
  const listener = await TlsListener.listen({
    addr,
    secureContext,
    limits: () => recording.limits,
    onConnection: (conn) => {
      accepted.push(conn);
      conn.socket.on('error', () => undefined);
      connections.push(conn);
    },
    onRefused: (err, source) => refusals.push({ err, source }),
  });
  cleanup.add(listener, async (l) => {
    for (const conn of accepted) conn.socket.destroy();
    await l.close();
  });
  return Object.assign(recording, {
    listener,
    addr: listener.localAddr,
    connections,
    refusals,
  });
}

/** Dials with `node`'s material (or a context) and registers destroying the socket. */
export async function dialAs(
  cleanup: Cleanup,
  addr: DomusAddr,
  auth: TestNode | SecureContext,
  options: Partial<DialOptions> = {},
): Promise<AuthenticatedConnection> {
  const secureContext = 'auth' in auth ? material(auth).secureContext : auth;
  const conn = await dial(addr, { secureContext, timeoutMs: WAIT_MS, ...options });
  conn.socket.on('error', () => undefined);
  cleanup.add(conn.socket, (socket) => socket.destroy());
  return conn;
}

/** `127.0.0.1:0` for TCP, or a fresh socket path in `dir` for Unix sockets. */
export function listenAddr(
  transport: TransportKind,
  dir: { path(name: string): string },
  name = 'listener',
): DomusAddr {
  return transport === 'tcp' ? DomusAddr.tcp('127.0.0.1', 0) : DomusAddr.socket(dir.path(name));
}

/** Resolves when `socket` closes; rejects when it is still open after `ms`. */
export function closedWithin(socket: net.Socket, ms = WAIT_MS): Promise<void> {
  if (socket.closed) return Promise.resolve();
  return within(
    new Promise<void>((resolve) => socket.once('close', () => resolve())),
    ms,
    'the socket to close',
  );
}

/**
 * Opens a plain (non-TLS) connection to `addr` and resolves once connected; the socket is
 * destroyed by `cleanup`. `localAddress` picks the source IP for TCP (any 127.x.y.z on Linux).
 */
export function rawConnect(
  cleanup: Cleanup,
  addr: DomusAddr,
  localAddress?: string,
): Promise<net.Socket> {
  const socket = addr.isTcp()
    ? net.connect({ host: addr.host, port: addr.port, localAddress })
    : net.connect({ path: addr.path! });
  socket.on('error', () => undefined);
  cleanup.add(socket, (s) => s.destroy());
  return within(
    new Promise<net.Socket>((resolve) => socket.once('connect', () => resolve(socket))),
    WAIT_MS,
    `a raw connection to ${addr.key}`,
  );
}

/** Opens a raw connection, sends `bytes` and resolves once the listener has closed it. */
export async function sendRaw(cleanup: Cleanup, addr: DomusAddr, bytes: Buffer): Promise<void> {
  const socket = await rawConnect(cleanup, addr);
  socket.resume();
  socket.write(bytes);
  await closedWithin(socket);
}

/** The start of a plain HTTP/1.1 request, as a browser or curl would send to the port. */
export const HTTP_REQUEST = Buffer.from(
  'GET /health HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n',
);

/**
 * A TLS client limited to TLS 1.2 presenting `node`'s certificate; resolves with the error it
 * ended with (or undefined if it closed without one).
 */
export function tls12Client(
  cleanup: Cleanup,
  addr: DomusAddr,
  node: TestNode,
): Promise<Error | undefined> {
  const secureContext = tls.createSecureContext({
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.2',
    ca: node.caPem,
    cert: node.chainPem,
    key: node.keyPem,
  });
  const target = addr.isTcp() ? { host: addr.host, port: addr.port } : { path: addr.path! };
  const socket = tls.connect({ ...target, secureContext, checkServerIdentity: () => undefined });
  cleanup.add(socket, (s) => s.destroy());
  let failure: Error | undefined;
  socket.on('error', (err) => {
    failure = err;
  });
  return within(
    new Promise<Error | undefined>((resolve) => socket.once('close', () => resolve(failure))),
    WAIT_MS,
    'the TLS 1.2 client to close',
  );
}

/**
 * A TLS 1.3 context presenting `node`'s (valid) certificate with a private key that does not
 * belong to it: the key carries the certificate's public point, so OpenSSL's key/certificate
 * check passes, but its private scalar is another key's, so the handshake signature fails to
 * verify. This is what a peer that copied someone's certificate but not their key can do.
 * Works for EC certificates (the test PKI's default).
 */
export function forgedKeyContext(node: TestNode): SecureContext {
  const certificate = new X509Certificate(node.certPem);
  const publicJwk = certificate.publicKey.export({ format: 'jwk' });
  if (publicJwk.kty !== 'EC' || publicJwk.crv === undefined) {
    throw new Error(`forgedKeyContext needs an EC certificate, got ${publicJwk.kty}`);
  }
  const namedCurve = publicJwk.crv === 'P-384' ? 'P-384' : 'P-256';
  const other = generateKeyPairSync('ec', { namedCurve }).privateKey.export({ format: 'jwk' });
  const forgedJwk: JsonWebKey = { ...publicJwk, d: other.d };
  const key = createPrivateKey({ key: forgedJwk, format: 'jwk' }).export({
    format: 'pem',
    type: 'pkcs8',
  });
  return tls.createSecureContext({
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ca: node.caPem,
    cert: node.chainPem,
    key,
  });
}

/**
 * A TLS 1.3 context that trusts `ca` roots and presents no certificate, for a client that
 * skips client authentication.
 */
export function noCertificateContext(caPem: string): SecureContext {
  return tls.createSecureContext({ minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ca: caPem });
}

/**
 * A TLS 1.3 context built with node:tls straight from `node`'s PEM files, skipping
 * `loadAuthMaterial`'s checks: how a misconfigured peer presents a certificate that is expired,
 * not yet valid or otherwise refused at load time. `version` pins the TLS version (default 1.3),
 * for a peer configured to speak only TLS 1.2.
 */
export function unvalidatedContext(
  node: TestNode,
  version: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3',
): SecureContext {
  return tls.createSecureContext({
    minVersion: version,
    maxVersion: version,
    ca: node.caPem,
    cert: node.chainPem,
    key: node.keyPem,
  });
}

/** One `Cleanup` for a whole test file, run after each of its tests. */
export function cleanupAfterEach(): Cleanup {
  const cleanup = new Cleanup();
  afterEach(() => cleanup.run());
  return cleanup;
}

/** A socket directory for a whole test file, removed after its last test. */
export function socketDirForFile(): ReturnType<typeof socketDir> {
  const dir = socketDir();
  afterAll(() => dir.cleanup());
  return dir;
}
