import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import {
  ControlType,
  FrameBatch,
  FrameFlags,
  HEADER_LEN,
  MAX_ACK_PAYLOAD_LEN,
  MAX_BLOB_CHUNK_LEN,
  WIRE_VERSION,
  controlTypeName,
  decodeHeader,
  describeFrame,
  encodeFrame,
  encodeFrameInto,
  encodeFrames,
  encodeHeader,
  encodeHeaderOnly,
  encodedFrameLength,
  isControlType,
  type FrameHeader,
  type OutboundFrame,
} from '../../../lib/engine/wire/frame.js';
import { encodeBlobChunk, encodeBlobChunkHead } from '../../../lib/engine/wire/control.js';
import { rawHeader } from '../../support/wire.js';
import { aureliaError } from '../../support/expect.js';

const U64_MAX = (1n << 64n) - 1n;
const APP_TYPE = 0x100_0000;

function header(overrides: Partial<FrameHeader> = {}): FrameHeader {
  return {
    version: WIRE_VERSION,
    flags: FrameFlags.None,
    msgType: APP_TYPE,
    peerMsgId: 7,
    srcTaberna: 1n,
    dstTaberna: 2n,
    payloadLen: 0,
    ...overrides,
  };
}

function appFrame(payload: Buffer, overrides: Partial<OutboundFrame> = {}): OutboundFrame {
  return {
    flags: FrameFlags.None,
    msgType: APP_TYPE,
    peerMsgId: 1,
    srcTaberna: 10n,
    dstTaberna: 20n,
    payload,
    ...overrides,
  };
}

