// The replicas workload: one route over 1, 2 and 3 replica servers in child processes — the
// balancer's cost and fairness on a small machine, not scaling.
import { performance } from 'node:perf_hooks';

import { DomusAddr } from '../../engine/addr.js';
import { BufferCodec } from '../../engine/codec.js';
import { payloadOf, recordLatency, type Recorder } from './figures.js';
import { measureRate, type RateResult } from './measure.js';
import { EngineMesh } from './engine.suite.js';
import type { BenchSuite, SuiteContext } from './plan.js';
import { ReplicaProcess, replicaServerScript } from './replica-process.js';
import { latencyStats, ratio, type LatencyStats } from './stats.js';

/** The taberna every replica hosts. */
const TARGET = 10n;
/** The payload of every call. */
const PAYLOAD = 64;
const codec = new BufferCodec();

/** The workload key of `n` replicas behind one route. */
export function replicasWorkload(n: number, inflight: number): { id: string; title: string } {
  return {
    id: `replicas-${n}`,
    title: `${n} replica${n === 1 ? '' : 's'} behind one route, ${PAYLOAD} B × ${inflight} in flight`,
  };
}

/** What one replica count measured. */
export interface ReplicaCase {
  readonly replicas: number;
  readonly rate: RateResult;
  /** Latency of every call after the warm-up, under load (µs). */
  readonly latency: LatencyStats;
  /** Each replica's share of the calls it was sent in this case (0..1), replica 1 first. */
  readonly shares: readonly number[];
  /** CPU time per call of the calling process over the measured runs (µs). */
  readonly callerCpuUs: number;
  /** CPU time per call of the replica processes together over the whole case (µs). */
  readonly replicaCpuUs: number;
}

/**
 * Measures one route over the first `n` of `replicas`, from a fresh calling domus in this
 * process: the closed-loop rate with `ctx.plan.replicas.inflight` calls in flight, the latency of
 * each call after the warm-up, and each replica's share of the calls it accepted meanwhile.
 */
async function measureCase(
  ctx: SuiteContext,
  mesh: EngineMesh,
  replicas: readonly ReplicaProcess[],
  n: number,
): Promise<ReplicaCase> {
  const { inflight, timing } = ctx.plan.replicas;
  const used = replicas.slice(0, n);
  mesh.resolver.insert(
    TARGET,
    used.map((r) => DomusAddr.tcp('127.0.0.1', r.port)),
  );
  const caller = await mesh.domus(`caller-${n}`);
  try {
    const before = await Promise.all(used.map((r) => r.counts()));
    const message = payloadOf(PAYLOAD);
    const samples: number[] = [];
    const measureFrom = performance.now() + timing.warmupMs;
    const rate = await measureRate(
      async () => {
        const start = performance.now();
        await caller.send(codec, TARGET, message);
        if (start >= measureFrom) samples.push((performance.now() - start) * 1000);
      },
      inflight,
      timing,
    );
    const after = await Promise.all(used.map((r) => r.counts()));
    const counts = after.map((a, i) => a.accepted - before[i]!.accepted);
    const total = counts.reduce((sum, c) => sum + c, 0);
    const replicaCpuUs = after.reduce((sum, a, i) => sum + a.cpuUs - before[i]!.cpuUs, 0);
    return {
      replicas: n,
      rate,
      latency: latencyStats(samples),
      shares: counts.map((c) => (total === 0 ? 0 : c / total)),
      callerCpuUs: rate.cpuUsPerOp,
      replicaCpuUs: total === 0 ? Number.NaN : replicaCpuUs / total,
    };
  } finally {
    await caller.shutdown();
  }
}

