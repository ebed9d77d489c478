// Leak checks: what keeps the event loop alive, counted by type, before and after a test.
import { expect } from '@jest/globals';

import { eventually } from './mesh.js';

/** Resource types that never outlive the turn that made them or belong to the test runner. */
const IGNORED = new Set(['Immediate', 'TTYWrap']);

/** Counts the resources keeping the event loop alive (sockets, servers, timers…), by type. */
export function countResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) {
    if (IGNORED.has(type)) continue;
    counts[type] = (counts[type] ?? 0) + 1;
  }
  return counts;
}

/**
 * Fails unless the process holds no more resources of any type than `before` (from
 * `countResources`). Sockets close a few turns after the last byte, and other suites of the same
 * worker may leave short timers running, so it first waits, bounded by `timeoutMs`, for the
 * counts to come back; the failure names each type left over with both counts.
 */
export async function expectNothingLeftSince(
  before: Record<string, number>,
  timeoutMs = 5000,
): Promise<void> {
  const leaked = (): string[] =>
    Object.entries(countResources())
      .filter(([type, n]) => n > (before[type] ?? 0))
      .map(([type, n]) => `${type}: ${n} now, ${before[type] ?? 0} before`);
  await eventually(
    () => leaked().length === 0,
    'every socket, server and timer to be gone',
    timeoutMs,
  ).catch(() => undefined);
  expect(leaked()).toEqual([]);
}
