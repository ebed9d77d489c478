// Encoding and strict decoding of the A1 control payloads (hello, ack, error, blob chunks, ...).
import { AureliaError, ErrorId } from '../errors.js';
import {
  BLOB_CHUNK_HEADER_LEN,
  BLOB_COMPLETE_LEN,
  BlobChunkFlags,
  CANCEL_LEN,
  CancelFlags,
  ControlType,
  REPLY_HEADER_LEN,
  MAX_REPLY_ACKS_PER_FRAME,
  ReplyFlags,
  ERROR_HEADER_LEN,
  FrameFlags,
  HEADER_LEN,
  HELLO_LEN,
  HELLO_WITH_BLOB_WINDOW_LEN,
  MAX_ACK_IDS_PER_FRAME,
  MAX_BLOB_ACK_WINDOW,
  MAX_BLOB_CHUNK_LEN,
  MAX_CONTROL_TEXT_LEN,
  controlTypeName,
  describeFrame,
  WIRE_VERSION,
  encodeHeader,
  headerProblem,
  protocolViolation,
  type FrameView,
  type OutboundFrame,
} from './frame.js';

const U64_MAX = (1n << 64n) - 1n;
const EMPTY = Buffer.alloc(0);
// `ignoreBOM` keeps a leading U+FEFF as text, so what was sent is what is decoded.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The chunk size and ack window a blob callis hello proposes (or a hello-response agrees on). */
export interface HelloBlobWindow {
  /** Data bytes per blob chunk, 1..`MAX_BLOB_CHUNK_LEN`. */
  readonly chunkSize: number;
  /** Unacknowledged chunks allowed in flight, 1..`MAX_BLOB_ACK_WINDOW`. */
  readonly ackWindow: number;
}

/** A hello or hello-response: the sender's session epoch and, on a blob callis, its blob window. */
export interface Hello {
  /** Identifies the sender's session; a new epoch means the peer restarted. */
  readonly sessionEpoch: bigint;
  /** Present on a blob callis only. */
  readonly blobWindow?: HelloBlobWindow;
  /** The `Reconnect` header flag: the hello resumes an existing session. */
  readonly reconnect?: boolean;
}

/** A decoded hello or hello-response. */
export interface DecodedHello {
  /** The sender's session epoch. */
  readonly sessionEpoch: bigint;
  /** Present when the hello came from a blob callis. */
  readonly blobWindow?: HelloBlobWindow;
  /** The `Reconnect` header flag was set. */
  readonly reconnect: boolean;
}

/** An error frame: a wire `ErrorId` number, a message, and the message id it concerns. */
export interface ErrorPayload {
  /** An `ErrorId` number; numbers this version does not know are kept (check with `isErrorId`). */
  readonly errorId: number;
  /** Human-readable text, at most `MAX_CONTROL_TEXT_LEN` UTF-8 bytes on the wire. */
  readonly message: string;
  /** The peer message id the error concerns; 0 means the callis itself. */
  readonly peerMsgId: number;
}

/** One chunk of a blob stream. */
export interface BlobChunk {
  /** Message id of the blob request the stream belongs to. */
  readonly requestMsgId: number;
  /** Position of the chunk in its stream, from 0. */
  readonly chunkId: bigint;
  /** True on the stream's last chunk. */
  readonly last: boolean;
  /** The chunk's bytes (when decoded, a view of the frame's payload). */
  readonly data: Uint8Array;
}

/** A decoded `BlobChunk`, whose data is a Buffer view of the frame's payload. */
export interface DecodedBlobChunk extends BlobChunk {
  readonly data: Buffer;
}

