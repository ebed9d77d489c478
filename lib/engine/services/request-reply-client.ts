// The caller side of A2 request/reply: requests whose replies come back on their own callis.
import { Observable } from 'rxjs';
import { AureliaError, ErrorId } from '../errors.js';
import type { Domus } from '../domus.js';
import { MessagePriorityClass, type TabernaId } from '../ids.js';
import type { ReplySink } from '../local-sink.js';
import {
  REQUEST_MESSAGE_TYPE,
  REQUEST_TIMEOUT_MAX_MS,
  encodeRequest,
} from './request-reply-wire.js';

/**
 * The failure of a remote request handler: `kind` is `RemoteTabernaRejected`, `message` the
 * handler's reason, and `body` the error the handler's domus sent back (encoded by whoever
 * served the request; the Nest layer puts its serialized error packet there).
 */
export class RemoteRequestError extends AureliaError {
  constructor(
    message: string,
    /** The handler's encoded error, when it sent one. */
    readonly body: Buffer | undefined,
  ) {
    super(ErrorId.RemoteTabernaRejected, message);
  }
}

/** Options of one request. */
export interface RequestOptions {
  /**
   * Deadline of the whole call (every reply and the completion), 1..300000 ms; default the
   * domus's `sendTimeoutMs`.
   */
  readonly timeoutMs?: number;
  /**
   * The certificate identity that must serve the request: checked on every callis the request is
   * written to, so a resolver pointing at another member of the mesh fails the call with
   * `AddressMismatch` instead of handing it to the wrong service.
   */
  readonly expectedIdentity?: string;
}

const clients = new WeakMap<Domus, RequestReplyClient>();

/**
 * The caller side of request/reply on one domus. A request is an A2 message to the handler's
 * taberna; its replies come back as `reply` frames on the very callis it was written to, naming
 * its message id, so only the identity and session that received the request can answer it —
 * no reply address, no connection back to the caller, nothing another member can forge. Get it
 * with `RequestReplyClient.for(domus)`; there is one per domus.
 */
export class RequestReplyClient {
  private calls = 0;

  private constructor(private readonly domus: Domus) {}

  /** Returns the domus's request/reply client (calls on a shut-down domus fail with `DomusClosed`). */
  static for(domus: Domus): Promise<RequestReplyClient> {
    return Promise.resolve(RequestReplyClient.of(domus));
  }

  /** Like `for`, synchronously. */
  static of(domus: Domus): RequestReplyClient {
    let client = clients.get(domus);
    if (!client) {
      client = new RequestReplyClient(domus);
      clients.set(domus, client);
    }
    return client;
  }

  /** Number of calls waiting for replies. */
  get inFlight(): number {
    return this.calls;
  }

  /**
   * Sends `body` to the request handler at taberna `to` and returns the Observable of its reply
   * bodies (cold: each subscription makes one call). It completes once the handler finished and
   * every reply was delivered; it errors with `RemoteRequestError` (the handler failed),
   * `SendTimeout` (the deadline passed), `PeerRestarted`, `UnknownTaberna`, `LocalQueueFull`,
   * `AddressMismatch` (with `expectedIdentity`), `InvalidConfig` (bad options), `DomusClosed` or
   * any other send failure. Unsubscribing sends a best-effort cancel so the handler stops.
   */
  request(to: TabernaId, body: Buffer, options: RequestOptions = {}): Observable<Buffer> {
    return new Observable<Buffer>((subscriber) => this.call(to, body, options, subscriber));
  }

  /**
   * `request` without the Observable: the replies go to `sink.next`, then `sink.complete()` or
   * `sink.error(err)` (once, with the same errors as `request`). Returns the cancellation, which
   * sends a best-effort cancel unless the call already ended.
   */
  call(to: TabernaId, body: Buffer, options: RequestOptions, sink: CallSink): () => void {
    let payload: Buffer;
    let timeoutMs: number;
    try {
      timeoutMs = this.timeoutOf(options);
      payload = encodeRequest({ remainingMs: timeoutMs, body });
    } catch (err) {
      sink.error(err);
      return noop;
    }
    const call = new Call(sink, this);
    this.calls++;
    this.domus
      .dispatch({
        priority: MessagePriorityClass.A2,
        msgType: REQUEST_MESSAGE_TYPE,
        payload,
        to,
        timeoutMs,
        replies: call,
        expectedIdentity: options.expectedIdentity,
      })
      .then(call.settled, call.failed);
    return call.unsubscribed;
  }

  /** @internal A call ended. */
  ended(): void {
    this.calls--;
  }

  private timeoutOf(options: RequestOptions): number {
    const timeoutMs = options.timeoutMs ?? this.domus.config.snapshot().sendTimeoutMs;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > REQUEST_TIMEOUT_MAX_MS) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `request timeoutMs must be an integer in 1..${REQUEST_TIMEOUT_MAX_MS}, got ${String(timeoutMs)}`,
      );
    }
    return timeoutMs;
  }
}

/** Where `RequestReplyClient.call` hands a call's replies and outcome (an rxjs Subscriber fits). */
export interface CallSink {
  next(body: Buffer): void;
  error(err: unknown): void;
  complete(): void;
}

function noop(): void {}

/** One call: the replies of its request go to the sink, then its outcome. */
class Call implements ReplySink {
  cancelRequest: ((deadline: boolean) => void) | undefined = undefined;
  private errorBody: Buffer | undefined;
  private done = false;
  readonly settled = (): void => this.finish(undefined);
  readonly failed = (err: unknown): void => this.finish(err);
  readonly unsubscribed = (): void => {
    if (this.done) return;
    this.end();
    this.cancelRequest?.(false);
  };

  constructor(
    private readonly subscriber: CallSink,
    private readonly owner: RequestReplyClient,
  ) {}

  onReply(body: Buffer): void {
    if (!this.done) this.subscriber.next(body);
  }

  onErrorBody(body: Buffer): void {
    this.errorBody = body;
  }

  finish(err: unknown): void {
    if (this.done) return;
    this.end();
    if (err === undefined) {
      this.subscriber.complete();
    } else if (
      AureliaError.is(err, ErrorId.RemoteTabernaRejected) &&
      !(err instanceof RemoteRequestError)
    ) {
      this.subscriber.error(new RemoteRequestError(err.message, this.errorBody));
    } else {
      this.subscriber.error(err);
    }
  }

  private end(): void {
    this.done = true;
    this.owner.ended();
  }
}
