// What a soak run found, and the summary `aurelia-mesh soak` prints of it.
import type { BlobLedgerReport } from './blob-ledger.js';
import type { LedgerReport } from './ledger.js';

/**
 * The kinds of fault a soak run injects: `cut`, `stall`, `partition`, `delay` and `restart` (a
 * crash) hit one domus of the mesh; `rolling` restarts every replica of the replicated service
 * in turn, each gracefully.
 */
export type FaultKind = 'cut' | 'stall' | 'partition' | 'delay' | 'restart' | 'rolling';

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

/**
 * The replicated service of a run and what its caller saw: the caller and the replicas suffer
 * no fault but the rolling restarts, so every failure here is one a rolling restart caused (or
 * a deadline the loaded machine missed).
 */
export interface SoakReplicaReport {
  /** Replicas behind the one route. */
  readonly replicas: number;
  /** Rolling restarts run (each restarts every replica in turn). */
  readonly rollingRestarts: number;
  /** Replica restarts in all. */
  readonly restarts: number;
  /** The caller's sends to the replicated service, compared with what the replicas accepted. */
  readonly messages: LedgerReport;
  /** The caller's blobs to the replicated service. */
  readonly blobs: SoakBlobReport;
}

/** The outcome of a soak run. */
export interface SoakReport {
  readonly nodes: number;
  readonly seed: number;
  /** How long traffic and faults ran, in ms. */
  readonly durationMs: number;
  /** Faults injected, by kind. */
  readonly faults: Readonly<Record<FaultKind, number>>;
  /** The message ledgers of the mesh's own traffic (between its domus) compared. */
  readonly messages: LedgerReport;
  /** The blobs of the mesh's own traffic. */
  readonly blobs: SoakBlobReport;
  /** The replicated service, when the run has one. */
  readonly replicas?: SoakReplicaReport;
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

/** `name n, name n` of `counts`, most frequent first. */
function tally(counts: Readonly<Record<string, number>>): string {
  return Object.entries(counts)
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name} ${n}`)
    .join(', ');
}

function messagesLine(m: LedgerReport): string {
  const failed = tally(m.failed);
  return (
    `${m.sends} sent, ${m.succeeded} succeeded, ${m.delivered} accepted by receivers` +
    (failed ? `; failed: ${failed}` : '; none failed') +
    `; ${m.failedButDelivered} failed after the receiver accepted (ack lost)` +
    (m.lost > 0 ? `; ${m.lost} succeeded but never reached an application (LOST)` : '')
  );
}

function blobsLine(b: SoakBlobReport): string {
  const aborted = tally(b.abortedBy);
  return (
    `${b.sent} sent, ${b.intact} intact, ${b.aborted} aborted` +
    (aborted ? ` (${aborted})` : '') +
    `, ${b.abortedButIntact} aborted after the receiver read them intact, ${b.corrupted} corrupted, ${b.unsettled} unsettled`
  );
}

/** Renders `report` as the lines `aurelia-mesh soak` prints. */
export function formatSoakReport(report: SoakReport): string {
  const r = report.replicas;
  const lines = [
    `soak: ${report.nodes} domus for ${(report.durationMs / 1000).toFixed(1)} s, seed ${report.seed}`,
    `faults: ${Object.entries(report.faults)
      .map(([kind, n]) => `${kind} ${n}`)
      .join(', ')}`,
    `messages: ${messagesLine(report.messages)}`,
    `blobs: ${blobsLine(report.blobs)}`,
    ...(r === undefined
      ? []
      : [
          `replicas: ${r.replicas} behind one route, ${r.rollingRestarts} rolling restarts (${r.restarts} replica restarts)`,
          `  calls: ${messagesLine(r.messages)}`,
          `  blobs: ${blobsLine(r.blobs)}`,
        ]),
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