/** Any decoded control frame, discriminated by `type`. */
export type ControlMessage =
  | ({ readonly type: ControlType.Hello | ControlType.HelloResponse } & DecodedHello)
  | { readonly type: ControlType.Keepalive }
  | { readonly type: ControlType.Drain }
  | { readonly type: ControlType.Ack; readonly ids: number[] }
  | { readonly type: ControlType.Close; readonly reason: string }
  | ({ readonly type: ControlType.Error } & ErrorPayload)
  | ({ readonly type: ControlType.BlobChunk } & DecodedBlobChunk)
  | { readonly type: ControlType.BlobComplete; readonly requestMsgId: number }
  | ({ readonly type: ControlType.Reply; readonly requestMsgId: number } & ReplyPayload)
  | { readonly type: ControlType.ReplyAck; readonly pairs: number[] }
  | {
      readonly type: ControlType.Cancel;
      readonly requestMsgId: number;
      readonly deadline: boolean;
    };

function encodeFailure(type: ControlType, what: string): AureliaError {
  return new AureliaError(
    ErrorId.EncodeFailure,
    `cannot encode ${controlTypeName(type)} frame: ${what}`,
  );
}

function controlFrame(
  msgType: ControlType,
  payload: Buffer,
  peerMsgId = 0,
  flags: number = FrameFlags.None,
): OutboundFrame {
  return { flags, msgType, peerMsgId, srcTaberna: 0n, dstTaberna: 0n, payload };
}

function isU32(value: number): boolean {
  return value >>> 0 === value;
}

/** Throws `ProtocolViolation` unless the frame is of one of the expected types. */
function expectType(frame: FrameView, a: ControlType, b: ControlType = a): void {
  if (frame.msgType !== a && frame.msgType !== b) {
    const expected =
      a === b ? controlTypeName(a) : `${controlTypeName(a)} or ${controlTypeName(b)}`;
    throw protocolViolation(frame.msgType, frame.peerMsgId, `expected a ${expected} frame`);
  }
}

/**
 * Re-checks the payload length against its type's rule: the decoder did so at header time, but
 * these functions also accept frames that did not come through a `FrameDecoder`.
 */
function expectLength(frame: FrameView, maxBlobChunkLen = MAX_BLOB_CHUNK_LEN): void {
  const problem = headerProblem(frame.flags, frame.msgType, frame.payload.length, {
    maxPayloadLen: 0,
    maxBlobChunkLen,
  });
  if (problem !== undefined) throw protocolViolation(frame.msgType, frame.peerMsgId, problem);
}

function decodeText(frame: FrameView, bytes: Buffer, what: string): string {
  if (bytes.length > MAX_CONTROL_TEXT_LEN) {
    throw protocolViolation(
      frame.msgType,
      frame.peerMsgId,
      `${what} of ${bytes.length} bytes exceeds ${MAX_CONTROL_TEXT_LEN}`,
    );
  }
  try {
    return UTF8.decode(bytes);
  } catch {
    throw protocolViolation(frame.msgType, frame.peerMsgId, `${what} is not valid UTF-8`);
  }
}

/** Encodes `text` as UTF-8 after `prefixLen` bytes, cut at a character boundary to 1024 bytes. */
function textPayload(prefixLen: number, text: string): Buffer {
  const full = Buffer.byteLength(text, 'utf8');
  const out = Buffer.allocUnsafe(prefixLen + Math.min(full, MAX_CONTROL_TEXT_LEN));
  // Buffer#write never writes a partial character, so a cut text stays valid UTF-8.
  const written = out.write(text, prefixLen, out.length - prefixLen, 'utf8');
  return written === out.length - prefixLen ? out : out.subarray(0, prefixLen + written);
}

// ---- hello / hello-response ----

function encodeHelloFrame(type: ControlType, hello: Hello): OutboundFrame {
  const { sessionEpoch, blobWindow } = hello;
  if (typeof sessionEpoch !== 'bigint' || sessionEpoch < 0n || sessionEpoch > U64_MAX) {
    throw encodeFailure(type, `sessionEpoch ${String(sessionEpoch)} is not a u64 bigint`);
  }
  const payload = Buffer.allocUnsafe(blobWindow ? HELLO_WITH_BLOB_WINDOW_LEN : HELLO_LEN);
  payload.writeBigUInt64BE(sessionEpoch, 0);
  if (blobWindow) {
    const { chunkSize, ackWindow } = blobWindow;
    if (!isU32(chunkSize) || chunkSize === 0 || chunkSize > MAX_BLOB_CHUNK_LEN) {
      throw encodeFailure(type, `chunkSize ${chunkSize} is outside 1..${MAX_BLOB_CHUNK_LEN}`);
    }
    if (!isU32(ackWindow) || ackWindow === 0 || ackWindow > MAX_BLOB_ACK_WINDOW) {
      throw encodeFailure(type, `ackWindow ${ackWindow} is outside 1..${MAX_BLOB_ACK_WINDOW}`);
    }
    payload.writeUInt32BE(chunkSize, 8);
    payload.writeUInt32BE(ackWindow, 12);
  }
  return controlFrame(type, payload, 0, hello.reconnect ? FrameFlags.Reconnect : FrameFlags.None);
}

