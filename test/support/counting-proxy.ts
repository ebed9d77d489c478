// A byte-counting proxy in front of one domus, over TCP or a Unix socket: tests use it to see what
// each connection carried and to make a peer vanish without a goodbye.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

import { DomusAddr, type TransportKind } from '../../lib/index.js';

/** One proxied connection, in the order the proxy accepted it, and the bytes it carried. */
export interface ProxiedConnection {
  /** Bytes from the dialing side to the target. */
  bytesUp: number;
  /** Bytes from the target back to the dialing side. */
  bytesDown: number;
}

/**
 * Listens on loopback TCP or a Unix socket and forwards each connection to a domus address,
 * counting the bytes of every connection in both directions (with backpressure: a slow side
 * slows the other). `cut()` destroys every live connection, `refuse()` closes new ones at once,
 * `retarget()` sends new connections elsewhere (a restarted domus).
 */
export class CountingProxy {
  /** Every connection accepted so far, oldest first. */
  readonly connections: ProxiedConnection[] = [];
  private readonly sockets = new Set<net.Socket>();
  private refusing = false;

  private constructor(
    private readonly server: net.Server,
    private target: DomusAddr,
    private readonly dir: string | undefined,
  ) {}

  /** Starts a proxy listening on `kind` in front of `target`. */
  static async start(kind: TransportKind, target: DomusAddr): Promise<CountingProxy> {
    const server = net.createServer();
    const dir = kind === 'socket' ? mkdtempSync(path.join(tmpdir(), 'aur-px-')) : undefined;
    const proxy = new CountingProxy(server, target, dir);
    server.on('connection', (socket) => proxy.onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if (dir) server.listen(path.join(dir, 'proxy.sock'), () => resolve());
      else server.listen(0, '127.0.0.1', () => resolve());
    });
    return proxy;
  }

  /** The address peers dial. */
  get addr(): DomusAddr {
    const address = this.server.address();
    return typeof address === 'string'
      ? DomusAddr.socket(address)
      : DomusAddr.tcp('127.0.0.1', (address as net.AddressInfo).port);
  }

  /** Sends new connections to `target` from now on. */
  retarget(target: DomusAddr): void {
    this.target = target;
  }

  /** Closes new connections at once from now on. */
  refuse(): void {
    this.refusing = true;
  }

  /** Destroys every live connection: both ends see a close, with nothing said. */
  cut(): void {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
  }

  /** Stops listening, destroys every connection and removes the socket directory. */
  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }

  private onConnection(client: net.Socket): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    const target = this.target;
    const upstream = target.isTcp()
      ? net.connect(target.port!, target.host!)
      : net.connect(target.path!);
    const counts: ProxiedConnection = { bytesUp: 0, bytesDown: 0 };
    this.connections.push(counts);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('error', drop);
      socket.on('close', drop);
    }
    client.on('data', (chunk: Buffer) => (counts.bytesUp += chunk.length));
    upstream.on('data', (chunk: Buffer) => (counts.bytesDown += chunk.length));
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
