import fc from 'fast-check';
import {
  MAX_MESSAGE_ID,
  NO_MESSAGE_ID,
  SERIAL_WINDOW,
  compareIds,
  idAfter,
  idDistance,
  isMessageId,
  nextId,
} from '../../../lib/engine/peer/serial.js';

const anyId = fc.integer({ min: 1, max: MAX_MESSAGE_ID });

/** The id `steps` after `id`, computed by walking the ring with plain arithmetic. */
function advance(id: number, steps: number): number {
  return ((id - 1 + steps) % MAX_MESSAGE_ID) + 1;
}

describe('message id serial arithmetic', () => {
  it('accepts 1..2^32-1 as message ids and rejects 0, fractions and out-of-range values', () => {
    expect(isMessageId(1)).toBe(true);
    expect(isMessageId(MAX_MESSAGE_ID)).toBe(true);
    for (const bad of [NO_MESSAGE_ID, -1, 1.5, 2 ** 32, Number.NaN, '7', undefined]) {
      expect(isMessageId(bad)).toBe(false);
    }
  });

  it('hands out 1 first and wraps from 0xFFFFFFFF back to 1, never to the reserved 0', () => {
    expect(nextId(NO_MESSAGE_ID)).toBe(1);
    expect(nextId(1)).toBe(2);
    expect(nextId(0xffff_fffe)).toBe(0xffff_ffff);
    expect(nextId(0xffff_ffff)).toBe(1);
    fc.assert(fc.property(anyId, (id) => isMessageId(nextId(id))));
  });

  it('measures the forward distance around the ring, skipping 0', () => {
    expect(idDistance(5, 5)).toBe(0);
    expect(idDistance(5, 9)).toBe(4);
    expect(idDistance(0xffff_ffff, 1)).toBe(1);
    expect(idDistance(1, 0xffff_ffff)).toBe(0xffff_fffe);
    fc.assert(
      fc.property(anyId, fc.integer({ min: 0, max: MAX_MESSAGE_ID - 1 }), (id, steps) => {
        return idDistance(id, advance(id, steps)) === steps;
      }),
    );
  });

  it('orders ids that are fewer than 2^31 steps apart by the order they were assigned in', () => {
    fc.assert(
      fc.property(anyId, fc.integer({ min: 1, max: SERIAL_WINDOW }), (id, steps) => {
        const later = advance(id, steps);
        return (
          idAfter(later, id) &&
          !idAfter(id, later) &&
          compareIds(later, id) > 0 &&
          compareIds(id, later) < 0
        );
      }),
    );
  });

  it('is antisymmetric: of two distinct ids exactly one is after the other', () => {
    fc.assert(
      fc.property(anyId, anyId, (a, b) => {
        if (a === b) return !idAfter(a, b) && compareIds(a, b) === 0;
        return idAfter(a, b) !== idAfter(b, a);
      }),
    );
  });

  it('treats ids across the wrap as later than ids just before it', () => {
    expect(idAfter(1, 0xffff_ffff)).toBe(true);
    expect(idAfter(3, 0xffff_fff0)).toBe(true);
    expect(idAfter(0xffff_fff0, 3)).toBe(false);
    const ids = [2, 0xffff_fffe, 1, 0xffff_ffff, 3];
    expect([...ids].sort(compareIds)).toEqual([0xffff_fffe, 0xffff_ffff, 1, 2, 3]);
  });

  it('puts every id after "none" and "none" after nothing', () => {
    fc.assert(
      fc.property(anyId, (id) => idAfter(id, NO_MESSAGE_ID) && !idAfter(NO_MESSAGE_ID, id)),
    );
    expect(idAfter(NO_MESSAGE_ID, NO_MESSAGE_ID)).toBe(false);
  });

  it('stops calling an id later once it is more than 2^31 - 1 steps ahead', () => {
    expect(idAfter(advance(10, SERIAL_WINDOW), 10)).toBe(true);
    expect(idAfter(advance(10, SERIAL_WINDOW + 1), 10)).toBe(false);
  });
});
