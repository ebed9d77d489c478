import fc from 'fast-check';
import { AureliaError, ErrorId, a3MessageType } from '../../lib/index.js';
import {
  A1_MESSAGE_TYPE_MAX,
  A2_MESSAGE_TYPE_BASE,
  A2_MESSAGE_TYPE_MAX,
  A3_MESSAGE_TYPE_BASE,
  A3_MESSAGE_TYPE_MAX_OFFSET,
  MessagePriorityClass,
  classifyMessagePriority,
  tryA3MessageType,
} from '../../lib/engine/index.js';
import { assertTabernaId, isTabernaId, tabernaIdText } from '../../lib/engine/ids.js';

describe('message type ranges', () => {
  it('lay the three ranges end to end over the u32 space', () => {
    expect(A1_MESSAGE_TYPE_MAX + 1).toBe(A2_MESSAGE_TYPE_BASE);
    expect(A2_MESSAGE_TYPE_MAX + 1).toBe(A3_MESSAGE_TYPE_BASE);
    expect(A3_MESSAGE_TYPE_BASE + A3_MESSAGE_TYPE_MAX_OFFSET).toBe(0xffff_ffff);
  });

  it('a3MessageType adds the offset to the A3 base and throws EncodeFailure past the max', () => {
    expect(a3MessageType(0)).toBe(A3_MESSAGE_TYPE_BASE);
    expect(a3MessageType(7)).toBe(A3_MESSAGE_TYPE_BASE + 7);
    expect(a3MessageType(A3_MESSAGE_TYPE_MAX_OFFSET)).toBe(0xffff_ffff);
    for (const bad of [A3_MESSAGE_TYPE_MAX_OFFSET + 1, -1, 1.5, Number.NaN]) {
      expect(() => a3MessageType(bad)).toThrow(AureliaError);
      try {
        a3MessageType(bad);
      } catch (err) {
        expect((err as AureliaError).kind).toBe(ErrorId.EncodeFailure);
        expect((err as AureliaError).message).toContain(String(bad));
      }
      expect(tryA3MessageType(bad)).toBeUndefined();
    }
  });

  it('classifies every u32 into exactly the class of its range', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), (t) => {
        const cls = classifyMessagePriority(t);
        if (t <= A1_MESSAGE_TYPE_MAX) return cls === MessagePriorityClass.A1;
        if (t <= A2_MESSAGE_TYPE_MAX) return cls === MessagePriorityClass.A2;
        return cls === MessagePriorityClass.A3;
      }),
    );
    expect(classifyMessagePriority(A1_MESSAGE_TYPE_MAX)).toBe(MessagePriorityClass.A1);
    expect(classifyMessagePriority(A2_MESSAGE_TYPE_BASE)).toBe(MessagePriorityClass.A2);
    expect(classifyMessagePriority(A3_MESSAGE_TYPE_BASE)).toBe(MessagePriorityClass.A3);
    expect(() => classifyMessagePriority(-1)).toThrow(AureliaError);
    expect(() => classifyMessagePriority(2 ** 32)).toThrow(AureliaError);
  });
});

describe('taberna ids', () => {
  it('accept bigints in the u64 range only', () => {
    expect(isTabernaId(0n)).toBe(true);
    expect(isTabernaId((1n << 64n) - 1n)).toBe(true);
    expect(isTabernaId(1n << 64n)).toBe(false);
    expect(isTabernaId(-1n)).toBe(false);
    expect(isTabernaId(5)).toBe(false);
    expect(() => assertTabernaId(7)).toThrow(/bigint in 0\.\.2\^64-1, got number/);
  });
});

describe('tabernaIdText', () => {
  it('writes ids in hex as the docs do, with the decimal value for small chosen ids', () => {
    expect(tabernaIdText(0xa41f570ee2576613n)).toBe('0xa41f570ee2576613');
    expect(tabernaIdText(4242n)).toBe('0x1092 (4242)');
    expect(tabernaIdText(0xffff_ffffn)).toBe('0xffffffff (4294967295)');
    expect(tabernaIdText(0x1_0000_0000n)).toBe('0x100000000');
  });
});
