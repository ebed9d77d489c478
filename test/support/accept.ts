// A taberna that accepts whatever it is sent, for tests where the receiving application is not
// under test.
import { expect } from '@jest/globals';

import { AureliaError, ErrorId, type Taberna } from '../../lib/index.js';

/**
 * Accepts every request `taberna` receives until it or its domus shuts down, without reading any
 * blob a request carries (its stream then stays unread). Returns the messages it accepted, in the
 * order they arrived, growing as more arrive.
 */
export function acceptAll<T>(taberna: Taberna<T>): T[] {
  const received: T[] = [];
  void (async () => {
    try {
      for await (const request of taberna) {
        if (request.accept()) received.push(request.message);
      }
    } catch (err) {
      if (
        !AureliaError.is(err, ErrorId.DomusClosed) &&
        !AureliaError.is(err, ErrorId.TabernaShutdown)
      )
        throw err;
    }
  })();
  return received;
}

/**
 * Fails unless `received` holds each of `0..count-1` exactly once, as the `n` of a message: no
 * loss, no duplicate, nothing else.
 */
export function expectEachOnce(received: readonly { n: number }[], count: number): void {
  const ns = received.map((m) => m.n).sort((a, b) => a - b);
  expect(ns).toEqual(Array.from({ length: count }, (_, n) => n));
}
