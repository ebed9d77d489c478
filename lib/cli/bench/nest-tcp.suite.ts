// Baseline: Nest's built-in TCP transport (ServerTCP / ClientTCP) with mutual TLS via tlsOptions.
import { once } from 'node:events';
import net, { type AddressInfo, type Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

import { ClientTCP, ServerTCP } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';

import { ROUND_TRIP, payloadOf, recordLatency, recordRate, type Recorder } from './figures.js';
import { InflightWindow, measureLatency, measureRate, measureWindowedRate } from './measure.js';
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
    let window: InflightWindow | undefined;
    server.addHandler('bench.request', async () => true);
    server.addHandler('bench.event', async () => window?.received(), true);
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
      const who: Recorder = { system: 'Nest TCP+TLS', role: 'alternative', transport: 'tcp' };
      const request = (data: string) => () =>
        lastValueFrom(client.send<boolean, string>('bench.request', data));
      if (ctx.plan.groups.has('latency')) {
        ctx.progress('Nest TCP send() round trip');
        const small = payloadOf(64).toString('latin1');
        recordLatency(
          ctx,
          who,
          ROUND_TRIP,
          await measureLatency(request(small), ctx.plan.latencyTiming),
        );
      }
      if (ctx.plan.groups.has('rate')) {
        for (const payload of ctx.plan.payloads) {
          // A string of `payload` characters: what a Nest app sends, JSON-encoded by the transport.
          const data = 'x'.repeat(payload);
          for (const inflight of ctx.plan.inflights) {
            ctx.progress(`Nest TCP send() ${payload} B × ${inflight}`);
            recordRate(
              ctx,
              who,
              payload,
              inflight,
              await measureRate(request(data), inflight, ctx.plan.rateTiming),
              'send() request rate',
            );
            ctx.progress(`Nest TCP emit() ${payload} B × ${inflight}`);
            window = new InflightWindow(inflight);
            const rate = await measureWindowedRate(
              () => void client.emit('bench.event', data).subscribe({ error: () => undefined }),
              window,
              ctx.plan.rateTiming,
            );
            recordRate(
              ctx,
              { ...who, system: 'Nest TCP+TLS emit' },
              payload,
              inflight,
              rate,
              'emit() events handled',
              'event',
            );
          }
        }
      }
    } finally {
      await closeClient(client);
      server.close();
    }
  },
};
