// Translation between application messages and the (message type, payload) pairs on the wire.
import { inspect } from 'node:util';
import { AureliaError, ErrorId } from './errors.js';
import { a3MessageType, isMessageType, type MessageType } from './ids.js';

/** A message in wire form: its u32 message type and its payload bytes. */
export interface EncodedMessage {
  msgType: number;
  payload: Buffer;
}

/**
 * Translates application messages of type `T` to and from their wire form. `encodeApp` throws
 * `AureliaError(EncodeFailure)` for a message it cannot encode; `decodeApp` throws
 * `AureliaError(DecodeFailure)` for a message type or payload it cannot decode. A public send
 * additionally requires the message type to be in the A3 range (`a3MessageType`).
 */
export interface MessageCodec<T> {
  /** Encodes `msg`; throws `AureliaError(EncodeFailure)` when it cannot. */
  encodeApp(msg: T): EncodedMessage;
  /** Decodes a received message; throws `AureliaError(DecodeFailure)` when it cannot. */
  decodeApp(msgType: number, payload: Buffer): T;
}

/** Options of the built-in codecs. */
export interface CodecOptions {
  /** The one message type the codec writes and accepts (a u32); default `a3MessageType(0)`. */
  msgType?: MessageType;
}

// One strict decoder is enough: `decode` without `stream` keeps no state between calls.
const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Encodes messages as UTF-8 JSON under a single message type. `T` is not checked when decoding:
 * the decoded value is whatever the JSON holds, so validate it if the sender is not trusted to
 * send `T`. Encoding throws `AureliaError(EncodeFailure)` for values JSON cannot represent (a
 * circular structure, a bigint, a top-level `undefined`, function or symbol, a throwing
 * `toJSON`); decoding throws `AureliaError(DecodeFailure)` for another message type, invalid
 * UTF-8 or invalid JSON. The constructor throws `AureliaError(InvalidConfig)` for a `msgType`
 * that is not a u32.
 */
export class JsonCodec<T> implements MessageCodec<T> {
  /** The message type written by `encodeApp` and required by `decodeApp`. */
  readonly msgType: MessageType;

  constructor(options: CodecOptions = {}) {
    this.msgType = optionMsgType('JsonCodec', options);
  }

  /** Encodes `msg` as UTF-8 JSON; throws `AureliaError(EncodeFailure)` naming the cause. */
  encodeApp(msg: T): EncodedMessage {
    let text: string | undefined;
    try {
      text = JSON.stringify(msg);
    } catch (err) {
      throw new AureliaError(
        ErrorId.EncodeFailure,
        `JsonCodec cannot encode the message: ${errorText(err)}`,
        { cause: err },
      );
    }
    if (text === undefined) {
      throw new AureliaError(
        ErrorId.EncodeFailure,
        `JsonCodec cannot encode the message: a top-level ${typeof msg} has no JSON form`,
      );
    }
    return { msgType: this.msgType, payload: Buffer.from(text, 'utf8') };
  }

  /**
   * Decodes a JSON payload of this codec's message type; throws `AureliaError(DecodeFailure)`
   * for another type, invalid UTF-8 or invalid JSON.
   */
  decodeApp(msgType: number, payload: Buffer): T {
    checkIncomingType('JsonCodec', this.msgType, msgType);
    let text: string;
    try {
      text = utf8.decode(payload);
    } catch (err) {
      throw new AureliaError(
        ErrorId.DecodeFailure,
        `JsonCodec cannot decode message type ${msgType}: the payload is not valid UTF-8`,
        { cause: err },
      );
    }
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new AureliaError(
        ErrorId.DecodeFailure,
        `JsonCodec cannot decode message type ${msgType}: invalid JSON (${errorText(err)})`,
        { cause: err },
      );
    }
  }
}

/**
 * Passes `Buffer` payloads through unchanged under a single message type. Neither direction
 * copies: do not modify a Buffer after sending it until the send has settled, and a decoded
 * Buffer may be a view into a larger received chunk (copy it to keep a small part of it for
 * long). `encodeApp` throws `AureliaError(EncodeFailure)` for anything but a `Buffer`;
 * `decodeApp` throws `AureliaError(DecodeFailure)` for another message type. The constructor
 * throws `AureliaError(InvalidConfig)` for a `msgType` that is not a u32.
 */
export class BufferCodec implements MessageCodec<Buffer> {
  /** The message type written by `encodeApp` and required by `decodeApp`. */
  readonly msgType: MessageType;

  constructor(options: CodecOptions = {}) {
    this.msgType = optionMsgType('BufferCodec', options);
  }

  /** Wraps `msg` as the payload; throws `AureliaError(EncodeFailure)` if it is not a Buffer. */
  encodeApp(msg: Buffer): EncodedMessage {
    if (!Buffer.isBuffer(msg)) {
      throw new AureliaError(
        ErrorId.EncodeFailure,
        `BufferCodec encodes Buffers only, got ${describeKind(msg)}`,
      );
    }
    return { msgType: this.msgType, payload: msg };
  }

  /** Returns the payload; throws `AureliaError(DecodeFailure)` for another message type. */
  decodeApp(msgType: number, payload: Buffer): Buffer {
    checkIncomingType('BufferCodec', this.msgType, msgType);
    return payload;
  }
}

function optionMsgType(codec: string, options: CodecOptions): MessageType {
  if (typeof options !== 'object' || options === null) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${codec} options must be an object, got ${describeKind(options)}`,
    );
  }
  const { msgType = a3MessageType(0) } = options;
  if (typeof msgType !== 'number' || !isMessageType(msgType)) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${codec} msgType must be an integer in 0..4294967295 (u32), got ${inspect(msgType)}`,
    );
  }
  return msgType;
}

function checkIncomingType(codec: string, expected: MessageType, actual: number): void {
  if (actual !== expected) {
    throw new AureliaError(
      ErrorId.DecodeFailure,
      `${codec} decodes message type ${expected} only, got message type ${actual}`,
    );
  }
}

function describeKind(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value !== 'object') return typeof value;
  return value.constructor?.name ?? 'object';
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
