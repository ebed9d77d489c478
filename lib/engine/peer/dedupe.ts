// One remote sender session's inbound message ids: which are new, still being decided, decided
// (with the outcome to re-send) or forgotten. Pure: no sockets, no timers; the time is passed in.
import { AureliaError, ErrorId } from '../errors.js';
import { MAX_MESSAGE_ID, type MessageId, NO_MESSAGE_ID, idAfter, isMessageId } from './serial.js';

/**
 * What `observe` found out about an incoming message id:
 * - `new`: first sight; the id is now recorded as in progress and the owner delivers the message.
 * - `in-progress`: a replay of a message the application has not decided yet; drop it, the
 *   decision will be sent when it comes.
 * - `decided`: a replay of a decided message; re-send `outcome`, do not deliver again.
 * - `forgotten`: an id at or before the highest seen with no record (its record was evicted, or
 *   it never arrived while later ids did): the outcome is unknown, answer with an error rather
 *   than risk delivering the message twice.
 */
export type DedupeObservation<O> =
  | { readonly kind: 'new' }
  | { readonly kind: 'in-progress' }
  | { readonly kind: 'decided'; readonly outcome: O }
  | { readonly kind: 'forgotten' };

/** Construction options of a `DedupeWindow`. */
export interface DedupeWindowOptions {
  /**
   * How long (ms) a decided record is kept after its decision so replays can be answered; the
   * owner passes 2 × `sendTimeoutMs`, after which no sender still retries. Finite, ≥ 0.
   */
  readonly retentionMs: number;
  /** Most decided records kept; beyond it the oldest decisions are forgotten first. Integer ≥ 1. */
  readonly maxDecided: number;
}

const NEW: DedupeObservation<never> = Object.freeze({ kind: 'new' });
const IN_PROGRESS: DedupeObservation<never> = Object.freeze({ kind: 'in-progress' });
const FORGOTTEN: DedupeObservation<never> = Object.freeze({ kind: 'forgotten' });

// One id's record. Decided records form a queue in decision order (`next`), which is also the
// order they fall due in when the clock does not go backwards, so eviction only looks at the head.
class DedupeRecord<O> {
  /** The answer to a replay once decided; `undefined` while in progress. */
  decided: DedupeObservation<O> | undefined = undefined;
  decidedAt = 0;
  next: DedupeRecord<O> | undefined = undefined;

  constructor(readonly id: MessageId) {}
}

/**
 * Remembers, for one remote sender session (identity + session epoch), which message ids were
 * delivered and how the application decided them, so a replayed message is answered again
 * instead of being delivered twice.
 *
 * First transmissions arrive with serially increasing ids, so any id after the highest seen is
 * new and anything at or before it without a record is forgotten. In-progress records are never
 * evicted; decided records are kept `retentionMs` after the decision and at most `maxDecided` of
 * them. Every operation is O(1) amortized. `now` must not go backwards (use a monotonic clock);
 * if it does, records are kept longer, never dropped early.
 */
export class DedupeWindow<O> {
  /** Decided records are kept this long (ms) after their decision. */
  readonly retentionMs: number;
  /** Most decided records kept at once. */
  readonly maxDecided: number;
  private readonly records = new Map<MessageId, DedupeRecord<O>>();
  private oldestDecided: DedupeRecord<O> | undefined = undefined;
  private newestDecided: DedupeRecord<O> | undefined = undefined;
  private decidedTotal = 0;
  private inProgressTotal = 0;
  private evictedTotal = 0;
  private highest: MessageId = NO_MESSAGE_ID;
  private lastDecided: { readonly kind: 'decided'; readonly outcome: O } | undefined = undefined;

