// Sends recorded in a delivery ledger, for fault tests that compare both sides of every send.
import { JsonCodec, type Domus } from '../../lib/index.js';
import type { DeliveryLedger } from '../../lib/cli/soak/ledger.js';

/** A message of a ledger run: its unique key, and filler so a few hundred fill socket buffers. */
export interface KeyedNote {
  key: string;
  pad?: string;
}

/** The codec of `KeyedNote`s. */
export const keyedCodec = new JsonCodec<KeyedNote>();

/**
 * Sends `key` (with `pad`, if given) from `from` to taberna `to` and records it in `ledger` with
 * the deadline its send timeout gives it; resolves (never rejects) once the send settled.
 */
export function tracked(
  ledger: DeliveryLedger,
  from: Domus,
  to: bigint,
  key: string,
  pad?: string,
): Promise<void> {
  const deadline = Date.now() + from.config.snapshot().sendTimeoutMs;
  return ledger.track(
    key,
    deadline,
    from.send(keyedCodec, to, pad === undefined ? { key } : { key, pad }),
  );
}

/**
 * How many sends `sender` itself settled since it was built, counted where the send path
 * completes each one (its `sendsAccepted` and `sendsFailed` counters), not where the caller's
 * promise settles: a send the domus settled twice counts twice here while its promise, settling
 * once by construction, would hide it.
 */
export function settledBySender(sender: Domus): { accepted: number; failed: number } {
  const { sendsAccepted, sendsFailed } = sender.reporting.snapshot();
  return { accepted: sendsAccepted, failed: sendsFailed };
}
