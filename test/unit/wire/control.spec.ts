import { ErrorId } from '../../../lib/engine/errors.js';
import {
  decodeAck,
  decodeBlobChunk,
  decodeBlobComplete,
  decodeClose,
  decodeControl,
  decodeDrain,
  decodeError,
  decodeHello,
  decodeKeepalive,
  encodeAck,
  encodeBlobChunk,
  encodeBlobChunkHead,
  encodeBlobComplete,
  encodeClose,
  encodeDrain,
  encodeError,
  encodeHello,
  encodeHelloResponse,
  encodeKeepalive,
} from '../../../lib/engine/wire/control.js';
import {
  BLOB_CHUNK_HEADER_LEN,
  ControlType,
  FrameFlags,
  HEADER_LEN,
  MAX_ACK_IDS_PER_FRAME,
  MAX_BLOB_ACK_WINDOW,
  MAX_BLOB_CHUNK_LEN,
  MAX_CONTROL_TEXT_LEN,
  decodeHeader,
  encodeFrame,
  type Frame,
  type FrameView,
  type OutboundFrame,
} from '../../../lib/engine/wire/frame.js';
import { aureliaError } from '../../support/expect.js';

function violation(message?: RegExp): ReturnType<typeof expect.objectContaining> {
  return aureliaError(ErrorId.ProtocolViolation, message);
}

/** Encodes `frame` to bytes and reads it back, as a receiver would see it. */
function viaWire(frame: OutboundFrame): Frame {
  const bytes = encodeFrame(frame);
  return { ...decodeHeader(bytes), payload: bytes.subarray(HEADER_LEN) };
}

/** A frame as a hostile peer could send it: any type, id and payload bytes. */
function raw(msgType: ControlType, payload: Buffer | number[], peerMsgId = 0): FrameView {
  return { flags: 0, msgType, peerMsgId, payload: Buffer.from(payload) };
}

function helloPayload(epoch: bigint, chunkSize?: number, ackWindow?: number): Buffer {
  const b = Buffer.alloc(chunkSize === undefined ? 8 : 16);
  b.writeBigUInt64BE(epoch, 0);
  if (chunkSize !== undefined) {
    b.writeUInt32BE(chunkSize, 8);
    b.writeUInt32BE(ackWindow ?? 1, 12);
  }
  return b;
}

