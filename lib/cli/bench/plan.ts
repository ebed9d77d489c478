// What a run measures and for how long: the quick and full plans, and the options that pick one.
import { AureliaError, ErrorId } from '../../engine/errors.js';
import type { BenchFixture } from './fixture.js';
import type { Timing } from './measure.js';
import type { BenchTransport, Figure } from './report.js';

/** Groups of workloads `--only` can select. */
export const WORKLOAD_GROUPS = [
  'latency',
  'rate',
  'bulk',
  'connect',
  'memory',
  'replicas',
] as const;
/** One group of workloads. */
export type WorkloadGroup = (typeof WORKLOAD_GROUPS)[number];

/** Systems `--systems` can select. */
export const BENCH_SYSTEMS = [
  'raw',
  'engine',
  'nest-aurelia',
  'nest-floor',
  'nest-tcp',
  'grpc',
  'moleculer',
] as const;
/** One system under test. */
export type BenchSystem = (typeof BENCH_SYSTEMS)[number];

/** Everything a run measures, with its durations and sizes. */
export interface BenchPlan {
  readonly mode: 'quick' | 'full';
  readonly groups: ReadonlySet<WorkloadGroup>;
  readonly systems: ReadonlySet<BenchSystem>;
  readonly transports: readonly BenchTransport[];
  /** Timing of rate workloads (median of `runs`). */
  readonly rateTiming: Timing;
  /** Timing of latency workloads (all runs pooled into one set of percentiles). */
  readonly latencyTiming: Timing;
  /** Messages in flight for rate workloads. */
  readonly inflights: readonly number[];
  /** Payload sizes (bytes) for rate workloads. */
  readonly payloads: readonly number[];
  /** One large stream: its size in bytes. */
  readonly bulkSingleBytes: number;
  /** Concurrent streams: how many, and the bytes of each. */
  readonly bulkConcurrent: { readonly streams: number; readonly bytes: number };
  /** Fresh connections timed for connect + first message. */
  readonly connectSamples: number;
  /** Idle peers connected to one domus for the memory workload. */
  readonly idlePeers: number;
  /** Tabernae registered for the memory workload. */
  readonly tabernae: number;
  /**
   * The replicas workload: the replica counts measured (each its own route, in this order; the
   * 1-replica case is the reference of the ratios), calls in flight, and the timing of each.
   */
  readonly replicas: {
    readonly counts: readonly number[];
    readonly inflight: number;
    readonly timing: Timing;
  };
}

/** The command line options of `bench`, before validation. */
export interface BenchOptionsInput {
  readonly quick?: boolean;
  readonly json?: string;
  readonly only?: string;
  readonly systems?: string;
  readonly transport?: string;
}

/** Validated options: the plan and where to write JSON. */
export interface BenchOptions {
  readonly plan: BenchPlan;
  readonly json?: string;
}

const MiB = 1024 * 1024;

/**
 * Builds the plan for `quick` or full mode. Quick trims sizes and durations to finish in under a
 * minute on two cores; full runs the sizes the issue names (1 GiB, 16 × 64 MiB, 200 peers).
 */
export function benchPlan(quick: boolean): BenchPlan {
  const all = {
    groups: new Set(WORKLOAD_GROUPS),
    systems: new Set(BENCH_SYSTEMS),
    transports: ['tcp', 'unix'] as BenchTransport[],
    inflights: [1, 16, 256],
    payloads: [64, 4096],
  };
  if (quick) {
    return {
      ...all,
      mode: 'quick',
      rateTiming: { warmupMs: 60, runMs: 90, runs: 3 },
      latencyTiming: { warmupMs: 100, runMs: 250, runs: 1 },
      bulkSingleBytes: 64 * MiB,
      bulkConcurrent: { streams: 4, bytes: 16 * MiB },
      connectSamples: 15,
      idlePeers: 50,
      tabernae: 2000,
      replicas: { counts: [1, 2, 3], inflight: 32, timing: { warmupMs: 300, runMs: 400, runs: 3 } },
    };
  }
  return {
    ...all,
    mode: 'full',
    rateTiming: { warmupMs: 500, runMs: 1000, runs: 5 },
    latencyTiming: { warmupMs: 500, runMs: 1000, runs: 3 },
    bulkSingleBytes: 1024 * MiB,
    bulkConcurrent: { streams: 16, bytes: 64 * MiB },
    connectSamples: 60,
    idlePeers: 200,
    tabernae: 10000,
    replicas: { counts: [1, 2, 3], inflight: 32, timing: { warmupMs: 1000, runMs: 2000, runs: 3 } },
  };
}

/**
 * Validates the `bench` options and returns the plan. Throws `AureliaError(InvalidConfig)`
 * naming the option for an unknown group, system or transport, an empty list, or an empty
 * `--json` path.
 */
export function resolveBenchOptions(input: BenchOptionsInput): BenchOptions {
  const base = benchPlan(input.quick === true);
  if (input.json !== undefined && input.json.trim() === '') {
    throw new AureliaError(ErrorId.InvalidConfig, '--json needs a file path');
  }
  const groups = pickList('--only', input.only, WORKLOAD_GROUPS) ?? base.groups;
  const systems = pickList('--systems', input.systems, BENCH_SYSTEMS) ?? base.systems;
  let transports = base.transports;
  if (input.transport !== undefined) {
    const t = input.transport.trim();
    if (t === 'tcp' || t === 'unix') transports = [t];
    else if (t !== 'both') {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `--transport must be tcp, unix or both, got '${input.transport}'`,
      );
    }
  }
  return {
    plan: { ...base, groups, systems, transports },
    ...(input.json === undefined ? {} : { json: input.json }),
  };
}

function pickList<T extends string>(
  option: string,
  value: string | undefined,
  allowed: readonly T[],
): Set<T> | undefined {
  if (value === undefined) return undefined;
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${option} needs a comma-separated list of ${allowed.join(', ')}`,
    );
  }
  for (const item of items) {
    if (!(allowed as readonly string[]).includes(item)) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `${option} got unknown '${item}'; choose from ${allowed.join(', ')}`,
      );
    }
  }
  return new Set(items as T[]);
}

/** What a suite gets: the plan, the shared certificates and a progress log. */
export interface SuiteContext {
  readonly plan: BenchPlan;
  readonly fixture: BenchFixture;
  /** Reports progress (one line, no line break). */
  progress(line: string): void;
  /** Records a figure. */
  record(figure: Figure): void;
}

/** One system's workloads. `run` records figures; it closes everything it opened before settling. */
export interface BenchSuite {
  readonly system: BenchSystem;
  /** Display name, e.g. `node:tls`. */
  readonly name: string;
  run(ctx: SuiteContext): Promise<void>;
}

/**
 * Key and title of a rate workload. `request` rates count acknowledged messages (an accepted
 * Aurelia send, a Nest `send()` reply, a gRPC unary call); `event` rates count fire-and-forget
 * messages handled by the receiver (Nest `emit`, Moleculer events), kept at most `inflight` ahead.
 */
export function rateWorkload(
  payload: number,
  inflight: number,
  kind: 'request' | 'event' = 'request',
): { id: string; title: string } {
  const size = payload >= 1024 ? `${payload / 1024} KiB` : `${payload} B`;
  const what = kind === 'request' ? 'acked msgs' : 'events';
  return { id: `${kind}-${payload}-x${inflight}`, title: `${what} ${size}, ${inflight} in flight` };
}
