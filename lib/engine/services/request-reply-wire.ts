// Wire form of the A2 request/reply service: the REQUEST payload (pure, no I/O).
import { AureliaError, ErrorId } from '../errors.js';
import type { EncodedMessage, MessageCodec } from '../codec.js';
import { A2_MESSAGE_TYPE_BASE, type MessageType, type TabernaId } from '../ids.js';

/**
 * A2 message type of a request, sent by the caller to the handler's taberna. Payload:
 * `version u8 (=2) | flags u8 (=0) | remainingMs u32 | body`. Its replies travel back as A1
 * `reply` frames on the callis the request arrived on, naming the request's message id, and the
 * last one is the request's decision: no reply address, no correlation id, no connection back.
 */
export const REQUEST_MESSAGE_TYPE: MessageType = A2_MESSAGE_TYPE_BASE + 1;

/** Version byte of a REQUEST payload. */
export const REQUEST_REPLY_WIRE_VERSION = 2;

/**
 * First taberna id reserved for Aurelia's own A2 services: the top 256 ids of the u64 space
 * (`0xFFFF_FFFF_FFFF_FF00` and above). Applications must not register tabernae there.
 */
export const RESERVED_TABERNA_ID_BASE: TabernaId = 0xffff_ffff_ffff_ff00n;

/** Largest remaining deadline a request may carry (the engine's `sendTimeoutMs` maximum). */
export const REQUEST_TIMEOUT_MAX_MS = 300_000;

const REQUEST_HEADER = 1 + 1 + 4;

/** A decoded REQUEST. */
export interface RequestFrame {
  readonly kind: 'request';
  /** Time the caller still waits, in ms, when the request was encoded. */
  readonly remainingMs: number;
  readonly body: Buffer;
}

/** Anything a taberna serving request/reply may receive: a request or an A3 message. */
export type RequestReplyInbound<T> =
  RequestFrame | { readonly kind: 'message'; readonly message: T };

/**
 * Encodes a REQUEST payload. Throws `AureliaError(EncodeFailure)` for a `remainingMs` outside
 * 1..300000.
 */
export function encodeRequest(frame: Omit<RequestFrame, 'kind'>): Buffer {
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
  const out = Buffer.allocUnsafe(REQUEST_HEADER + frame.body.length);
  out[0] = REQUEST_REPLY_WIRE_VERSION;
  out[1] = 0;
  out.writeUInt32BE(frame.remainingMs, 2);
  frame.body.copy(out, REQUEST_HEADER);
  return out;
}

/**
 * Decodes a REQUEST payload (the body is a view, not a copy). Throws `AureliaError(DecodeFailure)`
 * naming what is wrong: short payload, unknown version or flags, zero or oversize deadline.
 */
export function decodeRequest(payload: Buffer): RequestFrame {
  if (payload.length < REQUEST_HEADER) {
    throw new AureliaError(
      ErrorId.DecodeFailure,
      `REQUEST payload is ${payload.length} bytes, shorter than its ${REQUEST_HEADER}-byte header`,
    );
  }
  if (payload[0] !== REQUEST_REPLY_WIRE_VERSION) {
    throw new AureliaError(
      ErrorId.DecodeFailure,
      `REQUEST has version ${payload[0]}, this domus speaks version ${REQUEST_REPLY_WIRE_VERSION}`,
    );
  }
  if (payload[1] !== 0) {
    throw new AureliaError(
      ErrorId.DecodeFailure,
      `REQUEST has unknown flags 0x${payload[1].toString(16)}`,
    );
  }
  const remainingMs = payload.readUInt32BE(2);
  if (remainingMs < 1 || remainingMs > REQUEST_TIMEOUT_MAX_MS) {
    throw new AureliaError(
      ErrorId.DecodeFailure,
      `REQUEST deadline ${remainingMs} ms is outside 1..${REQUEST_TIMEOUT_MAX_MS}`,
    );
  }
  return { kind: 'request', remainingMs, body: payload.subarray(REQUEST_HEADER) };
}

/**
 * Taberna codec for tabernae that serve request/reply: REQUEST decodes to its frame, every other
 * message type goes to `inner` (when given) as `{ kind: 'message' }`. `decodeApp` throws
 * `AureliaError(DecodeFailure)` for a malformed request, or for a message type this codec does
 * not know and no `inner` codec takes.
 */
export class RequestReplyCodec<T = never> implements MessageCodec<RequestReplyInbound<T>> {
  constructor(private readonly inner?: MessageCodec<T>) {}

  /** Encodes a request or, through `inner`, an application message. */
  encodeApp(msg: RequestReplyInbound<T>): EncodedMessage {
    if (msg.kind === 'request') {
      return { msgType: REQUEST_MESSAGE_TYPE, payload: encodeRequest(msg) };
    }
    if (!this.inner) {
      throw new AureliaError(ErrorId.EncodeFailure, 'no codec for application messages');
    }
    return this.inner.encodeApp(msg.message);
  }

  /** Decodes by message type; see the class comment for failures. */
  decodeApp(msgType: number, payload: Buffer): RequestReplyInbound<T> {
    if (msgType === REQUEST_MESSAGE_TYPE) return decodeRequest(payload);
    if (!this.inner) {
      throw new AureliaError(
        ErrorId.DecodeFailure,
        `message type ${msgType} is not a request/reply message`,
      );
    }
    return { kind: 'message', message: this.inner.decodeApp(msgType, payload) };
  }
}
