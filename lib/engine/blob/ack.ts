// Blob acknowledgements: on a blob callis an ack frame lists (stream, next expected chunk) pairs.
// Also the error frame that ends one stream.
import { AureliaError, ErrorId } from '../errors.js';
import { encodeAck, encodeError } from '../wire/control.js';
import { MAX_ACK_IDS_PER_FRAME, type OutboundFrame } from '../wire/frame.js';

/** One cumulative stream acknowledgement: every chunk below `nextExpected` was consumed. */
export interface BlobAck {
  readonly requestMsgId: number;
  readonly nextExpected: bigint;
}

const WORDS_PER_ACK = 3;
/** Stream acks one frame carries (each is three u32 ids). */
export const BLOB_ACKS_PER_FRAME = Math.floor(MAX_ACK_IDS_PER_FRAME / WORDS_PER_ACK);
const U32 = 0x1_0000_0000n;

/**
 * Encodes blob acks as ack frames. On a blob callis the ack's u32 ids come in triples:
 * `requestMsgId`, then the next expected chunk id's high and low 32 bits.
 */
export function encodeBlobAcks(acks: readonly BlobAck[]): OutboundFrame[] {
  const frames: OutboundFrame[] = [];
  for (let start = 0; start < acks.length; start += BLOB_ACKS_PER_FRAME) {
    const ids: number[] = [];
    for (const ack of acks.slice(start, start + BLOB_ACKS_PER_FRAME)) {
      ids.push(ack.requestMsgId, Number(ack.nextExpected / U32), Number(ack.nextExpected % U32));
    }
    frames.push(encodeAck(ids));
  }
  return frames;
}

/**
 * Reads the stream acks of a decoded blob-callis ack (`decodeAck`'s ids). Throws
 * `ProtocolViolation` when the ids do not form whole triples.
 */
export function decodeBlobAcks(ids: readonly number[]): BlobAck[] {
  if (ids.length % WORDS_PER_ACK !== 0) {
    throw new AureliaError(
      ErrorId.ProtocolViolation,
      `a blob ack carries ${ids.length} ids, not whole (stream, chunk high, chunk low) triples`,
    );
  }
  const acks: BlobAck[] = [];
  for (let i = 0; i < ids.length; i += WORDS_PER_ACK) {
    acks.push({
      requestMsgId: ids[i]!,
      nextExpected: BigInt(ids[i + 1]!) * U32 + BigInt(ids[i + 2]!),
    });
  }
  return acks;
}

/**
 * The error frame that ends the stream of request `requestMsgId` with `err` at the other end
 * (`peerMsgId` names the stream; the message is cut to fit the frame).
 */
export function encodeStreamError(requestMsgId: number, err: AureliaError): OutboundFrame {
  return encodeError({
    errorId: err.kind,
    message: err.message.slice(0, 1000),
    peerMsgId: requestMsgId,
  });
}
