// The A2 request/reply service: a framework-free server over the caller and handler sides.
import { Observable, type Subscription } from 'rxjs';
import type { Domus } from '../domus.js';
import type { TabernaId } from '../ids.js';
import type { TabernaRequest } from '../taberna/request.js';
import type { Taberna } from '../taberna/taberna.js';
import {
  REQUEST_TIMEOUT_MAX_MS,
  type RequestFrame,
  RequestReplyCodec,
  type RequestReplyInbound,
} from './request-reply-wire.js';
import {
  type ReplyChannel,
  RequestReplyResponder,
  type ServedRequest,
} from './request-reply-responder.js';

export {
  type CallSink,
  RemoteRequestError,
  RequestReplyClient,
  type RequestOptions,
} from './request-reply-client.js';
export {
  REPLY_WINDOW,
  ReplyChannel,
  RequestReplyResponder,
  type ServedRequest,
} from './request-reply-responder.js';

/**
 * Handler of `RequestReplyServer`: returns the reply bodies, as an Observable or one value.
 * `signal` (also `request.signal`) aborts when the call ends early. It is an `AbortController`'s
 * signal made for the call, which costs more than the rest of a small call: it is passed only to
 * a handler declaring a second parameter; others read `request.signal` when they need it.
 */
export type RequestHandler = (
  request: ServedRequest,
  signal: AbortSignal,
) => Observable<Buffer> | Promise<Buffer> | Buffer;

/** Options of `RequestReplyServer.serve`. */
export interface RequestReplyServerOptions {
  /**
   * Turns a handler failure into the error body sent to the caller and the rejection reason;
   * default: the error's message as UTF-8 for both.
   */
  readonly encodeError?: (err: unknown) => { body: Buffer; reason: string };
}

/**
 * Serves request/reply on one taberna without any framework: each REQUEST runs `handler`
 * concurrently and its values go back as replies. Close it with `close()`.
 */
export class RequestReplyServer {
  private readonly responder: RequestReplyResponder;
  private readonly subscriptions = new Set<Subscription>();
  private readonly done: Promise<void>;

  private constructor(
    private readonly taberna: Taberna<RequestReplyInbound<never>>,
    private readonly handler: RequestHandler,
    private readonly options: RequestReplyServerOptions,
    maxDeadlineMs: () => number,
  ) {
    this.responder = new RequestReplyResponder(maxDeadlineMs);
    this.done = this.run();
  }

  /**
   * Registers taberna `id` on `domus` and serves requests on it. Rejects like `Domus.taberna`
   * (`TabernaAlreadyRegistered`, `InvalidConfig`, `DomusClosed`).
   */
  static async serve(
    domus: Domus,
    id: TabernaId,
    handler: RequestHandler,
    options: RequestReplyServerOptions = {},
  ): Promise<RequestReplyServer> {
    const taberna = await domus.taberna(id, new RequestReplyCodec(), requestTabernaOptions());
    return new RequestReplyServer(
      taberna,
      handler,
      options,
      () => domus.config.snapshot().maxRequestDeadlineMs,
    );
  }

  /** The taberna id requests are addressed to. */
  get id(): TabernaId {
    return this.taberna.id;
  }

  /** Stops serving: open calls fail at their callers, the taberna is deregistered. */
  async close(): Promise<void> {
    this.responder.close();
    for (const s of this.subscriptions) s.unsubscribe();
    this.subscriptions.clear();
    this.taberna.close();
    await this.done;
  }

  private async run(): Promise<void> {
    try {
      await this.taberna.serveEach((request) => {
        const frame = request.message;
        if (frame.kind === 'request') this.start(request, frame);
        else request.reject('this taberna takes requests only');
      });
    } catch {
      // The domus shut down (DomusClosed); open calls end below.
    } finally {
      this.responder.close();
    }
  }

  private start(request: TabernaRequest<unknown>, frame: RequestFrame): void {
    const channel = this.responder.accept(request, frame, this.taberna.id);
    if (!channel) return;
    let result: ReturnType<RequestHandler>;
    try {
      // A handler of fewer parameters cannot see `signal`: it is not made for it.
      const handler = this.handler as (request: ServedRequest, signal?: AbortSignal) => unknown;
      result = (
        handler.length >= 2 ? handler(channel, channel.signal) : handler(channel)
      ) as ReturnType<RequestHandler>;
    } catch (err) {
      void this.fail(channel, err);
      return;
    }
    if (!(result instanceof Observable)) {
      // One value: it travels as the last reply, which is also the request's decision.
      Promise.resolve(result).then(
        (body) => void channel.complete(body),
        (err: unknown) => void this.fail(channel, err),
      );
      return;
    }
    const source = result;
    const subscription = source.subscribe({
      next: (body) => void channel.next(body),
      error: (err: unknown) => void this.fail(channel, err),
      complete: () => void channel.complete(),
    });
    if (channel.ended) {
      subscription.unsubscribe();
      return;
    }
    this.subscriptions.add(subscription);
    const forget = channel.onAbort(() => {
      subscription.unsubscribe();
      this.subscriptions.delete(subscription);
    });
    subscription.add(() => {
      this.subscriptions.delete(subscription);
      forget();
    });
  }

  private fail(channel: ReplyChannel, err: unknown): Promise<boolean> {
    const encode = this.options.encodeError ?? defaultEncodeError;
    let encoded: { body: Buffer; reason: string };
    try {
      encoded = encode(err);
    } catch {
      encoded = defaultEncodeError(err);
    }
    return channel.fail(encoded.body, encoded.reason);
  }
}

/**
 * Taberna options for a taberna serving requests: decisions come only when a reply stream
 * ends, so the accept timeout is the longest a caller may wait (300000 ms); the responder ends
 * each call at its caller's own deadline.
 */
export function requestTabernaOptions(): { queueSize: number; acceptTimeoutMs: number } {
  return { queueSize: 64, acceptTimeoutMs: REQUEST_TIMEOUT_MAX_MS };
}

function defaultEncodeError(err: unknown): { body: Buffer; reason: string } {
  const reason = err instanceof Error ? err.message : String(err);
  return { body: Buffer.from(reason, 'utf8'), reason };
}
