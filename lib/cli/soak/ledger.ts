// Sender and receiver ledgers of a fault run, and the rules that compare them.
import { AureliaError, ErrorId, errorIdName } from '../../engine/errors.js';

/** How one send ended, as its promise settled. */
export type LedgerOutcome =
  | { readonly ok: true; readonly at: number }
  | {
      readonly ok: false;
      readonly at: number;
      readonly kind: ErrorId | undefined;
      /** The error's message, naming what went wrong. */
      readonly reason: string;
    };

interface SendRecord {
  readonly deadline: number;
  settles: number;
  outcome: LedgerOutcome | undefined;
}

/** Reports how one send settled; see `DeliveryLedger.open`. */
export interface SettlementRecorder {
  /** The send succeeded (its promise resolved) now. */
  succeeded(): void;
  /** The send failed with `err` now. */
  failed(err: unknown): void;
}

/** What comparing the two sides of a ledger found. */
export interface LedgerReport {
  /** Sends recorded. */
  readonly sends: number;
  /** Sends that resolved (the remote application accepted). */
  readonly succeeded: number;
  /** Failed sends by error name (`SendTimeout`, `PeerRestarted`, ...). */
  readonly failed: Readonly<Record<string, number>>;
  /** Failed sends that the receiving application had nevertheless accepted. */
  readonly failedButDelivered: number;
  /** Sends that succeeded although no receiving application accepted them: lost messages. */
  readonly lost: number;
  /** Messages the receiving applications accepted. */
  readonly delivered: number;
  /**
   * Every broken rule, one line each (past 50, a last line counts the rest); empty when the run
   * kept every promise.
   */
  readonly mismatches: readonly string[];
  /** How many rules were broken in all, listed or not. */
  readonly mismatchCount: number;
}

/**
 * Failures after which the receiving application cannot have accepted the message: it refused
 * it, never got it, or it never left this domus.
 */
const NEVER_ACCEPTED = new Set<ErrorId>([
  ErrorId.RemoteTabernaRejected,
  ErrorId.Draining,
  ErrorId.TabernaBusy,
  ErrorId.UnknownTaberna,
  ErrorId.LocalQueueFull,
  ErrorId.EncodeFailure,
  ErrorId.DecodeFailure,
  ErrorId.BlobBufferFull,
]);

/** Most mismatch lines a report lists before summarising the rest. */
const MAX_LISTED = 50;

/**
 * Records both sides of every send of a fault run — how each send settled at the sender, and
 * which messages each receiving application accepted — and checks them against the delivery
 * contract:
 *
 * 1. every send settles exactly once, no later than its deadline plus `lateSlackMs`;
 * 2. a send that succeeded was accepted by the receiving application exactly once;
 * 3. no message is accepted more than once, and nothing is accepted that was not sent;
 * 4. a send that failed may or may not have been accepted (a lost ack), at most once — except a
 *    failure that proves the application refused or never saw it (`RemoteTabernaRejected`,
 *    `Draining`, `TabernaBusy`, `UnknownTaberna`, `LocalQueueFull`, `EncodeFailure`,
 *    `DecodeFailure`, `BlobBufferFull`), which
 *    must not be accepted at all.
 */
export class DeliveryLedger {
  private readonly sends = new Map<string, SendRecord>();
  private readonly accepted = new Map<string, number>();

  /**
   * @param lateSlackMs how far past its deadline a send may settle before it counts as late
   *   (timers and the event loop run late on a loaded machine); default 1 000 ms.
   */
  constructor(private readonly lateSlackMs = 1000) {}

  /** Number of sends recorded so far. */
  get size(): number {
    return this.sends.size;
  }

  /** Sends recorded and not yet settled. */
  get unsettled(): number {
    let n = 0;
    for (const record of this.sends.values()) if (record.settles === 0) n++;
    return n;
  }

  /**
   * Records send `key` whose promise is `sent` and whose deadline is `deadline` (epoch ms), and
   * resolves (never rejects) once it settled. Throws `AureliaError(InvalidConfig)` when `key` was
   * recorded before: keys must be unique for the comparison to mean anything.
   */
  track(key: string, deadline: number, sent: Promise<unknown>): Promise<void> {
    const settle = this.open(key, deadline);
    return sent.then(
      () => settle.succeeded(),
      (err: unknown) => settle.failed(err),
    );
  }

