// Incremental frame decoder: turns a byte stream in arbitrary chunks into validated frames.
import { AureliaError, ErrorId } from '../errors.js';
import { A1_MESSAGE_TYPE_MAX } from '../ids.js';
import {
  BLOB_CHUNK_HEADER_LEN,
  ERROR_HEADER_LEN,
  HEADER_LEN,
  MAX_ACK_PAYLOAD_LEN,
  MAX_BLOB_CHUNK_LEN,
  MAX_CONTROL_TEXT_LEN,
  MAX_REPLY_ACKS_PER_FRAME,
  REPLY_ACK_ENTRY_LEN,
  REPLY_HEADER_LEN,
  WIRE_VERSION,
  headerProblem,
  protocolViolation,
  unsupportedVersion,
  type Frame,
  type FrameHeader,
  type FrameLimits,
} from './frame.js';

const U32_MAX = 0xffff_ffff;
/** Largest payload of a control frame other than a blob chunk (an ack listing the most ids). */
const LARGEST_FIXED_CONTROL_PAYLOAD = Math.max(
  MAX_ACK_PAYLOAD_LEN,
  ERROR_HEADER_LEN + MAX_CONTROL_TEXT_LEN,
  MAX_REPLY_ACKS_PER_FRAME * REPLY_ACK_ENTRY_LEN,
);

/** Options of a `FrameDecoder`. */
export interface FrameDecoderOptions {
  /** Largest A2/A3 payload accepted, 0..2^32-1 (the domus' `maxPayloadLen`). */
  readonly maxPayloadLen: number;
  /**
   * Largest data part of a blob chunk, 0..`MAX_BLOB_CHUNK_LEN` (default). Lower it to the chunk
   * size agreed in the blob callis' hello.
   */
  readonly maxBlobChunkLen?: number;
  /**
   * Largest A2/A3 payload skipped rather than refused, 0..2^32-1 (default 0: none). A message
   * frame announcing more than `maxPayloadLen` but at most this is not a protocol violation when
   * `onOversize` is given: `onOversize` is told at its header, and its payload bytes are dropped
   * as they arrive, never buffered. Anything larger stays a protocol violation.
   */
  readonly maxDiscardLen?: number;
  /**
   * Told of each message frame whose payload is being discarded (see `maxDiscardLen`), when its
   * header is complete; `header.payloadLen` is the announced length. If it throws, `push`
   * rethrows and the decoder stops.
   */
  readonly onOversize?: (header: FrameHeader) => void;
  /**
   * Receives each frame, in stream order, synchronously from within `push`. It must not call
   * `push` itself. If it throws, `push` rethrows that error and the decoder stops, because the
   * rest of the chunk was not decoded.
   */
  readonly onFrame: (frame: Frame) => void;
}

function checkLimit(name: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new AureliaError(ErrorId.InvalidConfig, `${name} ${value} is outside 0..${max}`);
  }
  return value;
}

/**
 * Decodes a stream of v1 frames pushed in chunks of any size. A payload lying wholly inside one
 * chunk is handed out as a view of that chunk (no copy), even when its header was split; a
 * payload spanning chunks is copied once into a buffer of exactly its size, allocated only when
 * its first bytes arrive. Chunks must not be modified after they were pushed.
 *
 * Each header is validated as soon as its 32 bytes are present (its version as soon as 2 are),
 * before any of its payload is buffered, so a peer cannot make the decoder hold more than
 * `maxBufferedBytes`.
 *
 * Any failure stops the decoder: the owner must close the connection, and every later `push`
 * throws an `AureliaError` of the same kind.
 */
export class FrameDecoder implements FrameLimits {
  private maxPayload: number;
  private maxBlobChunk: number;
  private readonly onFrame: (frame: Frame) => void;
  private readonly onOversize: ((header: FrameHeader) => void) | undefined;
  /** Limits under which an oversize message frame is discarded instead of refused. */
  private readonly discardLimits: FrameLimits;

  // A header that arrived split across chunks is gathered here; its fields are then copied out,
  // so this scratch buffer is never handed out and can be reused.
  private readonly headerScratch = Buffer.alloc(HEADER_LEN);
  private headerFill = 0;

  // The frame whose header was validated and whose payload is still to come: `pendingLen` bytes,
  // assembled in `payload` once some of them arrived in a chunk that does not hold them all.
  private pendingLen = 0;
  private payload: Buffer | undefined;
  private payloadFill = 0;
  private flags = 0;
  private msgType = 0;
  private peerMsgId = 0;
  private srcTaberna = 0n;
  private dstTaberna = 0n;
  // True while the pending payload is an oversize message's, skipped rather than assembled.
  private discarding = false;

  private failure: AureliaError | undefined;

