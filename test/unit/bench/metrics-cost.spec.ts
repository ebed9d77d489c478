import { measureMetricsCost } from '../../../lib/cli/bench/metrics-cost.js';
import { ErrorId } from '../../../lib/index.js';

describe('metrics recording cost', () => {
  it('records every replayed message into the latency histogram and reports a cost per message', () => {
    const cost = measureMetricsCost(5000, 2);
    expect(cost.messages).toBe(5000);
    expect(cost.histogramCount).toBe(5000);
    expect(cost.nsPerMessage).toBeGreaterThan(0);
    expect(Number.isFinite(cost.nsPerMessage)).toBe(true);
  });

  it('refuses a message count that is not a positive integer', () => {
    expect(() => measureMetricsCost(0)).toThrow(
      expect.objectContaining({ kind: ErrorId.InvalidConfig }),
    );
    expect(() => measureMetricsCost(10, 1.5)).toThrow(/rounds must be a positive integer/);
  });
});
