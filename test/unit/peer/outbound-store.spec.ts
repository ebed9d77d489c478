import fc from 'fast-check';
import { ErrorId } from '../../../lib/engine/errors.js';
import { MessagePriorityClass } from '../../../lib/engine/ids.js';
import {
  OutboundStore,
  type OutboundItem,
  type OutboundLane,
  type OutboundSpec,
} from '../../../lib/engine/peer/outbound-store.js';
import { NO_MESSAGE_ID } from '../../../lib/engine/peer/serial.js';
import { thrown } from '../../support/expect.js';

const A2 = MessagePriorityClass.A2;
const A3 = MessagePriorityClass.A3;
const PEER = 'tls://10.0.0.7:7000';

function spec(
  lane: OutboundLane,
  context: string,
  deadline = 1_000,
  bytes = 4,
): OutboundSpec<string> {
  return {
    priority: lane,
    msgType: lane === A2 ? 0x1_0001 : 0x100_0001,
    flags: 0,
    srcTaberna: 1n,
    dstTaberna: 2n,
    payload: Buffer.alloc(bytes),
    deadline,
    context,
  };
}

function store(a2 = 8, a3 = 8, lastAssignedId?: number): OutboundStore<string> {
  return new OutboundStore<string>({ peerLabel: PEER, capacity: { a2, a3 }, lastAssignedId });
}

function contexts(items: readonly OutboundItem<string>[]): string[] {
  return items.map((i) => i.context);
}

describe('OutboundStore admission', () => {
  it('returns a queued handle without an id that carries the message and its context', () => {
    const s = store();
    const item = s.admit(spec(A3, 'a', 500, 7), 100);
    expect(item).toMatchObject({
      id: NO_MESSAGE_ID,
      state: 'queued',
      context: 'a',
      deadline: 500,
      admittedAt: 100,
      priority: A3,
      writeCount: 0,
    });
    expect(item.payload.length).toBe(7);
    expect(s.size).toBe(1);
    expect(s.queuedBytes).toBe(7);
  });

  it('throws LocalQueueFull at once naming the lane, the peer and the capacity', () => {
    const s = store(1, 2);
    s.admit(spec(A3, 'a'), 0);
    s.admit(spec(A3, 'b'), 0);
    const err = thrown(() => s.admit(spec(A3, 'c'), 0));
    expect(err.kind).toBe(ErrorId.LocalQueueFull);
    expect(err.message).toContain('A3');
    expect(err.message).toContain(PEER);
    expect(err.message).toContain('2');
    expect(s.laneCount(A3)).toBe(2);
    // The other lane has its own capacity.
    s.admit(spec(A2, 'd'), 0);
    expect(thrown(() => s.admit(spec(A2, 'e'), 0)).message).toContain('A2');
  });

  it('counts written but unacknowledged messages against the lane capacity', () => {
    const s = store(8, 2);
    s.admit(spec(A3, 'a'), 0);
    s.admit(spec(A3, 'b'), 0);
    const [a] = s.takeWritable();
    expect(s.queuedCount).toBe(0);
    expect(thrown(() => s.admit(spec(A3, 'c'), 0)).kind).toBe(ErrorId.LocalQueueFull);
    s.onAck(a.id);
    expect(s.admit(spec(A3, 'c'), 0).context).toBe('c');
  });

  it('rejects a priority class other than A2 or A3 with EncodeFailure', () => {
    const s = store();
    const bad = { ...spec(A3, 'x'), priority: MessagePriorityClass.A1 as unknown as OutboundLane };
    expect(thrown(() => s.admit(bad, 0)).kind).toBe(ErrorId.EncodeFailure);
    expect(s.size).toBe(0);
  });

  it('rejects capacities that are not integers of at least 1 with InvalidConfig', () => {
    for (const bad of [0, -1, 1.5, Number.NaN, Infinity]) {
      expect(thrown(() => store(bad, 4)).kind).toBe(ErrorId.InvalidConfig);
      expect(thrown(() => store(4, 4).setCapacity({ a3: bad })).message).toContain('A3');
    }
    expect(
      thrown(
        () =>
          new OutboundStore({ peerLabel: PEER, capacity: { a2: 1, a3: 1 }, lastAssignedId: -3 }),
      ).kind,
    ).toBe(ErrorId.InvalidConfig);
  });
});