  /**
   * Creates a decoder. Throws `AureliaError(InvalidConfig)` when `maxPayloadLen` or
   * `maxDiscardLen` is not an integer in 0..2^32-1 or `maxBlobChunkLen` not one in
   * 0..`MAX_BLOB_CHUNK_LEN`.
   */
  constructor(options: FrameDecoderOptions) {
    this.maxPayload = checkLimit('maxPayloadLen', options.maxPayloadLen, U32_MAX);
    this.maxBlobChunk = checkLimit(
      'maxBlobChunkLen',
      options.maxBlobChunkLen ?? MAX_BLOB_CHUNK_LEN,
      MAX_BLOB_CHUNK_LEN,
    );
    this.onFrame = options.onFrame;
    this.onOversize = options.onOversize;
    this.discardLimits = {
      maxPayloadLen: checkLimit('maxDiscardLen', options.maxDiscardLen ?? 0, U32_MAX),
      maxBlobChunkLen: 0,
    };
  }

  /** Largest A2/A3 payload accepted for the next headers. */
  get maxPayloadLen(): number {
    return this.maxPayload;
  }

  /** Largest blob chunk data part accepted for the next headers. */
  get maxBlobChunkLen(): number {
    return this.maxBlobChunk;
  }

  /**
   * Changes the A2/A3 payload limit for headers not yet validated (a frame being assembled keeps
   * the limit it was checked against). Throws `AureliaError(InvalidConfig)` outside 0..2^32-1.
   */
  setMaxPayloadLen(maxPayloadLen: number): void {
    this.maxPayload = checkLimit('maxPayloadLen', maxPayloadLen, U32_MAX);
  }

  /**
   * Changes the blob chunk data limit for headers not yet validated, typically to the chunk size
   * agreed in the hello. Throws `AureliaError(InvalidConfig)` outside 0..`MAX_BLOB_CHUNK_LEN`.
   */
  setMaxBlobChunkLen(maxBlobChunkLen: number): void {
    this.maxBlobChunk = checkLimit('maxBlobChunkLen', maxBlobChunkLen, MAX_BLOB_CHUNK_LEN);
  }

  /** Bytes the decoder currently holds for an incomplete frame (header and allocated payload). */
  get bufferedBytes(): number {
    if (this.pendingLen === 0) return this.headerFill;
    if (this.discarding) return 0;
    return HEADER_LEN + (this.payload !== undefined ? this.payload.length : 0);
  }

  /**
   * Upper bound of `bufferedBytes` under the current limits: a header plus the largest payload any
   * frame may announce (`maxPayloadLen`, a reply carrying that much with its reason, a full blob
   * chunk, or the largest ack).
   */
  get maxBufferedBytes(): number {
    return (
      HEADER_LEN +
      Math.max(
        REPLY_HEADER_LEN + MAX_CONTROL_TEXT_LEN + this.maxPayload,
        BLOB_CHUNK_HEADER_LEN + this.maxBlobChunk,
        LARGEST_FIXED_CONTROL_PAYLOAD,
      )
    );
  }

  /** True while the payload of an oversize message frame is being skipped. */
  get discardingPayload(): boolean {
    return this.discarding;
  }

  /**
   * True between frames: nothing of an incomplete frame is held or being skipped. A stream may
   * end only here.
   */
  get atFrameBoundary(): boolean {
    return this.pendingLen === 0 && this.headerFill === 0;
  }

  /** The error that stopped the decoder, if any. */
  get failed(): AureliaError | undefined {
    return this.failure;
  }

  /**
   * Decodes `chunk`, calling `onFrame` for each frame it completes. Throws
   * `AureliaError(UnsupportedVersion)` for a header of another wire version, and
   * `AureliaError(ProtocolViolation)` for unknown flag bits, an unknown A1 control type, or a
   * payload length over `maxPayloadLen` (unless the frame is discarded, see `maxDiscardLen`) or
   * its control type's limit. Rethrows what `onFrame` or `onOversize` throws. After any failure, every call throws an `AureliaError` of the first failure's kind
   * (`ProtocolViolation` when `onFrame` threw something other than an `AureliaError`).
   */
  push(chunk: Buffer): void {
    if (this.failure !== undefined) {
      throw new AureliaError(
        this.failure.kind,
        `frame decoder stopped after an earlier failure: ${this.failure.message}`,
        { cause: this.failure },
      );
    }
    try {
      this.consume(chunk);
    } catch (err) {
      this.failure = AureliaError.is(err)
        ? err
        : new AureliaError(ErrorId.ProtocolViolation, `frame handler failed: ${String(err)}`, {
            cause: err,
          });
      this.payload = undefined;
      this.pendingLen = 0;
      this.discarding = false;
      throw err;
    }
  }

