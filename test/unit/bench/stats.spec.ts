import fc from 'fast-check';

import { bestOf, latencyStats, median, quantile, ratio } from '../../../lib/cli/bench/stats.js';
import { AureliaError, ErrorId } from '../../../lib/index.js';

const finite = fc.double({ min: 0, max: 1e9, noNaN: true, noDefaultInfinity: true });

describe('benchmark statistics', () => {
  it('takes nearest-rank percentiles: p50 of 1..100 is 50 and p99 is 99', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i);
    const stats = latencyStats(samples);
    expect(stats).toEqual({ count: 100, p50: 50, p99: 99, min: 1, max: 100 });
  });

  it('reports p99 as the largest sample when there are fewer than 100 samples', () => {
    expect(latencyStats([5, 1, 3]).p99).toBe(5);
    expect(latencyStats([7]).p50).toBe(7);
  });

  it('orders min ≤ p50 ≤ p99 ≤ max and picks values that were sampled', () => {
    fc.assert(
      fc.property(fc.array(finite, { minLength: 1, maxLength: 300 }), (samples) => {
        const stats = latencyStats(samples);
        expect(stats.min).toBeLessThanOrEqual(stats.p50);
        expect(stats.p50).toBeLessThanOrEqual(stats.p99);
        expect(stats.p99).toBeLessThanOrEqual(stats.max);
        expect(samples).toContain(stats.p50);
        expect(samples).toContain(stats.p99);
      }),
    );
  });

  it('leaves the caller’s samples in their original order', () => {
    const samples = [3, 1, 2];
    latencyStats(samples);
    expect(samples).toEqual([3, 1, 2]);
  });

  it('refuses empty, negative or non-finite samples with InvalidConfig naming the problem', () => {
    const failure = (f: () => unknown): AureliaError => {
      try {
        f();
      } catch (err) {
        if (err instanceof AureliaError) return err;
      }
      throw new Error('expected an AureliaError');
    };
    expect(failure(() => latencyStats([])).message).toContain('no latency samples');
    expect(failure(() => latencyStats([1, -1])).kind).toBe(ErrorId.InvalidConfig);
    expect(failure(() => latencyStats([Number.NaN])).message).toContain('NaN');
    expect(failure(() => quantile([1], 1.5)).message).toContain('0..1');
    expect(failure(() => median([])).kind).toBe(ErrorId.InvalidConfig);
  });

  it('takes the median of an odd count as the middle value and of an even count as the mean of the middle two', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
  });

  it('has as many values at or below the median as at or above it', () => {
    fc.assert(
      fc.property(fc.array(finite, { minLength: 1, maxLength: 50 }), (values) => {
        const m = median(values);
        expect(values.filter((v) => v <= m).length).toBeGreaterThanOrEqual(values.length / 2);
        expect(values.filter((v) => v >= m).length).toBeGreaterThanOrEqual(values.length / 2);
      }),
    );
  });

  it('gives value / reference as the ratio, and nothing when either is missing or zero', () => {
    expect(ratio(300, 100)).toBe(3);
    expect(ratio(150, 100)).toBe(1.5);
    expect(ratio(undefined, 100)).toBeUndefined();
    expect(ratio(100, 0)).toBeUndefined();
    expect(ratio(100, Number.POSITIVE_INFINITY)).toBeUndefined();
  });

  it('picks the largest value when higher is better and the smallest when lower is', () => {
    expect(bestOf([3, undefined, 9, 1], 'higher')).toBe(9);
    expect(bestOf([3, undefined, 9, 1], 'lower')).toBe(1);
    expect(bestOf([undefined], 'higher')).toBeUndefined();
  });
});