/** Records a case: rate, its ratio to one replica, p50/p99, and each replica's share. */
function recordCase(
  ctx: SuiteContext,
  who: Recorder,
  measured: ReplicaCase,
  single: ReplicaCase | undefined,
): void {
  const { inflight } = ctx.plan.replicas;
  const key = replicasWorkload(measured.replicas, inflight);
  const cpuUsPerOp = measured.callerCpuUs + measured.replicaCpuUs;
  ctx.record({
    workload: key.id,
    title: key.title,
    ...who,
    metric: 'msg/s',
    unit: 'msg/s',
    better: 'higher',
    value: measured.rate.median,
    runs: measured.rate.runs,
    ...(Number.isFinite(cpuUsPerOp) ? { cpuUsPerOp } : {}),
    note: 'acknowledged sends; CPU/msg counts the caller and every replica process',
  });
  recordLatency(ctx, who, key, measured.latency);
  // Where the CPU goes: the caller (balancing included) and the replicas that serve the calls.
  for (const [metric, value] of [
    ['CPU/msg caller', measured.callerCpuUs],
    ['CPU/msg replicas', measured.replicaCpuUs],
  ] as const) {
    ctx.record({
      workload: key.id,
      title: key.title,
      ...who,
      metric,
      unit: 'µs',
      better: 'lower',
      ...(Number.isFinite(value) ? { value } : { note: 'no call completed' }),
    });
  }
  if (single && measured !== single) {
    for (const [metric, value, reference, better] of [
      ['msg/s ÷ 1 replica', measured.rate.median, single.rate.median, 'higher'],
      ['p50 ÷ 1 replica', measured.latency.p50, single.latency.p50, 'lower'],
      ['p99 ÷ 1 replica', measured.latency.p99, single.latency.p99, 'lower'],
    ] as const) {
      const value_ = ratio(value, reference);
      ctx.record({
        workload: key.id,
        title: key.title,
        ...who,
        metric,
        unit: '×',
        better,
        ...(value_ === undefined
          ? { note: 'the 1-replica case measured nothing' }
          : { value: value_ }),
      });
    }
  }
  measured.shares.forEach((share, i) => {
    ctx.record({
      workload: key.id,
      title: key.title,
      ...who,
      metric: `share r${i + 1}`,
      unit: '%',
      better: 'higher',
      value: share * 100,
      note: `replica ${i + 1}'s share of the calls it was sent`,
    });
  });
}

/**
 * Starts `count` replica servers sharing one identity, each in a child process running the built
 * package. If one fails to start, those already started are stopped before the rejection.
 */
async function startReplicas(ctx: SuiteContext, count: number): Promise<ReplicaProcess[]> {
  const script = replicaServerScript();
  const node = await ctx.fixture.node('replica');
  const start = {
    type: 'start',
    caPem: node.pem.ca,
    certPem: node.pem.cert,
    keyPem: node.pem.key.toString('utf8'),
    taberna: TARGET.toString(),
  } as const;
  const settled = await Promise.allSettled(
    Array.from({ length: count }, (_, i) =>
      ReplicaProcess.start(script, `replica ${i + 1}`, start),
    ),
  );
  const started = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) {
    await Promise.all(started.map((r) => r.stop()));
    throw failed.reason;
  }
  return started;
}

/**
 * The Aurelia engine calling one route that names 1, 2 and then 3 replica servers, each a child
 * process; the calling domus runs in this process over loopback TCP. Each count is measured in
 * the same run, so its ratios to the 1-replica case compare like with like.
 */
export const replicasSuite: BenchSuite = {
  system: 'engine',
  name: 'aurelia replicas',
  async run(ctx) {
    const counts = ctx.plan.replicas.counts;
    const who: Recorder = { system: 'aurelia engine', role: 'aurelia', transport: 'tcp' };
    const mesh = new EngineMesh(ctx, 'tcp');
    let replicas: ReplicaProcess[] = [];
    try {
      ctx.progress(`starting ${Math.max(...counts)} replica processes`);
      replicas = await startReplicas(ctx, Math.max(...counts));
      let single: ReplicaCase | undefined;
      for (const n of counts) {
        ctx.progress(`engine calls over ${n} replica${n === 1 ? '' : 's'}`);
        const measured = await measureCase(ctx, mesh, replicas, n);
        if (n === 1) single = measured;
        recordCase(ctx, who, measured, single);
      }
    } finally {
      await mesh.close();
      await Promise.all(replicas.map((r) => r.stop()));
    }
  },
};