  /**
   * Throws `AureliaError(InvalidConfig)` when `retentionMs` is not a finite number ≥ 0 or
   * `maxDecided` not an integer ≥ 1.
   */
  constructor(options: DedupeWindowOptions) {
    const { retentionMs, maxDecided } = options;
    if (typeof retentionMs !== 'number' || !Number.isFinite(retentionMs) || retentionMs < 0) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `dedupe retentionMs must be a finite number ≥ 0, got ${String(retentionMs)}`,
      );
    }
    if (!Number.isSafeInteger(maxDecided) || maxDecided < 1) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `dedupe maxDecided must be an integer ≥ 1, got ${String(maxDecided)}`,
      );
    }
    this.retentionMs = retentionMs;
    this.maxDecided = maxDecided;
  }

  /**
   * Classifies an incoming message id (see `DedupeObservation`); a `new` id is recorded as in
   * progress. Records whose retention ran out by `now` are evicted first. Throws
   * `AureliaError(ProtocolViolation)` for 0 or anything that is not a u32 id: the sender broke
   * the protocol.
   */
  observe(id: number, now: number): DedupeObservation<O> {
    if (!isMessageId(id)) {
      throw new AureliaError(
        ErrorId.ProtocolViolation,
        `message id ${String(id)} is not a usable id (1..${MAX_MESSAGE_ID})`,
      );
    }
    this.evictExpired(now);
    const record = this.records.get(id);
    if (record !== undefined) return record.decided ?? IN_PROGRESS;
    if (!idAfter(id, this.highest)) return FORGOTTEN;
    this.records.set(id, new DedupeRecord<O>(id));
    this.inProgressTotal++;
    this.highest = id;
    return NEW;
  }

  /**
   * Records the application's decision for an in-progress id, to be returned by `observe` for
   * replays until evicted. Returns `false` and changes nothing when the id is not in progress
   * (never observed, forgotten, or already decided: the first decision stands). Past `maxDecided`
   * the oldest decided record is evicted at once.
   */
  decide(id: MessageId, outcome: O, now: number): boolean {
    this.evictExpired(now);
    const record = this.records.get(id);
    if (record === undefined || record.decided !== undefined) return false;
    // Owners share one outcome object for the common answer (an accept), so its observation is
    // made once instead of once per message.
    if (this.lastDecided === undefined || this.lastDecided.outcome !== outcome) {
      this.lastDecided = Object.freeze({ kind: 'decided', outcome });
    }
    record.decided = this.lastDecided;
    record.decidedAt = now;
    if (this.newestDecided) this.newestDecided.next = record;
    else this.oldestDecided = record;
    this.newestDecided = record;
    this.inProgressTotal--;
    this.decidedTotal++;
    this.evictOverflow();
    return true;
  }

  /**
   * Evicts decided records whose retention ran out (decided at or before `now - retentionMs`) and,
   * beyond `maxDecided`, the oldest decided records. In-progress records stay. Returns how many
   * records were evicted.
   */
  expire(now: number): number {
    const before = this.evictedTotal;
    this.evictExpired(now);
    this.evictOverflow();
    return this.evictedTotal - before;
  }

  /** When the oldest decided record falls due for eviction, or `undefined` when none is decided. */
  nextExpiry(): number | undefined {
    return this.oldestDecided === undefined
      ? undefined
      : this.oldestDecided.decidedAt + this.retentionMs;
  }

  /** Records held (in progress and decided). */
  get size(): number {
    return this.records.size;
  }

  /** Messages delivered and not yet decided. */
  get inProgressCount(): number {
    return this.inProgressTotal;
  }

  /** Decided records still held. */
  get decidedCount(): number {
    return this.decidedTotal;
  }

  /** Decided records evicted since construction. */
  get evictedCount(): number {
    return this.evictedTotal;
  }

  /** The highest id observed as new, or `NO_MESSAGE_ID` before the first. */
  get highestSeen(): MessageId {
    return this.highest;
  }

  private evictExpired(now: number): void {
    const horizon = now - this.retentionMs;
    while (this.oldestDecided !== undefined && this.oldestDecided.decidedAt <= horizon) {
      this.evictOldest();
    }
  }

  private evictOverflow(): void {
    while (this.decidedTotal > this.maxDecided) this.evictOldest();
  }

  private evictOldest(): void {
    const record = this.oldestDecided as DedupeRecord<O>;
    this.oldestDecided = record.next;
    if (this.oldestDecided === undefined) this.newestDecided = undefined;
    record.next = undefined;
    this.records.delete(record.id);
    this.decidedTotal--;
    this.evictedTotal++;
  }
}
