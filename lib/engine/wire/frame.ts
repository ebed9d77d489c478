// Wire protocol v2 frames: the 32-byte header, frame kinds, flags, limits and frame encoding.
import { AureliaError, ErrorId } from '../errors.js';
import { A1_MESSAGE_TYPE_MAX, type MessageType, type TabernaId } from '../ids.js';

/**
 * The only wire protocol version this package speaks; written in every header. Version 2 added
 * the reply, reply-ack and cancel control frames (replies travel back on the request's callis),
 * version 3 the drain frame; a peer speaking another version is refused at its first frame with
 * `UnsupportedVersion` naming both versions (there is no downgrade: every domus of a mesh must
 * speak the same version).
 */
export const WIRE_VERSION = 3;

/**
 * Length of a frame header: `version u16 | flags u16 | msgType u32 | peerMsgId u32 |
 * srcTaberna u64 | dstTaberna u64 | payloadLen u32`, all big-endian.
 */
export const HEADER_LEN = 32;

/** Bits of the header's `flags` field. A header with any other bit set is a protocol violation. */
export enum FrameFlags {
  None = 0,
  /** The message opens a blob stream. */
  Blob = 0x1,
  /** The hello resumes an existing session instead of starting one. */
  Reconnect = 0x2,
}

/** Every flag bit a header may carry. */
export const KNOWN_FRAME_FLAGS = FrameFlags.Blob | FrameFlags.Reconnect;

/**
 * The A1 control message types. Every other type up to `A1_MESSAGE_TYPE_MAX` (0, 7, 14..0xFFFF)
 * is a protocol violation; types from `A2_MESSAGE_TYPE_BASE` up carry opaque service or
 * application payloads.
 */
export enum ControlType {
  Hello = 1,
  HelloResponse = 2,
  Keepalive = 3,
  Ack = 4,
  Close = 5,
  Error = 6,
  BlobChunk = 8,
  BlobComplete = 9,
  /**
   * One reply to an A2 request, from the receiver on the callis the request arrived on;
   * `peerMsgId` names the request. A last or error reply is also the request's decision.
   */
  Reply = 10,
  /** The requester acknowledges replies it received: `(msgId u32, seq u32)` pairs. */
  ReplyAck = 11,
  /** The requester lost interest in request `peerMsgId` (unsubscribed or its deadline passed). */
  Cancel = 12,
  /**
   * The listener is shutting down (wire version 3): sent on a callis it accepted, it asks that
   * dialer to write nothing new there. Empty payload, `peerMsgId` 0; only valid on a dialed callis.
   */
  Drain = 13,
}

/** Bits of a reply payload's `flags` byte; any other bit is a protocol violation. */
export enum ReplyFlags {
  None = 0,
  /** The reply ends the call successfully (the request is accepted). */
  Last = 0x1,
  /** The reply carries the handler's error (the request is rejected with `reason`). */
  Error = 0x2,
  /** The reply carries no value (a completion after streamed values). */
  Empty = 0x4,
}

/** Bits of a cancel payload's `flags` byte. */
export enum CancelFlags {
  None = 0,
  /** The requester's deadline passed (rather than it unsubscribing). */
  Deadline = 0x1,
}

/** Bits of a blob-chunk payload's `flags` field; any other bit is a protocol violation. */
export enum BlobChunkFlags {
  None = 0,
  /** The chunk is the last of its stream. */
  Last = 0x1,
}

/** Largest number of data bytes one blob chunk may carry (1 MiB), whatever was negotiated. */
export const MAX_BLOB_CHUNK_LEN = 1024 * 1024;
/** Largest blob ack window a hello may propose. */
export const MAX_BLOB_ACK_WINDOW = 4096;
/** Length of a hello payload on a primary callis: `sessionEpoch u64`. */
export const HELLO_LEN = 8;
/** Length of a hello payload on a blob callis: `sessionEpoch u64, chunkSize u32, ackWindow u32`. */
export const HELLO_WITH_BLOB_WINDOW_LEN = 16;
/**
 * Most message ids one ack frame may acknowledge (the header's id plus the payload's ids): a full
 * A3 lane at its largest configurable size (4096) fits in one frame. Senders split longer lists.
 */
