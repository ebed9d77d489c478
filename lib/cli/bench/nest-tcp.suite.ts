// Baseline: Nest's built-in TCP transport (ServerTCP / ClientTCP) with mutual TLS via tlsOptions.
import { once } from 'node:events';
import net, { type AddressInfo, type Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

import { ClientTCP, ServerTCP } from '@nestjs/microservices';

import { NEST_EVENT, NEST_REQUEST, NestBenchHandlers, runNestWorkloads } from './nest-workloads.js';
import type { BenchSuite } from './plan.js';

/** A free loopback TCP port (Nest's transport treats port 0 as "use the default"). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const CLOSE_TIMEOUT_MS = 2000;

// Ends the client's connection and waits (bounded) until it is gone, so the server's shutdown
// does not reset a live connection (Nest logs that as an error).
async function closeClient(client: ClientTCP): Promise<void> {
  let socket: Socket | undefined;
  try {
    socket = client.unwrap<Socket>();
  } catch {
    // Never connected: nothing to wait for.
  }
  client.close();
  if (!socket || socket.destroyed) return;
  await Promise.race([once(socket, 'close'), delay(CLOSE_TIMEOUT_MS, undefined, { ref: false })]);
}

/** Nest users' default choice: JSON over TCP, here with mutual TLS through `tlsOptions`. */
export const nestTcpSuite: BenchSuite = {
  system: 'nest-tcp',
  name: 'Nest TCP+TLS',
  async run(ctx) {
    if (!ctx.plan.groups.has('latency') && !ctx.plan.groups.has('rate')) return;
    const serverNode = await ctx.fixture.node('nest-tcp-server');
    const clientNode = await ctx.fixture.node('nest-tcp-client');
    const port = await freePort();
    const server = new ServerTCP({
      host: '127.0.0.1',
      port,
      tlsOptions: {
        ca: serverNode.pem.ca,
        cert: serverNode.pem.cert,
        key: Buffer.from(serverNode.pem.key),
        requestCert: true,
        rejectUnauthorized: true,
        minVersion: 'TLSv1.3',
      },
    });
    const handlers = new NestBenchHandlers();
    server.addHandler(NEST_REQUEST, handlers.request);
    server.addHandler(NEST_EVENT, handlers.event, true);
    await new Promise<void>((resolve, reject) =>
      server.listen((err?: unknown) => (err ? reject(err) : resolve())),
    );
    const client = new ClientTCP({
      host: '127.0.0.1',
      port,
      tlsOptions: {
        ca: clientNode.pem.ca,
        cert: clientNode.pem.cert,
        key: Buffer.from(clientNode.pem.key),
        checkServerIdentity: () => undefined,
        minVersion: 'TLSv1.3',
      },
    });
    try {
      await client.connect();
      await runNestWorkloads(
        ctx,
        { system: 'Nest TCP+TLS', role: 'alternative', transport: 'tcp' },
        'Nest TCP+TLS emit',
        client,
        handlers,
      );
    } finally {
      await closeClient(client);
      server.close();
    }
  },
};
