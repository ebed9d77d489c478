// Pure statistics of benchmark samples: percentiles, medians and ratios, no clocks or sockets.
import { AureliaError, ErrorId } from '../../engine/errors.js';

/** Percentiles of a set of latency samples, in microseconds. */
export interface LatencyStats {
  /** Number of samples summarised. */
  readonly count: number;
  /** Median latency (µs). */
  readonly p50: number;
  /** 99th percentile latency (µs). */
  readonly p99: number;
  /** Smallest sample (µs). */
  readonly min: number;
  /** Largest sample (µs). */
  readonly max: number;
}

/**
 * The `q`-quantile (0 ≤ q ≤ 1) of `sorted` (ascending) by the nearest-rank method: the smallest
 * sample such that at least `q` of all samples are at or below it. Throws
 * `AureliaError(InvalidConfig)` for an empty array or a `q` outside 0..1.
 */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) {
    throw new AureliaError(ErrorId.InvalidConfig, 'cannot take a quantile of no samples');
  }
  if (!(q >= 0 && q <= 1)) {
    throw new AureliaError(ErrorId.InvalidConfig, `quantile must be in 0..1, got ${q}`);
  }
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[rank - 1]!;
}

/**
 * Summarises latency samples (µs, any order; the input is not modified). Throws
 * `AureliaError(InvalidConfig)` when there are no samples or one is not a finite number ≥ 0.
 */
export function latencyStats(samples: ArrayLike<number>): LatencyStats {
  const sorted = Float64Array.from(samples as ArrayLike<number>);
  for (const value of sorted) {
    if (!Number.isFinite(value) || value < 0) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `latency samples must be finite and non-negative, got ${value}`,
      );
    }
  }
  if (sorted.length === 0) {
    throw new AureliaError(ErrorId.InvalidConfig, 'no latency samples were recorded');
  }
  sorted.sort();
  return {
    count: sorted.length,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!,
  };
}

/**
 * The median of `values` (the mean of the two middle values for an even count). Throws
 * `AureliaError(InvalidConfig)` for an empty array or a non-finite value.
 */
export function median(values: readonly number[]): number {
  if (values.length === 0) {
    throw new AureliaError(ErrorId.InvalidConfig, 'cannot take the median of no values');
  }
  for (const value of values) {
    if (!Number.isFinite(value)) {
      throw new AureliaError(ErrorId.InvalidConfig, `median of a non-finite value ${value}`);
    }
  }
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Whether a larger figure is better (rates, throughput) or a smaller one (latency, memory). */
export type Better = 'higher' | 'lower';

/**
 * `value / reference`, the form DESIGN.md states its targets in (a rate ratio above 1 is faster
 * than the reference, a latency ratio above 1 is slower). Returns `undefined` when either figure
 * is missing, zero, negative or not finite.
 */
export function ratio(
  value: number | undefined,
  reference: number | undefined,
): number | undefined {
  if (value === undefined || reference === undefined) return undefined;
  if (!Number.isFinite(value) || !Number.isFinite(reference) || value <= 0 || reference <= 0) {
    return undefined;
  }
  return value / reference;
}

/**
 * The best of `values` (the largest when higher is better, else the smallest), ignoring missing
 * entries; `undefined` when none is present.
 */
export function bestOf(
  values: readonly (number | undefined)[],
  better: Better,
): number | undefined {
  let best: number | undefined;
  for (const value of values) {
    if (value === undefined || !Number.isFinite(value)) continue;
    if (best === undefined || (better === 'higher' ? value > best : value < best)) best = value;
  }
  return best;
}
