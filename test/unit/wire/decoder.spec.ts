import { jest } from '@jest/globals';
import { AureliaError, ErrorId } from '../../../lib/engine/errors.js';
import {
  decodeAck,
  encodeAck,
  encodeBlobChunk,
  encodeHello,
  encodeKeepalive,
} from '../../../lib/engine/wire/control.js';
import { FrameDecoder } from '../../../lib/engine/wire/decoder.js';
import {
  BLOB_CHUNK_HEADER_LEN,
  ControlType,
  FrameFlags,
  HEADER_LEN,
  MAX_ACK_PAYLOAD_LEN,
  MAX_BLOB_CHUNK_LEN,
  encodeFrame,
  encodeFrames,
  type Frame,
  type FrameHeader,
  type OutboundFrame,
  WIRE_VERSION,
} from '../../../lib/engine/wire/frame.js';
import { rawHeader } from '../../support/wire.js';
import { aureliaError } from '../../support/expect.js';

const APP_TYPE = 0x100_0000;

function appFrame(payload: Buffer, peerMsgId = 1): OutboundFrame {
  return {
    flags: FrameFlags.None,
    msgType: APP_TYPE,
    peerMsgId,
    srcTaberna: 0x1234n,
    dstTaberna: (1n << 64n) - 1n,
    payload,
  };
}

function decoderWithLog(maxPayloadLen = 1 << 20, maxBlobChunkLen?: number) {
  const frames: Frame[] = [];
  const decoder = new FrameDecoder({
    maxPayloadLen,
    maxBlobChunkLen,
    onFrame: (f) => frames.push(f),
  });
  return { decoder, frames };
}

afterEach(() => {
  jest.restoreAllMocks();
});

