// The domus-wide blob buffer reservations, outbound and inbound.
import { AureliaError, ErrorId } from '../errors.js';
import type { DomusConfig } from '../config.js';

/** Frees a reservation (idempotent). */
export type BlobReservationRelease = () => void;

/** One remote peer session's share of the inbound buffer (its `InboundBudget`). */
export interface BlobHolder {
  blobReservedBytes: number;
}

/**
 * Reserves one stream's worth of blob buffer (chunk size × ack window of the larger transport
 * window) against `blobOutboundBufferBytes` / `blobInboundBufferBytes`; an inbound stream is
 * also counted against its peer session's `maxBlobInboundBytesPerPeer`, so no peer can take the
 * whole inbound buffer.
 */
export class BlobBudget {
  private outbound = 0;
  private inbound = 0;

  constructor(private readonly config: () => DomusConfig) {}

  /**
   * Throws `BlobBufferFull` when the stream does not fit (in the domus buffer, or in `holder`'s
   * per-peer share for an inbound stream); returns an idempotent release.
   */
  reserve(direction: 'outbound' | 'inbound', holder?: BlobHolder): BlobReservationRelease {
    const c = this.config();
    const bytes = Math.max(
      c.tcpBlobWindow.chunkSize * c.tcpBlobWindow.ackWindow,
      c.socketBlobWindow.chunkSize * c.socketBlobWindow.ackWindow,
    );
    const limit = direction === 'outbound' ? c.blobOutboundBufferBytes : c.blobInboundBufferBytes;
    const used = direction === 'outbound' ? this.outbound : this.inbound;
    if (used + bytes > limit) {
      throw new AureliaError(
        ErrorId.BlobBufferFull,
        `a new ${direction} blob stream needs ${bytes} bytes of buffer; ${used} of ${limit} (blob${direction === 'outbound' ? 'Outbound' : 'Inbound'}BufferBytes) are taken`,
      );
    }
    if (holder && holder.blobReservedBytes + bytes > c.maxBlobInboundBytesPerPeer) {
      throw new AureliaError(
        ErrorId.BlobBufferFull,
        `a new inbound blob stream needs ${bytes} bytes of buffer; this peer already holds ${holder.blobReservedBytes} of its ${c.maxBlobInboundBytesPerPeer} (maxBlobInboundBytesPerPeer)`,
      );
    }
    this.add(direction, bytes);
    if (holder) holder.blobReservedBytes += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.add(direction, -bytes);
      if (holder) holder.blobReservedBytes -= bytes;
    };
  }

  private add(direction: 'outbound' | 'inbound', bytes: number): void {
    if (direction === 'outbound') this.outbound += bytes;
    else this.inbound += bytes;
  }
}