describe('frame header', () => {
  it('is written as 32 big-endian bytes in the order of the wire spec', () => {
    const target = Buffer.alloc(HEADER_LEN + 2, 0xee);
    encodeHeader(
      target,
      1,
      header({
        flags: FrameFlags.Blob | FrameFlags.Reconnect,
        msgType: 0x0102_0304,
        peerMsgId: 0x0506_0708,
        srcTaberna: 0x1112_1314_1516_1718n,
        dstTaberna: 0x2122_2324_2526_2728n,
        payloadLen: 0x3132_3334,
      }),
    );
    expect(target.toString('hex')).toBe(
      'ee' +
        '0003' +
        '0003' +
        '01020304' +
        '05060708' +
        '1112131415161718' +
        '2122232425262728' +
        '31323334' +
        'ee',
    );
  });

  it('decodes back to the fields it was encoded from, at the largest values', () => {
    const h = header({
      flags: FrameFlags.Reconnect,
      msgType: 0xffff_ffff,
      peerMsgId: 0xffff_ffff,
      srcTaberna: U64_MAX,
      dstTaberna: 0n,
      payloadLen: 0xffff_ffff,
    });
    const target = Buffer.alloc(HEADER_LEN);
    encodeHeader(target, 0, h);
    expect(decodeHeader(target)).toEqual(h);
  });

  it.each([
    ['a version other than 3', { version: 2 }, /version 2/],
    ['an unknown flag bit', { flags: 0x4 }, /flag bits 0x4/],
    ['flags beyond u16', { flags: 0x1_0000 }, /flags 65536 is not a u16/],
    ['a negative message type', { msgType: -1 }, /msgType -1 is not a u32/],
    ['a fractional message type', { msgType: 1.5 }, /msgType 1.5/],
    ['a message type beyond u32', { msgType: 2 ** 32 }, /not a u32/],
    ['a peer message id beyond u32', { peerMsgId: 2 ** 32 }, /peerMsgId/],
    ['a negative source taberna', { srcTaberna: -1n }, /srcTaberna -1 is not a u64/],
    ['a destination taberna beyond u64', { dstTaberna: 1n << 64n }, /dstTaberna/],
    ['a taberna given as a number', { srcTaberna: 5 as unknown as bigint }, /srcTaberna 5/],
    ['a payload length beyond u32', { payloadLen: 2 ** 32 }, /payloadLen/],
    ['unknown A1 type 0', { msgType: 0 }, /unknown A1 control type 0/],
    ['unknown A1 type 7', { msgType: 7 }, /unknown A1 control type 7/],
    ['unknown A1 type 0xffff', { msgType: 0xffff }, /unknown A1 control type 65535/],
    ['a hello of 9 bytes', { msgType: ControlType.Hello, payloadLen: 9 }, /neither 8 nor 16/],
  ])('encoding fails with EncodeFailure for %s', (_name, overrides, message) => {
    expect(() => encodeHeader(Buffer.alloc(HEADER_LEN), 0, header(overrides))).toThrow(
      aureliaError(ErrorId.EncodeFailure, message),
    );
  });

  it('encoding fails with EncodeFailure when the header does not fit the target', () => {
    expect(() => encodeHeader(Buffer.alloc(40), 9, header())).toThrow(
      aureliaError(ErrorId.EncodeFailure, /32 bytes do not fit at offset 9 of a 40-byte buffer/),
    );
    expect(() => encodeHeader(Buffer.alloc(40), -1, header())).toThrow(
      aureliaError(ErrorId.EncodeFailure),
    );
  });

  it('decoding rejects another version with UnsupportedVersion', () => {
    for (const version of [0, 1, 2, 4, 0xffff]) {
      expect(() => decodeHeader(rawHeader({ version, msgType: APP_TYPE, payloadLen: 0 }))).toThrow(
        aureliaError(ErrorId.UnsupportedVersion, new RegExp(`version ${version}`)),
      );
    }
  });

  it.each([
    ['unknown flag bits', { flags: 0x8004, msgType: APP_TYPE, payloadLen: 0 }, /flag bits 0x8004/],
    ['A1 type 0', { msgType: 0, payloadLen: 0 }, /unknown A1 control type 0/],
    ['A1 type 7', { msgType: 7, payloadLen: 0 }, /unknown A1 control type 7/],
    ['A1 type 14', { msgType: 14, payloadLen: 0 }, /unknown A1 control type 14/],
    ['a drain with a payload', { msgType: ControlType.Drain, payloadLen: 1 }, /not 0/],
    ['a reply under 7 bytes', { msgType: ControlType.Reply, payloadLen: 6 }, /outside 7\.\./],
    ['a reply-ack of 12 bytes', { msgType: ControlType.ReplyAck, payloadLen: 12 }, /multiple of 8/],
    ['an empty reply-ack', { msgType: ControlType.ReplyAck, payloadLen: 0 }, /multiple of 8/],
    ['a cancel of 2 bytes', { msgType: ControlType.Cancel, payloadLen: 2 }, /not 1/],
    ['A1 type 0xffff', { msgType: 0xffff, payloadLen: 0 }, /unknown A1 control type 65535/],
    ['a hello of 12 bytes', { msgType: ControlType.Hello, payloadLen: 12 }, /hello frame/],
    ['a hello-response of 0 bytes', { msgType: ControlType.HelloResponse, payloadLen: 0 }, /8/],
    ['a keepalive with a payload', { msgType: ControlType.Keepalive, payloadLen: 1 }, /not 0/],
    ['an ack of 6 bytes', { msgType: ControlType.Ack, payloadLen: 6 }, /multiple of 4/],
    [
      'an ack listing too many ids',
      { msgType: ControlType.Ack, payloadLen: MAX_ACK_PAYLOAD_LEN + 4 },
      /exceeds/,
    ],
    ['a close reason over 1024 bytes', { msgType: ControlType.Close, payloadLen: 1025 }, /1024/],
    ['an error of 3 bytes', { msgType: ControlType.Error, payloadLen: 3 }, /4\.\.1028/],
    ['an error of 1029 bytes', { msgType: ControlType.Error, payloadLen: 1029 }, /4\.\.1028/],
    ['a blob chunk under 18 bytes', { msgType: ControlType.BlobChunk, payloadLen: 17 }, /18\.\./],
    [
      'a blob chunk over 1 MiB of data',
      { msgType: ControlType.BlobChunk, payloadLen: 18 + MAX_BLOB_CHUNK_LEN + 1 },
      /outside 18\.\.1048594/,
    ],
    ['a blob-complete of 8 bytes', { msgType: ControlType.BlobComplete, payloadLen: 8 }, /not 4/],
  ])('decoding rejects %s with ProtocolViolation', (_name, fields, message) => {
    expect(() => decodeHeader(rawHeader(fields))).toThrow(
      aureliaError(ErrorId.ProtocolViolation, message),
    );
  });

  it('decoding names the frame in its error', () => {
    expect(() =>
      decodeHeader(rawHeader({ msgType: ControlType.Ack, peerMsgId: 3, payloadLen: 5 })),
    ).toThrow(
      aureliaError(ErrorId.ProtocolViolation, /^ack frame \(peer message id 3\): payload length 5/),
    );
  });

  it('decoding applies maxPayloadLen to A2 and A3 types only', () => {
    const limits = { maxPayloadLen: 100, maxBlobChunkLen: 1000 };
    expect(decodeHeader(rawHeader({ msgType: 0x1_0000, payloadLen: 100 }), 0, limits)).toEqual(
      expect.objectContaining({ msgType: 0x1_0000, payloadLen: 100 }),
    );
    expect(() =>
      decodeHeader(rawHeader({ msgType: APP_TYPE, payloadLen: 101 }), 0, limits),
    ).toThrow(aureliaError(ErrorId.ProtocolViolation, /101 exceeds maxPayloadLen 100/));
    expect(
      decodeHeader(rawHeader({ msgType: ControlType.BlobChunk, payloadLen: 1018 }), 0, limits),
    ).toEqual(expect.objectContaining({ payloadLen: 1018 }));
    expect(() =>
      decodeHeader(rawHeader({ msgType: ControlType.BlobChunk, payloadLen: 1019 }), 0, limits),
    ).toThrow(aureliaError(ErrorId.ProtocolViolation, /outside 18\.\.1018/));
  });

  it('decoding rejects fewer than 32 bytes with ProtocolViolation', () => {
    expect(() => decodeHeader(Buffer.alloc(31))).toThrow(
      aureliaError(ErrorId.ProtocolViolation, /needs 32 bytes, 31 present/),
    );
    expect(() => decodeHeader(Buffer.alloc(40), 9)).toThrow(
      aureliaError(ErrorId.ProtocolViolation),
    );
  });

  it('reads a header at an offset', () => {
    const b = Buffer.alloc(HEADER_LEN + 5);
    encodeHeader(b, 5, header({ peerMsgId: 99 }));
    expect(decodeHeader(b, 5).peerMsgId).toBe(99);
  });
});

