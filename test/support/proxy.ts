// A TCP proxy a test controls: forward, delay, stall silently, cut or reset connections.
import net from 'node:net';

/** How the proxy treats bytes right now. */
export type ProxyMode = 'forward' | 'stall';

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
}

/**
 * Listens on 127.0.0.1 and forwards each connection to `target`. Tests use it to inject faults:
 * `stall()` silently stops forwarding in both directions (a half-open network), `cut()` destroys
 * every connection (both ends see a close), `reset()` sends TCP RST, `refuse()` makes new
 * connections fail at once, `delayMs` holds each chunk before forwarding.
 */
export class FaultProxy {
  private readonly pairs = new Set<Pair>();
  private mode: ProxyMode = 'forward';
  private refusing = false;
  /** Extra latency applied to every chunk, in ms. */
  delayMs = 0;
  /** Connections accepted so far. */
  accepted = 0;
  private readonly timers = new Set<NodeJS.Timeout>();

  private constructor(
    private readonly server: net.Server,
    private target: { host: string; port: number },
  ) {}

  /** Sends new connections to another target (for example a restarted peer). */
  retarget(target: { host: string; port: number }): void {
    this.target = target;
  }

  /** Starts a proxy in front of `target`. */
  static async start(target: { host: string; port: number }): Promise<FaultProxy> {
    const server = net.createServer();
    const proxy = new FaultProxy(server, target);
    server.on('connection', (socket) => proxy.onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** The port clients should dial. */
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Live proxied connections. */
  get connections(): number {
    return this.pairs.size;
  }

  /** Resumes forwarding (after `stall`) and accepting (after `refuse`). */
  forward(): void {
    this.mode = 'forward';
    this.refusing = false;
    for (const pair of this.pairs) {
      pair.client.resume();
      pair.upstream.resume();
    }
  }

  /** Stops reading from clients: their writes back up until `forward()` (real backpressure). */
  pause(): void {
    for (const pair of this.pairs) pair.client.pause();
  }

  /** Stops forwarding silently: bytes are read and dropped, nothing is closed. */
  stall(): void {
    this.mode = 'stall';
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

  /** New connections are closed at once until `forward()`. */
  refuse(): void {
    this.refusing = true;
  }

  /** Stops listening and destroys everything. */
  async close(): Promise<void> {
    this.cut();
    for (const t of this.timers) clearTimeout(t);
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
    client.on('error', drop);
    upstream.on('error', drop);
    client.on('close', drop);
    upstream.on('close', drop);
    this.pipe(client, upstream);
    this.pipe(upstream, client);
  }

  private pipe(from: net.Socket, to: net.Socket): void {
    from.on('data', (chunk: Buffer) => {
      if (this.mode === 'stall') return;
      if (this.delayMs > 0) {
        const timer = setTimeout(() => {
          this.timers.delete(timer);
          if (!to.destroyed) to.write(chunk);
        }, this.delayMs);
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