describe('hello and hello-response', () => {
  it('carry the session epoch in 8 bytes on a primary callis', () => {
    const frame = encodeHello({ sessionEpoch: 0x0102_0304_0506_0708n });
    expect(frame.msgType).toBe(ControlType.Hello);
    expect(frame.flags).toBe(FrameFlags.None);
    expect(Buffer.from(frame.payload).toString('hex')).toBe('0102030405060708');
    expect(decodeHello(viaWire(frame))).toEqual({
      sessionEpoch: 0x0102_0304_0506_0708n,
      reconnect: false,
    });
  });

  it('carry the blob window in 16 bytes on a blob callis', () => {
    const frame = encodeHelloResponse({
      sessionEpoch: (1n << 64n) - 1n,
      blobWindow: { chunkSize: MAX_BLOB_CHUNK_LEN, ackWindow: MAX_BLOB_ACK_WINDOW },
    });
    expect(frame.msgType).toBe(ControlType.HelloResponse);
    expect(frame.payload.length).toBe(16);
    expect(decodeHello(viaWire(frame))).toEqual({
      sessionEpoch: (1n << 64n) - 1n,
      reconnect: false,
      blobWindow: { chunkSize: MAX_BLOB_CHUNK_LEN, ackWindow: MAX_BLOB_ACK_WINDOW },
    });
  });

  it('mark a resumed session with the Reconnect flag', () => {
    const frame = encodeHello({ sessionEpoch: 9n, reconnect: true });
    expect(frame.flags).toBe(FrameFlags.Reconnect);
    expect(decodeHello(viaWire(frame)).reconnect).toBe(true);
  });

  it.each([
    ['a negative epoch', { sessionEpoch: -1n }, /sessionEpoch -1/],
    ['an epoch beyond u64', { sessionEpoch: 1n << 64n }, /sessionEpoch/],
    ['an epoch given as a number', { sessionEpoch: 3 as unknown as bigint }, /sessionEpoch 3/],
    [
      'a chunk size of 0',
      { sessionEpoch: 1n, blobWindow: { chunkSize: 0, ackWindow: 1 } },
      /chunkSize 0/,
    ],
    [
      'a chunk size over 1 MiB',
      { sessionEpoch: 1n, blobWindow: { chunkSize: MAX_BLOB_CHUNK_LEN + 1, ackWindow: 1 } },
      /chunkSize 1048577 is outside 1\.\.1048576/,
    ],
    [
      'an ack window of 0',
      { sessionEpoch: 1n, blobWindow: { chunkSize: 1, ackWindow: 0 } },
      /ackWindow 0/,
    ],
    [
      'an ack window over the max',
      { sessionEpoch: 1n, blobWindow: { chunkSize: 1, ackWindow: 4097 } },
      /ackWindow 4097/,
    ],
  ])('refuse to encode %s with EncodeFailure', (_name, hello, message) => {
    expect(() => encodeHello(hello)).toThrow(aureliaError(ErrorId.EncodeFailure, message));
  });

  it.each([
    ['no payload', Buffer.alloc(0), /neither 8 nor 16/],
    ['7 bytes', Buffer.alloc(7), /payload length 7/],
    ['one trailing byte', Buffer.alloc(9), /payload length 9/],
    ['15 bytes', Buffer.alloc(15), /payload length 15/],
    ['trailing bytes after the blob window', Buffer.alloc(17), /payload length 17/],
    ['a chunk size of 0', helloPayload(1n, 0, 1), /chunkSize 0 is outside/],
    ['a chunk size over 1 MiB', helloPayload(1n, MAX_BLOB_CHUNK_LEN + 1, 1), /chunkSize/],
    ['an ack window of 0', helloPayload(1n, 1024, 0), /ackWindow 0 is outside/],
    ['an ack window over the max', helloPayload(1n, 1024, 0xffff_ffff), /ackWindow/],
  ])('decoding rejects %s with ProtocolViolation', (_name, payload, message) => {
    expect(() => decodeHello(raw(ControlType.Hello, payload))).toThrow(violation(message));
    expect(() => decodeHello(raw(ControlType.HelloResponse, payload))).toThrow(
      violation(/^hello-response frame/),
    );
  });

  it('decoding rejects a frame of another type', () => {
    expect(() => decodeHello(raw(ControlType.Ack, helloPayload(1n)))).toThrow(
      violation(/expected a hello or hello-response frame/),
    );
  });
});

describe('keepalive', () => {
  it('has an empty payload', () => {
    const frame = encodeKeepalive();
    expect(frame.msgType).toBe(ControlType.Keepalive);
    expect(frame.payload.length).toBe(0);
    expect(() => decodeKeepalive(viaWire(frame))).not.toThrow();
  });

  it('decoding rejects any payload byte and frames of another type', () => {
    expect(() => decodeKeepalive(raw(ControlType.Keepalive, [0]))).toThrow(
      violation(/^keepalive frame \(peer message id 0\): payload length 1 is not 0/),
    );
    expect(() => decodeKeepalive(raw(ControlType.Close, []))).toThrow(
      violation(/^close frame .*expected a keepalive frame/),
    );
  });
});