describe('frame kinds', () => {
  it('knows exactly the eleven A1 control types', () => {
    const known = [];
    for (let t = 0; t <= 0xffff; t++) if (isControlType(t)) known.push(t);
    expect(known).toEqual([1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13]);
    expect(isControlType(0x1_0000)).toBe(false);
    expect(controlTypeName(ControlType.HelloResponse)).toBe('hello-response');
    expect(controlTypeName(ControlType.BlobComplete)).toBe('blob-complete');
    expect(controlTypeName(7)).toBeUndefined();
  });

  it('describes control and application frames for error messages', () => {
    expect(describeFrame(ControlType.Hello, 0)).toBe('hello frame (peer message id 0)');
    expect(describeFrame(APP_TYPE, 12)).toBe('frame of type 0x1000000 (peer message id 12)');
  });
});

describe('frame encoding', () => {
  it('encodes a whole frame as header followed by the payload', () => {
    const payload = Buffer.from('hello world');
    const out = encodeFrame(appFrame(payload, { flags: FrameFlags.Blob }));
    expect(out.length).toBe(encodedFrameLength(payload.length));
    expect(decodeHeader(out)).toEqual({
      version: WIRE_VERSION,
      flags: FrameFlags.Blob,
      msgType: APP_TYPE,
      peerMsgId: 1,
      srcTaberna: 10n,
      dstTaberna: 20n,
      payloadLen: payload.length,
    });
    expect(out.subarray(HEADER_LEN)).toEqual(payload);
  });

  it('encodeHeaderOnly plus the payload as a second chunk equals the whole frame', () => {
    const payload = Buffer.alloc(100_000, 0xab);
    const whole = encodeFrame(appFrame(payload));
    const head = encodeHeaderOnly({ ...appFrame(payload), payloadLen: payload.length });
    expect(head.length).toBe(HEADER_LEN);
    expect(Buffer.concat([head, payload]).equals(whole)).toBe(true);
  });

  it('encodeFrameInto writes at an offset and returns the offset after the frame', () => {
    const target = Buffer.alloc(100);
    const end = encodeFrameInto(target, 10, appFrame(Buffer.from('abc')));
    expect(end).toBe(10 + HEADER_LEN + 3);
    expect(target.subarray(10, end)).toEqual(encodeFrame(appFrame(Buffer.from('abc'))));
    expect(() => encodeFrameInto(target, 70, appFrame(Buffer.from('abc')))).toThrow(
      aureliaError(ErrorId.EncodeFailure, /35 bytes do not fit at offset 70/),
    );
  });

  it('rejects a payload that is not bytes', () => {
    expect(() => encodeFrame(appFrame('text' as unknown as Buffer))).toThrow(
      aureliaError(ErrorId.EncodeFailure, /payload is not a Buffer/),
    );
  });

  it('rejects a control frame whose payload breaks its type rule', () => {
    expect(() =>
      encodeFrame(appFrame(Buffer.alloc(3), { msgType: ControlType.BlobComplete })),
    ).toThrow(aureliaError(ErrorId.EncodeFailure, /blob-complete frame.*not 4/));
  });
});

