// Small assertion helpers shared by tests.
import { isObservable, lastValueFrom, type Observable } from 'rxjs';

import { AureliaError, errorIdName, type ErrorId } from '../../lib/engine/errors.js';

/**
 * Resolves with the `AureliaError` that `work` rejects with (a promise, an Observable's last
 * value, or a function whose call throws or returns a promise that rejects). Fails when it
 * fulfils, fails with anything else, or, given `kind`, fails with another kind.
 */
export async function rejection(
  work: Promise<unknown> | Observable<unknown> | (() => unknown),
  kind?: ErrorId,
): Promise<AureliaError> {
  let outcome: unknown;
  try {
    if (isObservable(work)) await lastValueFrom(work);
    else await (typeof work === 'function' ? work() : work);
  } catch (err) {
    outcome = err;
  }
  if (!(outcome instanceof AureliaError)) {
    throw new Error(`expected an AureliaError rejection, got ${String(outcome)}`);
  }
  if (kind !== undefined && outcome.kind !== kind) {
    throw new Error(
      `expected ${errorIdName(kind) ?? kind}, got ${errorIdName(outcome.kind) ?? outcome.kind}: ${outcome.message}`,
    );
  }
  return outcome;
}

/**
 * Runs `fn`, expecting it to throw an `AureliaError` of `kind` whose message contains every one
 * of `fragments`; returns the error. Fails the test otherwise.
 */
export function expectError(
  kind: ErrorId,
  fn: () => unknown,
  ...fragments: string[]
): AureliaError {
  const error = thrown(fn);
  expect(errorIdName(error.kind)).toBe(errorIdName(kind));
  for (const fragment of fragments) expect(error.message).toContain(fragment);
  return error;
}

/** Matches an `AureliaError` of `kind`, whose message matches `message` when given. */
export function aureliaError(
  kind: ErrorId,
  message?: RegExp,
): ReturnType<typeof expect.objectContaining> {
  return expect.objectContaining({
    name: 'AureliaError',
    kind,
    ...(message ? { message: expect.stringMatching(message) } : {}),
  });
}

/** The `AureliaError` that `fn` throws; fails when it returns or throws anything else. */
export function thrown(fn: () => unknown): AureliaError {
  try {
    fn();
  } catch (err) {
    if (err instanceof AureliaError) return err;
    throw err;
  }
  throw new Error('expected an AureliaError to be thrown');
}

/**
 * Fails unless the time since `startedAt` (a `Date.now()`) reached `deadlineMs`, less 10 ms of
 * clock slack, so that a failure coming at once does not pass for one at the deadline; and stayed
 * under `ceilingMs`, a bound generous enough for a busy machine that still tells the deadline
 * from the longer one a bug would apply (a default timeout, a hang).
 */
export function expectElapsedBetween(
  startedAt: number,
  deadlineMs: number,
  ceilingMs: number,
): void {
  const elapsed = Date.now() - startedAt;
  expect(elapsed).toBeGreaterThanOrEqual(deadlineMs - 10);
  expect(elapsed).toBeLessThan(ceilingMs);
}

/**
 * What `source` errors with (anything, not only an `AureliaError`); fails when it completes with
 * a value instead. An Observable that completes empty errors with rxjs' `EmptyError`.
 */
export function errorOf(source: Observable<unknown>): Promise<unknown> {
  return lastValueFrom(source).then(
    (value) => {
      throw new Error(`expected an error, got ${JSON.stringify(value)}`);
    },
    (err: unknown) => err,
  );
}