describe('drain', () => {
  it('has an empty payload and names no message', () => {
    const frame = encodeDrain();
    expect(frame.msgType).toBe(ControlType.Drain);
    expect(frame.peerMsgId).toBe(0);
    expect(frame.payload.length).toBe(0);
    expect(() => decodeDrain(viaWire(frame))).not.toThrow();
    expect(decodeControl(viaWire(frame))).toEqual({ type: ControlType.Drain });
  });

  it('decoding rejects a payload, a message id and frames of another type', () => {
    expect(() => decodeDrain(raw(ControlType.Drain, [0]))).toThrow(
      violation(/^drain frame \(peer message id 0\): payload length 1 is not 0/),
    );
    expect(() => decodeDrain({ ...viaWire(encodeDrain()), peerMsgId: 5 })).toThrow(
      violation(/^drain frame \(peer message id 5\): a drain frame names no message/),
    );
    expect(() => decodeDrain(raw(ControlType.Keepalive, []))).toThrow(
      violation(/^keepalive frame .*expected a drain frame/),
    );
  });
});

describe('ack', () => {
  it('puts the first id in the header and the rest in the payload', () => {
    const frame = encodeAck([5, 6, 0xffff_ffff]);
    expect(frame.msgType).toBe(ControlType.Ack);
    expect(frame.peerMsgId).toBe(5);
    expect(Buffer.from(frame.payload).toString('hex')).toBe('00000006ffffffff');
    expect(decodeAck(viaWire(frame))).toEqual([5, 6, 0xffff_ffff]);
  });

  it('acknowledges a single id with an empty payload', () => {
    const frame = encodeAck([0]);
    expect(frame.payload.length).toBe(0);
    expect(decodeAck(viaWire(frame))).toEqual([0]);
  });

  it('carries up to MAX_ACK_IDS_PER_FRAME ids in one frame', () => {
    const ids = Array.from({ length: MAX_ACK_IDS_PER_FRAME }, (_, i) => i * 3);
    expect(decodeAck(viaWire(encodeAck(ids)))).toEqual(ids);
  });

  it.each([
    ['no ids', [], /no message ids/],
    ['too many ids', new Array<number>(MAX_ACK_IDS_PER_FRAME + 1).fill(1), /4097 ids exceed 4096/],
    ['a negative id', [1, -1], /id -1 at index 1 is not a u32/],
    ['an id beyond u32', [2 ** 32], /id 4294967296 at index 0/],
    ['a fractional id', [1, 2, 2.5], /id 2.5 at index 2/],
  ])('refuses to encode %s with EncodeFailure', (_name, ids, message) => {
    expect(() => encodeAck(ids)).toThrow(aureliaError(ErrorId.EncodeFailure, message));
  });

  it('decoding rejects a payload that is not a multiple of 4 bytes', () => {
    expect(() => decodeAck(raw(ControlType.Ack, [0, 0, 0, 1, 0], 8))).toThrow(
      violation(/^ack frame \(peer message id 8\): payload length 5 is not a multiple of 4/),
    );
  });

  it('decoding rejects more ids than one frame may carry', () => {
    const payload = Buffer.alloc(MAX_ACK_IDS_PER_FRAME * 4);
    expect(() => decodeAck(raw(ControlType.Ack, payload))).toThrow(violation(/exceeds/));
  });
});

describe('close', () => {
  it('may carry no reason', () => {
    const frame = encodeClose();
    expect(frame.payload.length).toBe(0);
    expect(decodeClose(viaWire(frame))).toBe('');
  });

  it('carries a UTF-8 reason, including a leading byte order mark', () => {
    const reason = '\ufeffshutting down — au revoir 👋';
    expect(decodeClose(viaWire(encodeClose(reason)))).toBe(reason);
  });

  it('cuts a reason over 1024 bytes at the last whole character that fits', () => {
    const reason = '€'.repeat(400); // 1200 bytes
    const frame = encodeClose(reason);
    expect(frame.payload.length).toBe(1023);
    expect(decodeClose(viaWire(frame))).toBe('€'.repeat(341));
  });

  it.each([
    ['a byte that never occurs in UTF-8', [0x61, 0xff]],
    ['an overlong encoding', [0xc0, 0x80]],
    ['an encoded surrogate', [0xed, 0xa0, 0x80]],
    ['a character cut short', [0x61, 0xe2, 0x82]],
  ])('decoding rejects %s with ProtocolViolation', (_name, bytes) => {
    expect(() => decodeClose(raw(ControlType.Close, bytes))).toThrow(
      violation(/close reason is not valid UTF-8/),
    );
  });

  it('decoding rejects a reason over 1024 bytes', () => {
    expect(() => decodeClose(raw(ControlType.Close, Buffer.alloc(1025, 0x61)))).toThrow(
      violation(/exceeds 1024/),
    );
  });
});

