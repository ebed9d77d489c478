// Raw node:tls and Unix socket plumbing for the ceiling: servers, echo clients and bulk copies.
import { once } from 'node:events';
import net, { type AddressInfo, type Server, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import tls, { type SecureContext, type TlsOptions } from 'node:tls';

import { AureliaError, ErrorId } from '../../engine/errors.js';
import type { BenchTransport } from './report.js';

/** Where a raw server listens. */
export type RawEndpoint = { readonly port: number } | { readonly path: string };

/** A listening raw server; `close` destroys every accepted socket and stops listening. */
export interface RawServer {
  readonly endpoint: RawEndpoint;
  close(): Promise<void>;
}

/**
 * Starts a server on loopback TCP (`socketPath` undefined) or on a Unix socket. With `tls` (the
 * server's `ca`, `cert` and `key`) it requires and verifies a client certificate (mutual TLS 1.3); without, it is a plain socket.
 * Each authenticated connection is handed to `onSocket`. Rejects when the address cannot be bound.
 */
export async function startRawServer(
  onSocket: (socket: Socket) => void,
  options: { readonly tls?: TlsOptions; readonly socketPath?: string },
): Promise<RawServer> {
  const sockets = new Set<Socket>();
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    onSocket(socket);
  };
  const server: Server = options.tls
    ? tls.createServer(
        {
          ...options.tls,
          requestCert: true,
          rejectUnauthorized: true,
          minVersion: 'TLSv1.3',
          noDelay: true,
        },
        track,
      )
    : net.createServer({ noDelay: true }, track);
  if (options.socketPath !== undefined) server.listen(options.socketPath);
  else server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const endpoint: RawEndpoint =
    options.socketPath !== undefined
      ? { path: options.socketPath }
      : { port: (server.address() as AddressInfo).port };
  return {
    endpoint,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Connects to `endpoint`, over mutual TLS when `secureContext` is given, with Nagle's algorithm
 * off (as Aurelia's own sockets); resolves once the connection (and handshake) is up, rejects
 * with the connection error.
 */
export async function connectRaw(
  endpoint: RawEndpoint,
  secureContext?: SecureContext,
): Promise<Socket> {
  const target =
    'path' in endpoint ? { path: endpoint.path } : { host: '127.0.0.1', port: endpoint.port };
  const socket: Socket = secureContext
    ? tls.connect({ ...target, secureContext, checkServerIdentity: () => undefined })
    : net.connect(target);
  socket.setNoDelay(true);
  await once(socket, secureContext ? 'secureConnect' : 'connect');
  return socket;
}

/** Echoes every byte back: the raw round-trip ceiling. */
export function echo(socket: Socket): void {
  socket.pipe(socket);
}

/** Bytes of one acknowledgement written by `acknowledge`. */
export const ACK_BYTES = 4;

/**
 * Answers every complete `size`-byte message with a 4-byte acknowledgement, one write per read:
 * the raw ceiling for acknowledged messages, where only small acks travel back (as with
 * Aurelia's batched acks), unlike an echo that returns every payload.
 */
export function acknowledge(size: number): (socket: Socket) => void {
  return (socket) => {
    let partial = 0;
    socket.on('data', (chunk: Buffer) => {
      partial += chunk.length;
      const complete = Math.floor(partial / size);
      if (complete === 0) return;
      partial -= complete * size;
      socket.write(Buffer.alloc(complete * ACK_BYTES));
    });
  };
}

/**
 * A client that sends fixed-size messages and resolves each one when its reply arrived (replies
 * come in order): the whole message back from an `echo` server, or `replyBytes` from an
 * `acknowledge` server. Writes made in one event-loop turn are corked into one write, as any
 * careful framing layer would do.
 */
export class EchoClient {
  private readonly waiting: (() => void)[] = [];
  private head = 0;
  private pendingBytes = 0;
  private corked = false;
  private failure: Error | undefined;

  constructor(
    private readonly socket: Socket,
    private readonly message: Buffer,
    private readonly replyBytes: number = message.length,
  ) {
    socket.on('data', (chunk: Buffer) => this.onData(chunk.length));
    socket.on('error', (err) => (this.failure = err));
  }

  /** Sends one message and resolves when its echo arrived; rejects once the socket failed. */
  request(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    this.socket.write(this.message);
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** Destroys the socket. */
  close(): void {
    this.socket.destroy();
  }

  private onData(length: number): void {
    this.pendingBytes += length;
    const size = this.replyBytes;
    while (this.pendingBytes >= size && this.head < this.waiting.length) {
      this.pendingBytes -= size;
      this.waiting[this.head++]!();
    }
    if (this.head > 1024 && this.head * 2 > this.waiting.length) {
      this.waiting.splice(0, this.head);
      this.head = 0;
    }
  }
}

/** Bytes each write of a bulk copy carries. */
export const BULK_CHUNK_BYTES = 64 * 1024;

/**
 * Writes `bytes` to `socket` in `BULK_CHUNK_BYTES` writes, waiting for `drain` whenever the
 * socket asks, then ends it. Resolves when everything was handed to the socket.
 */
export async function writeBulk(socket: Socket, bytes: number): Promise<void> {
  const chunk = Buffer.alloc(BULK_CHUNK_BYTES, 0x5a);
  let left = bytes;
  while (left > 0) {
    const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
    left -= piece.length;
    if (!socket.write(piece)) await once(socket, 'drain');
  }
  socket.end();
}

/**
 * Measures a bulk copy: `streams` connections each write `bytes` to a server that counts what it
 * receives. Resolves with MiB/s from the first write until the server has received every byte.
 */
export async function measureBulkCopy(
  transport: BenchTransport,
  streams: number,
  bytes: number,
  options: {
    readonly server?: TlsOptions;
    readonly client?: SecureContext;
    readonly socketPath?: () => string;
    readonly timeoutMs: number;
  },
): Promise<number> {
  let received = 0;
  const total = streams * bytes;
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const server = await startRawServer(
    (socket) => {
      socket.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received >= total) done();
      });
    },
    {
      ...(options.server ? { tls: options.server } : {}),
      ...(transport === 'unix' && options.socketPath ? { socketPath: options.socketPath() } : {}),
    },
  );
  const sockets: Socket[] = [];
  let timer: NodeJS.Timeout | undefined;
  try {
    for (let i = 0; i < streams; i++)
      sockets.push(await connectRaw(server.endpoint, options.client));
    const start = performance.now();
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new AureliaError(
              ErrorId.SendTimeout,
              `bulk copy of ${total} bytes did not finish within ${options.timeoutMs} ms`,
            ),
          ),
        options.timeoutMs,
      );
    });
    await Promise.race([
      Promise.all([finished, ...sockets.map((s) => writeBulk(s, bytes))]),
      timeout,
    ]);
    const seconds = (performance.now() - start) / 1000;
    return total / (1024 * 1024) / seconds;
  } finally {
    clearTimeout(timer);
    for (const socket of sockets) socket.destroy();
    await server.close();
  }
}
