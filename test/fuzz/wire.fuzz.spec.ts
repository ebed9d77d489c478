// Fuzzing of everything that parses bytes from a peer: the frame decoder, the A1 control payload
// decoders, blob acks and the A2 request/reply payloads. Short by default; for a long run:
//   AURELIA_FUZZ_RUNS=200000 npm test -- test/fuzz
// A failing input is printed by fast-check; save its bytes as test/fuzz/corpus/<name>.bin so
// every later run replays it.
import fc from 'fast-check';

import { ErrorId } from '../../lib/engine/errors.js';
import {
  encodeAck,
  encodeBlobChunk,
  encodeBlobComplete,
  encodeCancel,
  encodeClose,
  encodeDrain,
  encodeError,
  encodeHello,
  encodeKeepalive,
  encodeReply,
  encodeReplyAcks,
} from '../../lib/engine/wire/control.js';
import { REQUEST_REPLY_WIRE_VERSION } from '../../lib/engine/services/request-reply-wire.js';
import {
  ControlType,
  MAX_BLOB_ACK_WINDOW,
  WIRE_VERSION,
  encodeFrame,
  type OutboundFrame,
} from '../../lib/engine/wire/frame.js';
import {
  FUZZ_MAX_CHUNK,
  FUZZ_MAX_PAYLOAD,
  FUZZ_RUNS,
  corpus,
  exercise,
  exercisePayload,
} from './harness.js';
import { rawHeader, split } from '../support/wire.js';

const A2 = 0x1_0000;
const A3 = 0x100_0000;
// Long runs get a longer Jest budget: roughly a millisecond per run and property.
const TIMEOUT_MS = Math.max(30_000, FUZZ_RUNS * 2);

/** Values at and around every boundary the decoders check. */
const boundaryU32 = fc.constantFrom(
  0,
  1,
  2,
  3,
  4,
  7,
  8,
  16,
  17,
  18,
  1024,
  1025,
  1028,
  1029,
  4095 * 4,
  4096 * 4,
  FUZZ_MAX_CHUNK,
  FUZZ_MAX_CHUNK + 18,
  FUZZ_MAX_CHUNK + 19,
  FUZZ_MAX_PAYLOAD,
  FUZZ_MAX_PAYLOAD + 1,
  0x7fff_ffff,
  0xffff_fffe,
  0xffff_ffff,
);
const u32 = fc.oneof(boundaryU32, fc.integer({ min: 0, max: 0xffff_ffff }));
const u64 = fc.oneof(
  fc.constantFrom(0n, 1n, (1n << 64n) - 1n),
  fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
);
const msgType = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xffff, A2, A2 + 1, A2 + 2, A3),
  fc.integer({ min: 0, max: 0xffff_ffff }),
);
const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));

/** A frame header with every field chosen freely, followed by up to 64 payload bytes. */
const rawFrame: fc.Arbitrary<Buffer> = fc
  .record({
    version: fc.oneof(
      { weight: 8, arbitrary: fc.constant(WIRE_VERSION) },
      { weight: 1, arbitrary: fc.nat(0xffff) },
    ),
    flags: fc.oneof(fc.constantFrom(0, 1, 2, 3), fc.nat(0xffff)),
    msgType,
    peerMsgId: u32,
    src: u64,
    dst: u64,
    payload: bytes(64),
    lengthMatches: fc.boolean(),
    announced: u32,
  })
  .map((f) => {
    const head = rawHeader({
      version: f.version,
      flags: f.flags,
      msgType: f.msgType,
      peerMsgId: f.peerMsgId,
      srcTaberna: f.src,
      dstTaberna: f.dst,
      payloadLen: f.lengthMatches ? f.payload.length : f.announced,
    });
    return Buffer.concat([head, f.payload]);
  });

/** A frame an honest peer could send. */
const validFrame: fc.Arbitrary<Buffer> = fc
  .oneof(
    fc
      .record({
        epoch: u64,
        window: fc.boolean(),
        chunk: fc.integer({ min: 1, max: FUZZ_MAX_CHUNK }),
      })
      .map(({ epoch, window, chunk }) =>
        encodeHello({
          sessionEpoch: epoch,
          blobWindow: window ? { chunkSize: chunk, ackWindow: MAX_BLOB_ACK_WINDOW } : undefined,
        }),
      ),
    fc.constant(encodeKeepalive()),
    fc.constant(encodeDrain()),
    fc
      .array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 1, maxLength: 12 })
      .map(encodeAck),
    fc.string({ maxLength: 40 }).map((reason) => encodeClose(reason)),
    fc
      .record({ errorId: u32, message: fc.string({ maxLength: 40 }), peerMsgId: u32 })
      .map(encodeError),
    fc
      .record({ id: u32, chunk: u64, last: fc.boolean(), data: bytes(48) })
      .map(({ id, chunk, last, data }) =>
        encodeBlobChunk({ requestMsgId: id, chunkId: chunk, last, data }),
      ),
    u32.map(encodeBlobComplete),
    fc
      .record({
        id: fc.integer({ min: 1, max: 0xffff_ffff }),
        seq: u32,
        flags: fc.constantFrom(0, 1, 2, 4, 5, 6),
        reason: fc.string({ maxLength: 40 }),
        body: bytes(48),
      })
      .map(({ id, seq, flags, reason, body }) => encodeReply(id, { seq, flags, reason, body })),
    fc
      .array(fc.integer({ min: 0, max: 0xffff_ffff }), { minLength: 1, maxLength: 6 })
      .map((values) => encodeReplyAcks([...values, ...values])),
    fc
      .record({ id: fc.integer({ min: 1, max: 0xffff_ffff }), deadline: fc.boolean() })
      .map(({ id, deadline }) => encodeCancel(id, deadline)),
    fc
      .record({
        type: fc.integer({ min: A2, max: 0xffff_ffff }),
        id: u32,
        dst: u64,
        payload: bytes(64),
      })
      .map(({ type, id, dst, payload }): OutboundFrame => ({
        flags: 0,
        msgType: type,
        peerMsgId: id,
        srcTaberna: 0n,
        dstTaberna: dst,
        payload,
      })),
  )
  .map((frame) => encodeFrame(frame));