/**
 * Builds a hello frame: `sessionEpoch u64`, plus `chunkSize u32, ackWindow u32` when
 * `blobWindow` is given; `reconnect` sets the `Reconnect` flag. Throws
 * `AureliaError(EncodeFailure)` when the epoch is not a u64 bigint, `chunkSize` is outside
 * 1..`MAX_BLOB_CHUNK_LEN` or `ackWindow` outside 1..`MAX_BLOB_ACK_WINDOW`.
 */
export function encodeHello(hello: Hello): OutboundFrame {
  return encodeHelloFrame(ControlType.Hello, hello);
}

/** Builds a hello-response frame; same layout, flags and failures as `encodeHello`. */
export function encodeHelloResponse(hello: Hello): OutboundFrame {
  return encodeHelloFrame(ControlType.HelloResponse, hello);
}

/**
 * Decodes a hello or hello-response frame (`reconnect` comes from the header flag). Throws
 * `AureliaError(ProtocolViolation)` when the frame is of another type, the payload is not 8 or 16
 * bytes, or a proposed blob window is outside 1..`MAX_BLOB_CHUNK_LEN` / 1..`MAX_BLOB_ACK_WINDOW`.
 */
export function decodeHello(frame: FrameView): DecodedHello {
  expectType(frame, ControlType.Hello, ControlType.HelloResponse);
  expectLength(frame);
  const { payload } = frame;
  const sessionEpoch = payload.readBigUInt64BE(0);
  const reconnect = (frame.flags & FrameFlags.Reconnect) !== 0;
  if (payload.length === HELLO_LEN) return { sessionEpoch, reconnect };
  const chunkSize = payload.readUInt32BE(8);
  const ackWindow = payload.readUInt32BE(12);
  if (chunkSize === 0 || chunkSize > MAX_BLOB_CHUNK_LEN) {
    throw protocolViolation(
      frame.msgType,
      frame.peerMsgId,
      `chunkSize ${chunkSize} is outside 1..${MAX_BLOB_CHUNK_LEN}`,
    );
  }
  if (ackWindow === 0 || ackWindow > MAX_BLOB_ACK_WINDOW) {
    throw protocolViolation(
      frame.msgType,
      frame.peerMsgId,
      `ackWindow ${ackWindow} is outside 1..${MAX_BLOB_ACK_WINDOW}`,
    );
  }
  return { sessionEpoch, reconnect, blobWindow: { chunkSize, ackWindow } };
}

// ---- keepalive ----

/** Builds a keepalive frame (empty payload). Never fails. */
export function encodeKeepalive(): OutboundFrame {
  return controlFrame(ControlType.Keepalive, EMPTY);
}

/**
 * Checks a keepalive frame. Throws `AureliaError(ProtocolViolation)` when the frame is of another
 * type or carries a payload.
 */
export function decodeKeepalive(frame: FrameView): void {
  expectType(frame, ControlType.Keepalive);
  expectLength(frame);
}

// ---- drain ----

/** Builds a drain frame (empty payload, `peerMsgId` 0). Never fails. */
export function encodeDrain(): OutboundFrame {
  return controlFrame(ControlType.Drain, EMPTY);
}

/**
 * Checks a drain frame. Throws `AureliaError(ProtocolViolation)` when the frame is of another
 * type, names a message id or carries a payload.
 */
