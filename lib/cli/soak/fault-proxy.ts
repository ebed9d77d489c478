// A TCP proxy in front of one domus that the soak run uses to inject network faults.
import net from 'node:net';

import { AureliaError, ErrorId } from '../../engine/errors.js';

interface Pair {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
}

/**
 * Listens on 127.0.0.1 and forwards each connection to a target port. Faults: `stall()` drops
 * every byte in both directions without closing anything (a half-open network), `refuse()` closes
 * new connections at once, `cut()` destroys every live connection, `delayMs` holds each chunk
 * before forwarding, and `retarget()` sends new connections elsewhere (a restarted domus).
 * `heal()` undoes stall, refuse and delay.
 */
export class SoakFaultProxy {
  private readonly pairs = new Set<Pair>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private stalled = false;
  private refusing = false;
  /** Extra latency applied to every chunk, in ms (0: none). */
  delayMs = 0;
  /** Connections accepted and forwarded so far. */
  accepted = 0;

  private constructor(
    private readonly server: net.Server,
    private targetPort: number,
  ) {}

  /**
   * Starts a proxy in front of `127.0.0.1:targetPort`. Rejects with
   * `AureliaError(PeerUnavailable)` when no local port can be bound.
   */
  static async start(targetPort: number): Promise<SoakFaultProxy> {
    const server = net.createServer();
    const proxy = new SoakFaultProxy(server, targetPort);
    server.on('connection', (socket) => proxy.onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) =>
        reject(
          new AureliaError(ErrorId.PeerUnavailable, `soak proxy could not listen: ${err.message}`, {
            cause: err,
          }),
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

  /** Sends new connections to `port` from now on. */
  retarget(port: number): void {
    this.targetPort = port;
  }

  /** Drops every byte in both directions until `heal()`; nothing is closed. */
  stall(): void {
    this.stalled = true;
  }

  /** Closes new connections at once until `heal()`. */
  refuse(): void {
    this.refusing = true;
  }

  /** Destroys every live connection. */
  cut(): void {
    for (const pair of this.pairs) {
      pair.client.destroy();
      pair.upstream.destroy();
    }
    this.pairs.clear();
  }

  /** Forwards again, accepts again and removes any delay. */
  heal(): void {
    this.stalled = false;
    this.refusing = false;
    this.delayMs = 0;
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
    const upstream = net.connect(this.targetPort, '127.0.0.1');
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
    this.pipe(client, upstream);
    this.pipe(upstream, client);
  }

  private pipe(from: net.Socket, to: net.Socket): void {
    // Delayed chunks leave in arrival order, even after the delay is lowered or removed.
    let lastReleaseAt = 0;
    from.on('data', (chunk: Buffer) => {
      if (this.stalled) return;
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
        to.once('drain', () => from.resume());
      }
    });
  }
}
