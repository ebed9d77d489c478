import { describe, expect, it } from '@jest/globals';
import { Logger, type LoggerService } from '@nestjs/common';
import fc from 'fast-check';
import { AureliaError, ErrorId } from '../../lib/engine/errors.js';
import {
  RateLimitedLogger,
  silentLogger,
  type AureliaLogContext,
  type AureliaLogger,
} from '../../lib/engine/logger.js';
import { LogCapture } from '../support/logs.js';

function clock(start = 1_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

describe('AureliaLogger', () => {
  it('accepts a Nest Logger and any Nest LoggerService without adaptation', () => {
    const nest: AureliaLogger = new Logger('Aurelia');
    const service: LoggerService = { log: () => 1, error: () => 2, warn: () => 3 };
    const asAurelia: AureliaLogger = service;
    expect(typeof nest.warn).toBe('function');
    expect(asAurelia.debug).toBeUndefined();
    const limited = new RateLimitedLogger(service);
    expect(limited.debug('k', 'skipped without a debug method')).toBe(false);
  });

  it('silentLogger discards every level without throwing', () => {
    expect(() => {
      silentLogger.error('e', { a: 1 });
      silentLogger.warn('w');
      silentLogger.log('l');
      silentLogger.debug?.('d');
    }).not.toThrow();
    expect(Object.isFrozen(silentLogger)).toBe(true);
  });
});

describe('RateLimitedLogger', () => {
  it('writes the first line of a key at once, with its context', () => {
    const target = new LogCapture();
    const limited = new RateLimitedLogger(target, { intervalMs: 1000, now: clock().now });
    expect(limited.warn('dial:a', 'dial to a failed', { address: 'tls://a:1' })).toBe(true);
    expect(target.plain()).toEqual([
      { level: 'warn', message: 'dial to a failed', context: { address: 'tls://a:1' } },
    ]);
  });

  it('drops repeats within the interval and reports their count on the next line', () => {
    const target = new LogCapture();
    const c = clock();
    const limited = new RateLimitedLogger(target, { intervalMs: 1000, now: c.now });
    limited.warn('dial:a', 'dial to a failed');
    c.advance(10);
    expect(limited.warn('dial:a', 'dial to a failed')).toBe(false);
    c.advance(500);
    expect(limited.error('dial:a', 'dial to a failed')).toBe(false);
    expect(limited.suppressedCount('dial:a')).toBe(2);
    expect(target.lines).toHaveLength(1);

    c.advance(490); // exactly one interval after the first line
    expect(limited.warn('dial:a', 'dial to a failed', { attempt: 4 })).toBe(true);
    expect(target.plain()[1]).toEqual({
      level: 'warn',
      message: 'dial to a failed (2 similar suppressed)',
      context: { attempt: 4, suppressed: 2 },
    });
    expect(limited.suppressedCount('dial:a')).toBe(0);

    c.advance(1000);
    limited.warn('dial:a', 'dial to a failed');
    expect(target.plain()[2]).toEqual({ level: 'warn', message: 'dial to a failed' });
  });

  it('limits each key independently', () => {
    const target = new LogCapture();
    const limited = new RateLimitedLogger(target, { intervalMs: 1000, now: clock().now });
    limited.warn('a', 'peer a');
    limited.warn('b', 'peer b');
    limited.warn('a', 'peer a');
    expect(target.lines.map((l) => l.message)).toEqual(['peer a', 'peer b']);
  });

  it('writes at most one line per key per interval, and loses no count of the lines it drops', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 0, max: 400 })), {
          maxLength: 200,
        }),
        fc.integer({ min: 1, max: 1000 }),
        (steps, intervalMs) => {
          const target = new LogCapture();
          const c = clock();
          const limited = new RateLimitedLogger(target, { intervalMs, now: c.now });
          const written = new Map<string, number[]>();
          const writtenKeys: string[] = [];
          for (const [key, gap] of steps) {
            c.advance(gap);
            if (limited.log(key, key)) {
              written.set(key, [...(written.get(key) ?? []), c.now()]);
              writtenKeys.push(key);
            }
          }
          for (const times of written.values()) {
            for (let i = 1; i < times.length; i++) {
              expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(intervalMs);
            }
          }
          // Every call is either a written line or counted: in a later line or still pending.
          const reported = target.lines.reduce(
            (sum, l) =>
              sum +
              (((l.context as AureliaLogContext | undefined)?.suppressed as number | undefined) ??
                0),
            0,
          );
          const pending = ['a', 'b', 'c'].reduce((sum, k) => sum + limited.suppressedCount(k), 0);
          expect(target.lines.length + reported + pending).toBe(steps.length);
          expect(target.lines.map((l) => l.message.split(' ')[0])).toEqual(writtenKeys);
        },
      ),
    );
  });

  it('applies a changed interval to the next line', () => {
    const target = new LogCapture();
    const c = clock();
    const limited = new RateLimitedLogger(target, { intervalMs: 60_000, now: c.now });
    limited.log('k', 'x');
    c.advance(100);
    expect(limited.log('k', 'x')).toBe(false);
    limited.intervalMs = 50;
    expect(limited.log('k', 'x')).toBe(true);
    expect(target.lines[1]!.message).toBe('x (1 similar suppressed)');
  });

  it('forgets the oldest key past maxKeys, so memory stays bounded', () => {
    const target = new LogCapture();
    const limited = new RateLimitedLogger(target, {
      intervalMs: 1000,
      maxKeys: 2,
      now: clock().now,
    });
    limited.log('a', 'a');
    limited.log('b', 'b');
    limited.log('c', 'c'); // evicts 'a'
    expect(limited.log('b', 'b')).toBe(false);
    expect(limited.log('a', 'a again')).toBe(true);
    expect(target.lines.map((l) => l.message)).toEqual(['a', 'b', 'c', 'a again']);
  });

  it('rejects an interval or key bound outside its range with InvalidConfig naming it', () => {
    const target = new LogCapture();
    for (const intervalMs of [0, -1, 1.5, 3_600_001, Number.NaN]) {
      expect(() => new RateLimitedLogger(target, { intervalMs })).toThrow(
        expect.objectContaining({ kind: ErrorId.InvalidConfig }),
      );
    }
    expect(() => new RateLimitedLogger(target, { maxKeys: 0 })).toThrow(/maxKeys/);
    const limited = new RateLimitedLogger(target);
    expect(limited.intervalMs).toBe(120_000);
    expect(() => {
      limited.intervalMs = 0;
    }).toThrow(/intervalMs must be an integer in 1\.\.3600000, got 0/);
    expect(() => new RateLimitedLogger({} as AureliaLogger)).toThrow(AureliaError);
  });
});