export function decodeDrain(frame: FrameView): void {
  expectType(frame, ControlType.Drain);
  expectLength(frame);
  if (frame.peerMsgId !== 0) {
    throw protocolViolation(frame.msgType, frame.peerMsgId, 'a drain frame names no message');
  }
}

// ---- ack ----

/**
 * Builds an ack frame acknowledging `ids` in order: the first travels as the header's
 * `peerMsgId`, the rest as u32s in the payload. Throws `AureliaError(EncodeFailure)` when `ids`
 * is empty, longer than `MAX_ACK_IDS_PER_FRAME` (split longer lists across frames), or holds a
 * value that is not a u32.
 */
export function encodeAck(ids: readonly number[]): OutboundFrame {
  const count = ids.length;
  if (count === 0) throw encodeFailure(ControlType.Ack, 'no message ids to acknowledge');
  if (count > MAX_ACK_IDS_PER_FRAME) {
    throw encodeFailure(
      ControlType.Ack,
      `${count} ids exceed ${MAX_ACK_IDS_PER_FRAME} per frame; split them across frames`,
    );
  }
  const payload = count === 1 ? EMPTY : Buffer.allocUnsafe((count - 1) * 4);
  for (let i = 0; i < count; i++) {
    const id = ids[i];
    if (!isU32(id)) throw encodeFailure(ControlType.Ack, `id ${id} at index ${i} is not a u32`);
    if (i > 0) payload.writeUInt32BE(id, (i - 1) * 4);
  }
  return controlFrame(ControlType.Ack, payload, ids[0]);
}

/**
 * Returns the message ids an ack frame acknowledges: the header's `peerMsgId`, then each u32 of
 * the payload. Throws `AureliaError(ProtocolViolation)` when the frame is of another type or the
 * payload length is not a multiple of 4 or exceeds `MAX_ACK_PAYLOAD_LEN`.
 */
export function decodeAck(frame: FrameView): number[] {
  expectType(frame, ControlType.Ack);
  expectLength(frame);
  const { payload } = frame;
  const count = payload.length / 4;
  const ids = new Array<number>(count + 1);
  ids[0] = frame.peerMsgId;
  for (let i = 0; i < count; i++) ids[i + 1] = payload.readUInt32BE(i * 4);
  return ids;
}

// ---- close ----

/**
 * Builds a close frame with an optional UTF-8 reason. A reason longer than
 * `MAX_CONTROL_TEXT_LEN` bytes is cut at the last whole character that fits, because a close
 * must always be sendable. Never fails.
 */
export function encodeClose(reason = ''): OutboundFrame {
  return controlFrame(ControlType.Close, reason === '' ? EMPTY : textPayload(0, reason));
}

/**
 * Returns a close frame's reason (`''` when it has none). Throws
 * `AureliaError(ProtocolViolation)` when the frame is of another type, or the reason is longer
 * than `MAX_CONTROL_TEXT_LEN` bytes or not valid UTF-8.
 */
export function decodeClose(frame: FrameView): string {
  expectType(frame, ControlType.Close);
  expectLength(frame);
  return frame.payload.length === 0 ? '' : decodeText(frame, frame.payload, 'close reason');
}

// ---- error ----

/**
 * Builds an error frame: `errorId u32` and the UTF-8 message, with the header's `peerMsgId`
 * naming the message concerned (default 0, the callis itself). A message longer than
 * `MAX_CONTROL_TEXT_LEN` bytes is cut at the last whole character that fits. Throws
 * `AureliaError(EncodeFailure)` when `errorId` or `peerMsgId` is not a u32.
 */
export function encodeError(error: {
  errorId: number;
  message: string;
  peerMsgId?: number;
}): OutboundFrame {
  const { errorId, message, peerMsgId = 0 } = error;
  if (!isU32(errorId)) throw encodeFailure(ControlType.Error, `errorId ${errorId} is not a u32`);
  if (!isU32(peerMsgId))
    throw encodeFailure(ControlType.Error, `peerMsgId ${peerMsgId} is not a u32`);
  const payload = textPayload(ERROR_HEADER_LEN, message);
  payload.writeUInt32BE(errorId, 0);
  return controlFrame(ControlType.Error, payload, peerMsgId);
}

