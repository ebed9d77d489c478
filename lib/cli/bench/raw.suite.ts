// The ceiling: raw node:tls echo, bulk copy, connect and idle-connection memory, and plain Unix copy.
import { performance } from 'node:perf_hooks';
import type { Socket } from 'node:net';
import type { SecureContext, TlsOptions } from 'node:tls';

import {
  CONNECT,
  ROUND_TRIP,
  describeFailure,
  payloadOf,
  recordLatency,
  recordRate,
  recordSkipped,
  type Recorder,
} from './figures.js';
import { collectGarbage, measureLatency, measureRate } from './measure.js';
import type { BenchSuite, SuiteContext } from './plan.js';
import type { BenchTransport } from './report.js';
import {
  ACK_BYTES,
  EchoClient,
  acknowledge,
  connectRaw,
  echo,
  measureBulkCopy,
  startRawServer,
  type RawServer,
} from './sockets.js';
import { latencyStats } from './stats.js';

/** Workload keys of the bulk copies. */
export const BULK_SINGLE = { id: 'bulk-1', title: 'bulk, 1 stream' } as const;
/** Workload key of the concurrent bulk copies. */
export const BULK_CONCURRENT = { id: 'bulk-n', title: 'bulk, concurrent streams' } as const;
/** Workload key of memory per idle connected peer. */
export const MEMORY_PEER = { id: 'mem-peer', title: 'memory per idle peer' } as const;

const BULK_TIMEOUT_MS = 120_000;

/** The raw `node:tls` ceiling over TCP and Unix sockets, and the plain Unix socket copy. */
export const rawSuite: BenchSuite = {
  system: 'raw',
  name: 'node:tls',
  async run(ctx) {
    const server = await ctx.fixture.node('raw-server');
    const client = await ctx.fixture.node('raw-client');
    for (const transport of ctx.plan.transports) {
      const who: Recorder = { system: 'node:tls', role: 'ceiling', transport };
      const listen = (): Promise<RawServer> =>
        startRawServer(echo, {
          tls: server.serverOptions,
          ...(transport === 'unix' ? { socketPath: ctx.fixture.socketPath('tls-echo') } : {}),
        });
      if (ctx.plan.groups.has('latency') || ctx.plan.groups.has('rate')) {
        ctx.progress(`node:tls echo over ${transport}`);
        const echoServer = await listen();
        try {
          await echoWorkloads(ctx, who, echoServer, client.secureContext, {
            serverOptions: server.serverOptions,
            ...(transport === 'unix'
              ? { socketPath: () => ctx.fixture.socketPath('tls-ack') }
              : {}),
          });
        } finally {
          await echoServer.close();
        }
      }
      if (ctx.plan.groups.has('connect')) {
        ctx.progress(`node:tls connect over ${transport}`);
        const echoServer = await listen();
        try {
          const samples: number[] = [];
          const first = payloadOf(64);
          for (let i = 0; i < ctx.plan.connectSamples; i++) {
            const start = performance.now();
            const socket = await connectRaw(echoServer.endpoint, client.secureContext);
            await new EchoClient(socket, first).request();
            samples.push((performance.now() - start) * 1000);
            socket.destroy();
          }
          recordLatency(ctx, who, CONNECT, latencyStats(samples), 'ms');
        } finally {
          await echoServer.close();
        }
      }
      if (ctx.plan.groups.has('bulk')) {
        ctx.progress(`node:tls bulk copy over ${transport}`);
        await bulkWorkloads(ctx, who, transport, {
          server: server.serverOptions,
          client: client.secureContext,
        });
        if (transport === 'unix') {
          ctx.progress('plain Unix socket bulk copy');
          await bulkWorkloads(
            ctx,
            { system: 'unix socket (no TLS)', role: 'ceiling', transport },
            transport,
            {},
          );
        }
      }
      if (ctx.plan.groups.has('memory')) {
        ctx.progress(`node:tls idle connections over ${transport}`);
        const echoServer = await listen();
        try {
          await idleConnectionMemory(ctx, who, echoServer, client.secureContext);
        } finally {
          await echoServer.close();
        }
      }
    }
  },
};

