import { describe, expect, it } from '@jest/globals';
import {
  DomusBudget,
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
      maxInFlightTotal: 1_000_000,
      maxQueuedBytesTotal: 1_000_000,
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
      maxInFlightTotal: 1_000_000,
      maxQueuedBytesTotal: 1_000_000,
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
      maxInFlightTotal: 1_000_000,
      maxQueuedBytesTotal: 1_000_000,
    });
    expect(b.take(1)).toBe(true);
    (limits as { maxInFlightPerPeer: number }).maxInFlightPerPeer = 2;
    expect(b.exhausted).toBe(false);
  });

  it('counts per session, never per identity: sessions of one identity each keep a whole budget', () => {
    const limits: InboundLimits = {
      maxInFlightPerPeer: 2,
      maxQueuedBytesPerPeer: 1000,
      maxInFlightTotal: 10_000,
      maxQueuedBytesTotal: 1_000_000,
    };
    const shared = new DomusBudget(() => limits);
    // A thousand replicas of one caller (sessions know nothing of identities).
    const replicas = Array.from({ length: 1000 }, () => new InboundBudget(() => limits, shared));
    for (const replica of replicas) {
      expect(replica.take(1)).toBe(false);
      expect(replica.take(1)).toBe(true); // its own limit, not anyone else's
    }
    expect(shared.inFlight).toBe(2000);
    expect(shared.atCeiling).toBe(false);
  });

  it('stops every session holding a message at the domus-wide ceiling, lets an empty one take one, and has all re-check when there is room', () => {
    const limits: InboundLimits = {
      maxInFlightPerPeer: 2,
      maxQueuedBytesPerPeer: 1000,
      maxInFlightTotal: 3,
      maxQueuedBytesTotal: 1000,
    };
    const shared = new DomusBudget(() => limits);
    const rechecked: string[] = [];
    const session = (name: string) => {
      const b = new InboundBudget(() => limits, shared);
      shared.members.add({ applyLimits: () => rechecked.push(name) });
      return b;
    };
    const first = session('first');
    first.take(1);
    first.take(1); // exhausted on its own
    const second = session('second');
    expect(second.take(1)).toBe(true); // the ceiling: it holds one, stop reading it
    expect(shared.atCeiling).toBe(true);
    // A new session (a reconnect under a new epoch, or a newcomer) still gets one message in,
    // and then waits like everyone else.
    const third = session('third');
    expect(third.exhausted).toBe(false);
    expect(third.take(1)).toBe(true);
    expect(shared.inFlight).toBe(4);
    expect(first.give(1)).toBe(false); // still at the ceiling: 3
    expect(rechecked).toEqual([]);
    expect(second.give(1)).toBe(true);
    expect(rechecked).toEqual(['first', 'second', 'third']);
    expect(third.exhausted).toBe(false);
    expect(first.exhausted).toBe(false);
  });

  it('applies the ceiling on bytes too', () => {
    const limits: InboundLimits = {
      maxInFlightPerPeer: 100,
      maxQueuedBytesPerPeer: 1000,
      maxInFlightTotal: 100,
      maxQueuedBytesTotal: 1500,
    };
    const shared = new DomusBudget(() => limits);
    const a = new InboundBudget(() => limits, shared);
    const b = new InboundBudget(() => limits, shared);
    expect(a.take(900)).toBe(false);
    expect(b.take(600)).toBe(true);
    expect(a.exhausted).toBe(true);
    expect(a.give(900)).toBe(true);
    expect(b.exhausted).toBe(false);
  });
});
