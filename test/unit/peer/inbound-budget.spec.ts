import { describe, expect, it } from '@jest/globals';
import {
  IdentityBudget,
  InboundBudget,
  type InboundLimits,
} from '../../../lib/engine/peer/inbound-budget.js';

function budget(limits: InboundLimits): { budget: InboundBudget; limits: InboundLimits } {
  const live = { ...limits };
  return { budget: new InboundBudget(() => live), limits: live };
}

describe('InboundBudget', () => {
  it('is exhausted at maxInFlightPerPeer undecided messages and has room again after one decision', () => {
    const { budget: b } = budget({
      maxInFlightPerPeer: 3,
      maxQueuedBytesPerPeer: 1000,
      maxParallelCallisPerPeer: 8,
    });
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
    const { budget: b } = budget({
      maxInFlightPerPeer: 100,
      maxQueuedBytesPerPeer: 1000,
      maxParallelCallisPerPeer: 8,
    });
    expect(b.exhausted).toBe(false);
    expect(b.take(5000)).toBe(true);
    expect(b.give(5000)).toBe(true);
    expect(b.take(600)).toBe(false);
    expect(b.take(400)).toBe(true);
    expect(b.give(400)).toBe(true);
  });

  it('reads its limits live: a raised limit gives room without a decision', () => {
    const { budget: b, limits } = budget({
      maxInFlightPerPeer: 1,
      maxQueuedBytesPerPeer: 1000,
      maxParallelCallisPerPeer: 8,
    });
    expect(b.take(1)).toBe(true);
    (limits as { maxInFlightPerPeer: number }).maxInFlightPerPeer = 2;
    expect(b.exhausted).toBe(false);
  });

  it('shares an identity budget of maxParallelCallisPerPeer sessions: new sessions of an identity holding it all are exhausted at once, and all re-check when it has room', () => {
    const limits: InboundLimits = {
      maxInFlightPerPeer: 2,
      maxQueuedBytesPerPeer: 1000,
      maxParallelCallisPerPeer: 2,
    };
    const identity = new IdentityBudget(() => limits);
    const rechecked: string[] = [];
    const session = (name: string) => {
      const b = new InboundBudget(() => limits, identity);
      identity.members.add({ applyLimits: () => rechecked.push(name) });
      return b;
    };
    const first = session('first');
    first.take(1);
    first.take(1); // exhausted on its own
    const second = session('second');
    expect(second.take(1)).toBe(false);
    expect(second.take(1)).toBe(true);
    expect(identity.exhausted).toBe(true);
    // A third session (a reconnect under a new epoch) gets nothing while the identity is full.
    const third = session('third');
    expect(third.exhausted).toBe(true);
    expect(rechecked).toEqual([]);
    expect(first.give(1)).toBe(true);
    expect(rechecked).toEqual(['first', 'second', 'third']);
    expect(third.exhausted).toBe(false);
  });
});