export const MAX_ACK_IDS_PER_FRAME = 4096;
/** Largest ack payload: the ids after the first, four bytes each. */
export const MAX_ACK_PAYLOAD_LEN = (MAX_ACK_IDS_PER_FRAME - 1) * 4;
/** Largest UTF-8 text (an error message or a close reason) a control frame may carry, in bytes. */
export const MAX_CONTROL_TEXT_LEN = 1024;
/** Length of the fixed part of an error payload: `errorId u32`. */
export const ERROR_HEADER_LEN = 4;
/** Length of the fixed part of a blob-chunk payload: `requestMsgId u32, chunkId u64, flags u16, len u32`. */
export const BLOB_CHUNK_HEADER_LEN = 18;
/** Length of a blob-complete payload: `requestMsgId u32`. */
export const BLOB_COMPLETE_LEN = 4;
/**
 * Length of the fixed part of a reply payload: `flags u8, seq u32, reasonLen u16`, then the
 * reason (UTF-8, error replies only, at most `MAX_CONTROL_TEXT_LEN`) and the body.
 */
export const REPLY_HEADER_LEN = 7;
/** Most `(msgId, seq)` pairs one reply-ack frame carries. */
export const MAX_REPLY_ACKS_PER_FRAME = 2047;
/** Length of one reply-ack entry: `msgId u32, seq u32`. */
export const REPLY_ACK_ENTRY_LEN = 8;
/** Length of a cancel payload: `flags u8`. */
export const CANCEL_LEN = 1;

const U16_MAX = 0xffff;
const U32_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;

/** A decoded (or to-be-encoded) frame header. */
export interface FrameHeader {
  /** Wire protocol version; always `WIRE_VERSION`. */
  readonly version: number;
  /** `FrameFlags` bits. */
  readonly flags: number;
  /** Message type: an A1 `ControlType`, or an A2/A3 type whose payload is opaque. */
  readonly msgType: MessageType;
  /** The sender's id of this message, or for ack and error frames the id they refer to. */
  readonly peerMsgId: number;
  /** Sending taberna (0 for control frames). */
  readonly srcTaberna: TabernaId;
  /** Destination taberna (0 for control frames). */
  readonly dstTaberna: TabernaId;
  /** Number of payload bytes after the header. */
  readonly payloadLen: number;
}

/**
 * A decoded frame. `payload` is a view (`subarray`) of the bytes the decoder was given, or of a
 * buffer it assembled for a frame spanning chunks; it aliases that memory and stays valid because
 * the decoder never reuses a buffer it handed out. Callers must not mutate chunks after pushing
 * them, and should copy a payload they retain long if it pins a large chunk.
 */
export interface Frame extends FrameHeader {
  readonly payload: Buffer;
}

/** The parts of a frame the control payload decoders read. */
export type FrameView = Pick<Frame, 'flags' | 'msgType' | 'peerMsgId' | 'payload'>;

/** A frame to encode: the header fields the sender chooses, and the payload bytes. */
export interface OutboundFrame {
  readonly flags: number;
  readonly msgType: MessageType;
  readonly peerMsgId: number;
  readonly srcTaberna: TabernaId;
  readonly dstTaberna: TabernaId;
  readonly payload: Uint8Array;
}

/** The header fields of an `OutboundFrame` whose payload is written separately. */
export type OutboundHeader = Omit<OutboundFrame, 'payload'> & { readonly payloadLen: number };

/** Size limits a receiver applies to announced payload lengths. */
export interface FrameLimits {
  /** Largest payload of an A2/A3 message. */
  readonly maxPayloadLen: number;
  /** Largest data part of a blob chunk (the negotiated chunk size), at most `MAX_BLOB_CHUNK_LEN`. */
  readonly maxBlobChunkLen: number;
}

