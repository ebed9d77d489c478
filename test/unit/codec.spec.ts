import fc from 'fast-check';
import { BufferCodec, JsonCodec, type MessageCodec } from '../../lib/engine/codec.js';
import { ErrorId } from '../../lib/engine/errors.js';
import { A3_MESSAGE_TYPE_BASE, a3MessageType } from '../../lib/engine/ids.js';
import { expectError } from '../support/expect.js';

describe('JsonCodec', () => {
  it('uses the first A3 message type by default and the configured one otherwise', () => {
    expect(new JsonCodec().msgType).toBe(A3_MESSAGE_TYPE_BASE);
    expect(new JsonCodec().encodeApp({}).msgType).toBe(A3_MESSAGE_TYPE_BASE);
    const codec = new JsonCodec<number>({ msgType: a3MessageType(5) });
    expect(codec.encodeApp(1).msgType).toBe(A3_MESSAGE_TYPE_BASE + 5);
  });

  it('encodes as UTF-8 JSON', () => {
    const { payload } = new JsonCodec<{ name: string }>().encodeApp({ name: 'Żółw ✓' });
    expect(Buffer.isBuffer(payload)).toBe(true);
    expect(payload.equals(Buffer.from('{"name":"Żółw ✓"}', 'utf8'))).toBe(true);
  });

  it('round-trips every JSON value', () => {
    const codec = new JsonCodec<unknown>();
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const { msgType, payload } = codec.encodeApp(value);
        expect(codec.decodeApp(msgType, payload)).toEqual(JSON.parse(JSON.stringify(value)));
      }),
    );
  });

  it('rejects values JSON cannot represent with EncodeFailure naming the cause', () => {
    const codec = new JsonCodec<unknown>();
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const circularError = expectError(
      ErrorId.EncodeFailure,
      () => codec.encodeApp(circular),
      'JsonCodec cannot encode the message',
      'circular',
    );
    expect(circularError.cause).toBeInstanceOf(TypeError);
    expectError(ErrorId.EncodeFailure, () => codec.encodeApp({ n: 1n }), 'BigInt');
    expectError(
      ErrorId.EncodeFailure,
      () => codec.encodeApp(undefined),
      'a top-level undefined has no JSON form',
    );
    expectError(
      ErrorId.EncodeFailure,
      () => codec.encodeApp(() => 1),
      'a top-level function has no JSON form',
    );
    expectError(
      ErrorId.EncodeFailure,
      () => codec.encodeApp(Symbol('s')),
      'a top-level symbol has no JSON form',
    );
    const throwing = {
      toJSON() {
        throw new Error('refused');
      },
    };
    expectError(ErrorId.EncodeFailure, () => codec.encodeApp(throwing), 'refused');
  });

  it('rejects a payload of another message type with DecodeFailure', () => {
    const codec = new JsonCodec<unknown>();
    expectError(
      ErrorId.DecodeFailure,
      () => codec.decodeApp(A3_MESSAGE_TYPE_BASE + 1, Buffer.from('{}')),
      `JsonCodec decodes message type ${A3_MESSAGE_TYPE_BASE} only, got message type ${A3_MESSAGE_TYPE_BASE + 1}`,
    );
  });

  it('rejects invalid JSON and invalid UTF-8 with DecodeFailure', () => {
    const codec = new JsonCodec<unknown>();
    const type = codec.msgType;
    expectError(
      ErrorId.DecodeFailure,
      () => codec.decodeApp(type, Buffer.from('{"a":')),
      'invalid JSON',
    );
    expectError(
      ErrorId.DecodeFailure,
      () => codec.decodeApp(type, Buffer.alloc(0)),
      'invalid JSON',
    );
    expectError(
      ErrorId.DecodeFailure,
      () => codec.decodeApp(type, Buffer.from([0x22, 0xff, 0x22])),
      'not valid UTF-8',
    );
  });

  it('decodes a payload that is a view into a larger buffer', () => {
    const codec = new JsonCodec<number[]>();
    const frame = Buffer.from('xx[1,2,3]yy');
    expect(codec.decodeApp(codec.msgType, frame.subarray(2, 9))).toEqual([1, 2, 3]);
  });

  it('rejects a msgType option that is not a u32 with InvalidConfig', () => {
    for (const msgType of [-1, 2 ** 32, 1.5, Number.NaN, '7' as unknown as number]) {
      expectError(
        ErrorId.InvalidConfig,
        () => new JsonCodec({ msgType }),
        'JsonCodec msgType must be an integer in 0..4294967295',
      );
    }
    expect(new JsonCodec({ msgType: 0 }).msgType).toBe(0);
    expect(new JsonCodec({ msgType: 0xffff_ffff }).msgType).toBe(0xffff_ffff);
    expectError(
      ErrorId.InvalidConfig,
      () => new JsonCodec(null as unknown as object),
      'JsonCodec options must be an object',
    );
  });
});

describe('BufferCodec', () => {
  it('passes Buffers through without copying in either direction', () => {
    const codec: MessageCodec<Buffer> = new BufferCodec();
    const message = Buffer.from([1, 2, 3]);
    const encoded = codec.encodeApp(message);
    expect(encoded.msgType).toBe(A3_MESSAGE_TYPE_BASE);
    expect(encoded.payload).toBe(message);
    expect(codec.decodeApp(encoded.msgType, encoded.payload)).toBe(message);
  });

  it('uses the configured message type', () => {
    const codec = new BufferCodec({ msgType: a3MessageType(9) });
    expect(codec.encodeApp(Buffer.alloc(0)).msgType).toBe(A3_MESSAGE_TYPE_BASE + 9);
  });

  it('rejects anything but a Buffer with EncodeFailure naming what it got', () => {
    const codec = new BufferCodec();
    const cases: [unknown, string][] = [
      ['text', 'got string'],
      [new Uint8Array(2), 'got Uint8Array'],
      [null, 'got null'],
      [undefined, 'got undefined'],
      [{ length: 0 }, 'got Object'],
    ];
    for (const [value, shown] of cases) {
      expectError(
        ErrorId.EncodeFailure,
        () => codec.encodeApp(value as Buffer),
        `BufferCodec encodes Buffers only, ${shown}`,
      );
    }
  });

  it('rejects a payload of another message type with DecodeFailure', () => {
    const codec = new BufferCodec({ msgType: a3MessageType(1) });
    expectError(
      ErrorId.DecodeFailure,
      () => codec.decodeApp(A3_MESSAGE_TYPE_BASE, Buffer.alloc(1)),
      `BufferCodec decodes message type ${A3_MESSAGE_TYPE_BASE + 1} only`,
    );
  });

  it('rejects a msgType option that is not a u32 with InvalidConfig', () => {
    expectError(
      ErrorId.InvalidConfig,
      () => new BufferCodec({ msgType: 2 ** 32 }),
      'BufferCodec msgType must be an integer in 0..4294967295 (u32), got 4294967296',
    );
  });
});
