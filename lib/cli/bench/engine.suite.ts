// Aurelia engine workloads: round trip, accepted-message rates, connect, memory and blob streams.
import { performance } from 'node:perf_hooks';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { DomusAddr } from '../../engine/addr.js';
import { Aurelia } from '../../engine/aurelia.js';
import { BufferCodec } from '../../engine/codec.js';
import { DomusConfigBuilder, type DomusConfig } from '../../engine/config.js';
import type { Domus } from '../../engine/domus.js';
import { AureliaError, ErrorId } from '../../engine/errors.js';
import { SimpleResolver } from '../../engine/resolver.js';
import { SendOptions } from '../../engine/send-options.js';
import type { Taberna } from '../../engine/taberna/taberna.js';
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
import { measureLatency, measureRate } from './measure.js';
import { measureMetricsCost } from './metrics-cost.js';
import type { BenchSuite, SuiteContext } from './plan.js';
import { BULK_CONCURRENT, BULK_SINGLE, heldBytes, recordPeerMemory } from './raw.suite.js';
import type { BenchTransport } from './report.js';
import { latencyStats } from './stats.js';

/** Workload key of memory per registered taberna. */
export const MEMORY_TABERNA = { id: 'mem-taberna', title: 'memory per taberna' } as const;

/** Workload key of the metric recording cost. */
export const METRICS_COST = { id: 'metrics-cost', title: 'metrics recording per msg' } as const;

const METRICS_COST_MESSAGES = 200_000;
const TARGET = 10n;
const BLOB_TIMEOUT_MS = 180_000;
const codec = new BufferCodec();

/**
 * Engine settings for benchmarks: the defaults, with queues deep enough for 256 messages in
 * flight and deadlines long enough for slow machines.
 */
export function benchDomusConfig(): DomusConfig {
  return new DomusConfigBuilder()
    .sendQueueSize(1024)
    .tabernaAcceptQueueSize(1024)
    .sendTimeoutMs(30_000)
    .acceptTimeoutMs(30_000)
    .build();
}

/** A running mesh of domus built by one runtime and one resolver. */
export class EngineMesh {
  readonly aurelia = new Aurelia();
  readonly resolver = new SimpleResolver();

  constructor(
    private readonly ctx: SuiteContext,
    readonly transport: BenchTransport,
  ) {}

  /** Builds a domus presenting the bench node `name`, on a fresh port or socket path. */
  async domus(name: string): Promise<Domus> {
    const node = await this.ctx.fixture.node(name);
    const addr =
      this.transport === 'tcp'
        ? DomusAddr.tcp('127.0.0.1', 0)
        : DomusAddr.socket(this.ctx.fixture.socketPath(name));
    return this.aurelia.domusBuilder(benchDomusConfig(), addr, node.auth(), this.resolver).build();
  }

  /** Shuts every domus of this mesh down. */
  close(): Promise<void> {
    return this.aurelia.shutdown();
  }
}

/**
 * Counts the blob streams a taberna receives, so a blob workload ends when the receiving side
 * read every byte (not when the sender handed its last chunk over).
 */
export class BlobSink {
  /** Bytes read from every stream so far. */
  bytes = 0;
  private ended = 0;
  private failure: unknown;
  private waiter: { count: number; resolve(): void; reject(err: unknown): void } | undefined;

  /** Reads `receiver` to its end, counting its bytes. */
  take(receiver: Readable): void {
    receiver.on('data', (chunk: Buffer) => {
      this.bytes += chunk.length;
    });
    receiver.once('end', () => {
      this.ended++;
      this.check();
    });
    receiver.once('error', (err) => {
      this.failure ??= err;
      this.check();
    });
  }

  /**
   * Resolves once `count` more streams ended; rejects with the first stream error, or with
   * `AureliaError(SendTimeout)` after `timeoutMs`.
   */
  async whenEnded(count: number, timeoutMs: number): Promise<void> {
    const target = this.ended + count;
    let timer: NodeJS.Timeout | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        this.waiter = { count: target, resolve, reject };
        timer = setTimeout(
          () =>
            reject(
              new AureliaError(
                ErrorId.SendTimeout,
                `${count} blob streams did not all arrive within ${timeoutMs} ms`,
              ),
            ),
          timeoutMs,
        );
        this.check();
      });
    } finally {
      clearTimeout(timer);
      this.waiter = undefined;
    }
  }

  private check(): void {
    if (!this.waiter) return;
    if (this.failure !== undefined) this.waiter.reject(this.failure);
    else if (this.ended >= this.waiter.count) this.waiter.resolve();
  }
}

