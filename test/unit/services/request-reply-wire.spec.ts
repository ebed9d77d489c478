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
  REQUEST_MESSAGE_TYPE,
  REQUEST_REPLY_WIRE_VERSION,
  RESERVED_TABERNA_ID_BASE,
  RequestReplyCodec,
  decodeRequest,
  encodeRequest,
} from '../../../lib/engine/services/request-reply-wire.js';
import { expectError } from '../../support/expect.js';
import {
  decodeCancel,
  decodeReply,
  decodeReplyAcks,
  encodeCancel,
  encodeReply,
  encodeReplyAcks,
} from '../../../lib/engine/wire/control.js';
import { ControlType, ReplyFlags } from '../../../lib/engine/wire/frame.js';

const body = fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b));
const requestId = fc.integer({ min: 1, max: 0xffff_ffff });

/** An encoded control frame as the decoders see it. */
function view(frame: ReturnType<typeof encodeReply>) {
  return { ...frame, payload: Buffer.from(frame.payload) };
}

describe('request/reply wire format', () => {
  it('uses one A2 message type, below the reserved top 256 taberna ids', () => {
    expect(REQUEST_MESSAGE_TYPE).toBeGreaterThanOrEqual(A2_MESSAGE_TYPE_BASE);
    expect(REQUEST_MESSAGE_TYPE).toBeLessThanOrEqual(A2_MESSAGE_TYPE_MAX);
    expect(classifyMessagePriority(REQUEST_MESSAGE_TYPE)).toBe(MessagePriorityClass.A2);
    expect(RESERVED_TABERNA_ID_BASE).toBe((1n << 64n) - 256n);
  });

  it('round-trips every request, and carries no reply address or correlation id', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 300_000 }), body, (remainingMs, b) => {
        const payload = encodeRequest({ remainingMs, body: b });
        expect(payload.length).toBe(6 + b.length);
        expect(payload[0]).toBe(REQUEST_REPLY_WIRE_VERSION);
        expect(decodeRequest(payload)).toEqual({ kind: 'request', remainingMs, body: b });
      }),
    );
  });

  it('round-trips every reply, reply-ack and cancel frame', () => {
    fc.assert(
      fc.property(
        requestId,
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.constantFrom(
          ReplyFlags.None,
          ReplyFlags.Last,
          ReplyFlags.Error,
          ReplyFlags.Last | ReplyFlags.Empty,
        ),
        fc.string({ maxLength: 50 }),
        body,
        (id, seq, flags, reason, b) => {
          const frame = encodeReply(id, { seq, flags, reason, body: b });
          expect(frame.msgType).toBe(ControlType.Reply);
          expect(frame.peerMsgId).toBe(id);
          expect(decodeReply(view(frame))).toEqual({
            seq,
            flags,
            reason: flags & ReplyFlags.Error ? reason : '',
            body: b,
          });
        },
      ),
    );
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 2 }), (v) => {
        const pairs = v.length % 2 === 0 ? v : v.slice(1);
        expect(decodeReplyAcks(view(encodeReplyAcks(pairs)))).toEqual(pairs);
      }),
    );
    fc.assert(
      fc.property(requestId, fc.boolean(), (id, deadline) => {
        expect(decodeCancel(view(encodeCancel(id, deadline)))).toEqual({
          requestMsgId: id,
          deadline,
        });
      }),
    );
  });

  it('never throws anything but DecodeFailure on arbitrary request bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        try {
          decodeRequest(Buffer.from(bytes));
        } catch (err) {
          expect(AureliaError.is(err, ErrorId.DecodeFailure)).toBe(true);
        }
      }),
    );
  });

  it('refuses to encode deadlines outside 1..300000 ms and replies naming no request', () => {
    for (const remainingMs of [0, -1, 300_001, 1.5]) {
      expectError(
        ErrorId.EncodeFailure,
        () => encodeRequest({ remainingMs, body: Buffer.alloc(0) }),
        'request deadline',
      );
    }
    expectError(
      ErrorId.EncodeFailure,
      () => encodeReply(0, { seq: 0, flags: ReplyFlags.Last, reason: '', body: Buffer.alloc(0) }),
      'request id 0',
    );
    expectError(
      ErrorId.EncodeFailure,
      () =>
        encodeReply(1, {
          seq: 0,
          flags: ReplyFlags.Last | ReplyFlags.Error,
          reason: '',
          body: Buffer.alloc(0),
        }),
      'flags',
    );
  });

  it('names the problem when decoding a short, foreign-version or flagged request', () => {
    expectError(ErrorId.DecodeFailure, () => decodeRequest(Buffer.alloc(3)), 'shorter');
    const v1 = encodeRequest({ remainingMs: 10, body: Buffer.alloc(0) });
    v1[0] = 1;
    expectError(ErrorId.DecodeFailure, () => decodeRequest(v1), 'version 1');
    const flagged = encodeRequest({ remainingMs: 10, body: Buffer.alloc(0) });
    flagged[1] = 0x40;
    expectError(ErrorId.DecodeFailure, () => decodeRequest(flagged), 'unknown flags');
  });

  it('refuses replies with contradictory flags, a reason on a value, or a reason past the end', () => {
    const good = view(
      encodeReply(5, { seq: 1, flags: ReplyFlags.Error, reason: 'no', body: Buffer.from('b') }),
    );
    const both = { ...good, payload: Buffer.from(good.payload) };
    both.payload[0] = ReplyFlags.Last | ReplyFlags.Error;
    expectError(ErrorId.ProtocolViolation, () => decodeReply(both), 'invalid reply flags');
    const reasonOnValue = { ...good, payload: Buffer.from(good.payload) };
    reasonOnValue.payload[0] = ReplyFlags.None;
    expectError(ErrorId.ProtocolViolation, () => decodeReply(reasonOnValue), 'no error');
    const overrun = { ...good, payload: Buffer.from(good.payload) };
    overrun.payload.writeUInt16BE(200, 5);
    expectError(ErrorId.ProtocolViolation, () => decodeReply(overrun), 'overruns');
    expectError(ErrorId.ProtocolViolation, () => decodeReply({ ...good, peerMsgId: 0 }), 'id 0');
  });

  it('decodes requests by type and hands other types to the inner codec', () => {
    const inner = new JsonCodec<{ n: number }>();
    const codec = new RequestReplyCodec(inner);
    const message = inner.encodeApp({ n: 4 });
    expect(codec.decodeApp(message.msgType, message.payload)).toEqual({
      kind: 'message',
      message: { n: 4 },
    });
    const request = codec.encodeApp({ kind: 'request', remainingMs: 9, body: Buffer.from('x') });
    expect(request.msgType).toBe(REQUEST_MESSAGE_TYPE);
    expect(codec.decodeApp(request.msgType, request.payload)).toMatchObject({ remainingMs: 9 });
    expectError(
      ErrorId.DecodeFailure,
      () => new RequestReplyCodec().decodeApp(message.msgType, message.payload),
      'not a request/reply message',
    );
  });
});