const CONTROL_TYPE_NAMES: Readonly<Record<number, string | undefined>> = {
  [ControlType.Hello]: 'hello',
  [ControlType.HelloResponse]: 'hello-response',
  [ControlType.Keepalive]: 'keepalive',
  [ControlType.Ack]: 'ack',
  [ControlType.Close]: 'close',
  [ControlType.Error]: 'error',
  [ControlType.BlobChunk]: 'blob-chunk',
  [ControlType.BlobComplete]: 'blob-complete',
  [ControlType.Reply]: 'reply',
  [ControlType.ReplyAck]: 'reply-ack',
  [ControlType.Cancel]: 'cancel',
  [ControlType.Drain]: 'drain',
};

/** True when `msgType` is one of the A1 control types. */
export function isControlType(msgType: number): msgType is ControlType {
  return CONTROL_TYPE_NAMES[msgType] !== undefined;
}

/** The wire name of a control type (`'hello-response'`), or `undefined` for any other type. */
export function controlTypeName(msgType: number): string | undefined {
  return CONTROL_TYPE_NAMES[msgType];
}

/** Names a frame in error messages: `ack frame (peer message id 7)` or `frame of type 0x1000000 (…)`. */
export function describeFrame(msgType: number, peerMsgId: number): string {
  const name = CONTROL_TYPE_NAMES[msgType];
  const kind = name !== undefined ? `${name} frame` : `frame of type 0x${msgType.toString(16)}`;
  return `${kind} (peer message id ${peerMsgId})`;
}

/**
 * Checks the flags, type and announced payload length of a header against the protocol and the
 * receiver's limits. Returns a description of the first problem, or `undefined` when the header is
 * acceptable. Allocates nothing on success; used on both the receiving and the sending side.
 */
export function headerProblem(
  flags: number,
  msgType: number,
  payloadLen: number,
  limits: FrameLimits,
): string | undefined {
  const unknownFlags = flags & ~KNOWN_FRAME_FLAGS;
  if (unknownFlags !== 0) return `unknown flag bits 0x${unknownFlags.toString(16)}`;
  if (msgType > A1_MESSAGE_TYPE_MAX) {
    return payloadLen <= limits.maxPayloadLen
      ? undefined
      : `payload length ${payloadLen} exceeds maxPayloadLen ${limits.maxPayloadLen}`;
  }
  switch (msgType) {
    case ControlType.Hello:
    case ControlType.HelloResponse:
      return payloadLen === HELLO_LEN || payloadLen === HELLO_WITH_BLOB_WINDOW_LEN
        ? undefined
        : `payload length ${payloadLen} is neither ${HELLO_LEN} nor ${HELLO_WITH_BLOB_WINDOW_LEN}`;
    case ControlType.Keepalive:
    case ControlType.Drain:
      return payloadLen === 0 ? undefined : `payload length ${payloadLen} is not 0`;
    case ControlType.Ack:
      if (payloadLen % 4 !== 0) return `payload length ${payloadLen} is not a multiple of 4`;
      return payloadLen <= MAX_ACK_PAYLOAD_LEN
        ? undefined
        : `payload length ${payloadLen} exceeds ${MAX_ACK_PAYLOAD_LEN} (${MAX_ACK_IDS_PER_FRAME} ids)`;
    case ControlType.Close:
      return payloadLen <= MAX_CONTROL_TEXT_LEN
        ? undefined
        : `payload length ${payloadLen} exceeds ${MAX_CONTROL_TEXT_LEN}`;
    case ControlType.Error:
      return payloadLen >= ERROR_HEADER_LEN && payloadLen <= ERROR_HEADER_LEN + MAX_CONTROL_TEXT_LEN
        ? undefined
        : `payload length ${payloadLen} is outside ${ERROR_HEADER_LEN}..${ERROR_HEADER_LEN + MAX_CONTROL_TEXT_LEN}`;
    case ControlType.BlobChunk: {
      const max = BLOB_CHUNK_HEADER_LEN + limits.maxBlobChunkLen;
      return payloadLen >= BLOB_CHUNK_HEADER_LEN && payloadLen <= max
        ? undefined
        : `payload length ${payloadLen} is outside ${BLOB_CHUNK_HEADER_LEN}..${max}`;
    }
    case ControlType.BlobComplete:
      return payloadLen === BLOB_COMPLETE_LEN
        ? undefined
        : `payload length ${payloadLen} is not ${BLOB_COMPLETE_LEN}`;
    case ControlType.Reply: {
      const max = REPLY_HEADER_LEN + MAX_CONTROL_TEXT_LEN + limits.maxPayloadLen;
      return payloadLen >= REPLY_HEADER_LEN && payloadLen <= max
        ? undefined
        : `payload length ${payloadLen} is outside ${REPLY_HEADER_LEN}..${max}`;
    }
    case ControlType.ReplyAck: {
      const max = MAX_REPLY_ACKS_PER_FRAME * REPLY_ACK_ENTRY_LEN;
      if (payloadLen === 0 || payloadLen % REPLY_ACK_ENTRY_LEN !== 0) {
        return `payload length ${payloadLen} is not a positive multiple of ${REPLY_ACK_ENTRY_LEN}`;
      }
      return payloadLen <= max ? undefined : `payload length ${payloadLen} exceeds ${max}`;
    }
    case ControlType.Cancel:
      return payloadLen === CANCEL_LEN
        ? undefined
        : `payload length ${payloadLen} is not ${CANCEL_LEN}`;
    default:
      return `unknown A1 control type ${msgType}`;
  }
}