/**
 * Accepts every request of `taberna` until the domus shuts down; blob streams go to `sink`
 * (or are drained). Resolves when the loop ended; rejects with any error but `DomusClosed`.
 */
export async function acceptAll(taberna: Taberna<Buffer>, sink?: BlobSink): Promise<void> {
  try {
    for await (const request of taberna) {
      const receiver = request.blobReceiver as Readable | undefined;
      request.accept();
      if (receiver) {
        if (sink) sink.take(receiver);
        else receiver.resume();
      }
    }
  } catch (err) {
    if (!AureliaError.is(err, ErrorId.DomusClosed)) throw err;
  }
}

/** The Aurelia engine: two domus in this process, over loopback TCP and a Unix socket. */
export const engineSuite: BenchSuite = {
  system: 'engine',
  name: 'aurelia engine',
  async run(ctx) {
    for (const transport of ctx.plan.transports) {
      const who: Recorder = { system: 'aurelia engine', role: 'aurelia', transport };
      const mesh = new EngineMesh(ctx, transport);
      try {
        const alpha = await mesh.domus('alpha');
        const beta = await mesh.domus('beta');
        const taberna = await beta.taberna(TARGET, codec);
        const sink = new BlobSink();
        const accepting = acceptAll(taberna, sink);
        // Awaited after shutdown; until then a failure must not count as unhandled.
        accepting.catch(() => undefined);
        mesh.resolver.insert(TARGET, beta.localAddr);
        if (ctx.plan.groups.has('latency')) {
          ctx.progress(`engine round trip over ${transport}`);
          const message = payloadOf(64);
          const stats = await measureLatency(
            () => alpha.send(codec, TARGET, message),
            ctx.plan.latencyTiming,
          );
          recordLatency(ctx, who, ROUND_TRIP, stats);
        }
        if (ctx.plan.groups.has('rate')) {
          const busiest = Math.max(...ctx.plan.inflights);
          let smallBusiest: number | undefined;
          for (const payload of ctx.plan.payloads) {
            const message = payloadOf(payload);
            for (const inflight of ctx.plan.inflights) {
              ctx.progress(`engine send ${payload} B × ${inflight} over ${transport}`);
              const rate = await measureRate(
                () => alpha.send(codec, TARGET, message),
                inflight,
                ctx.plan.rateTiming,
              );
              recordRate(ctx, who, payload, inflight, rate, 'accepted sends');
              if (payload === 64 && inflight === busiest) smallBusiest = rate.median;
            }
          }
          if (transport === ctx.plan.transports[0] && smallBusiest !== undefined) {
            ctx.progress('engine metrics recording cost');
            recordMetricsCost(ctx, who, smallBusiest, busiest);
          }
        }
        if (ctx.plan.groups.has('bulk')) {
          ctx.progress(`engine blob streams over ${transport}`);
          await blobWorkloads(ctx, who, alpha, sink);
        }
        if (ctx.plan.groups.has('connect')) {
          ctx.progress(`engine connect + first message over ${transport}`);
          await connectWorkload(ctx, who, mesh);
        }
        if (ctx.plan.groups.has('memory')) {
          ctx.progress(`engine idle peers and tabernae over ${transport}`);
          await idlePeerMemory(ctx, who, mesh);
          if (transport === ctx.plan.transports[0]) await tabernaMemory(ctx, who, beta);
        }
        await mesh.close();
        await accepting;
      } finally {
        await mesh.close();
      }
    }
  },
};

/**
 * Records what the hot-path metric recording costs per message (`measureMetricsCost`) and its
 * share of one engine message, taken as the time one 64 B message with `inflight` in flight
 * occupies the bench's single thread (both domus, sender and receiver) in this run.
 */
function recordMetricsCost(
  ctx: SuiteContext,
  who: Recorder,
  messagesPerSecond: number,
  inflight: number,
): void {
  const cost = measureMetricsCost(METRICS_COST_MESSAGES);
  const messageNs = 1e9 / messagesPerSecond;
  const base = { workload: METRICS_COST.id, title: METRICS_COST.title, ...who };
  ctx.record({
    ...base,
    metric: 'ns/msg',
    unit: 'ns',
    better: 'lower',
    value: cost.nsPerMessage,
    note: `best of 5 × ${cost.messages} replays of the counters and latency histogram`,
  });
  ctx.record({
    ...base,
    metric: 'share',
    unit: '%',
    better: 'lower',
    value: (cost.nsPerMessage / messageNs) * 100,
    note: `of one 64 B message at ${inflight} in flight (${(messageNs / 1000).toFixed(1)} µs)`,
  });
}

