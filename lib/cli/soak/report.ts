// What a soak run found, and the summary `aurelia-mesh soak` prints of it.
import type { BlobLedgerReport } from './blob-ledger.js';
import type { LedgerReport } from './ledger.js';

/** The kinds of fault a soak run injects. */
export type FaultKind = 'cut' | 'stall' | 'partition' | 'delay' | 'restart';

/** What the blob streams of a run did: every blob sent is intact, aborted or unsettled. */
export type SoakBlobReport = Omit<BlobLedgerReport, 'mismatches'>;

/** What the recovery check after healing found. */
export interface SoakRecoveryReport {
  /** Ordered pairs of domus (sender, receiver) checked. */
  readonly pairs: number;
  /** Pairs where a send succeeded within `RECOVERY_WINDOW_MS` of healing. */
  readonly reached: number;
  /** Recovery sends made, retries included. */
  readonly sends: number;
  /** Why recovery sends failed, by error text (numbers and addresses elided), most frequent first. */
  readonly failures: readonly { readonly reason: string; readonly count: number }[];
}

/** The outcome of a soak run. */
export interface SoakReport {
  readonly nodes: number;
  readonly seed: number;
  /** How long traffic and faults ran, in ms. */
  readonly durationMs: number;
  /** Faults injected, by kind: cut, stall, partition, delay, restart. */
  readonly faults: Readonly<Record<FaultKind, number>>;
  /** The message ledgers compared. */
  readonly messages: LedgerReport;
  readonly blobs: SoakBlobReport;
  /** After healing every link, one send between every ordered pair of domus. */
  readonly recovery: SoakRecoveryReport;
  /**
   * Every broken promise found (ledger, blob bytes, recovery), each naming the sender, receiver
   * and send time where known; empty when the run passed.
   */
  readonly mismatches: readonly string[];
  /** How many promises were broken in all (the ledger lists at most 50 of its own). */
  readonly mismatchCount: number;
  /** The faults that overlapped a listed mismatch's send window, for reproducing it. */
  readonly faultsNearMismatches: readonly string[];
}

/** Renders `report` as the lines `aurelia-mesh soak` prints. */
export function formatSoakReport(report: SoakReport): string {
  const m = report.messages;
  const failed = Object.entries(m.failed)
    .map(([name, n]) => `${name} ${n}`)
    .join(', ');
  const lines = [
    `soak: ${report.nodes} domus for ${(report.durationMs / 1000).toFixed(1)} s, seed ${report.seed}`,
    `faults: ${Object.entries(report.faults)
      .map(([kind, n]) => `${kind} ${n}`)
      .join(', ')}`,
    `messages: ${m.sends} sent, ${m.succeeded} succeeded, ${m.delivered} accepted by receivers` +
      (failed ? `; failed: ${failed}` : '') +
      `; ${m.failedButDelivered} failed after the receiver accepted (ack lost)` +
      (m.lost > 0 ? `; ${m.lost} succeeded but never reached an application (LOST)` : ''),
    `blobs: ${report.blobs.sent} sent, ${report.blobs.intact} intact, ${report.blobs.aborted} aborted` +
      (Object.keys(report.blobs.abortedBy).length > 0
        ? ` (${Object.entries(report.blobs.abortedBy)
            .sort((a, b) => b[1] - a[1])
            .map(([why, n]) => `${why} ${n}`)
            .join(', ')})`
        : '') +
      `, ${report.blobs.abortedButIntact} aborted after the receiver read them intact, ${report.blobs.corrupted} corrupted, ${report.blobs.unsettled} unsettled`,
    `recovery: ${report.recovery.reached}/${report.recovery.pairs} pairs reached after healing (${report.recovery.sends} sends)` +
      report.recovery.failures.map((f) => `\n  retried ${f.count}× after ${f.reason}`).join(''),
    report.mismatches.length === 0
      ? 'ledger: consistent'
      : `ledger: ${report.mismatchCount} mismatches\n${report.mismatches.map((l) => `  ${l}`).join('\n')}`,
  ];
  if (report.faultsNearMismatches.length > 0) {
    lines.push(
      `faults near the mismatches (seconds since the start):\n${report.faultsNearMismatches.map((l) => `  ${l}`).join('\n')}`,
    );
  }
  return `${lines.join('\n')}\n`;
}
