// Timing loops shared by every workload: warm-up, closed-loop rates, windowed event rates, latency.
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { AureliaError, ErrorId } from '../../engine/errors.js';
import { latencyStats, median, type LatencyStats } from './stats.js';

/** How long each measurement runs. */
export interface Timing {
  /** Time spent running the operation before measuring (ms). */
  readonly warmupMs: number;
  /** Length of one measured run (ms). */
  readonly runMs: number;
  /** Number of measured runs; rates report their median. */
  readonly runs: number;
}

/** A rate measured over several runs. */
export interface RateResult {
  /** The median of `runs` (operations per second). */
  readonly median: number;
  /** Each run's rate (operations per second). */
  readonly runs: readonly number[];
  /**
   * Process CPU time (user + system, every thread) per operation over the measured runs, in
   * microseconds: what one operation costs whoever shares the machine, and far less sensitive
   * than the rate to other processes taking the CPU away.
   */
  readonly cpuUsPerOp: number;
}

/**
 * Measures the sustained rate of `op` with `inflight` calls outstanding at all times (a closed
 * loop: each completion starts the next call). Runs `timing.warmupMs` unmeasured first, then
 * `timing.runs` back-to-back windows of `timing.runMs`, and resolves with the rate of each window
 * and their median. Rejects with the first error `op` rejects with (all loops are stopped first).
 */
export async function measureRate(
  op: () => Promise<unknown>,
  inflight: number,
  timing: Timing,
): Promise<RateResult> {
  checkCount('in-flight count', inflight);
  let completed = 0;
  let running = true;
  let failure: unknown;
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        await op();
      } catch (err) {
        failure ??= err;
        running = false;
        return;
      }
      completed++;
    }
  };
  const loops = Array.from({ length: inflight }, loop);
  const rates: number[] = [];
  const cpu = new CpuMeter();
  try {
    await delay(timing.warmupMs);
    cpu.start(completed);
    for (let run = 0; run < timing.runs && running; run++) {
      const startCount = completed;
      const start = performance.now();
      await delay(timing.runMs);
      rates.push(((completed - startCount) * 1000) / (performance.now() - start));
    }
    cpu.stop(completed);
  } finally {
    running = false;
    await Promise.all(loops);
  }
  if (failure !== undefined) throw failure;
  return { median: median(rates), runs: rates, cpuUsPerOp: cpu.perOp() };
}

/**
 * Flow control for fire-and-forget workloads (events): the sender may have at most `limit`
 * messages that the receiver has not counted yet. The receiver calls `received()` per message.
 */
export class InflightWindow {
  private outstanding = 0;
  private wake: (() => void) | undefined;
  /** Messages the receiver has counted so far. */
  delivered = 0;

  /** Throws `AureliaError(InvalidConfig)` for a limit that is not a positive integer. */
  constructor(readonly limit: number) {
    checkCount('in-flight count', limit);
  }

  /** Records a send; resolves at once while below the limit, else once the receiver catches up. */
  acquire(): Promise<void> | undefined {
    this.outstanding++;
    if (this.outstanding <= this.limit) return undefined;
    return new Promise<void>((resolve) => {
      this.wake = resolve;
    });
  }

  /** Called by the receiver for each message it got. */
  received(): void {
    this.delivered++;
    this.outstanding--;
    if (this.wake && this.outstanding <= this.limit) {
      const wake = this.wake;
      this.wake = undefined;
      wake();
    }
  }
}

/**
 * Measures the delivery rate of a fire-and-forget `emit` kept at most `window.limit` messages
 * ahead of the receiver, which must call `window.received()` for every message. A window that
 * sees no delivery for `stallMs` rejects with `AureliaError(SendTimeout)`.
 */
export async function measureWindowedRate(
  emit: () => void,
  window: InflightWindow,
  timing: Timing,
  stallMs = 5000,
): Promise<RateResult> {
  let running = true;
  let lastDelivered = 0;
  let lastProgress = performance.now();
  const pump = async (): Promise<void> => {
    while (running) {
      const wait = window.acquire();
      emit();
      if (wait) await wait;
    }
  };
  const pumping = pump();
  const rates: number[] = [];
  const watchdog = setInterval(() => {
    if (window.delivered !== lastDelivered) {
      lastDelivered = window.delivered;
      lastProgress = performance.now();
    }
  }, 50);
  const cpu = new CpuMeter();
  try {
    await delay(timing.warmupMs);
    cpu.start(window.delivered);
    for (let run = 0; run < timing.runs; run++) {
      const startCount = window.delivered;
      const start = performance.now();
      await delay(timing.runMs);
      if (performance.now() - lastProgress > stallMs) {
        throw new AureliaError(
          ErrorId.SendTimeout,
          `no message was delivered for ${stallMs} ms while measuring an event rate`,
        );
      }
      rates.push(((window.delivered - startCount) * 1000) / (performance.now() - start));
    }
    cpu.stop(window.delivered);
  } finally {
    running = false;
    clearInterval(watchdog);
    // Unblock a pump parked on a full window whose messages will never arrive.
    for (let i = 0; i < window.limit + 1; i++) window.received();
    await pumping;
  }
  return { median: median(rates), runs: rates, cpuUsPerOp: cpu.perOp() };
}

/**
 * Measures the latency of `op` run one at a time: warms up for `timing.warmupMs`, then records
 * every call for `timing.runMs × timing.runs` (at least `minSamples` calls). Resolves with the
 * percentiles in microseconds; rejects with the first error `op` rejects with.
 */
export async function measureLatency(
  op: () => Promise<unknown>,
  timing: Timing,
  minSamples = 100,
): Promise<LatencyStats> {
  const warmEnd = performance.now() + timing.warmupMs;
  while (performance.now() < warmEnd) await op();
  const samples: number[] = [];
  const end = performance.now() + timing.runMs * timing.runs;
  while (performance.now() < end || samples.length < minSamples) {
    const start = performance.now();
    await op();
    samples.push((performance.now() - start) * 1000);
  }
  return latencyStats(samples);
}

/** Process CPU time spent between `start` and `stop`, divided by the operations in between. */
class CpuMeter {
  private usage: NodeJS.CpuUsage | undefined;
  private ops = 0;
  private micros = 0;

  start(count: number): void {
    this.usage = process.cpuUsage();
    this.ops = -count;
  }

  stop(count: number): void {
    const used = process.cpuUsage(this.usage);
    this.micros = used.user + used.system;
    this.ops += count;
  }

  /** Microseconds per operation; `NaN` when nothing completed. */
  perOp(): number {
    return this.ops > 0 ? this.micros / this.ops : Number.NaN;
  }
}

let gcFunction: (() => void) | undefined;

/**
 * Runs a full garbage collection (twice, so weakly held and finalised objects go too). Works
 * without `--expose-gc`: the flag is switched on at run time and `gc` taken from a fresh context.
 */
export function collectGarbage(): void {
  if (!gcFunction) {
    setFlagsFromString('--expose-gc');
    gcFunction = runInNewContext('gc') as () => void;
  }
  gcFunction();
  gcFunction();
}

function checkCount(what: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${what} must be a positive integer, got ${value}`,
    );
  }
}
