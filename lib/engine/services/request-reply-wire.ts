// Wire form of the A2 request/reply service: REQUEST, REPLY and CANCEL payloads (pure, no I/O).
import { AureliaError, ErrorId } from '../errors.js';
import type { EncodedMessage, MessageCodec } from '../codec.js';
import { A2_MESSAGE_TYPE_BASE, type MessageType, type TabernaId } from '../ids.js';

/**
 * A2 message type of a request: sent by the caller to the handler's taberna. Payload:
 * `version u8 (=1) | flags u8 (=0) | correlationId u64 | replyTaberna u64 | remainingMs u32 |
 * replyAddrLen u16 | replyAddr (UTF-8) | body`.
 */
export const REQUEST_MESSAGE_TYPE: MessageType = A2_MESSAGE_TYPE_BASE + 1;
/**
 * A2 message type of one reply value (or the error), sent by the handler's domus to the caller's
 * reply taberna. Payload: `version u8 (=1) | flags u8 (0x1 ERROR, 0x2 LAST) | correlationId u64 |
 * seq u32 | body`.
 */
export const REPLY_MESSAGE_TYPE: MessageType = A2_MESSAGE_TYPE_BASE + 2;
/**
 * A2 message type of a cancellation: the caller lost interest; sent to the handler's taberna.
 * Payload: `version u8 (=1) | flags u8 (0x1 DEADLINE) | correlationId u64 | replyAddrLen u16 |
 * replyAddr`.
 */
export const CANCEL_MESSAGE_TYPE: MessageType = A2_MESSAGE_TYPE_BASE + 3;

/** Version byte of every request/reply payload. */
export const REQUEST_REPLY_WIRE_VERSION = 1;
/**
 * REPLY flag: the body is the handler's error; the call ends with it (the request is rejected
 * right after).
 */
export const REPLY_FLAG_ERROR = 0x1;
/**
 * REPLY flag: the body is the handler's last value; the call completes with it (the request is
 * accepted right after). Saves the caller waiting for the request's acknowledgement.
 */
export const REPLY_FLAG_LAST = 0x2;

/**
 * CANCEL flag: the caller's deadline passed (rather than the caller unsubscribing), so the
 * handler's call ends with `SendTimeout`. Peers that do not know it read a plain cancel.
 */
export const CANCEL_FLAG_DEADLINE = 0x1;

/**
 * First taberna id reserved for Aurelia's own A2 services: the top 256 ids of the u64 space
 * (`0xFFFF_FFFF_FFFF_FF00` and above). Applications must not register tabernae there.
 */
export const RESERVED_TABERNA_ID_BASE: TabernaId = 0xffff_ffff_ffff_ff00n;
/** The taberna every domus uses to receive replies to its requests (in the reserved range). */
export const REPLY_TABERNA_ID: TabernaId = RESERVED_TABERNA_ID_BASE + 1n;

/** Longest reply address a request may carry, in UTF-8 bytes. */
export const REPLY_ADDRESS_MAX_BYTES = 1024;
/** Largest remaining deadline a request may carry (the engine's `sendTimeoutMs` maximum). */
export const REQUEST_TIMEOUT_MAX_MS = 300_000;

const U64_MAX = (1n << 64n) - 1n;
const REQUEST_HEADER = 1 + 1 + 8 + 8 + 4 + 2;
const REPLY_HEADER = 1 + 1 + 8 + 4;
const CANCEL_HEADER = 1 + 1 + 8 + 2;

/** A decoded REQUEST. */
export interface RequestFrame {
  readonly kind: 'request';
  readonly correlationId: bigint;
  /** Taberna on the caller's domus that receives the replies. */
  readonly replyTaberna: TabernaId;
  /** Time the caller still waits, in ms, when the request was encoded. */
  readonly remainingMs: number;
  /** Where the caller receives replies (`tls://host:port` or `unix:///path`). */
  readonly replyAddress: string;
  readonly body: Buffer;
}

/** A decoded REPLY. */
export interface ReplyFrame {
  readonly kind: 'reply';
  readonly correlationId: bigint;
  /** 0 for the first value of a call, then 1, 2, … */
  readonly seq: number;
  /** True when `body` is the handler's error (the call ends with it). */
  readonly error: boolean;
  /** True when `body` is the handler's last value (the call completes with it). */
  readonly last: boolean;
  readonly body: Buffer;
}

/** A decoded CANCEL. */
export interface CancelFrame {
  readonly kind: 'cancel';
  readonly correlationId: bigint;
  readonly replyAddress: string;
  /** Present and true when the caller cancels because its deadline passed. */
  readonly deadline?: boolean;
}

/** Anything a taberna serving request/reply may receive: a service frame or an A3 message. */
export type RequestReplyInbound<T> =
  RequestFrame | ReplyFrame | CancelFrame | { readonly kind: 'message'; readonly message: T };

