// Small assertion helpers shared by end-to-end tests.
import { AureliaError } from '../../lib/index.js';

/** Resolves with the `AureliaError` `p` rejects with; fails if it fulfils or rejects otherwise. */
export async function rejection(p: Promise<unknown>): Promise<AureliaError> {
  const outcome = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(outcome instanceof AureliaError)) {
    throw new Error(`expected an AureliaError rejection, got ${String(outcome)}`);
  }
  return outcome;
}