/** Streams mixing valid and free-form frames, with optional byte flips and truncation. */
const stream = fc
  .record({
    frames: fc.array(fc.oneof(validFrame, rawFrame), { maxLength: 12 }),
    flips: fc.array(fc.record({ at: fc.nat(), value: fc.nat(255) }), { maxLength: 3 }),
    cut: fc.option(fc.nat(), { nil: undefined }),
    sizes: fc.array(fc.integer({ min: 1, max: 80 }), { maxLength: 8 }),
  })
  .map(({ frames, flips, cut, sizes }) => {
    const joined = Buffer.concat(frames);
    for (const { at, value } of flips) if (joined.length > 0) joined[at % joined.length] = value;
    const bytes =
      cut === undefined || joined.length === 0 ? joined : joined.subarray(0, cut % joined.length);
    return { bytes, chunks: split(bytes, sizes) };
  });

describe('fuzzing the wire decoders', () => {
  it(
    'any byte stream in any chunking fails only with ProtocolViolation or UnsupportedVersion, within the buffer bound',
    () => {
      fc.assert(
        fc.property(stream, ({ chunks }) => {
          exercise(chunks);
        }),
        { numRuns: FUZZ_RUNS },
      );
    },
    TIMEOUT_MS,
  );

  it(
    'the outcome of a stream does not depend on how it is chunked',
    () => {
      fc.assert(
        fc.property(stream, ({ bytes, chunks }) => {
          const whole = exercise([bytes]);
          const pieces = exercise(chunks);
          expect(pieces).toEqual(whole);
        }),
        { numRuns: FUZZ_RUNS },
      );
    },
    TIMEOUT_MS,
  );

  it(
    'request/reply payloads of any bytes fail only with DecodeFailure',
    () => {
      const payload = fc.oneof(
        bytes(96),
        // Mostly well-formed prefixes: version 2, then random flags, deadlines and bodies.
        fc.tuple(fc.nat(3), u32, bytes(64)).map(([flags, remainingMs, rest]) => {
          const out = Buffer.alloc(2 + 4);
          out[0] = REQUEST_REPLY_WIRE_VERSION;
          out[1] = flags;
          out.writeUInt32BE(remainingMs, 2);
          return Buffer.concat([out, rest]);
        }),
      );
      fc.assert(
        fc.property(payload, (p) => exercisePayload(p)),
        { numRuns: FUZZ_RUNS },
      );
    },
    TIMEOUT_MS,
  );
});

describe('the regression corpus', () => {
  const files = corpus();

  it('holds inputs to replay', () => {
    expect(files.length).toBeGreaterThanOrEqual(10);
  });

  it.each(files.map((f) => [f.name, f.bytes] as const))(
    '%s fails only the documented way, whole, byte by byte and in odd chunks',
    (_name, input) => {
      const whole = exercise([input]);
      expect(exercise(split(input, [1]))).toEqual(whole);
      expect(exercise(split(input, [7, 3, 31]))).toEqual(whole);
    },
  );

  it('covers a valid stream, oversize lengths and an unknown version', () => {
    const byName = new Map(files.map((f) => [f.name, exercise([f.bytes])]));
    expect(byName.get('valid-stream.bin')).toEqual({ frames: 8, stoppedBy: undefined });
    expect(byName.get('oversize-announced.bin')?.stoppedBy).toBe(ErrorId.ProtocolViolation);
    expect(byName.get('unknown-version.bin')?.stoppedBy).toBe(ErrorId.UnsupportedVersion);
    expect(byName.get('ack-misaligned.bin')?.stoppedBy).toBe(ErrorId.ProtocolViolation);
    expect(byName.get('keepalive-with-payload.bin')?.stoppedBy).toBe(ErrorId.ProtocolViolation);
    expect(byName.get('drain-with-payload.bin')?.stoppedBy).toBe(ErrorId.ProtocolViolation);
  });

  // A hello and a keepalive, then the first 12 bytes of a header saying version 2 (a peer from
  // before the drain frame). The version
  // must be refused as soon as its two bytes are in, before the rest of the header arrives, and
  // wherever the stream is cut, including between the two version bytes (0x00 alone is ambiguous).
  it('refuses an unknown version split across two chunks at any point, after the valid frames before it', () => {
    const input = files.find((f) => f.name === 'unknown-version-split.bin')!.bytes;
    const expected = { frames: 2, stoppedBy: ErrorId.UnsupportedVersion };
    expect(exercise([input])).toEqual(expected);
    for (let at = 1; at < input.length; at++) {
      expect(exercise([input.subarray(0, at), input.subarray(at)])).toEqual(expected);
    }
  });
});

// Keeps the control type numbers this file hard-codes honest.
it('the fuzzed control type numbers match the protocol', () => {
  expect([
    ControlType.Hello,
    ControlType.Ack,
    ControlType.BlobChunk,
    ControlType.BlobComplete,
    ControlType.Reply,
    ControlType.ReplyAck,
    ControlType.Cancel,
    ControlType.Drain,
  ]).toEqual([1, 4, 8, 9, 10, 11, 12, 13]);
});