/**
 * Encodes a REQUEST payload. Throws `AureliaError(EncodeFailure)` for an id out of the u64 range,
 * a `remainingMs` outside 1..300000 or a reply address longer than 1024 bytes.
 */
export function encodeRequest(frame: Omit<RequestFrame, 'kind'>): Buffer {
  checkU64(frame.correlationId, 'correlation id');
  checkU64(frame.replyTaberna, 'reply taberna id');
  if (
    !Number.isInteger(frame.remainingMs) ||
    frame.remainingMs < 1 ||
    frame.remainingMs > REQUEST_TIMEOUT_MAX_MS
  ) {
    throw new AureliaError(
      ErrorId.EncodeFailure,
      `request deadline must be an integer in 1..${REQUEST_TIMEOUT_MAX_MS} ms, got ${frame.remainingMs}`,
    );
  }
  const addr = addressBytes(frame.replyAddress);
  const out = Buffer.allocUnsafe(REQUEST_HEADER + addr.length + frame.body.length);
  out[0] = REQUEST_REPLY_WIRE_VERSION;
  out[1] = 0;
  out.writeBigUInt64BE(frame.correlationId, 2);
  out.writeBigUInt64BE(frame.replyTaberna, 10);
  out.writeUInt32BE(frame.remainingMs, 18);
  out.writeUInt16BE(addr.length, 22);
  addr.copy(out, REQUEST_HEADER);
  frame.body.copy(out, REQUEST_HEADER + addr.length);
  return out;
}

/** Encodes a REPLY payload. Throws `AureliaError(EncodeFailure)` for ids out of range. */
export function encodeReply(frame: Omit<ReplyFrame, 'kind'>): Buffer {
  checkU64(frame.correlationId, 'correlation id');
  if (!Number.isInteger(frame.seq) || frame.seq < 0 || frame.seq > 0xffff_ffff) {
    throw new AureliaError(ErrorId.EncodeFailure, `reply seq must be a u32, got ${frame.seq}`);
  }
  const out = Buffer.allocUnsafe(REPLY_HEADER + frame.body.length);
  out[0] = REQUEST_REPLY_WIRE_VERSION;
  out[1] = (frame.error ? REPLY_FLAG_ERROR : 0) | (frame.last ? REPLY_FLAG_LAST : 0);
  out.writeBigUInt64BE(frame.correlationId, 2);
  out.writeUInt32BE(frame.seq, 10);
  frame.body.copy(out, REPLY_HEADER);
  return out;
}

/** Encodes a CANCEL payload. Throws `AureliaError(EncodeFailure)` for bad ids or addresses. */
export function encodeCancel(frame: Omit<CancelFrame, 'kind'>): Buffer {
  checkU64(frame.correlationId, 'correlation id');
  const addr = addressBytes(frame.replyAddress);
  const out = Buffer.allocUnsafe(CANCEL_HEADER + addr.length);
  out[0] = REQUEST_REPLY_WIRE_VERSION;
  out[1] = frame.deadline === true ? CANCEL_FLAG_DEADLINE : 0;
  out.writeBigUInt64BE(frame.correlationId, 2);
  out.writeUInt16BE(addr.length, 10);
  addr.copy(out, CANCEL_HEADER);
  return out;
}

/**
 * Decodes a REQUEST payload (the body is a view, not a copy). Throws `AureliaError(DecodeFailure)`
 * naming what is wrong: short payload, unknown version, zero or oversize deadline, bad address.
 */
export function decodeRequest(payload: Buffer): RequestFrame {
  checkHeader(payload, REQUEST_HEADER, 'REQUEST');
  const remainingMs = payload.readUInt32BE(18);
  if (remainingMs < 1 || remainingMs > REQUEST_TIMEOUT_MAX_MS) {
    throw new AureliaError(
      ErrorId.DecodeFailure,
      `REQUEST deadline ${remainingMs} ms is outside 1..${REQUEST_TIMEOUT_MAX_MS}`,
    );
  }
  const addrLen = payload.readUInt16BE(22);
  const replyAddress = readAddress(payload, REQUEST_HEADER, addrLen, 'REQUEST');
  return {
    kind: 'request',
    correlationId: payload.readBigUInt64BE(2),
    replyTaberna: payload.readBigUInt64BE(10),
    remainingMs,
    replyAddress,
    body: payload.subarray(REQUEST_HEADER + addrLen),
  };
}

/** Decodes a REPLY payload. Throws `AureliaError(DecodeFailure)` when malformed. */
export function decodeReply(payload: Buffer): ReplyFrame {
  checkHeader(payload, REPLY_HEADER, 'REPLY');
  return {
    kind: 'reply',
    correlationId: payload.readBigUInt64BE(2),
    seq: payload.readUInt32BE(10),
    error: (payload[1] & REPLY_FLAG_ERROR) !== 0,
    last: (payload[1] & REPLY_FLAG_LAST) !== 0,
    body: payload.subarray(REPLY_HEADER),
  };
}

