import fc from 'fast-check';
import { ErrorId } from '../../../lib/engine/errors.js';
import { DedupeWindow, type DedupeObservation } from '../../../lib/engine/peer/dedupe.js';
import { NO_MESSAGE_ID, idAfter, nextId } from '../../../lib/engine/peer/serial.js';
import { thrown } from '../../support/expect.js';

function window(retentionMs = 1_000, maxDecided = 100): DedupeWindow<string> {
  return new DedupeWindow<string>({ retentionMs, maxDecided });
}

function kinds(w: DedupeWindow<string>, ids: readonly number[], now: number): string[] {
  return ids.map((id) => {
    const seen = w.observe(id, now);
    return seen.kind === 'decided' ? `decided:${seen.outcome}` : seen.kind;
  });
}

describe('DedupeWindow', () => {
  it('reports a first transmission as new and its replays as in progress until decided', () => {
    const w = window();
    expect(w.observe(1, 0)).toEqual({ kind: 'new' });
    expect(w.observe(1, 5)).toEqual({ kind: 'in-progress' });
    expect(w.inProgressCount).toBe(1);
    expect(w.highestSeen).toBe(1);
  });

  it('answers a replay of a decided message with the recorded outcome', () => {
    const w = window();
    w.observe(1, 0);
    expect(w.decide(1, 'accepted', 10)).toBe(true);
    expect(w.observe(1, 20)).toEqual({ kind: 'decided', outcome: 'accepted' });
    expect(w.decidedCount).toBe(1);
    expect(w.inProgressCount).toBe(0);
  });

  it('keeps the first decision and ignores decisions for ids that are not in progress', () => {
    const w = window();
    w.observe(1, 0);
    w.decide(1, 'accepted', 1);
    expect(w.decide(1, 'rejected', 2)).toBe(false);
    expect(w.decide(7, 'accepted', 2)).toBe(false);
    expect(w.observe(1, 3)).toEqual({ kind: 'decided', outcome: 'accepted' });
    expect(w.size).toBe(1);
  });

  it('sorts a replay after a cut into decided, in-progress, forgotten and new ids', () => {
    const w = window(1_000, 2);
    for (const id of [1, 2, 3, 4, 5]) w.observe(id, 0);
    w.decide(1, 'a', 1);
    w.decide(2, 'b', 2);
    w.decide(4, 'd', 3); // the third decision evicts the oldest (1)
    // The sender replays 1..5 after reconnecting, then sends 6 and 7 for the first time.
    expect(kinds(w, [1, 2, 3, 4, 5, 6, 7], 10)).toEqual([
      'forgotten',
      'decided:b',
      'in-progress',
      'decided:d',
      'in-progress',
      'new',
      'new',
    ]);
  });

  it('treats an id at or below the highest seen without a record as forgotten, never new', () => {
    const w = window();
    w.observe(5, 0);
    expect(w.observe(3, 0)).toEqual({ kind: 'forgotten' });
    expect(w.observe(6, 0)).toEqual({ kind: 'new' });
    expect(w.observe(3, 0)).toEqual({ kind: 'forgotten' });
    expect(w.size).toBe(2);
  });

  it('accepts any first id from a new sender session', () => {
    const w = window();
    expect(w.highestSeen).toBe(NO_MESSAGE_ID);
    expect(w.observe(0xffff_fff0, 0)).toEqual({ kind: 'new' });
  });

  it('follows ids across the wrap from 0xFFFFFFFF to 1', () => {
    const w = window();
    expect(kinds(w, [0xffff_fffe, 0xffff_ffff, 1, 2], 0)).toEqual(['new', 'new', 'new', 'new']);
    expect(w.highestSeen).toBe(2);
    w.decide(0xffff_ffff, 'x', 1);
    expect(kinds(w, [0xffff_fffe, 0xffff_ffff, 1, 0xffff_fff0, 3], 2)).toEqual([
      'in-progress',
      'decided:x',
      'in-progress',
      'forgotten',
      'new',
    ]);
  });

  it('throws ProtocolViolation for id 0 and for values that are not u32 ids', () => {
    const w = window();
    for (const bad of [0, -1, 1.5, 2 ** 32]) {
      const err = thrown(() => w.observe(bad, 0));
      expect(err.kind).toBe(ErrorId.ProtocolViolation);
      expect(err.message).toContain(String(bad));
    }
    expect(w.size).toBe(0);
  });

  it('forgets decided records once the retention has run out, and never in-progress ones', () => {
    const w = window(100);
    w.observe(1, 0);
    w.observe(2, 0);
    w.observe(3, 0);
    w.decide(1, 'a', 10);
    w.decide(3, 'c', 50);
    expect(w.nextExpiry()).toBe(110);
    expect(w.expire(109)).toBe(0);
    expect(w.expire(110)).toBe(1);
    expect(w.nextExpiry()).toBe(150);
    expect(w.observe(1, 120)).toEqual({ kind: 'forgotten' });
    expect(w.observe(3, 120)).toEqual({ kind: 'decided', outcome: 'c' });
    expect(w.expire(1_000_000)).toBe(1);
    expect(w.observe(2, 1_000_000)).toEqual({ kind: 'in-progress' });
    expect(w.nextExpiry()).toBeUndefined();
    expect([w.size, w.inProgressCount, w.decidedCount, w.evictedCount]).toEqual([1, 1, 0, 2]);
  });

  it('applies the retention on observe too, so a late replay is forgotten without a timer', () => {
    const w = window(100);
    w.observe(1, 0);
    w.decide(1, 'a', 0);
    expect(w.observe(1, 99)).toEqual({ kind: 'decided', outcome: 'a' });
    expect(w.observe(1, 100)).toEqual({ kind: 'forgotten' });
  });

  it('keeps at most maxDecided decided records, forgetting the oldest decisions first', () => {
    const w = window(1_000_000, 3);
    for (let id = 1; id <= 6; id++) w.observe(id, 0);
    for (const id of [4, 1, 6, 2, 5]) w.decide(id, `o${id}`, id);
    expect(w.decidedCount).toBe(3);
    expect(w.evictedCount).toBe(2);
    expect(kinds(w, [1, 2, 3, 4, 5, 6], 10)).toEqual([
      'forgotten',
      'decided:o2',
      'in-progress',
      'forgotten',
      'decided:o5',
      'decided:o6',
    ]);
  });

  it('never evicts early when the clock steps backwards', () => {
    const w = window(100);
    w.observe(1, 0);
    w.observe(2, 0);
    w.decide(1, 'a', 500);
    w.decide(2, 'b', 50);
    expect(w.expire(160)).toBe(0);
    expect(w.expire(600)).toBe(2);
  });

  it('rejects options out of range with InvalidConfig naming the option', () => {
    expect(thrown(() => window(-1)).message).toContain('retentionMs');
    expect(thrown(() => window(Number.NaN)).kind).toBe(ErrorId.InvalidConfig);
    expect(thrown(() => window(10, 0)).message).toContain('maxDecided');
    expect(thrown(() => window(10, 2.5)).kind).toBe(ErrorId.InvalidConfig);
  });

  // Random traffic: first transmissions with increasing ids (sometimes skipping ids the sender
  // expired), replays of earlier ids, decisions and clock steps, checked against the delivery
  // guarantees rather than against a copy of the algorithm.
  it('never reports an id as new twice and answers replays with the first decision while held', () => {
    type Op =
      | { kind: 'send'; skip: number }
      | { kind: 'replay'; pick: number }
      | { kind: 'decide'; pick: number; outcome: string }
      | { kind: 'tick'; ms: number }
      | { kind: 'expire' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('send' as const), skip: fc.integer({ min: 0, max: 2 }) }),
      fc.record({ kind: fc.constant('replay' as const), pick: fc.nat() }),
      fc.record({
        kind: fc.constant('decide' as const),
        pick: fc.nat(),
        outcome: fc.constantFrom('ok', 'no'),
      }),
      fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 0, max: 60 }) }),
      fc.record({ kind: fc.constant('expire' as const) }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom(0, 0xffff_fff8),
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 1, max: 6 }),
        fc.array(op, { maxLength: 150 }),
        (start, retentionMs, maxDecided, ops) => {
          const w = new DedupeWindow<string>({ retentionMs, maxDecided });
          let now = 0;
          let lastSent: number = start;
          const sent: number[] = [];
          const deliveredNew = new Set<number>();
          const decisions = new Map<number, { outcome: string; at: number }>();
          const forgotten = new Set<number>();
          const decisionOrder: number[] = [];

          const check = (id: number, seen: DedupeObservation<string>): void => {
            switch (seen.kind) {
              case 'new':
                expect(deliveredNew.has(id)).toBe(false);
                expect(forgotten.has(id)).toBe(false);
                deliveredNew.add(id);
                break;
              case 'in-progress':
                expect(deliveredNew.has(id)).toBe(true);
                expect(decisions.has(id)).toBe(false);
                break;
              case 'decided': {
                const d = decisions.get(id);
                expect(d?.outcome).toBe(seen.outcome);
                expect(now - (d?.at ?? 0)).toBeLessThan(retentionMs);
                break;
              }
              case 'forgotten':
                // Only ids never delivered (skipped by the sender) or decided ones can be forgotten,
                // and a decision only once its retention ran out or newer ones pushed it out.
                expect(!deliveredNew.has(id) || decisions.has(id)).toBe(true);
                if (decisions.has(id)) {
                  const d = decisions.get(id) as { at: number };
                  const newer = decisionOrder.length - 1 - decisionOrder.indexOf(id);
                  expect(now - d.at >= retentionMs || newer >= maxDecided).toBe(true);
                }
                forgotten.add(id);
                break;
            }
          };

          for (const o of ops) {
            if (o.kind === 'send') {
              for (let i = 0; i <= o.skip; i++) lastSent = nextId(lastSent);
              sent.push(lastSent);
              const seen = w.observe(lastSent, now);
              expect(seen.kind).toBe('new');
              check(lastSent, seen);
            } else if (o.kind === 'replay' && sent.length > 0) {
              const id = sent[o.pick % sent.length];
              check(id, w.observe(id, now));
            } else if (o.kind === 'decide' && sent.length > 0) {
              const id = sent[o.pick % sent.length];
              const inProgress = deliveredNew.has(id) && !decisions.has(id);
              expect(w.decide(id, o.outcome, now)).toBe(inProgress);
              if (inProgress) {
                decisions.set(id, { outcome: o.outcome, at: now });
                decisionOrder.push(id);
              }
            } else if (o.kind === 'tick') {
              now += o.ms;
            } else if (o.kind === 'expire') {
              w.expire(now);
            }
            expect(w.decidedCount).toBeLessThanOrEqual(maxDecided);
            const undecided = [...deliveredNew].filter((id) => !decisions.has(id)).length;
            expect(w.inProgressCount).toBe(undecided);
            if (sent.length > 0) expect(idAfter(w.highestSeen, NO_MESSAGE_ID)).toBe(true);
          }
          // Undecided messages are never forgotten, whatever time passes.
          w.expire(now + 10 * retentionMs + 1);
          for (const id of deliveredNew) {
            if (!decisions.has(id)) expect(w.observe(id, now).kind).toBe('in-progress');
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