async function connectWorkload(ctx: SuiteContext, who: Recorder, mesh: EngineMesh): Promise<void> {
  const samples: number[] = [];
  const message = payloadOf(64);
  for (let i = 0; i < ctx.plan.connectSamples; i++) {
    const dialer = await mesh.domus('dialer');
    const start = performance.now();
    await dialer.send(codec, TARGET, message);
    samples.push((performance.now() - start) * 1000);
    await dialer.shutdown();
  }
  recordLatency(ctx, who, CONNECT, latencyStats(samples), 'ms');
}

async function idlePeerMemory(ctx: SuiteContext, who: Recorder, mesh: EngineMesh): Promise<void> {
  const peers: Domus[] = [];
  const message = payloadOf(64);
  try {
    for (let i = 0; i < ctx.plan.idlePeers; i++) peers.push(await mesh.domus(`peer-${i}`));
    const before = heldBytes();
    for (const peer of peers) await peer.send(codec, TARGET, message);
    recordPeerMemory(ctx, who, before, heldBytes(), peers.length);
  } finally {
    await Promise.all(peers.map((p) => p.shutdown()));
  }
}

async function tabernaMemory(ctx: SuiteContext, who: Recorder, domus: Domus): Promise<void> {
  const tabernae: Taberna<Buffer>[] = [];
  try {
    const before = heldBytes();
    for (let i = 0; i < ctx.plan.tabernae; i++) {
      tabernae.push(await domus.taberna(1000n + BigInt(i), codec));
    }
    const after = heldBytes();
    ctx.record({
      workload: MEMORY_TABERNA.id,
      title: MEMORY_TABERNA.title,
      ...who,
      metric: 'heap+ext',
      unit: 'B',
      better: 'lower',
      value: (after - before) / tabernae.length,
      note: `${tabernae.length} tabernae`,
    });
  } finally {
    for (const taberna of tabernae) taberna.close();
  }
}

/** The outcome of a blob send, as DESIGN.md describes it (`{ kind: 'blob', sender }`). */
interface BlobOutcome {
  readonly kind: string;
  readonly sender?: Writable;
}

async function blobWorkloads(
  ctx: SuiteContext,
  who: Recorder,
  alpha: Domus,
  sink: BlobSink,
): Promise<void> {
  const cases = [
    { key: BULK_SINGLE, streams: 1, bytes: ctx.plan.bulkSingleBytes },
    {
      key: BULK_CONCURRENT,
      streams: ctx.plan.bulkConcurrent.streams,
      bytes: ctx.plan.bulkConcurrent.bytes,
    },
  ];
  let unavailable: string | undefined;
  try {
    const probe = (await alpha.send(codec, TARGET, payloadOf(64), SendOptions.BLOB)) as BlobOutcome;
    if (probe.kind !== 'blob' || !probe.sender) {
      unavailable = `a BLOB send resolved with kind '${probe.kind}' and no sender`;
    } else {
      const arrived = sink.whenEnded(1, BLOB_TIMEOUT_MS);
      probe.sender.end();
      await arrived;
    }
  } catch (err) {
    unavailable = describeFailure(err);
  }
  for (const { key, streams, bytes } of cases) {
    if (unavailable !== undefined) {
      recordSkipped(ctx, who, key, 'MiB/s', `not available: ${unavailable}`);
      continue;
    }
    try {
      const start = performance.now();
      const arrived = sink.whenEnded(streams, BLOB_TIMEOUT_MS);
      arrived.catch(() => undefined);
      await Promise.all(
        Array.from({ length: streams }, async () => {
          const outcome = (await alpha.send(
            codec,
            TARGET,
            payloadOf(64),
            SendOptions.BLOB,
          )) as BlobOutcome;
          await pipeline(chunks(bytes), outcome.sender!);
        }),
      );
      await arrived;
      const seconds = (performance.now() - start) / 1000;
      ctx.record({
        workload: key.id,
        title: key.title,
        ...who,
        metric: 'MiB/s',
        unit: 'MiB/s',
        better: 'higher',
        value: (streams * bytes) / (1024 * 1024) / seconds,
        note: `${streams} × ${bytes / (1024 * 1024)} MiB, until the receiver read the last byte`,
      });
    } catch (err) {
      recordSkipped(ctx, who, key, 'MiB/s', describeFailure(err));
    }
  }
}

async function* chunks(bytes: number): AsyncGenerator<Buffer> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  for (let left = bytes; left > 0; left -= chunk.length) {
    yield left >= chunk.length ? chunk : chunk.subarray(0, left);
  }
}