describe('FrameDecoder', () => {
  it('decodes a frame pushed in one chunk with all header fields', () => {
    const { decoder, frames } = decoderWithLog();
    decoder.push(encodeFrame({ ...appFrame(Buffer.from('payload'), 42), flags: FrameFlags.Blob }));
    expect(frames).toEqual([
      {
        version: WIRE_VERSION,
        flags: FrameFlags.Blob,
        msgType: APP_TYPE,
        peerMsgId: 42,
        srcTaberna: 0x1234n,
        dstTaberna: (1n << 64n) - 1n,
        payloadLen: 7,
        payload: Buffer.from('payload'),
      },
    ]);
    expect(decoder.atFrameBoundary).toBe(true);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('decodes many frames from one chunk in order', () => {
    const { decoder, frames } = decoderWithLog();
    const sent = [
      encodeHello({ sessionEpoch: 1n }),
      appFrame(Buffer.from('a'), 1),
      encodeKeepalive(),
      appFrame(Buffer.alloc(0), 2),
      encodeAck([1, 2]),
    ];
    decoder.push(encodeFrames(sent));
    expect(frames.map((f) => f.msgType)).toEqual([1, APP_TYPE, 3, APP_TYPE, 4]);
    expect(decodeAck(frames[4])).toEqual([1, 2]);
  });

  it('decodes a stream pushed one byte at a time', () => {
    const { decoder, frames } = decoderWithLog();
    const stream = encodeFrames([
      appFrame(Buffer.from('first'), 1),
      encodeKeepalive(),
      appFrame(Buffer.from('second'), 2),
    ]);
    for (let i = 0; i < stream.length; i++) {
      decoder.push(stream.subarray(i, i + 1));
      expect(decoder.atFrameBoundary).toBe(
        i === HEADER_LEN + 4 || i === 2 * HEADER_LEN + 4 || i === stream.length - 1,
      );
    }
    expect(frames.map((f) => f.payload.toString())).toEqual(['first', '', 'second']);
  });

  it('hands out a frame inside one chunk as a view of that chunk, without copying', () => {
    const { decoder, frames } = decoderWithLog();
    const chunk = encodeFrames([appFrame(Buffer.from('one')), appFrame(Buffer.from('two'))]);
    decoder.push(chunk);
    for (const f of frames) expect(f.payload.buffer).toBe(chunk.buffer);
    expect(frames[1].payload.byteOffset).toBe(chunk.byteOffset + 2 * HEADER_LEN + 3);
  });

  it('assembles a frame spanning chunks with one copy into a buffer of exactly its size', () => {
    const { decoder, frames } = decoderWithLog();
    const payload = Buffer.alloc(10_000, 7);
    const stream = encodeFrame(appFrame(payload));
    const copy = jest.spyOn(Buffer.prototype, 'copy');
    decoder.push(stream.subarray(0, 100));
    decoder.push(stream.subarray(100, 5000));
    expect(decoder.bufferedBytes).toBe(HEADER_LEN + payload.length);
    decoder.push(stream.subarray(5000));
    const copied = copy.mock.calls.reduce((sum, call, i) => {
      const source = copy.mock.contexts[i] as Buffer;
      const [, , sourceStart = 0, sourceEnd = source.length] = call as [
        Uint8Array,
        number?,
        number?,
        number?,
      ];
      return sum + (sourceEnd - sourceStart);
    }, 0);
    expect(copied).toBe(payload.length);
    expect(frames).toHaveLength(1);
    expect(frames[0].payload.equals(payload)).toBe(true);
    expect(frames[0].payload.buffer.byteLength).toBe(payload.length);
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('hands out a payload as a view of the next chunk when only the header was split', () => {
    const { decoder, frames } = decoderWithLog();
    const stream = encodeFrame(appFrame(Buffer.from('tail')));
    const second = Buffer.from(stream.subarray(20));
    decoder.push(stream.subarray(0, 20));
    expect(decoder.bufferedBytes).toBe(20);
    decoder.push(second);
    expect(frames[0].payload.toString()).toBe('tail');
    expect(frames[0].payload.buffer).toBe(second.buffer);
  });

  it('keeps handed-out payloads intact while decoding continues', () => {
    const { decoder, frames } = decoderWithLog();
    const stream = encodeFrames([appFrame(Buffer.alloc(50, 1)), appFrame(Buffer.alloc(50, 2))]);
    for (let i = 0; i < stream.length; i += 7) decoder.push(stream.subarray(i, i + 7));
    expect(frames[0].payload.equals(Buffer.alloc(50, 1))).toBe(true);
    expect(frames[1].payload.equals(Buffer.alloc(50, 2))).toBe(true);
  });

  it('rejects a header announcing 4 GiB at once, before allocating anything', () => {
    const { decoder, frames } = decoderWithLog(8 << 20);
    const header = rawHeader({ msgType: APP_TYPE, payloadLen: 0xffff_ffff });
    const allocs = [
      jest.spyOn(Buffer, 'alloc'),
      jest.spyOn(Buffer, 'allocUnsafe'),
      jest.spyOn(Buffer, 'allocUnsafeSlow'),
    ];
    expect(() => decoder.push(header)).toThrow(
      aureliaError(
        ErrorId.ProtocolViolation,
        /payload length 4294967295 exceeds maxPayloadLen 8388608/,
      ),
    );
    for (const spy of allocs) expect(spy).not.toHaveBeenCalled();
    expect(decoder.bufferedBytes).toBe(0);
    expect(frames).toEqual([]);
  });

  it('rejects an oversize header even when it arrives byte by byte', () => {
    const { decoder } = decoderWithLog(100);
    const header = rawHeader({ msgType: APP_TYPE, payloadLen: 101 });
    for (let i = 0; i < HEADER_LEN - 1; i++) decoder.push(header.subarray(i, i + 1));
    expect(() => decoder.push(header.subarray(HEADER_LEN - 1))).toThrow(
      aureliaError(ErrorId.ProtocolViolation, /exceeds maxPayloadLen 100/),
    );
  });

  it('accepts a payload of exactly maxPayloadLen', () => {
    const { decoder, frames } = decoderWithLog(100);
    decoder.push(encodeFrame(appFrame(Buffer.alloc(100))));
    expect(frames).toHaveLength(1);
  });

  it('rejects another wire version as soon as the first two bytes arrive', () => {
    const { decoder } = decoderWithLog();
    expect(() => decoder.push(Buffer.from([0x00, 0x04]))).toThrow(
      aureliaError(ErrorId.UnsupportedVersion, /wire version 4/),
    );
  });

  it('refuses a version-2 peer (before the drain frame) at its first frame, naming both versions', () => {
    const { decoder } = decoderWithLog();
    expect(() => decoder.push(Buffer.from([0x00, 0x02]))).toThrow(
      aureliaError(ErrorId.UnsupportedVersion, /wire version 2; this peer speaks version 3/),
    );
  });

  it.each([
    [
      'unknown flag bits',
      rawHeader({ flags: 0x4, msgType: APP_TYPE, payloadLen: 0 }),
      /flag bits 0x4/,
    ],
    ['an unknown A1 type', rawHeader({ msgType: 7, payloadLen: 0 }), /unknown A1 control type 7/],
    [
      'an ack over the control limit',
      rawHeader({ msgType: ControlType.Ack, payloadLen: MAX_ACK_PAYLOAD_LEN + 4 }),
      /ack frame/,
    ],
    [
      'a blob chunk over 1 MiB of data',
      rawHeader({
        msgType: ControlType.BlobChunk,
        payloadLen: BLOB_CHUNK_HEADER_LEN + MAX_BLOB_CHUNK_LEN + 1,
      }),
      /blob-chunk frame/,
    ],
  ])('rejects a header with %s at header time', (_name, header, message) => {
    const { decoder } = decoderWithLog();
    expect(() => decoder.push(header)).toThrow(aureliaError(ErrorId.ProtocolViolation, message));
    expect(decoder.bufferedBytes).toBe(0);
  });

  it('applies its own limits to control frames, whatever maxPayloadLen is', () => {
    const { decoder, frames } = decoderWithLog(0, 64);
    decoder.push(
      encodeFrame(
        encodeBlobChunk({ requestMsgId: 1, chunkId: 0n, last: false, data: Buffer.alloc(64) }),
      ),
    );
    decoder.push(encodeFrame(encodeAck([1, 2, 3])));
    expect(frames).toHaveLength(2);
    expect(() =>
      decoder.push(
        encodeFrame(
          encodeBlobChunk({ requestMsgId: 1, chunkId: 1n, last: false, data: Buffer.alloc(65) }),
        ),
      ),
    ).toThrow(aureliaError(ErrorId.ProtocolViolation, /outside 18\.\.82/));
  });

  it('applies a changed maxPayloadLen to the next header', () => {
    const { decoder, frames } = decoderWithLog(10);
    const stream = encodeFrame(appFrame(Buffer.alloc(20)));
    decoder.push(stream.subarray(0, 5));
    decoder.setMaxPayloadLen(20);
    decoder.push(stream.subarray(5));
    expect(frames).toHaveLength(1);
    decoder.setMaxPayloadLen(19);
    expect(decoder.maxPayloadLen).toBe(19);
    expect(() => decoder.push(stream)).toThrow(aureliaError(ErrorId.ProtocolViolation));
  });

  it('applies a changed blob chunk limit to the next header', () => {
    const { decoder } = decoderWithLog();
    decoder.setMaxBlobChunkLen(4);
    expect(decoder.maxBlobChunkLen).toBe(4);
    const chunk = encodeBlobChunk({
      requestMsgId: 1,
      chunkId: 0n,
      last: true,
      data: Buffer.alloc(5),
    });
    expect(() => decoder.push(encodeFrame(chunk))).toThrow(aureliaError(ErrorId.ProtocolViolation));
  });

  it('bounds what it may buffer by the largest payload a header may announce', () => {
    expect(decoderWithLog(100, 64).decoder.maxBufferedBytes).toBe(HEADER_LEN + MAX_ACK_PAYLOAD_LEN);
    // A reply may carry a full payload after its 7-byte header and a reason of up to 1024 bytes.
    expect(decoderWithLog(8 << 20).decoder.maxBufferedBytes).toBe(
      HEADER_LEN + 7 + 1024 + (8 << 20),
    );
    expect(decoderWithLog(0).decoder.maxBufferedBytes).toBe(
      HEADER_LEN + BLOB_CHUNK_HEADER_LEN + MAX_BLOB_CHUNK_LEN,
    );
  });

  it.each([
    [
      'a negative maxPayloadLen',
      { maxPayloadLen: -1 },
      /maxPayloadLen -1 is outside 0\.\.4294967295/,
    ],
    ['a fractional maxPayloadLen', { maxPayloadLen: 1.5 }, /maxPayloadLen 1.5/],
    ['a maxPayloadLen beyond u32', { maxPayloadLen: 2 ** 32 }, /maxPayloadLen/],
    [
      'a maxBlobChunkLen over 1 MiB',
      { maxPayloadLen: 1, maxBlobChunkLen: MAX_BLOB_CHUNK_LEN + 1 },
      /maxBlobChunkLen 1048577 is outside 0\.\.1048576/,
    ],
  ])('refuses %s with InvalidConfig', (_name, options, message) => {
    expect(() => new FrameDecoder({ ...options, onFrame: () => undefined })).toThrow(
      aureliaError(ErrorId.InvalidConfig, message),
    );
  });

  it('refuses an invalid limit change with InvalidConfig and keeps the old limit', () => {
    const { decoder } = decoderWithLog(10);
    expect(() => decoder.setMaxPayloadLen(Number.NaN)).toThrow(aureliaError(ErrorId.InvalidConfig));
    expect(() => decoder.setMaxBlobChunkLen(-1)).toThrow(aureliaError(ErrorId.InvalidConfig));
    expect(decoder.maxPayloadLen).toBe(10);
  });

  it('stays stopped after an error: later pushes throw the same kind', () => {
    const { decoder, frames } = decoderWithLog();
    expect(() => decoder.push(rawHeader({ msgType: 0, payloadLen: 0 }))).toThrow(AureliaError);
    expect(decoder.failed?.kind).toBe(ErrorId.ProtocolViolation);
    expect(() => decoder.push(encodeFrame(encodeKeepalive()))).toThrow(
      aureliaError(ErrorId.ProtocolViolation, /stopped after an earlier failure: .*unknown A1/),
    );
    expect(frames).toEqual([]);

    const other = decoderWithLog().decoder;
    expect(() => other.push(Buffer.from([0, 9]))).toThrow(AureliaError);
    expect(() => other.push(Buffer.alloc(0))).toThrow(aureliaError(ErrorId.UnsupportedVersion));
  });

  it('stops on a bad frame after delivering the good frames before it', () => {
    const { decoder, frames } = decoderWithLog();
    const chunk = Buffer.concat([
      encodeFrame(appFrame(Buffer.from('ok'))),
      rawHeader({ msgType: 10, payloadLen: 0 }),
      encodeFrame(appFrame(Buffer.from('never'))),
    ]);
    expect(() => decoder.push(chunk)).toThrow(aureliaError(ErrorId.ProtocolViolation));
    expect(frames.map((f) => f.payload.toString())).toEqual(['ok']);
  });

  it('rethrows what onFrame throws and stops', () => {
    const failure = new AureliaError(ErrorId.ProtocolViolation, 'ack frame: bad');
    let calls = 0;
    const decoder = new FrameDecoder({
      maxPayloadLen: 100,
      onFrame: () => {
        calls++;
        throw failure;
      },
    });
    const stream = encodeFrames([appFrame(Buffer.from('a')), appFrame(Buffer.from('b'))]);
    expect(() => decoder.push(stream)).toThrow(failure);
    expect(calls).toBe(1);
    expect(() => decoder.push(Buffer.alloc(0))).toThrow(aureliaError(ErrorId.ProtocolViolation));

    const plain = new FrameDecoder({
      maxPayloadLen: 100,
      onFrame: () => {
        throw new TypeError('handler bug');
      },
    });
    expect(() => plain.push(stream)).toThrow(TypeError);
    expect(() => plain.push(Buffer.alloc(0))).toThrow(
      aureliaError(ErrorId.ProtocolViolation, /frame handler failed: TypeError: handler bug/),
    );
  });

  it('accepts empty chunks', () => {
    const { decoder, frames } = decoderWithLog();
    decoder.push(Buffer.alloc(0));
    expect(frames).toEqual([]);
    expect(decoder.atFrameBoundary).toBe(true);
  });
});

describe('FrameDecoder discarding oversize messages', () => {
  const HARD_MAX = 64 * 1024 * 1024;

  function discarding(maxPayloadLen: number, maxDiscardLen = HARD_MAX) {
    const frames: Frame[] = [];
    const oversize: FrameHeader[] = [];
    const decoder = new FrameDecoder({
      maxPayloadLen,
      maxDiscardLen,
      onFrame: (f) => frames.push(f),
      onOversize: (h) => oversize.push(h),
    });
    return { decoder, frames, oversize };
  }

  it('skips a message over maxPayloadLen, reports its header once and decodes the next frame', () => {
    const { decoder, frames, oversize } = discarding(100);
    const stream = encodeFrames([
      appFrame(Buffer.alloc(5000, 7), 9),
      appFrame(Buffer.from('after'), 10),
    ]);
    decoder.push(stream);
    expect(oversize).toEqual([
      {
        version: WIRE_VERSION,
        flags: 0,
        msgType: APP_TYPE,
        peerMsgId: 9,
        srcTaberna: 0x1234n,
        dstTaberna: (1n << 64n) - 1n,
        payloadLen: 5000,
      },
    ]);
    expect(frames.map((f) => [f.peerMsgId, f.payload.toString()])).toEqual([[10, 'after']]);
    expect(decoder.atFrameBoundary).toBe(true);
  });

  it('skips the payload as it arrives in any chunking, holding none of it', () => {
    const payloadLen = 3 * 1024 * 1024;
    const stream = encodeFrames([
      appFrame(Buffer.alloc(payloadLen, 1), 1),
      appFrame(Buffer.alloc(10, 2), 2),
    ]);
    for (const step of [1, 31, 4096, 65_537]) {
      const { decoder, frames, oversize } = discarding(1024);
      const allocs = [jest.spyOn(Buffer, 'allocUnsafeSlow'), jest.spyOn(Buffer, 'alloc')];
      let peakBuffered = 0;
      const limit = step === 1 ? HEADER_LEN + 64 : stream.length;
      for (let i = 0; i < limit; i += step) {
        decoder.push(stream.subarray(i, Math.min(i + step, limit)));
        peakBuffered = Math.max(peakBuffered, decoder.bufferedBytes);
      }
      if (step === 1) {
        // Byte by byte, the header is reported as soon as it is complete; skip the rest at once.
        expect(oversize).toHaveLength(1);
        expect(decoder.discardingPayload).toBe(true);
        decoder.push(stream.subarray(limit));
      }
      expect(oversize.map((h) => h.payloadLen)).toEqual([payloadLen]);
      expect(frames.map((f) => f.peerMsgId)).toEqual([2]);
      expect(peakBuffered).toBeLessThanOrEqual(HEADER_LEN);
      for (const spy of allocs) expect(spy).not.toHaveBeenCalled();
      jest.restoreAllMocks();
    }
  });

  it('is not at a frame boundary while a discarded payload is still to come', () => {
    const { decoder } = discarding(10);
    const stream = encodeFrame(appFrame(Buffer.alloc(100), 3));
    decoder.push(stream.subarray(0, HEADER_LEN + 40));
    expect(decoder.discardingPayload).toBe(true);
    expect(decoder.atFrameBoundary).toBe(false);
    expect(decoder.bufferedBytes).toBe(0);
    decoder.push(stream.subarray(HEADER_LEN + 40));
    expect(decoder.discardingPayload).toBe(false);
    expect(decoder.atFrameBoundary).toBe(true);
  });

  it('still refuses a message over the hard maximum, and any control frame over its limit', () => {
    const over = discarding(100, 1000);
    expect(() => over.decoder.push(rawHeader({ msgType: APP_TYPE, payloadLen: 1001 }))).toThrow(
      aureliaError(ErrorId.ProtocolViolation, /exceeds maxPayloadLen 100/),
    );
    expect(over.oversize).toEqual([]);
    const control = discarding(100);
    expect(() =>
      control.decoder.push(
        rawHeader({ msgType: ControlType.Ack, payloadLen: MAX_ACK_PAYLOAD_LEN + 4 }),
      ),
    ).toThrow(aureliaError(ErrorId.ProtocolViolation));
    const flags = discarding(100);
    expect(() =>
      flags.decoder.push(rawHeader({ msgType: APP_TYPE, flags: 0x80, payloadLen: 500 })),
    ).toThrow(aureliaError(ErrorId.ProtocolViolation, /unknown flag bits/));
  });

  it('refuses an oversize message as before when no onOversize is given', () => {
    const decoder = new FrameDecoder({
      maxPayloadLen: 100,
      maxDiscardLen: HARD_MAX,
      onFrame: () => {},
    });
    expect(() => decoder.push(rawHeader({ msgType: APP_TYPE, payloadLen: 101 }))).toThrow(
      aureliaError(ErrorId.ProtocolViolation, /exceeds maxPayloadLen 100/),
    );
  });

  it('discards by the limit in force when the header arrives, after a live decrease', () => {
    const { decoder, frames, oversize } = discarding(1 << 20);
    decoder.push(encodeFrame(appFrame(Buffer.alloc(5000), 1)));
    decoder.setMaxPayloadLen(1000);
    decoder.push(encodeFrame(appFrame(Buffer.alloc(5000), 2)));
    decoder.push(encodeFrame(appFrame(Buffer.alloc(1000), 3)));
    expect(frames.map((f) => f.peerMsgId)).toEqual([1, 3]);
    expect(oversize.map((h) => h.peerMsgId)).toEqual([2]);
  });

  it('stops when onOversize throws', () => {
    const decoder = new FrameDecoder({
      maxPayloadLen: 10,
      maxDiscardLen: 100,
      onFrame: () => {},
      onOversize: () => {
        throw new AureliaError(ErrorId.ProtocolViolation, 'not here');
      },
    });
    expect(() => decoder.push(encodeFrame(appFrame(Buffer.alloc(50))))).toThrow(
      aureliaError(ErrorId.ProtocolViolation, /not here/),
    );
    expect(decoder.failed?.message).toBe('not here');
  });

  it('refuses a maxDiscardLen outside 0..2^32-1 with InvalidConfig', () => {
    expect(
      () => new FrameDecoder({ maxPayloadLen: 1, maxDiscardLen: -1, onFrame: () => {} }),
    ).toThrow(aureliaError(ErrorId.InvalidConfig, /maxDiscardLen -1/));
  });
});