/** The limits a sender checks against: anything a u32 length allows, blob chunks up to 1 MiB. */
const SENDER_LIMITS: FrameLimits = { maxPayloadLen: U32_MAX, maxBlobChunkLen: MAX_BLOB_CHUNK_LEN };

/** The default receiver limits for `decodeHeader` when none are given. */
const DEFAULT_RECEIVER_LIMITS: FrameLimits = SENDER_LIMITS;

function isU16(value: number): boolean {
  return (value & U16_MAX) === value;
}

function isU32(value: number): boolean {
  return value >>> 0 === value;
}

function isU64(value: bigint): boolean {
  return typeof value === 'bigint' && value >= 0n && value <= U64_MAX;
}

function encodeFailure(what: string): AureliaError {
  return new AureliaError(ErrorId.EncodeFailure, `cannot encode frame: ${what}`);
}

/** The header fields a sender chooses; `OutboundFrame`, `OutboundHeader` and `FrameHeader` all have them. */
type HeaderFields = Omit<OutboundFrame, 'payload'>;

/** Throws `EncodeFailure` when a header to send is not one a v1 receiver would accept. */
function checkOutbound(h: HeaderFields, payloadLen: number): void {
  if (!isU32(h.msgType)) throw encodeFailure(`msgType ${h.msgType} is not a u32`);
  if (!isU32(h.peerMsgId)) {
    throw encodeFailure(`${describeFrame(h.msgType, 0)}: peerMsgId ${h.peerMsgId} is not a u32`);
  }
  if (!isU16(h.flags) || !isU64(h.srcTaberna) || !isU64(h.dstTaberna) || !isU32(payloadLen)) {
    const frame = describeFrame(h.msgType, h.peerMsgId);
    if (!isU16(h.flags)) throw encodeFailure(`${frame}: flags ${h.flags} is not a u16`);
    if (!isU32(payloadLen)) throw encodeFailure(`${frame}: payloadLen ${payloadLen} is not a u32`);
    const field = isU64(h.srcTaberna) ? 'dstTaberna' : 'srcTaberna';
    throw encodeFailure(`${frame}: ${field} ${String(h[field])} is not a u64 bigint`);
  }
  const problem = headerProblem(h.flags, h.msgType, payloadLen, SENDER_LIMITS);
  if (problem !== undefined) {
    throw encodeFailure(`${describeFrame(h.msgType, h.peerMsgId)}: ${problem}`);
  }
}

function checkPayload(frame: OutboundFrame): void {
  if (!(frame.payload instanceof Uint8Array)) {
    throw encodeFailure(
      `${describeFrame(frame.msgType, frame.peerMsgId)}: payload is not a Buffer`,
    );
  }
}

