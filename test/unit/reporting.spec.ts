import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { firstValueFrom, take, toArray } from 'rxjs';
import { AureliaError, ErrorId } from '../../lib/engine/errors.js';
import { LatencyHistogram } from '../../lib/engine/reporting/histogram.js';
import { MetricsRecorder } from '../../lib/engine/reporting/metrics.js';
import { DomusReporting, type DomusReportingEvent } from '../../lib/engine/reporting/reporting.js';

function exactQuantile(sorted: number[], q: number): number {
  return sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
}

describe('LatencyHistogram', () => {
  it('reports percentiles within one bucket (about 3 %) of the exact values', () => {
    fc.assert(
      fc.property(
        fc.array(fc.double({ min: 0.001, max: 60_000, noNaN: true }), {
          minLength: 1,
          maxLength: 400,
        }),
        (samples) => {
          const h = new LatencyHistogram();
          for (const s of samples) h.record(s);
          const sorted = [...samples].sort((a, b) => a - b);
          const summary = h.summary();
          expect(summary.count).toBe(samples.length);
          expect(summary.maxMs).toBeCloseTo(sorted.at(-1)!, 6);
          for (const [q, got] of [
            [0.5, summary.p50Ms],
            [0.9, summary.p90Ms],
            [0.99, summary.p99Ms],
          ] as const) {
            const exact = exactQuantile(sorted, q);
            // Reported values are bucket upper bounds: never below, at most ~3.2 % (or 1 µs) above.
            expect(got).toBeGreaterThanOrEqual(exact - 1e-9);
            expect(got).toBeLessThanOrEqual(exact * 1.032 + 0.001);
          }
        },
      ),
    );
  });

  it('is all zeros when empty and after reset', () => {
    const h = new LatencyHistogram();
    expect(h.summary()).toEqual({ count: 0, p50Ms: 0, p90Ms: 0, p99Ms: 0, maxMs: 0 });
    h.record(5);
    h.reset();
    expect(h.summary().count).toBe(0);
  });

  it('counts negative durations as zero and clamps absurdly long ones into the last bucket', () => {
    const h = new LatencyHistogram();
    h.record(-3);
    h.record(1e15);
    const s = h.summary();
    expect(s.count).toBe(2);
    expect(s.p50Ms).toBeLessThanOrEqual(0.001);
    expect(s.maxMs).toBe(1e15);
  });
});

describe('MetricsRecorder', () => {
  it('reports counter increments since the last reset and keeps cumulative totals', () => {
    const m = new MetricsRecorder();
    m.messagesSent += 5;
    m.bytesOut += 100;
    const first = m.snapshotAndReset();
    expect(first.messagesSent).toBe(5);
    expect(first.bytesOut).toBe(100);
    m.messagesSent += 2;
    const second = m.snapshotAndReset();
    expect(second.messagesSent).toBe(2);
    expect(second.bytesOut).toBe(0);
    expect(m.snapshot().messagesSent).toBe(7);
  });

  it('tracks current gauges, the peak over each interval and the peak ever', () => {
    const m = new MetricsRecorder();
    m.peerDelta(1);
    m.peerDelta(1);
    m.peerDelta(1);
    m.peerDelta(-1);
    m.callisDelta('primary', 1);
    m.callisDelta('primary', -1);
    const first = m.snapshotAndReset();
    expect(first.currentPeers).toBe(2);
    expect(first.peakPeers).toBe(3);
    expect(first.callisOpened).toBe(1);
    expect(first.callisClosed).toBe(1);
    expect(first.peakPrimaryCallis).toBe(1);
    const second = m.snapshotAndReset();
    expect(second.peakPeers).toBe(2); // the peak of an interval starts at the current value
    expect(second.peakPrimaryCallis).toBe(0);
    expect(m.snapshot().peakPeers).toBe(3);
  });

  it('summarises send latency per interval and since build', () => {
    const m = new MetricsRecorder();
    for (let i = 1; i <= 100; i++) m.recordSendLatency(i);
    const delta = m.snapshotAndReset();
    expect(delta.sendLatency.count).toBe(100);
    expect(delta.sendLatency.p50Ms).toBeGreaterThanOrEqual(50);
    expect(delta.sendLatency.p50Ms).toBeLessThan(52);
    expect(delta.sendLatency.maxMs).toBe(100);
    expect(m.snapshotAndReset().sendLatency.count).toBe(0);
    expect(m.snapshot().sendLatency.count).toBe(100);
  });
});

describe('DomusReporting', () => {
  const reporting = (): DomusReporting => new DomusReporting(new MetricsRecorder(), () => []);
  const event = (i: number): DomusReportingEvent => ({
    type: 'ConfigReloaded',
    at: i,
    changed: [],
  });

  it('delivers events to subscribers on a later turn, never inside the engine call', async () => {
    const r = reporting();
    const seen: number[] = [];
    r.events$.subscribe((e) => seen.push(e.at));
    r.emit(event(1));
    r.emit(event(2));
    expect(seen).toEqual([]);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(seen).toEqual([1, 2]);
  });

  it('drops the oldest items, and counts them, when a subscriber falls far behind', async () => {
    const r = reporting();
    const seen: number[] = [];
    r.events$.subscribe((e) => seen.push(e.at));
    for (let i = 0; i < 10_005; i++) r.emit(event(i));
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(seen).toHaveLength(10_000);
    expect(seen[0]).toBe(5);
    expect(r.droppedFeedItems).toBe(5);
  });

  it('keeps nothing when nobody listens', async () => {
    const r = reporting();
    r.emit(event(1));
    const seen: number[] = [];
    r.events$.subscribe((e) => seen.push(e.at));
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(seen).toEqual([]);
  });

  it('carries errors and completes both feeds on close after what is pending', async () => {
    const r = reporting();
    const errors = firstValueFrom(r.errors$.pipe(toArray()));
    const events = firstValueFrom(r.events$.pipe(toArray()));
    r.error(new AureliaError(ErrorId.ProtocolViolation, 'bad frame'));
    r.emit(event(9));
    r.close();
    r.emit(event(10));
    expect((await errors).map((e) => e.kind)).toEqual([ErrorId.ProtocolViolation]);
    expect((await events).map((e) => e.at)).toEqual([9]);
  });

  it('samples metrics deltas on an interval and refuses a bad interval', async () => {
    const recorder = new MetricsRecorder();
    const r = new DomusReporting(recorder, () => []);
    recorder.messagesSent = 3;
    const [delta] = await firstValueFrom(r.metrics$(10).pipe(take(1), toArray()));
    expect(delta!.messagesSent).toBe(3);
    for (const bad of [0, 9, 1.5, 3_600_001]) {
      expect(() => r.metrics$(bad)).toThrow(
        expect.objectContaining({ kind: ErrorId.InvalidConfig }) as unknown as Error,
      );
    }
  });
});