// Round trip against the echo server; rates against a server acknowledging each message.
async function echoWorkloads(
  ctx: SuiteContext,
  who: Recorder,
  server: RawServer,
  secureContext: SecureContext,
  { serverOptions, socketPath }: { serverOptions: TlsOptions; socketPath?: () => string },
): Promise<void> {
  if (ctx.plan.groups.has('latency')) {
    const client = new EchoClient(await connectRaw(server.endpoint, secureContext), payloadOf(64));
    try {
      recordLatency(
        ctx,
        who,
        ROUND_TRIP,
        await measureLatency(() => client.request(), ctx.plan.latencyTiming),
      );
    } finally {
      client.close();
    }
  }
  if (!ctx.plan.groups.has('rate')) return;
  for (const payload of ctx.plan.payloads) {
    const ackServer = await startRawServer(acknowledge(payload), {
      tls: serverOptions,
      ...(socketPath ? { socketPath: socketPath() } : {}),
    });
    const client = new EchoClient(
      await connectRaw(ackServer.endpoint, secureContext),
      payloadOf(payload),
      ACK_BYTES,
    );
    try {
      for (const inflight of ctx.plan.inflights) {
        const rate = await measureRate(() => client.request(), inflight, ctx.plan.rateTiming);
        recordRate(ctx, who, payload, inflight, rate, 'messages acked with 4 bytes');
        // The same bound applies to windowed events: a message and the receiver's sign of life.
        recordRate(ctx, who, payload, inflight, rate, 'messages acked with 4 bytes', 'event');
      }
    } finally {
      client.close();
      await ackServer.close();
    }
  }
}

async function bulkWorkloads(
  ctx: SuiteContext,
  who: Recorder,
  transport: BenchTransport,
  contexts: { server?: TlsOptions; client?: SecureContext },
): Promise<void> {
  const cases = [
    { key: BULK_SINGLE, streams: 1, bytes: ctx.plan.bulkSingleBytes },
    {
      key: BULK_CONCURRENT,
      streams: ctx.plan.bulkConcurrent.streams,
      bytes: ctx.plan.bulkConcurrent.bytes,
    },
  ];
  for (const { key, streams, bytes } of cases) {
    try {
      const mibPerS = await measureBulkCopy(transport, streams, bytes, {
        ...contexts,
        socketPath: () => ctx.fixture.socketPath('bulk'),
        timeoutMs: BULK_TIMEOUT_MS,
      });
      ctx.record({
        workload: key.id,
        title: key.title,
        ...who,
        metric: 'MiB/s',
        unit: 'MiB/s',
        better: 'higher',
        value: mibPerS,
        note: `${streams} × ${bytes / (1024 * 1024)} MiB`,
      });
    } catch (err) {
      recordSkipped(ctx, who, key, 'MiB/s', describeFailure(err));
    }
  }
}

/**
 * Bytes the live object graph holds after a full collection: V8 heap plus memory Node tracks
 * outside it (buffers). OpenSSL's own allocations are not visible from JavaScript, so figures
 * compare like with like (every system pays them per TLS connection) but are not totals.
 */
export function heldBytes(): number {
  collectGarbage();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.external;
}

/** Records memory per peer (both ends of each connection, heap + external) in KiB. */
export function recordPeerMemory(
  ctx: SuiteContext,
  who: Recorder,
  before: number,
  after: number,
  peers: number,
): void {
  ctx.record({
    workload: MEMORY_PEER.id,
    title: MEMORY_PEER.title,
    ...who,
    metric: 'heap+ext',
    unit: 'KiB',
    better: 'lower',
    value: (after - before) / peers / 1024,
    note: `${peers} peers, both ends counted`,
  });
}

async function idleConnectionMemory(
  ctx: SuiteContext,
  who: Recorder,
  server: RawServer,
  secureContext: SecureContext,
): Promise<void> {
  const sockets: Socket[] = [];
  try {
    const before = heldBytes();
    const first = payloadOf(64);
    for (let i = 0; i < ctx.plan.idlePeers; i++) {
      const socket = await connectRaw(server.endpoint, secureContext);
      sockets.push(socket);
      await new EchoClient(socket, first).request();
    }
    recordPeerMemory(ctx, who, before, heldBytes(), ctx.plan.idlePeers);
  } finally {
    for (const socket of sockets) socket.destroy();
  }
}
