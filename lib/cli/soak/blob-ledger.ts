// Both ends of every blob stream of a fault run, and how each blob ended as the sender saw it.
import { AureliaError, ErrorId, errorIdName } from '../../engine/errors.js';

/** How a blob's sending end ended. */
type SenderEnd =
  | { readonly state: 'sending' }
  | { readonly state: 'finished' }
  | { readonly state: 'aborted'; readonly stage: 'send' | 'stream'; readonly reason: string };

/** What the receiving application saw of a blob. */
type ReceiverEnd =
  | { readonly state: 'none' }
  | { readonly state: 'reading' }
  | { readonly state: 'intact' }
  | { readonly state: 'corrupted'; readonly detail: string }
  | { readonly state: 'failed'; readonly reason: string };

interface BlobRecord {
  readonly size: number;
  readonly sha256: string;
  sender: SenderEnd;
  /** Times the sending end reported an end (more than one breaks the accounting). */
  senderEnds: number;
  receiver: ReceiverEnd;
  /** Times a receiving application was handed this blob. */
  receptions: number;
  /** The sending stream closed with neither `'finish'` nor an error. */
  closedSilently: boolean;
}

/** Where every blob of a run ended. Every blob sent is exactly one of intact, aborted or unsettled. */
export interface BlobLedgerReport {
  /** Blob sends started. */
  readonly sent: number;
  /** The sender saw the stream finish and the receiving application read every byte, verified. */
  readonly intact: number;
  /** The sender saw a failure: of the send itself, or of the stream after it opened. */
  readonly aborted: number;
  /**
   * Aborted blobs by what the sender saw: `send <ErrorName>` when the send failed before a stream
   * opened, `stream <ErrorName>` when the opened stream failed.
   */
  readonly abortedBy: Readonly<Record<string, number>>;
  /**
   * Aborted blobs the receiving application nevertheless read to the end intact: the failure
   * reached the sender after the last byte arrived (a lost completion, like a lost ack).
   */
  readonly abortedButIntact: number;
  /** Streams that ended cleanly at the receiver with the wrong size or SHA-256. */
  readonly corrupted: number;
  /** Blobs whose sender saw neither the end nor a failure: each one is a mismatch. */
  readonly unsettled: number;
  /** Every broken rule, one line each (see `BlobLedger`). */
  readonly mismatches: readonly string[];
}

/**
 * Records both ends of every blob stream of a fault run and classifies each blob by what its
 * sender saw. The rules:
 *
 * 1. every blob's sender sees exactly one end: the stream finished (`'finish'`: the receiver
 *    consumed every byte), or a failure with an `AureliaError` — the send rejected before a stream
 *    opened, or the open stream failed;
 * 2. a blob whose sender saw it finish was read to its end by exactly one receiving application,
 *    with the right size and SHA-256;
 * 3. no receiving application ever reads a stream to a clean end with the wrong bytes;
 * 4. a blob is handed to a receiving application at most once.
 *
 * A failed blob may or may not have reached the receiver (the last byte may have arrived before
 * the failure reached the sender); that is counted, not a mismatch.
 */
export class BlobLedger {
  private readonly blobs = new Map<string, BlobRecord>();

  /** Blobs recorded so far. */
  get size(): number {
    return this.blobs.size;
  }

  /** Blobs whose sender has seen no end yet. */
  get unsettled(): number {
    let n = 0;
    for (const blob of this.blobs.values()) if (blob.sender.state === 'sending') n++;
    return n;
  }

  /**
   * Records blob `key` of `size` bytes with SHA-256 `sha256` (hex) as sent. Throws
   * `AureliaError(InvalidConfig)` when `key` was recorded before.
   */
  sent(key: string, size: number, sha256: string): void {
    if (this.blobs.has(key)) {
      throw new AureliaError(ErrorId.InvalidConfig, `blob ledger key ${key} was recorded twice`);
    }
    this.blobs.set(key, {
      size,
      sha256,
      sender: { state: 'sending' },
      senderEnds: 0,
      receiver: { state: 'none' },
      receptions: 0,
      closedSilently: false,
    });
  }

  /** The send of blob `key` failed with `err` before a stream opened. */
  sendFailed(key: string, err: unknown): void {
    this.endSender(key, { state: 'aborted', stage: 'send', reason: describe(err) });
  }

  /** The opened stream of blob `key` failed with `err` at the sender. */
  streamFailed(key: string, err: unknown): void {
    this.endSender(key, { state: 'aborted', stage: 'stream', reason: describe(err) });
  }

  /**
   * The sending stream of blob `key` closed. A stream that closes without `'finish'` and without
   * an error leaves its application guessing: it is recorded as such (a mismatch).
   */
  closed(key: string): void {
    const blob = this.blobs.get(key);
    if (blob?.sender.state === 'sending') blob.closedSilently = true;
  }

