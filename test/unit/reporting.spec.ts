import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { config as rxjsConfig, firstValueFrom, lastValueFrom, map, take, toArray } from 'rxjs';
import { AureliaError, ErrorId } from '../../lib/engine/errors.js';
import { LatencyHistogram } from '../../lib/engine/reporting/histogram.js';
import { MetricsRecorder } from '../../lib/engine/reporting/metrics.js';
import { DomusReporting, type DomusReportingEvent } from '../../lib/engine/reporting/reporting.js';
import { eventually } from '../support/mesh.js';

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

  it('keeps separate windows that never reset each other', () => {
    const m = new MetricsRecorder();
    const a = m.openWindow(0);
    m.messagesSent += 5;
    m.peerDelta(1);
    m.recordSendLatency(4);
    const b = m.openWindow(10);
    m.messagesSent += 2;
    m.peerDelta(1);
    m.peerDelta(-1);
    expect(a.sample(20)).toMatchObject({ messagesSent: 7, peakPeers: 2, intervalMs: 20 });
    expect(a.sample(30)).toMatchObject({ messagesSent: 0, peakPeers: 1, intervalMs: 10 });
    const fromB = b.sample(40);
    expect(fromB).toMatchObject({ messagesSent: 2, peakPeers: 2, intervalMs: 30 });
    expect(fromB.sendLatency.count).toBe(0);
    expect(m.snapshotAndReset()).toMatchObject({ messagesSent: 7 });
    b.close();
    m.messagesSent += 1;
    expect(a.sample(50).messagesSent).toBe(1);
    expect(m.openWindows).toBe(2);
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
    await eventually(() => seen.length === 10_000, 'the 10 000 newest events');
    expect(seen[0]).toBe(5);
    expect(seen.at(-1)).toBe(10_004);
    expect(r.droppedFeedItems).toBe(5);
  });

  it('hands a backlog over in slices, so a slow subscriber never stalls timers', async () => {
    const r = reporting();
    const total = 600;
    let delivered = 0;
    // Deliveries since the ticker last ran, and the most it ever found: events, not wall time,
    // so a machine too busy to run the ticker on time cannot fail the test.
    let sinceTick = 0;
    let longestRun = 0;
    let ticks = 0;
    r.events$.subscribe(() => {
      const started = performance.now();
      while (performance.now() - started < 1); // a subscriber that takes ~1 ms per event
      delivered++;
      sinceTick++;
    });
    const ticker = setInterval(() => {
      ticks++;
      longestRun = Math.max(longestRun, sinceTick);
      sinceTick = 0;
    }, 1);
    try {
      for (let i = 0; i < total; i++) r.emit(event(i));
      await eventually(() => delivered === total, 'every event delivered', 30_000);
    } finally {
      clearInterval(ticker);
    }
    longestRun = Math.max(longestRun, sinceTick);
    // Handing the whole backlog over in one turn would run all 600 (≥ 0.6 s) before any timer.
    expect(ticks).toBeGreaterThan(0);
    expect(longestRun).toBeLessThan(total / 4);
  });

  it('contains a subscriber that throws: it is reported, and every subscriber keeps its feed', async () => {
    const reported: unknown[] = [];
    const r = new DomusReporting(
      new MetricsRecorder(),
      () => [],
      () => {},
      (err) => reported.push(err),
    );
    const unhandled: unknown[] = [];
    const previous = rxjsConfig.onUnhandledError;
    rxjsConfig.onUnhandledError = (err) => unhandled.push(err);
    try {
      const thrower: number[] = [];
      const calm: number[] = [];
      r.events$.subscribe((e) => {
        thrower.push(e.at);
        throw new Error(`subscriber failed on ${e.at}`);
      });
      r.events$
        .pipe(
          map((e) => {
            if (e.at === 1) throw new Error('operator failed');
            return e.at;
          }),
        )
        .subscribe(() => {});
      r.errors$.subscribe({
        next: () => {
          throw new Error('error subscriber failed');
        },
      });
      r.events$.subscribe((e) => calm.push(e.at));
      r.emit(event(1));
      r.emit(event(2));
      r.error(new AureliaError(ErrorId.ProtocolViolation, 'bad frame'));
      await eventually(() => calm.length === 2 && reported.length === 4, 'both events and reports');
      expect(thrower).toEqual([1, 2]);
      expect(calm).toEqual([1, 2]);
      expect((reported as Error[]).map((e) => e.message).sort()).toEqual([
        'error subscriber failed',
        'operator failed',
        'subscriber failed on 1',
        'subscriber failed on 2',
      ]);
      // rxjs reports unhandled errors on a later timer: one scheduled now runs after any of them.
      await new Promise<void>((resolve) => setTimeout(resolve, 0));
      expect(unhandled).toEqual([]);
    } finally {
      rxjsConfig.onUnhandledError = previous;
    }
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
    const closed = r.close(1000);
    r.emit(event(10));
    await closed;
    expect((await errors).map((e) => e.kind)).toEqual([ErrorId.ProtocolViolation]);
    expect((await events).map((e) => e.at)).toEqual([9]);
  });

  it('gives every metrics$ subscription deltas over its own interval, apart from snapshotAndReset', async () => {
    const recorder = new MetricsRecorder();
    const r = new DomusReporting(recorder, () => []);
    const sums = [0, 0];
    const subs = [r.metrics$(10), r.metrics$(25)].map((feed, i) =>
      feed.subscribe((delta) => (sums[i] += delta.messagesSent)),
    );
    try {
      recorder.messagesSent += 300;
      await eventually(() => sums[0] === 300 && sums[1] === 300, 'both subscriptions to see 300');
      recorder.messagesSent += 210;
      await eventually(() => sums[0] === 510 && sums[1] === 510, 'both subscriptions to see 510');
      // Neither subscription reset the interval snapshotAndReset callers share.
      expect(r.snapshotAndReset().messagesSent).toBe(510);
      expect(r.snapshotAndReset().messagesSent).toBe(0);
      expect(sums).toEqual([510, 510]);
    } finally {
      for (const sub of subs) sub.unsubscribe();
    }
    expect(recorder.openWindows).toBe(1); // only snapshotAndReset's is left
  });

  it('completes metrics$ subscriptions after the event feed when the domus closes', async () => {
    const r = reporting();
    const order: string[] = [];
    r.events$.subscribe({ next: () => order.push('event'), complete: () => order.push('events') });
    const metrics = lastValueFrom(r.metrics$(3_600_000).pipe(toArray()));
    r.metrics$(10).subscribe({ complete: () => order.push('metrics') });
    r.emit({ type: 'ShutdownComplete', at: 1 });
    await r.close(1000);
    // close() resolved only once every feed had delivered what it held and completed.
    expect(order).toEqual(['event', 'events', 'metrics']);
    expect(await metrics).toEqual([]);
    // A subscription made after the close completes at once.
    expect(await lastValueFrom(r.metrics$(10).pipe(toArray()))).toEqual([]);
  });

  it('samples metrics deltas on an interval and refuses a bad interval', async () => {
    const recorder = new MetricsRecorder();
    const r = new DomusReporting(recorder, () => []);
    recorder.messagesSent = 3; // before the subscription: not in its first interval
    const first = firstValueFrom(r.metrics$(10).pipe(take(1), toArray()));
    recorder.messagesSent += 4;
    const [delta] = await first;
    expect(delta!.messagesSent).toBe(4);
    expect(delta!.intervalMs).toBeGreaterThanOrEqual(9);
    for (const bad of [0, 9, 1.5, 3_600_001]) {
      expect(() => r.metrics$(bad)).toThrow(
        expect.objectContaining({ kind: ErrorId.InvalidConfig }) as unknown as Error,
      );
    }
  });
});
