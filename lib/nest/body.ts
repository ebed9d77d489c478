// Nest packets as bytes: the configured codec's message type and payload in one Buffer.
import { AureliaError, ErrorId } from '../engine/errors.js';
import type { MessageCodec } from '../engine/codec.js';

/**
 * Turns serialized Nest packets into request/reply bodies and back: `msgType u32 | payload`, so
 * the codec sees the same (type, payload) pair it produced.
 */
export class PacketBodyCodec {
  constructor(readonly codec: MessageCodec<unknown>) {}

  /** Encodes `value`; throws `AureliaError(EncodeFailure)` naming the codec's complaint. */
  encode(value: unknown): Buffer {
    let encoded;
    try {
      encoded = this.codec.encodeApp(value);
    } catch (err) {
      throw asAurelia(err, ErrorId.EncodeFailure, 'the codec could not encode the packet');
    }
    const out = Buffer.allocUnsafe(4 + encoded.payload.length);
    out.writeUInt32BE(encoded.msgType >>> 0, 0);
    encoded.payload.copy(out, 4);
    return out;
  }

  /** Decodes a body; throws `AureliaError(DecodeFailure)` when it is short or the codec fails. */
  decode(body: Buffer): unknown {
    if (body.length < 4) {
      throw new AureliaError(
        ErrorId.DecodeFailure,
        `a packet body of ${body.length} bytes is too short`,
      );
    }
    try {
      return this.codec.decodeApp(body.readUInt32BE(0), body.subarray(4));
    } catch (err) {
      throw asAurelia(err, ErrorId.DecodeFailure, 'the codec could not decode the packet');
    }
  }
}

/** Returns `err` if it is an `AureliaError`, else wraps it as `kind` with `what` and its text. */
export function asAurelia(err: unknown, kind: ErrorId, what: string): AureliaError {
  if (AureliaError.is(err)) return err;
  return new AureliaError(kind, `${what}: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}