describe('OutboundStore writing order and ids', () => {
  it('writes the A2 lane before the A3 lane, first-in first-out within each', () => {
    const s = store();
    s.admit(spec(A3, 'a3-1'), 0);
    s.admit(spec(A2, 'a2-1'), 0);
    s.admit(spec(A3, 'a3-2'), 0);
    s.admit(spec(A2, 'a2-2'), 0);
    expect(contexts(s.takeWritable())).toEqual(['a2-1', 'a2-2', 'a3-1', 'a3-2']);
    expect(s.hasWritable()).toBe(false);
    expect(s.takeWritable()).toEqual([]);
  });

  it('assigns ids at the first write, strictly increasing in wire order', () => {
    const s = store();
    const a = s.admit(spec(A3, 'a'), 0);
    const b = s.admit(spec(A2, 'b'), 0);
    expect(s.highestAssignedId).toBe(NO_MESSAGE_ID);
    const written = s.takeWritable();
    expect(written).toEqual([b, a]);
    expect([b.id, a.id]).toEqual([1, 2]);
    expect(a.state).toBe('written');
    expect(a.writeCount).toBe(1);
    expect(s.highestAssignedId).toBe(2);
    expect(s.writtenCount).toBe(2);
  });

  it('stops once the byte budget is used but always hands out at least one item', () => {
    const s = store();
    for (const name of ['a', 'b', 'c', 'd']) s.admit(spec(A3, name, 1_000, 10), 0);
    expect(contexts(s.takeWritable(0))).toEqual(['a']);
    expect(contexts(s.takeWritable(15))).toEqual(['b', 'c']);
    expect(contexts(s.takeWritable(5))).toEqual(['d']);
    expect(s.queuedBytes).toBe(0);
    expect(s.heldBytes).toBe(40);
  });

  it('keeps assigning increasing ids across the wrap from 0xFFFFFFFF to 1', () => {
    const s = store(8, 8, 0xffff_fffe);
    for (const name of ['a', 'b', 'c']) s.admit(spec(A3, name), 0);
    const ids = s.takeWritable().map((i) => i.id);
    expect(ids).toEqual([0xffff_ffff, 1, 2]);
    expect(s.highestAssignedId).toBe(2);
    expect(s.onAck(0xffff_ffff).kind).toBe('settled');
    expect(s.onAck(3).kind).toBe('unknown');
  });
});

describe('OutboundStore decisions', () => {
  it('settles an acknowledged or refused item and reports stale and unknown ids', () => {
    const s = store();
    s.admit(spec(A3, 'a'), 0);
    s.admit(spec(A3, 'b'), 0);
    const [a, b] = s.takeWritable();
    const acked = s.onAck(a.id);
    expect(acked).toEqual({ kind: 'settled', item: a });
    expect(a.state).toBe('removed');
    expect(s.onError(b.id)).toEqual({ kind: 'settled', item: b });
    expect(s.onAck(a.id)).toEqual({ kind: 'stale', id: a.id });
    expect(s.onAck(0)).toEqual({ kind: 'unknown', id: 0 });
    expect(s.onAck(b.id + 1)).toEqual({ kind: 'unknown', id: b.id + 1 });
    expect(s.onAck(2 ** 32)).toEqual({ kind: 'unknown', id: 2 ** 32 });
    expect(s.size).toBe(0);
  });

  it('reports every id as unknown before anything was written', () => {
    const s = store();
    s.admit(spec(A3, 'a'), 0);
    expect(s.onAck(1).kind).toBe('unknown');
    expect(s.size).toBe(1);
  });
});