  private consume(chunk: Buffer): void {
    const end = chunk.length;
    let pos = 0;
    while (pos < end) {
      if (this.pendingLen !== 0) {
        pos = this.continuePayload(chunk, pos);
      } else if (this.headerFill === 0 && end - pos >= HEADER_LEN) {
        const payloadLen = this.readHeader(chunk, pos);
        pos = this.startPayload(chunk, pos + HEADER_LEN, payloadLen);
      } else {
        const n = Math.min(end - pos, HEADER_LEN - this.headerFill);
        chunk.copy(this.headerScratch, this.headerFill, pos, pos + n);
        this.headerFill += n;
        pos += n;
        if (this.headerFill < HEADER_LEN) {
          if (this.headerFill >= 2) {
            const version = this.headerScratch.readUInt16BE(0);
            if (version !== WIRE_VERSION) throw unsupportedVersion(version);
          }
        } else {
          this.headerFill = 0;
          const payloadLen = this.readHeader(this.headerScratch, 0);
          pos = this.startPayload(chunk, pos, payloadLen);
        }
      }
    }
  }

  /** Validates the header at `offset`, keeps its fields and returns its payload length. */
  private readHeader(source: Buffer, offset: number): number {
    const version = source.readUInt16BE(offset);
    if (version !== WIRE_VERSION) throw unsupportedVersion(version);
    const flags = source.readUInt16BE(offset + 2);
    const msgType = source.readUInt32BE(offset + 4);
    const peerMsgId = source.readUInt32BE(offset + 8);
    const payloadLen = source.readUInt32BE(offset + 28);
    const problem = headerProblem(flags, msgType, payloadLen, this);
    if (problem !== undefined && !this.discardable(flags, msgType, payloadLen)) {
      throw protocolViolation(msgType, peerMsgId, problem);
    }
    this.flags = flags;
    this.msgType = msgType;
    this.peerMsgId = peerMsgId;
    this.srcTaberna = source.readBigUInt64BE(offset + 12);
    this.dstTaberna = source.readBigUInt64BE(offset + 20);
    if (problem !== undefined) {
      this.discarding = true;
      (this.onOversize as (header: FrameHeader) => void)({
        version: WIRE_VERSION,
        flags,
        msgType,
        peerMsgId,
        srcTaberna: this.srcTaberna,
        dstTaberna: this.dstTaberna,
        payloadLen,
      });
    }
    return payloadLen;
  }

  /** True for a message frame over `maxPayloadLen` that may be skipped instead of refused. */
  private discardable(flags: number, msgType: number, payloadLen: number): boolean {
    return (
      this.onOversize !== undefined &&
      msgType > A1_MESSAGE_TYPE_MAX &&
      headerProblem(flags, msgType, payloadLen, this.discardLimits) === undefined
    );
  }

  /**
   * Emits the frame at once when its payload lies wholly in `chunk` from `pos`; otherwise waits
   * for the rest. Returns the position after what was consumed.
   */
  private startPayload(chunk: Buffer, pos: number, payloadLen: number): number {
    if (this.discarding) {
      this.pendingLen = payloadLen;
      return pos < chunk.length ? this.skipPayload(chunk, pos) : pos;
    }
    if (payloadLen <= chunk.length - pos) {
      this.emit(chunk.subarray(pos, pos + payloadLen));
      return pos + payloadLen;
    }
    this.pendingLen = payloadLen;
    return pos < chunk.length ? this.continuePayload(chunk, pos) : pos;
  }

  /** Takes what `chunk` holds of the pending payload; emits the frame once it is complete. */
  private continuePayload(chunk: Buffer, pos: number): number {
    if (this.discarding) return this.skipPayload(chunk, pos);
    let payload = this.payload;
    if (payload === undefined) {
      // Nothing of the payload has arrived yet: when this chunk holds all of it, hand out a view.
      if (this.pendingLen <= chunk.length - pos) {
        const end = pos + this.pendingLen;
        this.pendingLen = 0;
        this.emit(chunk.subarray(pos, end));
        return end;
      }
      // allocUnsafeSlow: a buffer of exactly this payload's size rather than a slice of the shared
      // pool; every byte is overwritten before the frame is handed out.
      payload = Buffer.allocUnsafeSlow(this.pendingLen);
      this.payload = payload;
    }
    const n = Math.min(chunk.length - pos, payload.length - this.payloadFill);
    chunk.copy(payload, this.payloadFill, pos, pos + n);
    this.payloadFill += n;
    if (this.payloadFill === payload.length) {
      this.payload = undefined;
      this.payloadFill = 0;
      this.pendingLen = 0;
      this.emit(payload);
    }
    return pos + n;
  }

  /** Drops what `chunk` holds of a discarded payload; the frame ends when all of it passed. */
  private skipPayload(chunk: Buffer, pos: number): number {
    const n = Math.min(chunk.length - pos, this.pendingLen);
    this.pendingLen -= n;
    if (this.pendingLen === 0) this.discarding = false;
    return pos + n;
  }

  private emit(payload: Buffer): void {
    this.onFrame({
      version: WIRE_VERSION,
      flags: this.flags,
      msgType: this.msgType,
      peerMsgId: this.peerMsgId,
      srcTaberna: this.srcTaberna,
      dstTaberna: this.dstTaberna,
      payloadLen: payload.length,
      payload,
    });
  }
}
