// What the engine's hot-path metric recording costs per message, measured on a real recorder.
import { performance } from 'node:perf_hooks';

import { AureliaError, ErrorId } from '../../engine/errors.js';
import { MetricsRecorder } from '../../engine/reporting/metrics.js';

/** Bytes one 64 B message frame occupies on the wire (32-byte header + payload). */
const FRAME_BYTES = 96;
/** Round trips replayed into the histogram, cycling: 50 µs to about 20 ms, log-spread. */
const LATENCIES = 1024;

/** The cost of recording one message's metrics, and how it was measured. */
export interface MetricsCost {
  /** Nanoseconds per message for every recording call the engine makes for it. */
  readonly nsPerMessage: number;
  /** Messages recorded. */
  readonly messages: number;
  /** Samples the latency histogram holds afterwards (equals `messages`). */
  readonly histogramCount: number;
}

/**
 * Replays, `messages` times, what the engine records for one accepted remote message on a domus
 * that both sends and receives it (the bench's two domus share one thread, so the sum is what a
 * message costs that thread): the send-time stamp and the accept-time stamp
 * (`performance.now()` twice), `messagesSent`, `sendsAccepted`, `messagesReceived`,
 * `messagesAccepted`, `bytesOut` and `bytesIn` increments, and one `recordSendLatency` into both
 * latency histograms with latencies spread over 50 µs … 20 ms, so bucket lookups take their
 * general path as in a real run. Resolves with the best of `rounds` timings (ns per message).
 * Throws `AureliaError(InvalidConfig)` for a count that is not a positive integer.
 */
export function measureMetricsCost(messages: number, rounds = 5): MetricsCost {
  for (const [what, value] of [
    ['messages', messages],
    ['rounds', rounds],
  ] as const) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `metrics cost ${what} must be a positive integer, got ${value}`,
      );
    }
  }
  const ages = new Float64Array(LATENCIES);
  for (let i = 0; i < LATENCIES; i++) ages[i] = 0.05 * Math.pow(400, i / (LATENCIES - 1));
  let best = Infinity;
  let recorder = new MetricsRecorder();
  for (let round = 0; round < rounds; round++) {
    recorder = new MetricsRecorder();
    const start = performance.now();
    for (let i = 0; i < messages; i++) {
      const startedAt = performance.now() - ages[i & (LATENCIES - 1)]!;
      recorder.messagesSent++;
      recorder.bytesOut += FRAME_BYTES;
      recorder.bytesIn += FRAME_BYTES;
      recorder.messagesReceived++;
      recorder.messagesAccepted++;
      recorder.sendsAccepted++;
      recorder.recordSendLatency(performance.now() - startedAt);
    }
    best = Math.min(best, ((performance.now() - start) * 1e6) / messages);
  }
  return {
    nsPerMessage: best,
    messages,
    histogramCount: recorder.snapshot().sendLatency.count,
  };
}