describe('error', () => {
  it('carries the error id, the message and the id of the message concerned', () => {
    const frame = encodeError({
      errorId: ErrorId.UnsupportedVersion,
      message: 'version 2 not spoken',
      peerMsgId: 44,
    });
    expect(frame.msgType).toBe(ControlType.Error);
    expect(frame.peerMsgId).toBe(44);
    expect(decodeError(viaWire(frame))).toEqual({
      errorId: ErrorId.UnsupportedVersion,
      message: 'version 2 not spoken',
      peerMsgId: 44,
    });
  });

  it('concerns the callis itself (id 0) unless told otherwise', () => {
    expect(encodeError({ errorId: ErrorId.ProtocolViolation, message: '' }).peerMsgId).toBe(0);
  });

  it('keeps error ids this version does not know as numbers', () => {
    const decoded = decodeError(viaWire(encodeError({ errorId: 0xffff_ffff, message: 'new' })));
    expect(decoded.errorId).toBe(0xffff_ffff);
    const unknown = raw(ControlType.Error, [0, 0, 0x03, 0xe7]);
    expect(decodeError(unknown)).toEqual({ errorId: 999, message: '', peerMsgId: 0 });
  });

  it('cuts a message over 1024 bytes at the last whole character that fits', () => {
    const message = 'x' + '😀'.repeat(300); // 1201 bytes
    const frame = encodeError({ errorId: 1, message });
    expect(frame.payload.length).toBe(4 + 1021);
    expect(decodeError(viaWire(frame)).message).toBe('x' + '😀'.repeat(255));
  });

  it.each([
    ['a negative error id', { errorId: -1, message: '' }, /errorId -1 is not a u32/],
    ['an id beyond u32', { errorId: 1, message: '', peerMsgId: 2 ** 32 }, /peerMsgId/],
  ])('refuses to encode %s with EncodeFailure', (_name, error, message) => {
    expect(() => encodeError(error)).toThrow(aureliaError(ErrorId.EncodeFailure, message));
  });

  it.each([
    ['a payload shorter than the error id', [0, 0, 7], /payload length 3 is outside 4\.\.1028/],
    ['invalid UTF-8', [0, 0, 0, 7, 0xfe], /error message is not valid UTF-8/],
    ['a message over 1024 bytes', [0, 0, 0, 7, ...new Array<number>(1025).fill(0x61)], /1029/],
  ])('decoding rejects %s with ProtocolViolation', (_name, bytes, message) => {
    expect(() => decodeError(raw(ControlType.Error, bytes, 3))).toThrow(
      violation(new RegExp(`^error frame \\(peer message id 3\\): .*${message.source}`)),
    );
  });
});

