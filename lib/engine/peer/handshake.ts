// The A1 hello exchange that opens every callis, bounded by a deadline.
import { AureliaError, ErrorId, isErrorId } from '../errors.js';
import { quotePeerText } from '../logger.js';
import { ControlType, type Frame, type FrameBatch } from '../wire/frame.js';
import {
  type DecodedHello,
  type Hello,
  decodeError,
  decodeHello,
  encodeHello,
} from '../wire/control.js';
import type { Callis, CallisHandler } from './callis.js';

/**
 * Waits for the first frame of `callis`, which must be a hello (or, for the dialer, a
 * hello-response). Rejects with `ProtocolViolation` for any other frame, with the peer's error for
 * an `error` frame, with `ConnectionLost` when the callis closes, and with `timeoutError` when
 * nothing arrives within `timeoutMs`. On failure the callis is closed.
 */
function awaitFirstFrame(
  callis: Callis,
  expected: ControlType.Hello | ControlType.HelloResponse,
  timeoutMs: number,
  timeoutError: () => AureliaError,
): Promise<DecodedHello> {
  return new Promise<DecodedHello>((resolve, reject) => {
    let done = false;
    const finish = (err: AureliaError | undefined, hello?: DecodedHello): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        reject(err);
        if (!callis.closed) callis.close(err);
      } else {
        resolve(hello as DecodedHello);
      }
    };
    const timer = setTimeout(() => finish(timeoutError()), timeoutMs);
    const handler: CallisHandler = {
      onFrame(_c: Callis, frame: Frame): void {
        if (done) {
          // The owner installs its handler in a microtask; a frame in the same read is early.
          if (frame.msgType === ControlType.Close) {
            callis.close(
              new AureliaError(ErrorId.ConnectionLost, `${callis.describe()} closed by the peer`),
            );
            return;
          }
          throw new AureliaError(
            ErrorId.ProtocolViolation,
            `${callis.describe()}: message type ${frame.msgType} arrived before the hello exchange completed`,
          );
        }
        try {
          if (frame.msgType === expected) {
            const hello = decodeHello(frame);
            // What follows in the same read belongs to the owner's handler, set after this.
            callis.holdFrames();
            finish(undefined, hello);
          } else if (frame.msgType === ControlType.Error) {
            const { errorId, message } = decodeError(frame);
            finish(
              new AureliaError(
                isErrorId(errorId) ? errorId : ErrorId.ProtocolViolation,
                `${callis.describe()} refused the hello: ${quotePeerText(message)}`,
              ),
            );
          } else {
            finish(
              new AureliaError(
                ErrorId.ProtocolViolation,
                `${callis.describe()}: expected a ${expected === ControlType.Hello ? 'hello' : 'hello-response'} first, got message type ${frame.msgType}`,
              ),
            );
          }
        } catch (err) {
          finish(
            AureliaError.is(err)
              ? err
              : new AureliaError(ErrorId.ProtocolViolation, String(err), { cause: err }),
          );
        }
      },
      onWritable(_c: Callis, _b: FrameBatch): void {},
      onClosed(_c: Callis, reason: AureliaError): void {
        finish(reason);
      },
    };
    callis.setHandler(handler);
  });
}

/** Dialer side: sends our hello and waits for the listener's hello-response. */
export function dialerHello(
  callis: Callis,
  hello: Hello,
  timeoutMs: number,
): Promise<DecodedHello> {
  const answer = awaitFirstFrame(
    callis,
    ControlType.HelloResponse,
    timeoutMs,
    () =>
      new AureliaError(
        ErrorId.PeerUnavailable,
        `${callis.describe()}: no hello-response within ${timeoutMs} ms`,
      ),
  );
  callis.sendControl(encodeHello(hello));
  return answer;
}

/** Listener side: waits for the dialer's hello. The caller answers with a hello-response. */
export function listenerHello(callis: Callis, timeoutMs: number): Promise<DecodedHello> {
  return awaitFirstFrame(
    callis,
    ControlType.Hello,
    timeoutMs,
    () =>
      new AureliaError(
        ErrorId.ProtocolViolation,
        `${callis.describe()}: no hello within ${timeoutMs} ms`,
      ),
  );
}