  /** The sender of blob `key` saw its stream finish (`'finish'`). */
  finished(key: string): void {
    this.endSender(key, { state: 'finished' });
  }

  /** A receiving application accepted blob `key` and reads its stream. */
  receiving(key: string): void {
    const blob = this.blobs.get(key);
    if (!blob) return this.orphan(key);
    blob.receptions++;
    if (blob.receiver.state === 'none') blob.receiver = { state: 'reading' };
  }

  /** The receiving stream of blob `key` ended cleanly after `size` bytes hashing to `sha256`. */
  received(key: string, size: number, sha256: string): void {
    const blob = this.blobs.get(key);
    if (!blob) return this.orphan(key);
    blob.receiver =
      size === blob.size && sha256 === blob.sha256
        ? { state: 'intact' }
        : {
            state: 'corrupted',
            detail: `ended cleanly with ${size} bytes (sha256 ${sha256.slice(0, 12)}), sent ${blob.size} bytes (sha256 ${blob.sha256.slice(0, 12)})`,
          };
  }

  /** The receiving stream of blob `key` failed with `err`. */
  receiveFailed(key: string, err: unknown): void {
    const blob = this.blobs.get(key);
    if (!blob) return this.orphan(key);
    if (blob.receiver.state === 'reading')
      blob.receiver = { state: 'failed', reason: describe(err) };
  }

  /** Classifies every blob and checks the rules (see the class comment). Never throws. */
  compare(): BlobLedgerReport {
    const mismatches = [...this.orphans];
    const abortedBy: Record<string, number> = {};
    let intact = 0;
    let aborted = 0;
    let abortedButIntact = 0;
    let corrupted = 0;
    let unsettled = 0;
    for (const [key, blob] of this.blobs) {
      const { sender, receiver } = blob;
      if (blob.senderEnds > 1)
        mismatches.push(`blob ${key} ended ${blob.senderEnds} times at its sender`);
      if (blob.receptions > 1) {
        mismatches.push(
          `blob ${key} was handed to a receiving application ${blob.receptions} times`,
        );
      }
      if (receiver.state === 'corrupted') {
        corrupted++;
        mismatches.push(`blob ${key} ${receiver.detail}`);
      }
      switch (sender.state) {
        case 'sending':
          unsettled++;
          mismatches.push(
            `blob ${key} ${blob.closedSilently ? 'closed at its sender with neither finish nor an error' : 'never ended at its sender'} (receiver: ${describeReceiver(receiver)})`,
          );
          break;
        case 'finished':
          if (receiver.state === 'intact') intact++;
          else if (receiver.state !== 'corrupted') {
            mismatches.push(
              `blob ${key} finished at its sender but the receiver did not read it intact (receiver: ${describeReceiver(receiver)})`,
            );
          }
          break;
        case 'aborted': {
          aborted++;
          const label = `${sender.stage} ${sender.reason.split(':')[0]}`;
          abortedBy[label] = (abortedBy[label] ?? 0) + 1;
          if (receiver.state === 'intact') abortedButIntact++;
          if (sender.reason.startsWith('non-Aurelia')) {
            mismatches.push(`blob ${key} failed at its sender with ${sender.reason}`);
          }
          break;
        }
      }
    }
    return {
      sent: this.blobs.size,
      intact,
      aborted,
      abortedBy,
      abortedButIntact,
      corrupted,
      unsettled,
      mismatches,
    };
  }

  private readonly orphans: string[] = [];

  private orphan(key: string): void {
    this.orphans.push(`blob ${key} reached a receiver but was never sent`);
  }

  private endSender(key: string, end: SenderEnd): void {
    const blob = this.blobs.get(key);
    if (!blob) {
      this.orphans.push(`blob ${key} ended at a sender but was never recorded`);
      return;
    }
    blob.senderEnds++;
    if (blob.sender.state === 'sending') blob.sender = end;
  }
}

/** `<ErrorName>: <message>` for an `AureliaError`, `non-Aurelia error: <message>` otherwise. */
function describe(err: unknown): string {
  if (AureliaError.is(err))
    return `${errorIdName(err.kind) ?? `error ${err.kind}`}: ${err.message}`;
  return `non-Aurelia error: ${err instanceof Error ? err.message : String(err)}`;
}

function describeReceiver(receiver: ReceiverEnd): string {
  switch (receiver.state) {
    case 'none':
      return 'never handed to an application';
    case 'reading':
      return 'still reading';
    case 'intact':
      return 'read intact';
    case 'corrupted':
      return receiver.detail;
    case 'failed':
      return `failed with ${receiver.reason}`;
  }
}