describe('blob-chunk', () => {
  const chunk = { requestMsgId: 17, chunkId: 0x0102_0304_0506_0708n, last: false };

  it('lays out request id, chunk id, flags and length before the data', () => {
    const frame = encodeBlobChunk({ ...chunk, data: Buffer.from('data') });
    expect(frame.msgType).toBe(ControlType.BlobChunk);
    expect(Buffer.from(frame.payload).toString('hex')).toBe(
      '00000011' + '0102030405060708' + '0000' + '00000004' + Buffer.from('data').toString('hex'),
    );
    const decoded = decodeBlobChunk(viaWire(frame));
    expect(decoded).toEqual({ ...chunk, data: Buffer.from('data') });
  });

  it('marks the last chunk, which may be empty', () => {
    const frame = encodeBlobChunk({ ...chunk, last: true, data: Buffer.alloc(0) });
    expect(frame.payload.length).toBe(BLOB_CHUNK_HEADER_LEN);
    expect(decodeBlobChunk(viaWire(frame))).toEqual({
      ...chunk,
      last: true,
      data: Buffer.alloc(0),
    });
  });

  it('returns the data as a view of the frame payload, without copying', () => {
    const frame = viaWire(encodeBlobChunk({ ...chunk, data: Buffer.alloc(64, 1) }));
    const { data } = decodeBlobChunk(frame);
    expect(data.buffer).toBe(frame.payload.buffer);
    expect(data.byteOffset).toBe(frame.payload.byteOffset + BLOB_CHUNK_HEADER_LEN);
  });

  it('encodeBlobChunkHead followed by the data equals the whole frame', () => {
    const data = Buffer.alloc(MAX_BLOB_CHUNK_LEN, 0x5a);
    const head = encodeBlobChunkHead({ ...chunk, last: true }, data.length);
    expect(head.length).toBe(HEADER_LEN + BLOB_CHUNK_HEADER_LEN);
    const whole = encodeFrame(encodeBlobChunk({ ...chunk, last: true, data }));
    expect(Buffer.concat([head, data]).equals(whole)).toBe(true);
  });

  it.each([
    ['a request id beyond u32', { requestMsgId: 2 ** 32 }, /requestMsgId/],
    ['a negative chunk id', { chunkId: -1n }, /chunkId -1 is not a u64/],
    ['a chunk id beyond u64', { chunkId: 1n << 64n }, /chunkId/],
  ])('refuses to encode %s with EncodeFailure', (_name, overrides, message) => {
    expect(() => encodeBlobChunk({ ...chunk, ...overrides, data: Buffer.alloc(1) })).toThrow(
      aureliaError(ErrorId.EncodeFailure, message),
    );
    expect(() => encodeBlobChunkHead({ ...chunk, ...overrides }, 1)).toThrow(
      aureliaError(ErrorId.EncodeFailure, message),
    );
  });

  it('refuses to encode more than 1 MiB of data', () => {
    expect(() => encodeBlobChunk({ ...chunk, data: Buffer.alloc(MAX_BLOB_CHUNK_LEN + 1) })).toThrow(
      aureliaError(ErrorId.EncodeFailure, /1048577 data bytes are outside 0\.\.1048576/),
    );
    expect(() => encodeBlobChunkHead(chunk, -1)).toThrow(aureliaError(ErrorId.EncodeFailure));
  });

  function chunkPayload(flags: number, len: number, dataLen: number): Buffer {
    const b = Buffer.alloc(BLOB_CHUNK_HEADER_LEN + dataLen);
    b.writeUInt32BE(1, 0);
    b.writeBigUInt64BE(2n, 4);
    b.writeUInt16BE(flags, 12);
    b.writeUInt32BE(len, 14);
    return b;
  }

  it.each([
    ['a payload shorter than the chunk header', Buffer.alloc(17), /outside 18\.\./],
    ['an unknown chunk flag', chunkPayload(0x2, 0, 0), /unknown chunk flag bits 0x2/],
    ['a len larger than the data', chunkPayload(0, 5, 4), /chunk len 5 differs from the 4/],
    ['a len smaller than the data', chunkPayload(0, 3, 4), /chunk len 3 differs from the 4/],
    ['trailing bytes after an empty chunk', chunkPayload(1, 0, 1), /chunk len 0 differs/],
  ])('decoding rejects %s with ProtocolViolation', (_name, payload, message) => {
    expect(() => decodeBlobChunk(raw(ControlType.BlobChunk, payload))).toThrow(violation(message));
  });

  it('decoding rejects more data than the negotiated chunk size', () => {
    const frame = viaWire(encodeBlobChunk({ ...chunk, data: Buffer.alloc(100) }));
    expect(decodeBlobChunk(frame, 100).data.length).toBe(100);
    expect(() => decodeBlobChunk(frame, 99)).toThrow(violation(/outside 18\.\.117/));
  });
});