/**
 * Decodes an error frame. Unknown `errorId` numbers are returned as they are. Throws
 * `AureliaError(ProtocolViolation)` when the frame is of another type, the payload is shorter than
 * 4 bytes, or the message is longer than `MAX_CONTROL_TEXT_LEN` bytes or not valid UTF-8.
 */
export function decodeError(frame: FrameView): ErrorPayload {
  expectType(frame, ControlType.Error);
  expectLength(frame);
  const { payload } = frame;
  return {
    errorId: payload.readUInt32BE(0),
    message: decodeText(frame, payload.subarray(ERROR_HEADER_LEN), 'error message'),
    peerMsgId: frame.peerMsgId,
  };
}

// ---- blob-chunk ----

function checkBlobChunk(chunk: Omit<BlobChunk, 'data'>, dataLen: number): void {
  const { requestMsgId, chunkId } = chunk;
  if (!isU32(requestMsgId)) {
    throw encodeFailure(ControlType.BlobChunk, `requestMsgId ${requestMsgId} is not a u32`);
  }
  if (typeof chunkId !== 'bigint' || chunkId < 0n || chunkId > U64_MAX) {
    throw encodeFailure(ControlType.BlobChunk, `chunkId ${String(chunkId)} is not a u64 bigint`);
  }
  if (!Number.isInteger(dataLen) || dataLen < 0 || dataLen > MAX_BLOB_CHUNK_LEN) {
    throw encodeFailure(
      ControlType.BlobChunk,
      `${dataLen} data bytes are outside 0..${MAX_BLOB_CHUNK_LEN}`,
    );
  }
}

function writeBlobChunkHeader(
  target: Buffer,
  offset: number,
  chunk: Omit<BlobChunk, 'data'>,
  dataLen: number,
): void {
  target.writeUInt32BE(chunk.requestMsgId, offset);
  target.writeBigUInt64BE(chunk.chunkId, offset + 4);
  target.writeUInt16BE(chunk.last ? BlobChunkFlags.Last : BlobChunkFlags.None, offset + 12);
  target.writeUInt32BE(dataLen, offset + 14);
}

/**
 * Builds a blob-chunk frame, copying `data` into its payload. For large chunks prefer
 * `encodeBlobChunkHead`, which avoids the copy. Throws `AureliaError(EncodeFailure)` when
 * `requestMsgId` is not a u32, `chunkId` not a u64 bigint, or `data` longer than
 * `MAX_BLOB_CHUNK_LEN`.
 */
export function encodeBlobChunk(chunk: BlobChunk): OutboundFrame {
  const dataLen = chunk.data.length;
  checkBlobChunk(chunk, dataLen);
  const payload = Buffer.allocUnsafe(BLOB_CHUNK_HEADER_LEN + dataLen);
  writeBlobChunkHeader(payload, 0, chunk, dataLen);
  payload.set(chunk.data, BLOB_CHUNK_HEADER_LEN);
  return controlFrame(ControlType.BlobChunk, payload);
}

/**
 * Returns the first `HEADER_LEN + BLOB_CHUNK_HEADER_LEN` bytes of a blob-chunk frame carrying
 * `dataLen` data bytes; the caller writes the data itself right after (for example as the second
 * chunk of a `writev`), so chunk data is never copied. Throws `AureliaError(EncodeFailure)` like
 * `encodeBlobChunk`.
 */
export function encodeBlobChunkHead(chunk: Omit<BlobChunk, 'data'>, dataLen: number): Buffer {
  checkBlobChunk(chunk, dataLen);
  const head = Buffer.allocUnsafe(HEADER_LEN + BLOB_CHUNK_HEADER_LEN);
  encodeHeader(head, 0, {
    version: WIRE_VERSION,
    flags: FrameFlags.None,
    msgType: ControlType.BlobChunk,
    peerMsgId: 0,
    srcTaberna: 0n,
    dstTaberna: 0n,
    payloadLen: BLOB_CHUNK_HEADER_LEN + dataLen,
  });
  writeBlobChunkHeader(head, HEADER_LEN, chunk, dataLen);
  return head;
}