/** Decodes a CANCEL payload. Throws `AureliaError(DecodeFailure)` when malformed. */
export function decodeCancel(payload: Buffer): CancelFrame {
  checkHeader(payload, CANCEL_HEADER, 'CANCEL');
  const addrLen = payload.readUInt16BE(10);
  if (payload.length !== CANCEL_HEADER + addrLen) {
    throw new AureliaError(
      ErrorId.DecodeFailure,
      `CANCEL payload is ${payload.length} bytes, expected ${CANCEL_HEADER + addrLen}`,
    );
  }
  const frame: CancelFrame = {
    kind: 'cancel',
    correlationId: payload.readBigUInt64BE(2),
    replyAddress: readAddress(payload, CANCEL_HEADER, addrLen, 'CANCEL'),
  };
  return (payload[1] & CANCEL_FLAG_DEADLINE) === 0 ? frame : { ...frame, deadline: true };
}

/**
 * Taberna codec for tabernae that serve request/reply: REQUEST, REPLY and CANCEL decode to their
 * frames, every other message type goes to `inner` (when given) as `{ kind: 'message' }`.
 * `decodeApp` throws `AureliaError(DecodeFailure)` for a malformed frame, or for a message type
 * this codec does not know and no `inner` codec takes.
 */
export class RequestReplyCodec<T = never> implements MessageCodec<RequestReplyInbound<T>> {
  constructor(private readonly inner?: MessageCodec<T>) {}

  /** Encodes a frame or, through `inner`, an application message. */
  encodeApp(msg: RequestReplyInbound<T>): EncodedMessage {
    switch (msg.kind) {
      case 'request':
        return { msgType: REQUEST_MESSAGE_TYPE, payload: encodeRequest(msg) };
      case 'reply':
        return { msgType: REPLY_MESSAGE_TYPE, payload: encodeReply(msg) };
      case 'cancel':
        return { msgType: CANCEL_MESSAGE_TYPE, payload: encodeCancel(msg) };
      case 'message':
        if (!this.inner) {
          throw new AureliaError(ErrorId.EncodeFailure, 'no codec for application messages');
        }
        return this.inner.encodeApp(msg.message);
    }
  }

  /** Decodes by message type; see the class comment for failures. */
  decodeApp(msgType: number, payload: Buffer): RequestReplyInbound<T> {
    switch (msgType) {
      case REQUEST_MESSAGE_TYPE:
        return decodeRequest(payload);
      case REPLY_MESSAGE_TYPE:
        return decodeReply(payload);
      case CANCEL_MESSAGE_TYPE:
        return decodeCancel(payload);
      default:
        if (!this.inner) {
          throw new AureliaError(
            ErrorId.DecodeFailure,
            `message type ${msgType} is not a request/reply message`,
          );
        }
        return { kind: 'message', message: this.inner.decodeApp(msgType, payload) };
    }
  }
}

function checkU64(value: bigint, what: string): void {
  if (typeof value !== 'bigint' || value < 0n || value > U64_MAX) {
    throw new AureliaError(ErrorId.EncodeFailure, `${what} must be a u64 bigint`);
  }
}

function addressBytes(address: string): Buffer {
  const bytes = Buffer.from(address, 'utf8');
  if (bytes.length === 0 || bytes.length > REPLY_ADDRESS_MAX_BYTES) {
    throw new AureliaError(
      ErrorId.EncodeFailure,
      `reply address must be 1..${REPLY_ADDRESS_MAX_BYTES} UTF-8 bytes, got ${bytes.length}`,
    );
  }
  return bytes;
}

function checkHeader(payload: Buffer, header: number, what: string): void {
  if (payload.length < header) {
    throw new AureliaError(
      ErrorId.DecodeFailure,
      `${what} payload is ${payload.length} bytes, shorter than its ${header}-byte header`,
    );
  }
  if (payload[0] !== REQUEST_REPLY_WIRE_VERSION) {
    throw new AureliaError(
      ErrorId.DecodeFailure,
      `${what} has version ${payload[0]}, this domus speaks version ${REQUEST_REPLY_WIRE_VERSION}`,
    );
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function readAddress(payload: Buffer, at: number, len: number, what: string): string {
  if (len === 0 || len > REPLY_ADDRESS_MAX_BYTES || at + len > payload.length) {
    throw new AureliaError(
      ErrorId.DecodeFailure,
      `${what} reply address length ${len} is outside 1..${REPLY_ADDRESS_MAX_BYTES} or past the payload`,
    );
  }
  try {
    return utf8.decode(payload.subarray(at, at + len));
  } catch (err) {
    throw new AureliaError(ErrorId.DecodeFailure, `${what} reply address is not valid UTF-8`, {
      cause: err,
    });
  }
}
