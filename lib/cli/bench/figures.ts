// Turns measurements into the figures every suite records, so all systems use the same keys.
import { AureliaError } from '../../engine/errors.js';
import type { RateResult } from './measure.js';
import { rateWorkload, type SuiteContext } from './plan.js';
import type { BenchTransport, FigureRole } from './report.js';
import type { LatencyStats } from './stats.js';

/** Who a suite records figures as. */
export interface Recorder {
  readonly system: string;
  readonly role: FigureRole;
  readonly transport: BenchTransport;
}

/** The round-trip workload key. */
export const ROUND_TRIP = { id: 'rtt-64', title: 'round trip 64 B' } as const;
/** The connect + first message workload key. */
export const CONNECT = { id: 'connect', title: 'connect + first msg' } as const;

/** Records p50 and p99 of a latency measurement (µs) under `workload`. */
export function recordLatency(
  ctx: SuiteContext,
  who: Recorder,
  workload: { readonly id: string; readonly title: string },
  stats: LatencyStats,
  unit: 'µs' | 'ms' = 'µs',
): void {
  const scale = unit === 'ms' ? 1 / 1000 : 1;
  for (const [metric, value] of [
    ['p50', stats.p50],
    ['p99', stats.p99],
  ] as const) {
    ctx.record({
      workload: workload.id,
      title: workload.title,
      ...who,
      metric,
      unit,
      better: 'lower',
      value: value * scale,
    });
  }
}

/** Records the median rate (msg/s) of a `kind` rate workload with `payload` bytes and `inflight`. */
export function recordRate(
  ctx: SuiteContext,
  who: Recorder,
  payload: number,
  inflight: number,
  rate: RateResult,
  note?: string,
  kind: 'request' | 'event' = 'request',
): void {
  const { id, title } = rateWorkload(payload, inflight, kind);
  ctx.record({
    workload: id,
    title,
    ...who,
    metric: 'msg/s',
    unit: 'msg/s',
    better: 'higher',
    value: rate.median,
    runs: rate.runs,
    ...(Number.isFinite(rate.cpuUsPerOp) ? { cpuUsPerOp: rate.cpuUsPerOp } : {}),
    ...(note === undefined ? {} : { note }),
  });
}

/** Records a workload that did not produce a figure, with the reason. */
export function recordSkipped(
  ctx: SuiteContext,
  who: Recorder,
  workload: { readonly id: string; readonly title: string },
  metric: string,
  reason: string,
): void {
  ctx.record({
    workload: workload.id,
    title: workload.title,
    ...who,
    metric,
    unit: '',
    better: 'higher',
    note: reason,
  });
}

/** A one-line description of a failure for a skipped figure. */
export function describeFailure(err: unknown): string {
  if (err instanceof AureliaError) return err.message;
  if (err instanceof Error) return err.message.split('\n')[0]!;
  return String(err);
}

/** A payload of `size` bytes (deterministic content, so every system sends the same bytes). */
export function payloadOf(size: number): Buffer {
  const buffer = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) buffer[i] = (i * 31 + 7) & 0xff;
  return buffer;
}
