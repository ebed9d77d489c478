// What one remote peer session, and all sessions of this domus together, hold in this domus.
// Pure: no sockets, no timers; the owner pauses and resumes reading on what it answers.
import type { DomusConfig } from '../config.js';

/** The limits the budgets read, live, each time they are consulted. */
export type InboundLimits = Pick<
  DomusConfig,
  'maxInFlightPerPeer' | 'maxQueuedBytesPerPeer' | 'maxInFlightTotal' | 'maxQueuedBytesTotal'
>;

/** Something that pauses or resumes its reads when a budget it shares changes. */
export interface BudgetMember {
  applyLimits(): void;
}

/**
 * What every inbound session of the domus holds together, closed sessions' undecided messages
 * included: the domus-wide ceiling (`maxInFlightTotal`, `maxQueuedBytesTotal`). Limits are never
 * counted per identity — a thousand replicas of one caller are a thousand sessions, each with a
 * whole budget — so this ceiling is what keeps a member that reconnects again and again under new
 * session epochs (its old sessions' messages still undecided) from holding without bound. At the
 * ceiling every session that holds anything stops being read; one that holds nothing still gets
 * one message in, so no session is shut out, and a new session per message costs its sender a
 * TLS handshake.
 */
export class DomusBudget {
  private messages = 0;
  private bytes = 0;
  /** Live sessions; told to re-check when the ceiling has room again. */
  readonly members = new Set<BudgetMember>();

  constructor(private readonly limits: () => InboundLimits) {}

  /** Messages delivered by every session and not yet decided. */
  get inFlight(): number {
    return this.messages;
  }

  /** True when the sessions together hold as much as the domus allows. */
  get atCeiling(): boolean {
    const limits = this.limits();
    return this.messages >= limits.maxInFlightTotal || this.bytes >= limits.maxQueuedBytesTotal;
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
 * decision; while `exhausted` (or the domus is at its ceiling and the session holds something),
 * the session's callis is not read, so
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
    /** The domus-wide ceiling shared with every other session, if any. */
    readonly shared?: DomusBudget,
  ) {}

  /** Messages delivered and not yet decided. */
  get inFlight(): number {
    return this.messages;
  }

  /** Payload bytes of those messages. */
  get queuedBytes(): number {
    return this.bytes;
  }

  /**
   * True when the session holds as much as allowed, or holds anything while the domus is at its
   * ceiling: stop reading its callis.
   */
  get exhausted(): boolean {
    const limits = this.limits();
    return (
      this.messages >= limits.maxInFlightPerPeer ||
      this.bytes >= limits.maxQueuedBytesPerPeer ||
      this.fullOverflowShares > 0 ||
      (this.messages > 0 && this.shared?.atCeiling === true)
    );
  }

  /** Counts a delivered message of `payloadBytes`; returns `exhausted` afterwards. */
  take(payloadBytes: number): boolean {
    this.messages++;
    this.bytes += payloadBytes;
    this.shared?.add(1, payloadBytes);
    return this.exhausted;
  }

  /**
   * Gives back a decided message's share; returns true when the budget has room again (reading
   * may resume). When this takes the domus below its ceiling, every live session is told to
   * re-check.
   */
  give(payloadBytes: number): boolean {
    this.messages--;
    this.bytes -= payloadBytes;
    const shared = this.shared;
    if (shared !== undefined) {
      const wasAtCeiling = shared.atCeiling;
      shared.add(-1, -payloadBytes);
      if (wasAtCeiling && !shared.atCeiling) {
        for (const member of shared.members) member.applyLimits();
      }
    }
    return !this.exhausted;
  }
}