/** Writes a header already checked by `checkOutbound`. */
function writeHeader(target: Buffer, offset: number, h: HeaderFields, payloadLen: number): void {
  target.writeUInt16BE(WIRE_VERSION, offset);
  target.writeUInt16BE(h.flags, offset + 2);
  target.writeUInt32BE(h.msgType, offset + 4);
  target.writeUInt32BE(h.peerMsgId, offset + 8);
  target.writeBigUInt64BE(h.srcTaberna, offset + 12);
  target.writeBigUInt64BE(h.dstTaberna, offset + 20);
  target.writeUInt32BE(payloadLen, offset + 28);
}

function checkRoom(target: Buffer, offset: number, length: number): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + length > target.length) {
    throw encodeFailure(
      `${length} bytes do not fit at offset ${offset} of a ${target.length}-byte buffer`,
    );
  }
}

/**
 * Writes the 32-byte header `h` at `offset` of `target`. Throws `AureliaError(EncodeFailure)`
 * when `version` is not `WIRE_VERSION`, a field is outside its u16/u32/u64 range, a flag bit is
 * unknown, the type is an unknown A1 type, a control payload length breaks its type's rule, or
 * the header does not fit in `target`.
 */
export function encodeHeader(target: Buffer, offset: number, h: FrameHeader): void {
  if (h.version !== WIRE_VERSION) {
    throw encodeFailure(`version ${h.version} is not ${WIRE_VERSION}`);
  }
  checkOutbound(h, h.payloadLen);
  checkRoom(target, offset, HEADER_LEN);
  writeHeader(target, offset, h, h.payloadLen);
}

/**
 * Returns a new 32-byte header for a frame whose `payloadLen` bytes the caller writes separately
 * (for example as a second chunk of a `writev`), so a large payload is never copied.
 * Throws `AureliaError(EncodeFailure)` like `encodeHeader`.
 */
export function encodeHeaderOnly(h: OutboundHeader): Buffer {
  checkOutbound(h, h.payloadLen);
  const out = Buffer.allocUnsafe(HEADER_LEN);
  writeHeader(out, 0, h, h.payloadLen);
  return out;
}

/**
 * Reads and validates the header at `offset` of `source`. Throws
 * `AureliaError(UnsupportedVersion)` for a version other than `WIRE_VERSION`, and
 * `AureliaError(ProtocolViolation)` when fewer than 32 bytes are present, a flag bit is unknown,
 * the type is an unknown A1 type, or the payload length breaks `limits` (by default any u32 for
 * A2/A3 payloads and `MAX_BLOB_CHUNK_LEN` for blob chunks) or its control type's rule.
 */
export function decodeHeader(
  source: Buffer,
  offset = 0,
  limits: FrameLimits = DEFAULT_RECEIVER_LIMITS,
): FrameHeader {
  if (!Number.isInteger(offset) || offset < 0 || source.length - offset < HEADER_LEN) {
    throw new AureliaError(
      ErrorId.ProtocolViolation,
      `frame header needs ${HEADER_LEN} bytes, ${Math.max(0, source.length - offset)} present at offset ${offset}`,
    );
  }
  const version = source.readUInt16BE(offset);
  if (version !== WIRE_VERSION) throw unsupportedVersion(version);
  const flags = source.readUInt16BE(offset + 2);
  const msgType = source.readUInt32BE(offset + 4);
  const peerMsgId = source.readUInt32BE(offset + 8);
  const payloadLen = source.readUInt32BE(offset + 28);
  const problem = headerProblem(flags, msgType, payloadLen, limits);
  if (problem !== undefined) throw protocolViolation(msgType, peerMsgId, problem);
  return {
    version,
    flags,
    msgType,
    peerMsgId,
    srcTaberna: source.readBigUInt64BE(offset + 12),
    dstTaberna: source.readBigUInt64BE(offset + 20),
    payloadLen,
  };
}

/** The error for a header announcing another protocol version. */
export function unsupportedVersion(version: number): AureliaError {
  return new AureliaError(
    ErrorId.UnsupportedVersion,
    `frame header announces wire version ${version}; this peer speaks version ${WIRE_VERSION}`,
  );
}

