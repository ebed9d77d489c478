// A proxy in front of one domus, over TCP or a Unix socket, that injects network faults and counts
// what each connection carried: the soak run and the fault tests both drive it.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { DomusAddr, type TransportKind } from '../../engine/addr.js';
import { AureliaError, ErrorId } from '../../engine/errors.js';

/** How the proxy treats bytes right now. */
export type ProxyMode = 'forward' | 'stall';

/**
 * Where a proxy forwards to: a port on 127.0.0.1, a host and port, or a domus address (TCP or
 * Unix socket).
 */
export type ProxyTarget = number | { readonly host: string; readonly port: number } | DomusAddr;

/** What one proxied connection carried, in bytes. */
export interface ProxiedTraffic {
  /** From the dialing side to the target. */
  bytesUp: number;
  /** From the target back to the dialing side. */
  bytesDown: number;
}

interface Pair {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  readonly traffic: ProxiedTraffic;
}

type Endpoint = { readonly host: string; readonly port: number } | { readonly path: string };

/**
 * Listens on 127.0.0.1 (or a Unix socket in a temporary directory) and forwards each connection
 * to a target, counting the bytes of each connection in `traffic`. Faults: `stall()` drops every
 * byte in both directions without closing anything (a half-open network), `pause()` stops
 * reading from clients (real backpressure), `refuse()` closes new connections at once, `cut()`
 * destroys every live connection (both ends see a close), `reset()` sends TCP RST, `delayMs`
 * holds each chunk before forwarding (chunks still leave in arrival order), and `retarget()`
 * sends new connections elsewhere (a restarted domus). `forward()` undoes stall, pause and
 * refuse; `heal()` also removes the delay.
 */
export class FaultProxy {
  private readonly pairs = new Set<Pair>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private mode: ProxyMode = 'forward';
  private refusing = false;
  private paused = false;
  private target: Endpoint;
  /** Extra latency applied to every chunk, in ms (0: none). */
  delayMs = 0;
  /** Connections accepted and forwarded so far. */
  accepted = 0;
  /** The bytes each accepted connection carried, oldest first. */
  readonly traffic: ProxiedTraffic[] = [];

  private constructor(
    private readonly server: net.Server,
    target: ProxyTarget,
    private readonly dir: string | undefined,
  ) {
    this.target = endpointOf(target);
  }

  /**
   * Starts a proxy in front of `target`, listening on loopback TCP or, with `listen: 'socket'`,
   * on a Unix socket. Rejects with `AureliaError(PeerUnavailable)` when it cannot listen.
   */
  static async start(
    target: ProxyTarget,
    options: { readonly listen?: TransportKind } = {},
  ): Promise<FaultProxy> {
    const server = net.createServer();
    const dir =
      options.listen === 'socket' ? mkdtempSync(path.join(tmpdir(), 'aur-px-')) : undefined;
    const proxy = new FaultProxy(server, target, dir);
    server.on('connection', (socket) => proxy.onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new AureliaError(
            ErrorId.PeerUnavailable,
            `fault proxy could not listen: ${err.message}`,
            {
              cause: err,
            },
          ),
        ),
      );
      if (dir) server.listen(path.join(dir, 'proxy.sock'), () => resolve());
      else server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** The port peers dial (a TCP proxy). */
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** The address peers dial. */
  get addr(): DomusAddr {
    const address = this.server.address();
    return typeof address === 'string'
      ? DomusAddr.socket(address)
      : DomusAddr.tcp('127.0.0.1', (address as net.AddressInfo).port);
  }

  /** Live proxied connections. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Sends new connections to `target` from now on. */
  retarget(target: ProxyTarget): void {
    this.target = endpointOf(target);
  }

  /** Resumes forwarding (after `stall` or `pause`) and accepting (after `refuse`). */
  forward(): void {
    this.mode = 'forward';
    this.refusing = false;
    this.paused = false;
    for (const pair of this.pairs) {
      pair.client.resume();
      pair.upstream.resume();
    }
  }

  /** Like `forward()`, and removes any delay. */
  heal(): void {
    this.forward();
    this.delayMs = 0;
  }

  /**
   * Stops reading from clients, those connected now and later: their writes back up (TCP
   * backpressure) until `forward()`. Bytes towards the clients still flow.
   */
  pause(): void {
    this.paused = true;
    for (const pair of this.pairs) pair.client.pause();
  }

  /** Drops every byte in both directions until `forward()`; nothing is closed. */
  stall(): void {
    this.mode = 'stall';
  }

  /** Closes new connections at once until `forward()`. */
  refuse(): void {
    this.refusing = true;
  }

  /** Destroys every live connection (a clean close on both sides). */
  cut(): void {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
  }

  /** Resets every live connection (TCP RST on both sides). */
  reset(): void {
    for (const pair of this.pairs) {
      pair.client.resetAndDestroy();
      pair.upstream.resetAndDestroy();
    }
    this.pairs.clear();
  }

  /**
   * Stops listening and destroys every connection and pending delayed chunk (and the socket's
   * directory).
   */
  async close(): Promise<void> {
    this.cut();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  private onConnection(client: net.Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    this.accepted++;
    const target = this.target;
    const upstream =
      'path' in target ? net.connect(target.path) : net.connect(target.port, target.host);
    const traffic: ProxiedTraffic = { bytesUp: 0, bytesDown: 0 };
    this.traffic.push(traffic);
    const pair: Pair = { client, upstream, traffic };
    this.pairs.add(pair);
    const drop = (): void => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', drop);
      socket.on('close', drop);
    }
    if (this.paused) client.pause();
    this.pipe(client, upstream, true, traffic);
    this.pipe(upstream, client, false, traffic);
  }

  private pipe(
    from: net.Socket,
    to: net.Socket,
    fromClient: boolean,
    traffic: ProxiedTraffic,
  ): void {
    // Delayed chunks leave in arrival order, even after the delay is lowered or removed.
    let lastReleaseAt = 0;
    from.on('data', (chunk: Buffer) => {
      if (fromClient) traffic.bytesUp += chunk.length;
      else traffic.bytesDown += chunk.length;
      if (this.mode === 'stall') return;
      const now = Date.now();
      if (this.delayMs > 0 || lastReleaseAt > now) {
        lastReleaseAt = Math.max(now + this.delayMs, lastReleaseAt);
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          if (!to.destroyed) to.write(chunk);
        }, lastReleaseAt - now);
        this.timers.add(timer);
        return;
      }
      if (!to.destroyed && !to.write(chunk)) {
        from.pause();
        // A drain must not undo a pause() that came after the write.
        to.once('drain', () => {
          if (!(fromClient && this.paused)) from.resume();
        });
      }
    });
  }
}

function endpointOf(target: ProxyTarget): Endpoint {
  if (typeof target === 'number') return { host: '127.0.0.1', port: target };
  if (target instanceof DomusAddr) {
    return target.isTcp() ? { host: target.host, port: target.port } : { path: target.path! };
  }
  return { host: target.host, port: target.port };
}