/**
 * Decodes a blob-chunk frame; `data` is a view of the frame's payload. Throws
 * `AureliaError(ProtocolViolation)` when the frame is of another type, the payload is shorter than
 * its 18-byte chunk header or longer than `maxBlobChunkLen` data bytes (default
 * `MAX_BLOB_CHUNK_LEN`), a chunk flag other than `Last` is set, or `len` differs from the number of
 * bytes that follow it.
 */
export function decodeBlobChunk(
  frame: FrameView,
  maxBlobChunkLen = MAX_BLOB_CHUNK_LEN,
): DecodedBlobChunk {
  expectType(frame, ControlType.BlobChunk);
  expectLength(frame, maxBlobChunkLen);
  const { payload } = frame;
  const flags = payload.readUInt16BE(12);
  const unknown = flags & ~BlobChunkFlags.Last;
  if (unknown !== 0) {
    throw protocolViolation(
      frame.msgType,
      frame.peerMsgId,
      `unknown chunk flag bits 0x${unknown.toString(16)}`,
    );
  }
  const len = payload.readUInt32BE(14);
  const remaining = payload.length - BLOB_CHUNK_HEADER_LEN;
  if (len !== remaining) {
    throw protocolViolation(
      frame.msgType,
      frame.peerMsgId,
      `chunk len ${len} differs from the ${remaining} data bytes present`,
    );
  }
  return {
    requestMsgId: payload.readUInt32BE(0),
    chunkId: payload.readBigUInt64BE(4),
    last: (flags & BlobChunkFlags.Last) !== 0,
    data: payload.subarray(BLOB_CHUNK_HEADER_LEN),
  };
}

// ---- blob-complete ----

/**
 * Builds a blob-complete frame for the stream of `requestMsgId`. Throws
 * `AureliaError(EncodeFailure)` when `requestMsgId` is not a u32.
 */
export function encodeBlobComplete(requestMsgId: number): OutboundFrame {
  if (!isU32(requestMsgId)) {
    throw encodeFailure(ControlType.BlobComplete, `requestMsgId ${requestMsgId} is not a u32`);
  }
  const payload = Buffer.allocUnsafe(BLOB_COMPLETE_LEN);
  payload.writeUInt32BE(requestMsgId, 0);
  return controlFrame(ControlType.BlobComplete, payload);
}

/**
 * Returns the `requestMsgId` of a blob-complete frame. Throws `AureliaError(ProtocolViolation)`
 * when the frame is of another type or the payload is not exactly 4 bytes.
 */
export function decodeBlobComplete(frame: FrameView): number {
  expectType(frame, ControlType.BlobComplete);
  expectLength(frame);
  return frame.payload.readUInt32BE(0);
}

// ---- any control frame ----

/**
 * Decodes any A1 control frame into a `ControlMessage`. Throws `AureliaError(ProtocolViolation)`
 * when the frame is not a control frame or its payload is malformed (see the per-type decoders);
 * blob chunks are checked against `maxBlobChunkLen` (default `MAX_BLOB_CHUNK_LEN`).
 */
export function decodeControl(
  frame: FrameView,
  maxBlobChunkLen = MAX_BLOB_CHUNK_LEN,
): ControlMessage {
  switch (frame.msgType) {
    case ControlType.Hello:
    case ControlType.HelloResponse:
      return { type: frame.msgType, ...decodeHello(frame) };
    case ControlType.Keepalive:
      decodeKeepalive(frame);
      return { type: ControlType.Keepalive };
    case ControlType.Drain:
      decodeDrain(frame);
      return { type: ControlType.Drain };
    case ControlType.Ack:
      return { type: ControlType.Ack, ids: decodeAck(frame) };
    case ControlType.Close:
      return { type: ControlType.Close, reason: decodeClose(frame) };
    case ControlType.Error:
      return { type: ControlType.Error, ...decodeError(frame) };
    case ControlType.BlobChunk:
      return { type: ControlType.BlobChunk, ...decodeBlobChunk(frame, maxBlobChunkLen) };
    case ControlType.BlobComplete:
      return { type: ControlType.BlobComplete, requestMsgId: decodeBlobComplete(frame) };
    case ControlType.Reply:
      return { type: ControlType.Reply, requestMsgId: frame.peerMsgId, ...decodeReply(frame) };
    case ControlType.ReplyAck:
      return { type: ControlType.ReplyAck, pairs: decodeReplyAcks(frame) };
    case ControlType.Cancel:
      return { type: ControlType.Cancel, ...decodeCancel(frame) };
    default:
      throw new AureliaError(
        ErrorId.ProtocolViolation,
        `${describeFrame(frame.msgType, frame.peerMsgId)}: not an A1 control frame`,
      );
  }
}