describe('OutboundStore reconnects', () => {
  it('replays unacknowledged items first, in id order, with their original ids', () => {
    const s = store();
    for (const name of ['a', 'b', 'c']) s.admit(spec(A3, name), 0);
    const [a, b, c] = s.takeWritable();
    s.onAck(b.id);
    s.admit(spec(A2, 'urgent'), 0);
    expect(s.onDisconnect()).toBe(2);
    expect(a.state).toBe('replay');
    expect(s.replayCount).toBe(2);
    expect(s.queuedBytes).toBe(12);
    const next = s.takeWritable();
    expect(contexts(next)).toEqual(['a', 'c', 'urgent']);
    expect([a.id, c.id]).toEqual([1, 3]);
    expect(next[2].id).toBe(4);
    expect(a.writeCount).toBe(2);
  });

  it('keeps id order when a connection dies in the middle of a replay', () => {
    const s = store();
    for (const name of ['a', 'b', 'c', 'd']) s.admit(spec(A3, name, 1_000, 10), 0);
    s.takeWritable();
    s.onDisconnect();
    expect(contexts(s.takeWritable(15))).toEqual(['a', 'b']);
    s.admit(spec(A2, 'new'), 0);
    s.onDisconnect();
    expect(contexts(s.takeWritable()).slice(0, 4)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('accepts an acknowledgement for an item waiting for replay', () => {
    const s = store();
    s.admit(spec(A3, 'a'), 0);
    const [a] = s.takeWritable();
    s.onDisconnect();
    expect(s.onAck(a.id).kind).toBe('settled');
    expect(s.hasWritable()).toBe(false);
    expect(s.queuedBytes).toBe(0);
  });

  it('after a peer restart returns every item written at least once and keeps unsent ones', () => {
    const s = store();
    for (const name of ['a', 'b', 'c']) s.admit(spec(A3, name, 1_000, 10), 0);
    s.takeWritable(10);
    s.onDisconnect();
    s.takeWritable(0); // 'a' is written again on the new connection
    s.takeWritable(0); // 'b' is written for the first time
    s.onDisconnect();
    const failed = s.takeRetainedForRestart();
    expect(contexts(failed)).toEqual(['a', 'b']);
    expect(failed.every((i) => i.state === 'removed')).toBe(true);
    expect(s.size).toBe(1);
    expect(s.queuedBytes).toBe(10);
    expect(s.heldBytes).toBe(10);
    const [c] = s.takeWritable();
    expect(c.context).toBe('c');
    expect(c.id).toBe(3);
    expect(s.onAck(1).kind).toBe('stale');
  });
});

describe('OutboundStore deadlines and draining', () => {
  it('expires items by deadline whatever their state, even when deadlines are out of order', () => {
    const s = store();
    const a = s.admit(spec(A3, 'a', 300), 0);
    s.admit(spec(A3, 'b', 100), 0);
    s.admit(spec(A2, 'c', 200), 0);
    s.admit(spec(A3, 'd', 100), 0);
    expect(s.nextDeadline()).toBe(100);
    s.takeWritable(0); // 'c' written
    expect(s.expire(99)).toEqual([]);
    expect(contexts(s.expire(100))).toEqual(['b', 'd']);
    expect(s.nextDeadline()).toBe(200);
    const expired = s.expire(250);
    expect(contexts(expired)).toEqual(['c']);
    expect(s.onAck(expired[0].id).kind).toBe('stale');
    expect(s.size).toBe(1);
    expect(s.writtenCount).toBe(0);
    expect(s.expire(1_000)).toEqual([a]);
    expect(s.nextDeadline()).toBeUndefined();
  });

  it('expires an item admitted with a deadline already passed at the next expire', () => {
    const s = store();
    s.admit(spec(A3, 'late', 50), 100);
    expect(s.nextDeadline()).toBe(50);
    expect(contexts(s.expire(100))).toEqual(['late']);
  });

  it('drainAll returns everything the store holds and leaves it empty', () => {
    const s = store();
    for (const name of ['a', 'b', 'c']) s.admit(spec(A3, name), 0);
    s.takeWritable(0);
    s.onDisconnect();
    s.takeWritable(0);
    s.admit(spec(A2, 'x'), 0);
    const all = s.drainAll();
    expect(contexts(all).sort()).toEqual(['a', 'b', 'c', 'x']);
    expect(all.every((i) => i.state === 'removed')).toBe(true);
    expect([s.size, s.queuedBytes, s.heldBytes, s.writtenCount, s.replayCount]).toEqual([
      0, 0, 0, 0, 0,
    ]);
    expect(s.nextDeadline()).toBeUndefined();
    expect(s.hasWritable()).toBe(false);
    expect(s.onAck(1).kind).toBe('stale');
  });
});

describe('OutboundStore moving and abandoning items', () => {
  it('takeQueued removes only never-written items the predicate accepts, lanes in order', () => {
    const s = store();
    for (const name of ['w1', 'w2']) s.admit(spec(A3, name), 0);
    s.takeWritable();
    for (const name of ['q1', 'keep', 'q2']) s.admit(spec(A3, name), 0);
    s.admit(spec(A2, 'q0'), 0);
    const taken = s.takeQueued((i) => i.context !== 'keep');
    expect(contexts(taken)).toEqual(['q0', 'q1', 'q2']);
    expect(taken.every((i) => i.state === 'removed' && i.id === NO_MESSAGE_ID)).toBe(true);
    expect([s.size, s.writtenCount, s.queuedCount]).toEqual([3, 2, 1]);
    // The rest keeps its order and ids continue from the written ones.
    expect(contexts(s.takeWritable())).toEqual(['keep']);
    expect(s.highestAssignedId).toBe(3);
  });

  it('takeRetained removes written and replay items the predicate accepts, never queued ones', () => {
    const s = store();
    for (const name of ['r1', 'other', 'r2']) s.admit(spec(A3, name), 0);
    s.takeWritable();
    s.onDisconnect();
    s.takeWritable(0); // r1 is written again on the new connection; the others wait for replay
    s.admit(spec(A3, 'queued'), 0);
    expect([s.writtenCount, s.replayCount, s.queuedCount]).toEqual([1, 2, 1]);
    const taken = s.takeRetained((i) => i.context !== 'other');
    expect(contexts(taken)).toEqual(['r1', 'r2']);
    expect(contexts(s.drainAll()).sort()).toEqual(['other', 'queued']);
    for (const item of taken) expect(s.onAck(item.id).kind).toBe('stale');
  });
});

describe('OutboundStore live capacity', () => {
  it('shrinking evicts nothing and refuses admission until the lane drops below the new size', () => {
    const s = store(8, 4);
    for (const name of ['a', 'b', 'c']) s.admit(spec(A3, name), 0);
    s.setCapacity({ a3: 1 });
    expect(s.capacity).toEqual({ a2: 8, a3: 1 });
    expect(s.laneCount(A3)).toBe(3);
    const [a, b] = s.takeWritable();
    s.onAck(a.id);
    expect(thrown(() => s.admit(spec(A3, 'd'), 0)).message).toContain('1 messages');
    s.onAck(b.id);
    s.expire(10_000);
    expect(s.admit(spec(A3, 'd'), 0).context).toBe('d');
    s.setCapacity({ a2: 2 });
    expect(s.capacity).toEqual({ a2: 2, a3: 1 });
  });
});

// ---------------------------------------------------------------------------------------------
// Model-based test: random operation sequences against a naive model of the store.

type Op =
  | { kind: 'admit'; lane: OutboundLane; ttl: number; bytes: number }
  | { kind: 'take'; budget: number | undefined }
  | { kind: 'ack'; error: boolean; which: 'held' | 'stale' | 'zero' | 'future'; pick: number }
  | { kind: 'disconnect' }
  | { kind: 'restart' }
  | { kind: 'tick'; ms: number }
  | { kind: 'expire' }
  | { kind: 'capacity'; a2: number | undefined; a3: number | undefined }
  | { kind: 'drain' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant('admit' as const),
      lane: fc.constantFrom<OutboundLane>(A2, A3),
      ttl: fc.integer({ min: 0, max: 100 }),
      bytes: fc.integer({ min: 0, max: 10 }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('take' as const),
      budget: fc.option(fc.integer({ min: 0, max: 30 }), { nil: undefined }),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('ack' as const),
      error: fc.boolean(),
      which: fc.constantFrom(
        'held' as const,
        'held' as const,
        'stale' as const,
        'zero' as const,
        'future' as const,
      ),
      pick: fc.nat(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('disconnect' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart' as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('tick' as const),
      ms: fc.integer({ min: 0, max: 40 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('expire' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('capacity' as const),
      a2: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
      a3: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drain' as const) }) },
);

interface ModelItem {
  readonly key: number;
  readonly lane: OutboundLane;
  readonly deadline: number;
  readonly bytes: number;
  readonly handle: OutboundItem<number>;
  state: 'queued' | 'written' | 'replay';
  id: number;
  /** Position in the order of first writes (the model orders by this, not by serial ids). */
  ordinal: number;
}

/**
 * The `n`th id (from 1) a store whose last assigned id was `start` hands out, worked out here
 * rather than with the engine's own serial arithmetic: ids run 1..2^32-1 and wrap to 1, skipping
 * 0 (no message).
 */
function oracleId(start: number, n: number): number {
  return ((start + n - 1) % 0xffff_ffff) + 1;
}

function byOrdinal(a: ModelItem, b: ModelItem): number {
  return a.ordinal - b.ordinal;
}
function byKey(a: ModelItem, b: ModelItem): number {
  return a.key - b.key;
}

function runModel(
  startId: number,
  initialCap: { a2: number; a3: number },
  ops: readonly Op[],
): void {
  const s = new OutboundStore<number>({
    peerLabel: 'model',
    capacity: initialCap,
    lastAssignedId: startId,
  });
  const cap = { ...initialCap };
  let held: ModelItem[] = [];
  /** How often the store handed each admitted item back (settled, expired, restarted, drained). */
  const returned = new Map<number, number>();
  const staleIds: number[] = [];
  let issued = 0;
  let ordinal = 0;
  let now = 0;
  let key = 0;
  let admitted = 0;

  const writeOrder = (): ModelItem[] => [
    ...held.filter((m) => m.state === 'replay').sort(byOrdinal),
    ...held.filter((m) => m.state === 'queued' && m.lane === A2).sort(byKey),
    ...held.filter((m) => m.state === 'queued' && m.lane === A3).sort(byKey),
  ];
  const drainOrder = (): ModelItem[] => [
    ...held.filter((m) => m.state === 'written').sort(byOrdinal),
    ...held.filter((m) => m.state === 'replay').sort(byOrdinal),
    ...held.filter((m) => m.state === 'queued' && m.lane === A2).sort(byKey),
    ...held.filter((m) => m.state === 'queued' && m.lane === A3).sort(byKey),
  ];
  const removeFromModel = (gone: readonly ModelItem[]): void => {
    for (const m of gone) if (m.id !== NO_MESSAGE_ID) staleIds.push(m.id);
    const set = new Set(gone);
    held = held.filter((m) => !set.has(m));
  };
  const expectSame = (
    actual: readonly OutboundItem<number>[],
    expected: readonly ModelItem[],
  ): void => {
    expect(actual.map((i) => i.context)).toEqual(expected.map((m) => m.key));
    for (const i of actual) expect(i.state).toBe('removed');
    countReturned(actual);
  };
  const countReturned = (items: readonly OutboundItem<number>[]): void => {
    for (const i of items) returned.set(i.context, (returned.get(i.context) ?? 0) + 1);
  };

  for (const op of ops) {
    switch (op.kind) {
      case 'admit': {
        const laneCount = held.filter((m) => m.lane === op.lane).length;
        const limit = op.lane === A2 ? cap.a2 : cap.a3;
        const deadline = now + op.ttl;
        const payload = Buffer.alloc(op.bytes);
        const sp = {
          priority: op.lane,
          msgType: 0,
          flags: 0,
          srcTaberna: 0n,
          dstTaberna: 0n,
          payload,
          deadline,
          context: key,
        };
        if (laneCount >= limit) {
          expect(thrown(() => s.admit(sp, now)).kind).toBe(ErrorId.LocalQueueFull);
        } else {
          const handle = s.admit(sp, now);
          held.push({
            key,
            lane: op.lane,
            deadline,
            bytes: op.bytes,
            handle,
            state: 'queued',
            id: 0,
            ordinal: -1,
          });
          admitted++;
          key++;
        }
        break;
      }
      case 'take': {
        const budget = op.budget ?? Infinity;
        const order = writeOrder();
        const expected: ModelItem[] = [];
        let used = 0;
        for (const m of order) {
          if (used >= budget && expected.length > 0) break;
          expected.push(m);
          used += m.bytes;
        }
        const heldIds = new Set(held.map((m) => m.handle.id).filter((id) => id !== NO_MESSAGE_ID));
        const idBefore = new Map(held.map((m) => [m.key, m.handle.id]));
        const actual = s.takeWritable(op.budget);
        expect(actual.map((i) => i.context)).toEqual(expected.map((m) => m.key));
        // In what the store handed out: replays before any first write, A2 before A3 among first
        // writes, and first writes carry the next ids in turn, never one still held.
        let seenFirstWrite = false;
        let seenA3 = false;
        for (const item of actual) {
          const lane = held.find((m) => m.key === item.context)!.lane;
          if (idBefore.get(item.context) !== NO_MESSAGE_ID) {
            expect(seenFirstWrite).toBe(false);
            continue;
          }
          seenFirstWrite = true;
          if (lane === A3) seenA3 = true;
          else expect(seenA3).toBe(false);
          expect(item.id).toBe(oracleId(startId, ++issued));
          expect(heldIds.has(item.id)).toBe(false);
          heldIds.add(item.id);
        }
        for (const m of expected) {
          if (m.state === 'queued') {
            m.id = m.handle.id;
            m.ordinal = ordinal++;
          }
          m.state = 'written';
          expect(m.handle.state).toBe('written');
        }
        break;
      }
      case 'ack': {
        let id: number;
        const withId = held.filter((m) => m.id !== NO_MESSAGE_ID);
        if (op.which === 'held' && withId.length > 0) id = withId[op.pick % withId.length].id;
        else if (op.which === 'stale' && staleIds.length > 0)
          id = staleIds[op.pick % staleIds.length];
        else if (op.which === 'zero') id = 0;
        else id = oracleId(startId, issued + 1);
        const result = op.error ? s.onError(id) : s.onAck(id);
        const target = held.find((m) => m.id !== NO_MESSAGE_ID && m.id === id);
        if (target) {
          expect(result).toEqual({ kind: 'settled', item: target.handle });
          if (result.kind === 'settled') countReturned([result.item]);
          removeFromModel([target]);
        } else if (staleIds.includes(id)) {
          expect(result).toEqual({ kind: 'stale', id });
        } else {
          expect(result).toEqual({ kind: 'unknown', id });
        }
        break;
      }
      case 'disconnect': {
        const written = held.filter((m) => m.state === 'written');
        expect(s.onDisconnect()).toBe(written.length);
        for (const m of written) m.state = 'replay';
        break;
      }
      case 'restart': {
        const expected = held.filter((m) => m.state !== 'queued').sort(byOrdinal);
        expectSame(s.takeRetainedForRestart(), expected);
        removeFromModel(expected);
        break;
      }
      case 'tick':
        now += op.ms;
        break;
      case 'expire': {
        const expected = held
          .filter((m) => m.deadline <= now)
          .sort((a, b) => a.deadline - b.deadline || a.key - b.key);
        expectSame(s.expire(now), expected);
        removeFromModel(expected);
        break;
      }
      case 'capacity':
        s.setCapacity({ a2: op.a2, a3: op.a3 });
        if (op.a2 !== undefined) cap.a2 = op.a2;
        if (op.a3 !== undefined) cap.a3 = op.a3;
        expect(s.capacity).toEqual(cap);
        break;
      case 'drain': {
        const expected = drainOrder();
        expectSame(s.drainAll(), expected);
        removeFromModel(expected);
        break;
      }
    }

    // Counters agree with the model after every operation.
    const waiting = held.filter((m) => m.state !== 'written');
    expect(s.size).toBe(held.length);
    expect(s.laneCount(A2)).toBe(held.filter((m) => m.lane === A2).length);
    expect(s.laneCount(A3)).toBe(held.filter((m) => m.lane === A3).length);
    expect(s.queuedCount).toBe(held.filter((m) => m.state === 'queued').length);
    expect(s.writtenCount).toBe(held.filter((m) => m.state === 'written').length);
    expect(s.replayCount).toBe(held.filter((m) => m.state === 'replay').length);
    expect(s.queuedBytes).toBe(waiting.reduce((n, m) => n + m.bytes, 0));
    expect(s.heldBytes).toBe(held.reduce((n, m) => n + m.bytes, 0));
    expect(s.hasWritable()).toBe(waiting.length > 0);
    expect(s.highestAssignedId).toBe(issued > 0 ? oracleId(startId, issued) : NO_MESSAGE_ID);
    const earliest = held.reduce<number | undefined>(
      (d, m) => (d === undefined || m.deadline < d ? m.deadline : d),
      undefined,
    );
    expect(s.nextDeadline()).toBe(earliest);
    for (const m of held) expect(m.handle.state).toBe(m.state);
  }

  // Every admitted item came back from the store exactly once, by exactly one removing operation.
  const rest = drainOrder();
  expectSame(s.drainAll(), rest);
  removeFromModel(rest);
  expect(s.size).toBe(0);
  expect(returned.size).toBe(admitted);
  for (const count of returned.values()) expect(count).toBe(1);
}

describe('OutboundStore against a model', () => {
  it('agrees with a naive model under random operation sequences, across the id wrap too', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(NO_MESSAGE_ID, 0xffff_fff0),
        fc.record({ a2: fc.integer({ min: 1, max: 4 }), a3: fc.integer({ min: 1, max: 4 }) }),
        fc.array(opArb, { maxLength: 120 }),
        (startId, cap, ops) => runModel(startId, cap, ops),
      ),
      { numRuns: 400 },
    );
  });
});