/** The error for a malformed frame: `ProtocolViolation` naming the frame and the problem. */
export function protocolViolation(
  msgType: number,
  peerMsgId: number,
  problem: string,
): AureliaError {
  return new AureliaError(
    ErrorId.ProtocolViolation,
    `${describeFrame(msgType, peerMsgId)}: ${problem}`,
  );
}

/** Bytes a frame with `payloadLen` payload bytes occupies on the wire. */
export function encodedFrameLength(payloadLen: number): number {
  return HEADER_LEN + payloadLen;
}

/**
 * Writes `frame` (header and payload) at `offset` of `target` and returns the offset just past
 * it. Throws `AureliaError(EncodeFailure)` like `encodeHeader`, or when the payload is not bytes
 * or the frame does not fit.
 */
export function encodeFrameInto(target: Buffer, offset: number, frame: OutboundFrame): number {
  checkPayload(frame);
  const payloadLen = frame.payload.length;
  checkOutbound(frame, payloadLen);
  checkRoom(target, offset, HEADER_LEN + payloadLen);
  writeHeader(target, offset, frame, payloadLen);
  target.set(frame.payload, offset + HEADER_LEN);
  return offset + HEADER_LEN + payloadLen;
}

/** Returns `frame` encoded into a new Buffer of exactly its size. Throws like `encodeFrameInto`. */
export function encodeFrame(frame: OutboundFrame): Buffer {
  checkPayload(frame);
  const payloadLen = frame.payload.length;
  checkOutbound(frame, payloadLen);
  const out = Buffer.allocUnsafe(HEADER_LEN + payloadLen);
  writeHeader(out, 0, frame, payloadLen);
  out.set(frame.payload, HEADER_LEN);
  return out;
}

/** Returns all `frames` encoded back to back in one new Buffer. Throws like `encodeFrameInto`. */
export function encodeFrames(frames: Iterable<OutboundFrame>): Buffer {
  const batch = new FrameBatch();
  for (const frame of frames) batch.add(frame);
  return batch.take();
}

/**
 * Collects frames for one coalesced socket write: each `add` checks the frame at once, `take`
 * sizes a single Buffer for all of them, encodes them in order and empties the batch. The batch
 * keeps references to the payloads until `take`, so they must not change in between.
 */
export class FrameBatch {
  private readonly frames: (OutboundFrame | readonly Buffer[])[] = [];
  private bytes = 0;

  /** Number of frames waiting. */
  get frameCount(): number {
    return this.frames.length;
  }

  /** Bytes the next `take()` returns. */
  get byteLength(): number {
    return this.bytes;
  }

  /**
   * Appends `frame`. Throws `AureliaError(EncodeFailure)` (and leaves the batch unchanged) when
   * the frame could not be encoded, for the reasons `encodeHeader` lists.
   */
  add(frame: OutboundFrame): this {
    checkPayload(frame);
    checkOutbound(frame, frame.payload.length);
    this.frames.push(frame);
    this.bytes += HEADER_LEN + frame.payload.length;
    return this;
  }

  /**
   * Appends a frame its producer encoded itself, as consecutive parts (for example the head from
   * `encodeBlobChunkHead` and the chunk data), so large data is copied once, by `take`.
   */
  addEncoded(parts: readonly Buffer[]): this {
    this.frames.push(parts);
    for (const part of parts) this.bytes += part.length;
    return this;
  }

  /** Returns every added frame encoded back to back in one Buffer, and empties the batch. */
  take(): Buffer {
    const out = Buffer.allocUnsafe(this.bytes);
    let offset = 0;
    for (const frame of this.frames) {
      if (!('payload' in frame)) {
        for (const part of frame) {
          out.set(part, offset);
          offset += part.length;
        }
        continue;
      }
      const payloadLen = frame.payload.length;
      writeHeader(out, offset, frame, payloadLen);
      out.set(frame.payload, offset + HEADER_LEN);
      offset += HEADER_LEN + payloadLen;
    }
    this.clear();
    return out;
  }

  /** Drops every waiting frame. */
  clear(): void {
    this.frames.length = 0;
    this.bytes = 0;
  }
}
