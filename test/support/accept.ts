// A taberna that accepts whatever it is sent, for tests where the receiving application is not
// under test.
import { AureliaError, ErrorId, type Taberna } from '../../lib/index.js';

/**
 * Accepts every request `taberna` receives until its domus shuts down, without reading any blob
 * a request carries (its stream then stays unread).
 */
export function acceptAll<T>(taberna: Taberna<T>): void {
  void (async () => {
    try {
      for await (const request of taberna) request.accept();
    } catch (err) {
      if (!AureliaError.is(err, ErrorId.DomusClosed)) throw err;
    }
  })();
}