describe('FrameBatch', () => {
  it('encodes every added frame back to back into one buffer sized once', () => {
    const frames = [
      appFrame(Buffer.from('one')),
      appFrame(Buffer.alloc(0), { peerMsgId: 2 }),
      appFrame(Buffer.from('three'), { peerMsgId: 3, dstTaberna: U64_MAX }),
    ];
    const batch = new FrameBatch();
    for (const f of frames) batch.add(f);
    expect(batch.frameCount).toBe(3);
    expect(batch.byteLength).toBe(3 * HEADER_LEN + 8);
    const out = batch.take();
    expect(out).toEqual(Buffer.concat(frames.map(encodeFrame)));
    expect(encodeFrames(frames)).toEqual(out);
  });

  it('is empty again after take', () => {
    const batch = new FrameBatch().add(appFrame(Buffer.from('x')));
    batch.take();
    expect(batch.frameCount).toBe(0);
    expect(batch.byteLength).toBe(0);
    expect(batch.take().length).toBe(0);
  });

  it('refuses an invalid frame at add and keeps what it had', () => {
    const batch = new FrameBatch().add(appFrame(Buffer.from('ok')));
    expect(() => batch.add(appFrame(Buffer.alloc(0), { flags: 0x40 }))).toThrow(AureliaError);
    expect(batch.frameCount).toBe(1);
    expect(batch.take()).toEqual(encodeFrame(appFrame(Buffer.from('ok'))));
  });

  it('writes a pre-encoded blob chunk byte for byte like its fully encoded form', () => {
    const data = Buffer.from('chunk data');
    const chunk = { requestMsgId: 7, chunkId: 3n, last: true };
    const batch = new FrameBatch()
      .add(appFrame(Buffer.from('a')))
      .addEncoded([encodeBlobChunkHead(chunk, data.length), data]);
    expect(batch.frameCount).toBe(2);
    expect(batch.take()).toEqual(
      Buffer.concat([
        encodeFrame(appFrame(Buffer.from('a'))),
        encodeFrame(encodeBlobChunk({ ...chunk, data })),
      ]),
    );
  });

  it('clear drops waiting frames', () => {
    const batch = new FrameBatch().add(appFrame(Buffer.from('x')));
    batch.clear();
    expect(batch.byteLength).toBe(0);
    expect(batch.take().length).toBe(0);
  });
});
