// What one remote peer session holds in this domus: undecided messages, their bytes, blob buffer.
// Pure: no sockets, no timers; the owner pauses and resumes reading on what it answers.
import type { DomusConfig } from '../config.js';

/** The limits an `InboundBudget` reads, live, each time it is consulted. */
export type InboundLimits = Pick<DomusConfig, 'maxInFlightPerPeer' | 'maxQueuedBytesPerPeer'>;

/**
 * Counts what one remote sender session has in this domus's hands: messages delivered to
 * tabernae and not yet decided, with their payload bytes, the full tabernae in which it has its
 * whole overflow share waiting, and the blob buffer reserved for its accepted streams. The session takes a message's share when it delivers the message and gives it
 * back at the decision; while `exhausted`, the session's callis is not read, so a peer that
 * floods a domus only ever waits on itself. A message is always admitted while nothing is held,
 * so one larger than `maxQueuedBytesPerPeer` still gets through alone.
 */
export class InboundBudget {
  private messages = 0;
  private bytes = 0;
  /** Bytes of the inbound blob buffer this session's accepted streams hold reserved. */
  blobReservedBytes = 0;
  /** Full tabernae in which this session has its whole overflow share waiting for room. */
  fullOverflowShares = 0;

  constructor(private readonly limits: () => InboundLimits) {}

  /** Messages delivered and not yet decided. */
  get inFlight(): number {
    return this.messages;
  }

  /** Payload bytes of those messages. */
  get queuedBytes(): number {
    return this.bytes;
  }

  /** True when the session holds as much as its limits allow: stop reading its callis. */
  get exhausted(): boolean {
    const limits = this.limits();
    return (
      this.messages >= limits.maxInFlightPerPeer ||
      this.bytes >= limits.maxQueuedBytesPerPeer ||
      this.fullOverflowShares > 0
    );
  }

  /** Counts a delivered message of `payloadBytes`; returns `exhausted` afterwards. */
  take(payloadBytes: number): boolean {
    this.messages++;
    this.bytes += payloadBytes;
    return this.exhausted;
  }

  /**
   * Gives back a decided message's share; returns true when the budget has room again (reading
   * may resume).
   */
  give(payloadBytes: number): boolean {
    this.messages--;
    this.bytes -= payloadBytes;
    return !this.exhausted;
  }
}
