// A TCP proxy in front of one domus that injects network faults: the soak run and the fault tests
// both drive it.
import net from 'node:net';

import { AureliaError, ErrorId } from '../../engine/errors.js';

/** How the proxy treats bytes right now. */
export type ProxyMode = 'forward' | 'stall';

/** Where a proxy forwards to: a port on 127.0.0.1, or a host and port. */
export type ProxyTarget = number | { readonly host: string; readonly port: number };

interface Pair {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
}

/**
 * Listens on 127.0.0.1 and forwards each connection to a target. Faults: `stall()` drops every
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
  private target: { host: string; port: number };
  /** Extra latency applied to every chunk, in ms (0: none). */
  delayMs = 0;
  /** Connections accepted and forwarded so far. */
  accepted = 0;

  private constructor(
    private readonly server: net.Server,
    target: ProxyTarget,
  ) {
    this.target = targetOf(target);
  }

  /**
   * Starts a proxy in front of `target`. Rejects with `AureliaError(PeerUnavailable)` when no
   * local port can be bound.
   */
  static async start(target: ProxyTarget): Promise<FaultProxy> {
    const server = net.createServer();
    const proxy = new FaultProxy(server, target);
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
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** The port peers dial. */
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Live proxied connections. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Sends new connections to `target` from now on. */
  retarget(target: ProxyTarget): void {
    this.target = targetOf(target);
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

  /** Stops listening and destroys every connection and pending delayed chunk. */
  async close(): Promise<void> {
    this.cut();
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onConnection(client: net.Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    this.accepted++;
    const upstream = net.connect(this.target.port, this.target.host);
    const pair: Pair = { client, upstream };
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
    this.pipe(client, upstream, true);
    this.pipe(upstream, client, false);
  }

  private pipe(from: net.Socket, to: net.Socket, fromClient: boolean): void {
    // Delayed chunks leave in arrival order, even after the delay is lowered or removed.
    let lastReleaseAt = 0;
    from.on('data', (chunk: Buffer) => {
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

function targetOf(target: ProxyTarget): { host: string; port: number } {
  return typeof target === 'number' ? { host: '127.0.0.1', port: target } : { ...target };
}
