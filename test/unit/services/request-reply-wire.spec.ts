import fc from 'fast-check';
import { JsonCodec } from '../../../lib/engine/codec.js';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import {
  A2_MESSAGE_TYPE_BASE,
  A2_MESSAGE_TYPE_MAX,
  MessagePriorityClass,
  classifyMessagePriority,
} from '../../../lib/engine/ids.js';
import {
  CANCEL_MESSAGE_TYPE,
  REPLY_MESSAGE_TYPE,
  REPLY_TABERNA_ID,
  REQUEST_MESSAGE_TYPE,
  RESERVED_TABERNA_ID_BASE,
  RequestReplyCodec,
  decodeCancel,
  decodeReply,
  decodeRequest,
  encodeCancel,
  encodeReply,
  encodeRequest,
} from '../../../lib/engine/services/request-reply-wire.js';
import { expectError } from '../../support/expect.js';

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const address = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `tls://${h}:${p}`),
  fc.string({ minLength: 1, maxLength: 60 }).map((s) => `unix:///tmp/${encodeURIComponent(s)}`),
);
const body = fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b));

describe('request/reply wire format', () => {
  it('uses three A2 message types and a reply taberna in the reserved top 256 ids', () => {
    for (const type of [REQUEST_MESSAGE_TYPE, REPLY_MESSAGE_TYPE, CANCEL_MESSAGE_TYPE]) {
      expect(type).toBeGreaterThanOrEqual(A2_MESSAGE_TYPE_BASE);
      expect(type).toBeLessThanOrEqual(A2_MESSAGE_TYPE_MAX);
      expect(classifyMessagePriority(type)).toBe(MessagePriorityClass.A2);
    }
    expect(RESERVED_TABERNA_ID_BASE).toBe((1n << 64n) - 256n);
    expect(REPLY_TABERNA_ID).toBeGreaterThanOrEqual(RESERVED_TABERNA_ID_BASE);
  });

  it('round-trips every request', () => {
    fc.assert(
      fc.property(
        u64,
        u64,
        fc.integer({ min: 1, max: 300_000 }),
        address,
        body,
        (correlationId, replyTaberna, remainingMs, replyAddress, b) => {
          const frame = { correlationId, replyTaberna, remainingMs, replyAddress, body: b };
          expect(decodeRequest(encodeRequest(frame))).toEqual({ kind: 'request', ...frame });
        },
      ),
    );
  });

  it('round-trips every reply and cancel', () => {
    fc.assert(
      fc.property(
        u64,
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.boolean(),
        fc.boolean(),
        body,
        address,
        (correlationId, seq, error, last, b, replyAddress) => {
          expect(decodeReply(encodeReply({ correlationId, seq, error, last, body: b }))).toEqual({
            kind: 'reply',
            correlationId,
            seq,
            error,
            last,
            body: b,
          });
          expect(decodeCancel(encodeCancel({ correlationId, replyAddress }))).toEqual({
            kind: 'cancel',
            correlationId,
            replyAddress,
          });
        },
      ),
    );
  });

  it('never throws anything but DecodeFailure on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        for (const decode of [decodeRequest, decodeReply, decodeCancel]) {
          try {
            decode(Buffer.from(bytes));
          } catch (err) {
            expect(AureliaError.is(err, ErrorId.DecodeFailure)).toBe(true);
          }
        }
      }),
    );
  });

  it('refuses to encode deadlines outside 1..300000 ms and empty reply addresses', () => {
    const base = {
      correlationId: 1n,
      replyTaberna: REPLY_TABERNA_ID,
      replyAddress: 'tls://127.0.0.1:1',
      body: Buffer.alloc(0),
    };
    expectError(
      ErrorId.EncodeFailure,
      () => encodeRequest({ ...base, remainingMs: 0 }),
      'deadline',
    );
    expectError(
      ErrorId.EncodeFailure,
      () => encodeRequest({ ...base, remainingMs: 300_001 }),
      '1..300000',
    );
    expectError(
      ErrorId.EncodeFailure,
      () => encodeRequest({ ...base, remainingMs: 10, replyAddress: '' }),
      'reply address',
    );
  });

  it('names the problem when decoding a short or foreign-version payload', () => {
    expectError(ErrorId.DecodeFailure, () => decodeReply(Buffer.alloc(3)), 'shorter than');
    const reply = encodeReply({
      correlationId: 1n,
      seq: 0,
      error: false,
      last: true,
      body: Buffer.alloc(0),
    });
    reply[0] = 9;
    expectError(ErrorId.DecodeFailure, () => decodeReply(reply), 'version 9');
  });

  it('decodes service frames by type and hands other types to the inner codec', () => {
    const inner = new JsonCodec<{ n: number }>();
    const codec = new RequestReplyCodec(inner);
    const message = inner.encodeApp({ n: 4 });
    expect(codec.decodeApp(message.msgType, message.payload)).toEqual({
      kind: 'message',
      message: { n: 4 },
    });
    const reply = codec.encodeApp({
      kind: 'reply',
      correlationId: 7n,
      seq: 2,
      error: true,
      last: false,
      body: Buffer.from('x'),
    });
    expect(reply.msgType).toBe(REPLY_MESSAGE_TYPE);
    expect(codec.decodeApp(reply.msgType, reply.payload)).toMatchObject({ seq: 2, error: true });
    expectError(
      ErrorId.DecodeFailure,
      () => new RequestReplyCodec().decodeApp(message.msgType, message.payload),
      'not a request/reply message',
    );
  });
});