// ---- reply / reply-ack / cancel ----

/** One reply to an A2 request, as sent on the callis the request arrived on. */
export interface ReplyPayload {
  /** 0 for the first reply of a request, then 1, 2, … */
  readonly seq: number;
  /** `ReplyFlags` bits: `Last` or `Error` end the call; `Empty` marks a reply without a value. */
  readonly flags: number;
  /** Why the handler failed (error replies only; at most `MAX_CONTROL_TEXT_LEN` UTF-8 bytes). */
  readonly reason: string;
  /** The reply value, or the handler's encoded error. */
  readonly body: Buffer;
}

const KNOWN_REPLY_FLAGS = ReplyFlags.Last | ReplyFlags.Error | ReplyFlags.Empty;

/**
 * Builds a reply frame for request `requestMsgId`. Throws `AureliaError(EncodeFailure)` for an id
 * or seq that is not a u32, unknown flags, `Last` together with `Error`, or a reason over
 * `MAX_CONTROL_TEXT_LEN` bytes (reasons are cut at a character boundary to fit).
 */
export function encodeReply(requestMsgId: number, reply: ReplyPayload): OutboundFrame {
  const { seq, flags, body } = reply;
  if (!isU32(requestMsgId) || requestMsgId === 0) {
    throw encodeFailure(ControlType.Reply, `request id ${requestMsgId} is not a non-zero u32`);
  }
  if (!isU32(seq)) throw encodeFailure(ControlType.Reply, `seq ${seq} is not a u32`);
  if ((flags & ~KNOWN_REPLY_FLAGS) !== 0 || (flags & ReplyFlags.Last && flags & ReplyFlags.Error)) {
    throw encodeFailure(ControlType.Reply, `flags 0x${flags.toString(16)} are not valid`);
  }
  const reason = flags & ReplyFlags.Error ? textPayload(0, reply.reason) : EMPTY;
  const payload = Buffer.allocUnsafe(REPLY_HEADER_LEN + reason.length + body.length);
  payload[0] = flags;
  payload.writeUInt32BE(seq, 1);
  payload.writeUInt16BE(reason.length, 5);
  reason.copy(payload, REPLY_HEADER_LEN);
  body.copy(payload, REPLY_HEADER_LEN + reason.length);
  return controlFrame(ControlType.Reply, payload, requestMsgId);
}

/**
 * Decodes a reply frame; `body` is a view of the frame's payload. Throws
 * `AureliaError(ProtocolViolation)` for another frame type, request id 0, unknown or
 * contradictory flags, a reason on a reply that is not an error, or a reason that overruns the
 * payload or is not UTF-8.
 */
