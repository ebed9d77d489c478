// Property tests of the wire codec. FC_RUNS=<n> raises the number of runs per property.
import fc from 'fast-check';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import {
  decodeClose,
  decodeControl,
  encodeAck,
  encodeBlobChunk,
  encodeBlobComplete,
  encodeClose,
  encodeError,
  encodeHello,
  encodeHelloResponse,
  encodeKeepalive,
  type ControlMessage,
} from '../../../lib/engine/wire/control.js';
import { FrameDecoder } from '../../../lib/engine/wire/decoder.js';
import {
  BLOB_CHUNK_HEADER_LEN,
  ControlType,
  ERROR_HEADER_LEN,
  HEADER_LEN,
  MAX_ACK_PAYLOAD_LEN,
  MAX_BLOB_ACK_WINDOW,
  MAX_BLOB_CHUNK_LEN,
  MAX_CONTROL_TEXT_LEN,
  decodeHeader,
  encodeFrame,
  encodeFrames,
  isControlType,
  type Frame,
  type OutboundFrame,
  WIRE_VERSION,
  REPLY_HEADER_LEN,
} from '../../../lib/engine/wire/frame.js';
import { rawHeader, split } from '../../support/wire.js';

const numRuns = Number.parseInt(process.env.FC_RUNS ?? '', 10) || 100;
const U64_MAX = (1n << 64n) - 1n;

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const u64 = fc.bigInt({ min: 0n, max: U64_MAX });
const bytes = (maxLength: number) => fc.uint8Array({ maxLength }).map((a) => Buffer.from(a));
// Up to 200 code points of up to 4 UTF-8 bytes each: never cut by the 1024-byte text limit.
const shortText = fc.string({ unit: 'binary', maxLength: 200 });

/** A frame to send and, for control frames, what `decodeControl` must return for it. */
interface Case {
  readonly frame: OutboundFrame;
  readonly expected?: ControlMessage;
}

const helloCase: fc.Arbitrary<Case> = fc
  .record({
    response: fc.boolean(),
    sessionEpoch: u64,
    reconnect: fc.boolean(),
    blobWindow: fc.option(
      fc.record({
        chunkSize: fc.integer({ min: 1, max: MAX_BLOB_CHUNK_LEN }),
        ackWindow: fc.integer({ min: 1, max: MAX_BLOB_ACK_WINDOW }),
      }),
      { nil: undefined },
    ),
  })
  .map(({ response, ...hello }) => ({
    frame: response ? encodeHelloResponse(hello) : encodeHello(hello),
    expected: { type: response ? ControlType.HelloResponse : ControlType.Hello, ...hello },
  }));

const keepaliveCase: fc.Arbitrary<Case> = fc.constant({
  frame: encodeKeepalive(),
  expected: { type: ControlType.Keepalive },
});

const ackCase: fc.Arbitrary<Case> = fc
  .array(u32, { minLength: 1, maxLength: 64 })
  .map((ids) => ({ frame: encodeAck(ids), expected: { type: ControlType.Ack, ids } }));

const closeCase: fc.Arbitrary<Case> = shortText.map((reason) => ({
  frame: encodeClose(reason),
  expected: { type: ControlType.Close, reason },
}));

const errorCase: fc.Arbitrary<Case> = fc
  .record({ errorId: u32, message: shortText, peerMsgId: u32 })
  .map((error) => ({ frame: encodeError(error), expected: { type: ControlType.Error, ...error } }));

const blobChunkCase: fc.Arbitrary<Case> = fc
  .record({ requestMsgId: u32, chunkId: u64, last: fc.boolean(), data: bytes(2000) })
  .map((chunk) => ({
    frame: encodeBlobChunk(chunk),
    expected: { type: ControlType.BlobChunk, ...chunk },
  }));

const blobCompleteCase: fc.Arbitrary<Case> = u32.map((requestMsgId) => ({
  frame: encodeBlobComplete(requestMsgId),
  expected: { type: ControlType.BlobComplete, requestMsgId },
}));

const APP_MAX_PAYLOAD = 300;
const appCase: fc.Arbitrary<Case> = fc
  .record({
    flags: fc.integer({ min: 0, max: 3 }),
    msgType: fc.integer({ min: 0x1_0000, max: 0xffff_ffff }),
    peerMsgId: u32,
    srcTaberna: u64,
    dstTaberna: u64,
    payload: bytes(APP_MAX_PAYLOAD),
  })
  .map((frame) => ({ frame }));