describe('blob-complete', () => {
  it('carries the request id in exactly 4 bytes', () => {
    const frame = encodeBlobComplete(0xdead_beef);
    expect(Buffer.from(frame.payload).toString('hex')).toBe('deadbeef');
    expect(decodeBlobComplete(viaWire(frame))).toBe(0xdead_beef);
  });

  it('refuses to encode a request id that is not a u32', () => {
    expect(() => encodeBlobComplete(-3)).toThrow(aureliaError(ErrorId.EncodeFailure, /-3/));
  });

  it.each([[[0, 0, 1]], [[0, 0, 0, 1, 0]]])(
    'decoding rejects a payload of %j with ProtocolViolation',
    (bytes) => {
      expect(() => decodeBlobComplete(raw(ControlType.BlobComplete, bytes))).toThrow(
        violation(/^blob-complete frame .* is not 4/),
      );
    },
  );
});

describe('decodeControl', () => {
  it('decodes every control type into its tagged form', () => {
    const cases: [OutboundFrame, unknown][] = [
      [
        encodeHello({ sessionEpoch: 1n, reconnect: true }),
        { type: ControlType.Hello, sessionEpoch: 1n, reconnect: true },
      ],
      [
        encodeHelloResponse({ sessionEpoch: 2n, blobWindow: { chunkSize: 10, ackWindow: 2 } }),
        {
          type: ControlType.HelloResponse,
          sessionEpoch: 2n,
          reconnect: false,
          blobWindow: { chunkSize: 10, ackWindow: 2 },
        },
      ],
      [encodeKeepalive(), { type: ControlType.Keepalive }],
      [encodeAck([3, 4]), { type: ControlType.Ack, ids: [3, 4] }],
      [encodeClose('bye'), { type: ControlType.Close, reason: 'bye' }],
      [
        encodeError({ errorId: 5, message: 'lost', peerMsgId: 9 }),
        { type: ControlType.Error, errorId: 5, message: 'lost', peerMsgId: 9 },
      ],
      [
        encodeBlobChunk({ requestMsgId: 1, chunkId: 2n, last: true, data: Buffer.from('z') }),
        {
          type: ControlType.BlobChunk,
          requestMsgId: 1,
          chunkId: 2n,
          last: true,
          data: Buffer.from('z'),
        },
      ],
      [encodeBlobComplete(6), { type: ControlType.BlobComplete, requestMsgId: 6 }],
    ];
    for (const [frame, expected] of cases) expect(decodeControl(viaWire(frame))).toEqual(expected);
  });

  it('rejects a frame that is not a control frame', () => {
    expect(() =>
      decodeControl({ flags: 0, msgType: 0x100_0000, peerMsgId: 1, payload: Buffer.alloc(0) }),
    ).toThrow(violation(/not an A1 control frame/));
  });

  it('applies the blob chunk limit it is given', () => {
    const frame = viaWire(
      encodeBlobChunk({ requestMsgId: 1, chunkId: 0n, last: false, data: Buffer.alloc(10) }),
    );
    expect(() => decodeControl(frame, 9)).toThrow(violation());
  });

  it('never lets a text exceed MAX_CONTROL_TEXT_LEN bytes on the wire', () => {
    const long = 'a'.repeat(5000);
    expect(encodeClose(long).payload.length).toBe(MAX_CONTROL_TEXT_LEN);
    expect(encodeError({ errorId: 1, message: long }).payload.length).toBe(
      4 + MAX_CONTROL_TEXT_LEN,
    );
  });
});
