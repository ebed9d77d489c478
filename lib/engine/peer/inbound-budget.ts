// What one remote peer session, and all sessions of one identity together, hold in this domus.
// Pure: no sockets, no timers; the owner pauses and resumes reading on what it answers.
import type { DomusConfig } from '../config.js';

/** The limits the budgets read, live, each time they are consulted. */
export type InboundLimits = Pick<
  DomusConfig,
  'maxInFlightPerPeer' | 'maxQueuedBytesPerPeer' | 'maxParallelCallisPerPeer'
>;

/** Something that pauses or resumes its reads when a budget it shares changes. */
export interface BudgetMember {
  applyLimits(): void;
}

/**
 * What every session of one remote identity holds together: at most `maxParallelCallisPerPeer`
 * times the per-session limits. Replicas sharing an identity (up to that many live callis) each
 * keep a whole budget, but a member that reconnects again and again under new session epochs
 * cannot multiply its budget: undecided messages of its old sessions still count here.
 */
export class IdentityBudget {
  private messages = 0;
  private bytes = 0;
  /** Sessions sharing this budget; told to re-check when it has room again. */
  readonly members = new Set<BudgetMember>();

  constructor(private readonly limits: () => InboundLimits) {}

  /** True when the identity's sessions together hold as much as they may. */
  get exhausted(): boolean {
    const limits = this.limits();
    const sessions = limits.maxParallelCallisPerPeer;
    return (
      this.messages >= limits.maxInFlightPerPeer * sessions ||
      this.bytes >= limits.maxQueuedBytesPerPeer * sessions
    );
  }

  /** @internal Counted by a member session's `InboundBudget`. */
  add(messages: number, bytes: number): void {
    this.messages += messages;
    this.bytes += bytes;
  }
}

/**
 * Counts what one remote sender session has in this domus's hands: messages delivered to
 * tabernae and not yet decided, with their payload bytes, the full tabernae in which it has its
 * whole overflow share waiting, and the blob buffer reserved for its accepted streams. The
 * session takes a message's share when it delivers the message and gives it back at the
 * decision; while `exhausted` (or its identity's budget is), the session's callis is not read, so
 * a peer that floods a domus only ever waits on itself. A message is always admitted while
 * nothing is held, so one larger than `maxQueuedBytesPerPeer` still gets through alone.
 */
export class InboundBudget {
  private messages = 0;
  private bytes = 0;
  /** Bytes of the inbound blob buffer this session's accepted streams hold reserved. */
  blobReservedBytes = 0;
  /** Full tabernae in which this session has its whole overflow share waiting for room. */
  fullOverflowShares = 0;

  constructor(
    private readonly limits: () => InboundLimits,
    /** The budget shared with the other sessions of the same identity, if any. */
    readonly identity?: IdentityBudget,
  ) {}

  /** Messages delivered and not yet decided. */
  get inFlight(): number {
    return this.messages;
  }

  /** Payload bytes of those messages. */
  get queuedBytes(): number {
    return this.bytes;
  }

  /** True when the session, or its identity, holds as much as allowed: stop reading its callis. */
  get exhausted(): boolean {
    const limits = this.limits();
    return (
      this.messages >= limits.maxInFlightPerPeer ||
      this.bytes >= limits.maxQueuedBytesPerPeer ||
      this.fullOverflowShares > 0 ||
      this.identity?.exhausted === true
    );
  }

  /** Counts a delivered message of `payloadBytes`; returns `exhausted` afterwards. */
  take(payloadBytes: number): boolean {
    this.messages++;
    this.bytes += payloadBytes;
    this.identity?.add(1, payloadBytes);
    return this.exhausted;
  }

  /**
   * Gives back a decided message's share; returns true when the budget has room again (reading
   * may resume). When this gives the identity's budget room again, its other members are told to
   * re-check.
   */
  give(payloadBytes: number): boolean {
    this.messages--;
    this.bytes -= payloadBytes;
    const identity = this.identity;
    if (identity !== undefined) {
      const wasExhausted = identity.exhausted;
      identity.add(-1, -payloadBytes);
      if (wasExhausted && !identity.exhausted) {
        for (const member of identity.members) member.applyLimits();
      }
    }
    return !this.exhausted;
  }
}