export function decodeReply(frame: FrameView): ReplyPayload {
  expectType(frame, ControlType.Reply);
  const { payload } = frame;
  if (payload.length < REPLY_HEADER_LEN) {
    throw protocolViolation(frame.msgType, frame.peerMsgId, `payload of ${payload.length} bytes`);
  }
  if (frame.peerMsgId === 0) {
    throw protocolViolation(frame.msgType, 0, 'a reply must name its request (id 0)');
  }
  const flags = payload[0];
  if ((flags & ~KNOWN_REPLY_FLAGS) !== 0 || (flags & ReplyFlags.Last && flags & ReplyFlags.Error)) {
    throw protocolViolation(
      frame.msgType,
      frame.peerMsgId,
      `invalid reply flags 0x${flags.toString(16)}`,
    );
  }
  const reasonLen = payload.readUInt16BE(5);
  if (reasonLen > 0 && !(flags & ReplyFlags.Error)) {
    throw protocolViolation(frame.msgType, frame.peerMsgId, 'a reason on a reply that is no error');
  }
  if (REPLY_HEADER_LEN + reasonLen > payload.length) {
    throw protocolViolation(frame.msgType, frame.peerMsgId, 'reason overruns the payload');
  }
  const reason =
    reasonLen === 0
      ? ''
      : decodeText(
          frame,
          payload.subarray(REPLY_HEADER_LEN, REPLY_HEADER_LEN + reasonLen),
          'reason',
        );
  return {
    seq: payload.readUInt32BE(1),
    flags,
    reason,
    body: payload.subarray(REPLY_HEADER_LEN + reasonLen),
  };
}

/**
 * Builds a reply-ack frame acknowledging each `(msgId, seq)` pair (flat: id, seq, id, seq, …).
 * Throws `AureliaError(EncodeFailure)` for an empty or odd list, more than
 * `MAX_REPLY_ACKS_PER_FRAME` pairs, or a value that is not a u32.
 */
export function encodeReplyAcks(pairs: readonly number[]): OutboundFrame {
  const count = pairs.length / 2;
  if (count === 0 || !Number.isInteger(count) || count > MAX_REPLY_ACKS_PER_FRAME) {
    throw encodeFailure(
      ControlType.ReplyAck,
      `${pairs.length} values are not 1..${MAX_REPLY_ACKS_PER_FRAME} pairs`,
    );
  }
  const payload = Buffer.allocUnsafe(pairs.length * 4);
  for (let i = 0; i < pairs.length; i++) {
    if (!isU32(pairs[i]))
      throw encodeFailure(ControlType.ReplyAck, `value ${pairs[i]} is not a u32`);
    payload.writeUInt32BE(pairs[i], i * 4);
  }
  return controlFrame(ControlType.ReplyAck, payload);
}

/**
 * Returns the `(msgId, seq)` pairs of a reply-ack frame, flat. Throws
 * `AureliaError(ProtocolViolation)` for another frame type or a malformed length.
 */
export function decodeReplyAcks(frame: FrameView): number[] {
  expectType(frame, ControlType.ReplyAck);
  expectLength(frame);
  const { payload } = frame;
  const out = new Array<number>(payload.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = payload.readUInt32BE(i * 4);
  return out;
}

/** Builds a cancel frame for request `requestMsgId`; `deadline` when the caller's time ran out. */
export function encodeCancel(requestMsgId: number, deadline: boolean): OutboundFrame {
  if (!isU32(requestMsgId) || requestMsgId === 0) {
    throw encodeFailure(ControlType.Cancel, `request id ${requestMsgId} is not a non-zero u32`);
  }
  const payload = Buffer.allocUnsafe(CANCEL_LEN);
  payload[0] = deadline ? CancelFlags.Deadline : CancelFlags.None;
  return controlFrame(ControlType.Cancel, payload, requestMsgId);
}

/**
 * Decodes a cancel frame: the request it names and whether the caller's deadline passed. Throws
 * `AureliaError(ProtocolViolation)` for another frame type, a bad length, id 0 or unknown flags.
 */
export function decodeCancel(frame: FrameView): { requestMsgId: number; deadline: boolean } {
  expectType(frame, ControlType.Cancel);
  expectLength(frame);
  if (frame.peerMsgId === 0) {
    throw protocolViolation(frame.msgType, 0, 'a cancel must name its request (id 0)');
  }
  const flags = frame.payload[0];
  if ((flags & ~CancelFlags.Deadline) !== 0) {
    throw protocolViolation(
      frame.msgType,
      frame.peerMsgId,
      `unknown cancel flags 0x${flags.toString(16)}`,
    );
  }
  return { requestMsgId: frame.peerMsgId, deadline: flags === CancelFlags.Deadline };
}