const anyCase = fc.oneof(
  helloCase,
  keepaliveCase,
  ackCase,
  closeCase,
  errorCase,
  blobChunkCase,
  blobCompleteCase,
  appCase,
  appCase,
);

/** Chunk sizes, cycled over a stream: empty chunks, single bytes, and many frames at once. */
const chunkSizes = fc
  .array(
    fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4000 })),
    { minLength: 1, maxLength: 30 },
  )
  .map((sizes) => [...sizes, 1]);

function expectWireError(err: unknown): AureliaError {
  expect(err).toBeInstanceOf(AureliaError);
  const kind = (err as AureliaError).kind;
  expect([ErrorId.ProtocolViolation, ErrorId.UnsupportedVersion]).toContain(kind);
  return err as AureliaError;
}

/** Pushes `chunks` until one throws; returns that error, if any. */
function decodeAll(
  chunks: readonly Buffer[],
  decoder: FrameDecoder,
  afterPush: () => void = () => undefined,
): unknown {
  for (const chunk of chunks) {
    try {
      decoder.push(chunk);
    } catch (err) {
      afterPush();
      return err;
    }
    afterPush();
  }
  return undefined;
}

describe('wire codec properties', () => {
  it('every frame kind survives encode and decode under any chunking of a many-frame stream', () => {
    fc.assert(
      fc.property(
        fc.array(anyCase, { minLength: 1, maxLength: 20 }),
        chunkSizes,
        (cases, sizes) => {
          const stream = encodeFrames(cases.map((c) => c.frame));
          const chunks = split(stream, sizes);
          const frames: Frame[] = [];
          const decoder = new FrameDecoder({
            maxPayloadLen: APP_MAX_PAYLOAD,
            onFrame: (f) => frames.push(f),
          });
          for (const chunk of chunks) decoder.push(chunk);

          expect(decoder.atFrameBoundary).toBe(true);
          expect(frames).toHaveLength(cases.length);
          let offset = 0;
          cases.forEach(({ frame, expected }, i) => {
            const got = frames[i];
            expect(got).toEqual(
              expect.objectContaining({
                version: WIRE_VERSION,
                flags: frame.flags,
                msgType: frame.msgType,
                peerMsgId: frame.peerMsgId,
                srcTaberna: frame.srcTaberna,
                dstTaberna: frame.dstTaberna,
                payloadLen: frame.payload.length,
              }),
            );
            expect(got.payload.equals(frame.payload)).toBe(true);
            if (expected !== undefined) expect(decodeControl(got)).toEqual(expected);

            // A payload inside one chunk is a view of it; a spanning one got its own exact buffer.
            const start = offset + HEADER_LEN;
            const end = start + frame.payload.length;
            offset = end;
            if (start === end) return;
            let chunkStart = 0;
            let inOneChunk = false;
            for (const chunk of chunks) {
              const chunkEnd = chunkStart + chunk.length;
              if (chunkStart <= start && end <= chunkEnd) inOneChunk = true;
              chunkStart = chunkEnd;
            }
            if (inOneChunk) {
              expect(got.payload.buffer).toBe(stream.buffer);
            } else {
              expect(got.payload.buffer).not.toBe(stream.buffer);
              expect(got.payload.buffer.byteLength).toBe(frame.payload.length);
            }
          });
        },
      ),
      { numRuns },
    );
  });

  /** A header that gets past the version check, with fields near and past every limit. */
  const plausibleHeader = fc
    .record({
      version: fc.oneof(
        fc.constant(1),
        fc.constant(1),
        fc.constant(1),
        fc.integer({ min: 0, max: 0xffff }),
      ),
      flags: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 0xffff })),
      msgType: fc.oneof(
        fc.integer({ min: 0, max: 10 }),
        fc.constantFrom(0xffff, 0x1_0000, 0x100_0000, 0xffff_ffff),
        u32,
      ),
      peerMsgId: u32,
      payloadLen: fc.oneof(
        fc.integer({ min: 0, max: 40 }),
        fc.integer({ min: 0, max: 5000 }),
        fc.constantFrom(
          MAX_ACK_PAYLOAD_LEN,
          MAX_ACK_PAYLOAD_LEN + 4,
          ERROR_HEADER_LEN + MAX_CONTROL_TEXT_LEN,
          BLOB_CHUNK_HEADER_LEN + MAX_BLOB_CHUNK_LEN + 1,
          0x7fff_ffff,
          0xffff_ffff,
        ),
      ),
    })
    .map((h) => rawHeader(h));

  const hostileStream = fc
    .array(
      fc.oneof(
        bytes(64),
        plausibleHeader,
        fc.tuple(plausibleHeader, bytes(3000)).map(([h, rest]) => Buffer.concat([h, rest])),
        anyCase.map((c) => encodeFrame(c.frame)),
      ),
      { minLength: 1, maxLength: 12 },
    )
    .map((parts) => Buffer.concat(parts));

  it('arbitrary bytes in arbitrary chunks fail only with ProtocolViolation or UnsupportedVersion, within the buffer bound', () => {
    fc.assert(
      fc.property(
        hostileStream,
        chunkSizes,
        fc.integer({ min: 0, max: 4096 }),
        fc.integer({ min: 0, max: 2048 }),
        (stream, sizes, maxPayloadLen, maxBlobChunkLen) => {
          const frames: Frame[] = [];
          const decoder = new FrameDecoder({
            maxPayloadLen,
            maxBlobChunkLen,
            onFrame: (f) => {
              frames.push(f);
              // What the peer layer does with each frame, so payload decoders face the bytes too.
              if (isControlType(f.msgType)) decodeControl(f, maxBlobChunkLen);
            },
          });
          const bound =
            HEADER_LEN +
            Math.max(
              // A reply carries a body up to maxPayloadLen after its header and reason.
              REPLY_HEADER_LEN + MAX_CONTROL_TEXT_LEN + maxPayloadLen,
              BLOB_CHUNK_HEADER_LEN + maxBlobChunkLen,
              MAX_ACK_PAYLOAD_LEN,
              ERROR_HEADER_LEN + MAX_CONTROL_TEXT_LEN,
            );
          expect(decoder.maxBufferedBytes).toBe(bound);
          let peak = 0;
          const err = decodeAll(split(stream, sizes), decoder, () => {
            peak = Math.max(peak, decoder.bufferedBytes);
          });
          expect(peak).toBeLessThanOrEqual(bound);
          for (const f of frames) {
            expect(f.payload.length).toBe(f.payloadLen);
            if (f.msgType > 0xffff) expect(f.payloadLen).toBeLessThanOrEqual(maxPayloadLen);
          }
          if (err !== undefined) {
            const { kind } = expectWireError(err);
            expect(() => decoder.push(Buffer.alloc(1))).toThrow(expect.objectContaining({ kind }));
          }
        },
      ),
      { numRuns },
    );
  });

  it('a valid stream with one byte changed either decodes or fails only with ProtocolViolation or UnsupportedVersion', () => {
    fc.assert(
      fc.property(
        fc.array(anyCase, { minLength: 1, maxLength: 8 }),
        chunkSizes,
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (cases, sizes, where, delta) => {
          const stream = encodeFrames(cases.map((c) => c.frame));
          const index = where % stream.length;
          const mutated = Buffer.from(stream);
          mutated[index] = (mutated[index] + delta) & 0xff;

          const frames: Frame[] = [];
          const decoder = new FrameDecoder({
            maxPayloadLen: APP_MAX_PAYLOAD,
            onFrame: (f) => {
              frames.push(f);
              if (isControlType(f.msgType)) decodeControl(f);
            },
          });
          const err = decodeAll(split(mutated, sizes), decoder);
          if (err !== undefined) expectWireError(err);

          // Frames that end before the changed byte arrive exactly as sent.
          let end = 0;
          for (let i = 0; i < cases.length; i++) {
            end += HEADER_LEN + cases[i].frame.payload.length;
            if (end > index) break;
            expect(frames[i].payload.equals(cases[i].frame.payload)).toBe(true);
            expect(frames[i].msgType).toBe(cases[i].frame.msgType);
          }
        },
      ),
      { numRuns },
    );
  });

  it('a text of any length is sent as its longest prefix that fits in 1024 UTF-8 bytes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 700 }), (reason) => {
        const frame = encodeClose(reason);
        expect(frame.payload.length).toBeLessThanOrEqual(MAX_CONTROL_TEXT_LEN);
        const bytesOut = encodeFrame(frame);
        const sent = decodeClose({
          ...decodeHeader(bytesOut),
          payload: bytesOut.subarray(HEADER_LEN),
        });
        expect(reason.startsWith(sent)).toBe(true);
        if (Buffer.byteLength(reason) <= MAX_CONTROL_TEXT_LEN) expect(sent).toBe(reason);
        else {
          const next = String.fromCodePoint(reason.codePointAt(sent.length) ?? 0);
          expect(frame.payload.length + Buffer.byteLength(next)).toBeGreaterThan(
            MAX_CONTROL_TEXT_LEN,
          );
        }
      }),
      { numRuns },
    );
  });
});
