// Baseline: gRPC unary calls with mutual TLS (@grpc/grpc-js + proto-loader, what Nest gRPC runs on).
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

import { ROUND_TRIP, payloadOf, recordLatency, recordRate, type Recorder } from './figures.js';
import { measureLatency, measureRate } from './measure.js';
import type { BenchSuite } from './plan.js';

const PROTO = `syntax = "proto3";
package bench;
service Bench { rpc Send (Msg) returns (Ack); }
message Msg { bytes data = 1; }
message Ack {}
`;

const GRPC_OPTIONS = { 'grpc.enable_channelz': 0 } as const;

interface BenchClient extends grpc.Client {
  Send(request: { data: Buffer }, callback: (err: grpc.ServiceError | null) => void): void;
}

/**
 * gRPC over mutual TLS: a unary `Send(bytes) → empty` call per message, protobuf-encoded. This
 * is the transport under Nest's gRPC microservice without Nest's own layer, so it bounds what
 * Nest gRPC can reach from above.
 */
export const grpcSuite: BenchSuite = {
  system: 'grpc',
  name: 'gRPC mTLS',
  async run(ctx) {
    if (!ctx.plan.groups.has('latency') && !ctx.plan.groups.has('rate')) return;
    const serverNode = await ctx.fixture.node('grpc-server');
    const clientNode = await ctx.fixture.node('grpc-client');
    const protoPath = path.join(ctx.fixture.dir, 'bench.proto');
    await writeFile(protoPath, PROTO);
    const definition = protoLoader.loadSync(protoPath, { keepCase: true });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      bench: { Bench: grpc.ServiceClientConstructor };
    };
    const Bench = loaded.bench.Bench;
    // Channelz bookkeeping is on by default and costs a fair share of each call; production
    // deployments that care about speed switch it off, so the baseline does too.
    const server = new grpc.Server(GRPC_OPTIONS);
    server.addService(Bench.service, {
      Send: (_call: unknown, callback: (err: null, ack: object) => void) => callback(null, {}),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        '127.0.0.1:0',
        grpc.ServerCredentials.createSsl(
          Buffer.from(serverNode.pem.ca),
          [
            {
              private_key: Buffer.from(serverNode.pem.key),
              cert_chain: Buffer.from(serverNode.pem.cert),
            },
          ],
          true,
        ),
        (err, bound) => (err ? reject(err) : resolve(bound)),
      ),
    );
    const client = new Bench(
      `127.0.0.1:${port}`,
      grpc.credentials.createSsl(
        Buffer.from(clientNode.pem.ca),
        Buffer.from(clientNode.pem.key),
        Buffer.from(clientNode.pem.cert),
      ),
      GRPC_OPTIONS,
    ) as unknown as BenchClient;
    try {
      const who: Recorder = { system: 'gRPC mTLS', role: 'alternative', transport: 'tcp' };
      const call = (data: Buffer) => () =>
        new Promise<void>((resolve, reject) =>
          client.Send({ data }, (err) => (err ? reject(err) : resolve())),
        );
      if (ctx.plan.groups.has('latency')) {
        ctx.progress('gRPC unary round trip');
        recordLatency(
          ctx,
          who,
          ROUND_TRIP,
          await measureLatency(call(payloadOf(64)), ctx.plan.latencyTiming),
        );
      }
      if (ctx.plan.groups.has('rate')) {
        for (const payload of ctx.plan.payloads) {
          for (const inflight of ctx.plan.inflights) {
            ctx.progress(`gRPC unary ${payload} B × ${inflight}`);
            const rate = await measureRate(call(payloadOf(payload)), inflight, ctx.plan.rateTiming);
            recordRate(ctx, who, payload, inflight, rate, 'unary calls');
          }
        }
      }
    } finally {
      client.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    }
  },
};
