// Raw wire bytes as a hostile peer could write them, and byte streams cut into pieces.
import { HEADER_LEN, WIRE_VERSION } from '../../lib/engine/wire/frame.js';

/** The fields of a frame header, any of which may be invalid; the rest are written as zero. */
export interface RawHeader {
  /** Default: the current wire version. */
  version?: number;
  flags?: number;
  msgType: number;
  peerMsgId?: number;
  srcTaberna?: bigint;
  dstTaberna?: bigint;
  payloadLen: number;
}

/** A frame header written byte by byte, bypassing every check an honest encoder makes. */
export function rawHeader(h: RawHeader): Buffer {
  const out = Buffer.alloc(HEADER_LEN);
  out.writeUInt16BE(h.version ?? WIRE_VERSION, 0);
  out.writeUInt16BE(h.flags ?? 0, 2);
  out.writeUInt32BE(h.msgType >>> 0, 4);
  out.writeUInt32BE(h.peerMsgId ?? 0, 8);
  out.writeBigUInt64BE(h.srcTaberna ?? 0n, 12);
  out.writeBigUInt64BE(h.dstTaberna ?? 0n, 20);
  out.writeUInt32BE(h.payloadLen >>> 0, 28);
  return out;
}

/**
 * Cuts `bytes` into consecutive views of the given sizes, cycling through them; a size of 0
 * yields an empty view (a push of nothing). With no positive size, the whole stream is one piece.
 */
export function split(bytes: Buffer, sizes: readonly number[]): Buffer[] {
  if (!sizes.some((size) => size > 0)) return [bytes];
  const out: Buffer[] = [];
  for (let pos = 0, i = 0; pos < bytes.length; i++) {
    const size = sizes[i % sizes.length]!;
    out.push(bytes.subarray(pos, pos + size));
    pos += size;
  }
  return out;
}
