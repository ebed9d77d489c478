import { describe, expect, it } from '@jest/globals';
import { InboundBudget, type InboundLimits } from '../../../lib/engine/peer/inbound-budget.js';

function budget(limits: InboundLimits): { budget: InboundBudget; limits: InboundLimits } {
  const live = { ...limits };
  return { budget: new InboundBudget(() => live), limits: live };
}

describe('InboundBudget', () => {
  it('is exhausted at maxInFlightPerPeer undecided messages and has room again after one decision', () => {
    const { budget: b } = budget({ maxInFlightPerPeer: 3, maxQueuedBytesPerPeer: 1000 });
    expect(b.take(10)).toBe(false);
    expect(b.take(10)).toBe(false);
    expect(b.take(10)).toBe(true);
    expect(b.exhausted).toBe(true);
    expect(b.inFlight).toBe(3);
    expect(b.give(10)).toBe(true);
    expect(b.inFlight).toBe(2);
    expect(b.queuedBytes).toBe(20);
  });

  it('is exhausted at maxQueuedBytesPerPeer payload bytes, yet admits one larger message while empty', () => {
    const { budget: b } = budget({ maxInFlightPerPeer: 100, maxQueuedBytesPerPeer: 1000 });
    expect(b.exhausted).toBe(false);
    expect(b.take(5000)).toBe(true);
    expect(b.give(5000)).toBe(true);
    expect(b.take(600)).toBe(false);
    expect(b.take(400)).toBe(true);
    expect(b.give(400)).toBe(true);
  });

  it('reads its limits live: a raised limit gives room without a decision', () => {
    const { budget: b, limits } = budget({ maxInFlightPerPeer: 1, maxQueuedBytesPerPeer: 1000 });
    expect(b.take(1)).toBe(true);
    (limits as { maxInFlightPerPeer: number }).maxInFlightPerPeer = 2;
    expect(b.exhausted).toBe(false);
  });
});