  /**
   * Records send `key` with its `deadline` (epoch ms) and returns the recorder of its outcome, for
   * a send that reports by callback or event rather than by one promise. Every call of the
   * recorder counts as a settlement: a send whose recorder is called twice breaks rule 1, and the
   * first outcome is the one judged. Throws `AureliaError(InvalidConfig)` when `key` was recorded
   * before.
   */
  open(key: string, deadline: number): SettlementRecorder {
    if (this.sends.has(key)) {
      throw new AureliaError(ErrorId.InvalidConfig, `ledger key ${key} was recorded twice`);
    }
    const record: SendRecord = { deadline, settles: 0, outcome: undefined };
    this.sends.set(key, record);
    return {
      succeeded: () => settle(record, { ok: true, at: Date.now() }),
      failed: (err: unknown) =>
        settle(record, {
          ok: false,
          at: Date.now(),
          kind: AureliaError.is(err) ? err.kind : undefined,
          reason: err instanceof Error ? err.message : String(err),
        }),
    };
  }

  /** Records that a receiving application accepted message `key` (its `accept()` returned true). */
  accept(key: string): void {
    this.accepted.set(key, (this.accepted.get(key) ?? 0) + 1);
  }

  /** How often message `key` was accepted so far. */
  acceptedCount(key: string): number {
    return this.accepted.get(key) ?? 0;
  }

  /** The outcome of send `key`, once settled. */
  outcome(key: string): LedgerOutcome | undefined {
    return this.sends.get(key)?.outcome;
  }

  /** Compares the two sides; see the class comment for the rules. Never throws. */
  compare(): LedgerReport {
    const mismatches: string[] = [];
    const note = (line: string): void => {
      mismatches.push(line);
    };
    const failed: Record<string, number> = {};
    let succeeded = 0;
    let failedButDelivered = 0;
    let lost = 0;
    let delivered = 0;
    for (const [key, record] of this.sends) {
      const count = this.accepted.get(key) ?? 0;
      const outcome = record.outcome;
      if (outcome === undefined) {
        note(`send ${key} never settled`);
        continue;
      }
      if (record.settles > 1) note(`send ${key} settled ${record.settles} times`);
      if (outcome.at > record.deadline + this.lateSlackMs) {
        note(`send ${key} settled ${outcome.at - record.deadline} ms after its deadline`);
      }
      if (count > 1) note(`message ${key} was accepted ${count} times`);
      if (outcome.ok) {
        succeeded++;
        if (count === 0) {
          lost++;
          note(`send ${key} succeeded but the receiver never accepted it`);
        }
        continue;
      }
      const name = outcome.kind === undefined ? 'non-Aurelia error' : errorName(outcome.kind);
      failed[name] = (failed[name] ?? 0) + 1;
      if (count > 0) {
        failedButDelivered++;
        if (outcome.kind !== undefined && NEVER_ACCEPTED.has(outcome.kind)) {
          note(`send ${key} failed with ${name} but the receiver accepted it`);
        }
      }
      if (outcome.kind === undefined)
        note(`send ${key} failed with an error that is not an AureliaError`);
    }
    for (const [key, count] of this.accepted) {
      delivered += count;
      if (!this.sends.has(key)) note(`message ${key} was accepted but never sent`);
    }
    const listed =
      mismatches.length > MAX_LISTED
        ? [...mismatches.slice(0, MAX_LISTED), `... and ${mismatches.length - MAX_LISTED} more`]
        : mismatches;
    return {
      sends: this.sends.size,
      succeeded,
      failed,
      failedButDelivered,
      lost,
      delivered,
      mismatches: listed,
      mismatchCount: mismatches.length,
    };
  }
}

function settle(record: SendRecord, outcome: LedgerOutcome): void {
  record.settles++;
  record.outcome ??= outcome;
}

function errorName(kind: ErrorId): string {
  return errorIdName(kind) ?? `error ${kind}`;
}
