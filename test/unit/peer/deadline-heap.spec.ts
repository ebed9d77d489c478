import fc from 'fast-check';
import { DeadlineHeap, type DeadlineHeapEntry } from '../../../lib/engine/peer/deadline-heap.js';

interface Entry extends DeadlineHeapEntry {
  readonly name: number;
}

function entry(name: number, deadline: number): Entry {
  return { name, deadline, heapIndex: -1 };
}

describe('DeadlineHeap', () => {
  it('pops entries earliest deadline first', () => {
    const heap = new DeadlineHeap<Entry>();
    for (const [name, deadline] of [
      [1, 50],
      [2, 10],
      [3, 40],
      [4, 20],
    ]) {
      heap.push(entry(name, deadline));
    }
    expect(heap.size).toBe(4);
    expect(heap.peek()?.name).toBe(2);
    const order: number[] = [];
    for (let e = heap.pop(); e; e = heap.pop()) order.push(e.name);
    expect(order).toEqual([2, 4, 3, 1]);
    expect(heap.pop()).toBeUndefined();
    expect(heap.peek()).toBeUndefined();
  });

  it('pops entries with equal deadlines in insertion order', () => {
    const heap = new DeadlineHeap<Entry>();
    for (let i = 0; i < 20; i++) heap.push(entry(i, i % 2 === 0 ? 5 : 7));
    const order: number[] = [];
    for (let e = heap.pop(); e; e = heap.pop()) order.push(e.name);
    expect(order).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
  });

  it('popDue returns only entries due at or before now', () => {
    const heap = new DeadlineHeap<Entry>();
    heap.push(entry(1, 100));
    heap.push(entry(2, 200));
    expect(heap.popDue(99)).toBeUndefined();
    expect(heap.popDue(100)?.name).toBe(1);
    expect(heap.popDue(150)).toBeUndefined();
    expect(heap.size).toBe(1);
  });

  it('removes an arbitrary entry once, and ignores entries it does not hold', () => {
    const heap = new DeadlineHeap<Entry>();
    const entries = [entry(1, 30), entry(2, 10), entry(3, 20), entry(4, 40)];
    for (const e of entries) heap.push(e);
    expect(heap.remove(entries[2])).toBe(true);
    expect(entries[2].heapIndex).toBe(-1);
    expect(heap.has(entries[2])).toBe(false);
    expect(heap.remove(entries[2])).toBe(false);
    expect(heap.remove(entry(9, 1))).toBe(false);
    expect([heap.pop()?.name, heap.pop()?.name, heap.pop()?.name]).toEqual([2, 1, 4]);
  });

  it('pushing an entry it already holds changes nothing', () => {
    const heap = new DeadlineHeap<Entry>();
    const e = entry(1, 5);
    heap.push(e);
    heap.push(e);
    expect(heap.size).toBe(1);
  });

  it('clear releases every entry so it can be pushed again', () => {
    const heap = new DeadlineHeap<Entry>();
    const entries = [entry(1, 3), entry(2, 1)];
    for (const e of entries) heap.push(e);
    heap.clear();
    expect(heap.size).toBe(0);
    expect(entries.every((e) => e.heapIndex === -1)).toBe(true);
    heap.push(entries[0]);
    expect(heap.pop()).toBe(entries[0]);
  });

  it('keeps in-order pushes in its FIFO run and still orders them against out-of-order ones', () => {
    const heap = new DeadlineHeap<Entry>();
    const inOrder = [entry(1, 10), entry(2, 20), entry(3, 20), entry(4, 30)];
    for (const e of inOrder) heap.push(e);
    expect(inOrder.every((e) => e.heapIndex < -1)).toBe(true); // all in the run
    const late = entry(5, 15);
    const tie = entry(6, 20);
    heap.push(late);
    heap.push(tie);
    expect(late.heapIndex).toBeGreaterThanOrEqual(0); // out of order: the binary heap
    expect(heap.remove(inOrder[1])).toBe(true);
    const order: number[] = [];
    for (let e = heap.pop(); e; e = heap.pop()) order.push(e.name);
    expect(order).toEqual([1, 5, 3, 6, 4]);
  });

  it('agrees with a sorted list when most deadlines come in order, through compactions', () => {
    // Deadlines mostly grow (one timeout for every send), sometimes jump back; removals hit the
    // front and the middle, so the run grows holes and gets compacted many times.
    type Op =
      | { kind: 'push'; step: number; back: boolean }
      | { kind: 'popDue'; ahead: number }
      | { kind: 'remove'; pick: number; front: boolean };
    const op: fc.Arbitrary<Op> = fc.oneof(
      {
        weight: 5,
        arbitrary: fc.record({
          kind: fc.constant('push' as const),
          step: fc.integer({ min: 0, max: 3 }),
          back: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          kind: fc.constant('popDue' as const),
          ahead: fc.integer({ min: -5, max: 20 }),
        }),
      },
      {
        weight: 4,
        arbitrary: fc.record({
          kind: fc.constant('remove' as const),
          pick: fc.nat(),
          front: fc.boolean(),
        }),
      },
    );
    fc.assert(
      fc.property(fc.array(op, { minLength: 200, maxLength: 1500 }), (ops) => {
        const heap = new DeadlineHeap<Entry>();
        let model: Entry[] = [];
        let clock = 0;
        let name = 0;
        for (const o of ops) {
          if (o.kind === 'push') {
            clock += o.step;
            const e = entry(name++, o.back ? clock - 25 : clock);
            heap.push(e);
            model.push(e);
            model.sort((a, b) => a.deadline - b.deadline || a.name - b.name);
          } else if (o.kind === 'popDue') {
            const now = (model[0]?.deadline ?? clock) + o.ahead;
            const due =
              model[0] !== undefined && model[0].deadline <= now ? model.shift() : undefined;
            expect(heap.popDue(now)).toBe(due);
          } else if (model.length > 0) {
            const e = model[o.pick % (o.front ? Math.min(model.length, 4) : model.length)];
            expect(heap.remove(e)).toBe(true);
            expect(heap.has(e)).toBe(false);
            model = model.filter((m) => m !== e);
          }
          expect(heap.size).toBe(model.length);
          expect(heap.peek()).toBe(model[0]);
        }
        for (const e of model) expect(heap.has(e)).toBe(true);
      }),
      { numRuns: 60 },
    );
  });

  it('behaves like a sorted list under any mix of push, pop, popDue and remove', () => {
    type Op =
      | { kind: 'push'; deadline: number }
      | { kind: 'pop' }
      | { kind: 'popDue'; now: number }
      | { kind: 'remove'; pick: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('push' as const), deadline: fc.integer({ min: 0, max: 50 }) }),
      fc.record({ kind: fc.constant('pop' as const) }),
      fc.record({ kind: fc.constant('popDue' as const), now: fc.integer({ min: 0, max: 50 }) }),
      fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const heap = new DeadlineHeap<Entry>();
        // The model: held entries kept sorted by (deadline, insertion order).
        let model: Entry[] = [];
        const everPushed: Entry[] = [];
        let name = 0;
        for (const o of ops) {
          if (o.kind === 'push') {
            const e = entry(name++, o.deadline);
            heap.push(e);
            everPushed.push(e);
            model.push(e);
            model.sort((a, b) => a.deadline - b.deadline || a.name - b.name);
          } else if (o.kind === 'pop') {
            expect(heap.pop()).toBe(model.shift());
          } else if (o.kind === 'popDue') {
            const due =
              model[0] !== undefined && model[0].deadline <= o.now ? model.shift() : undefined;
            expect(heap.popDue(o.now)).toBe(due);
          } else if (everPushed.length > 0) {
            const e = everPushed[o.pick % everPushed.length];
            const held = model.includes(e);
            expect(heap.remove(e)).toBe(held);
            model = model.filter((m) => m !== e);
          }
          expect(heap.size).toBe(model.length);
          expect(heap.peek()).toBe(model[0]);
        }
        for (const e of everPushed) expect(heap.has(e)).toBe(model.includes(e));
      }),
    );
  });
});
