// The handler side of A2 request/reply: one reply channel per request, cancels and deadlines.
import { AureliaError, ErrorId } from '../errors.js';
import type { TabernaId } from '../ids.js';
import { DeadlineHeap } from '../peer/deadline-heap.js';
import type { Delivery, PeerInfo, TabernaRequest } from '../taberna/request.js';
import type { RequestFrame } from './request-reply-wire.js';

/**
 * Reply values a handler may have sent and the caller not yet acknowledged. One round trip per
 * reply would cap a stream at a few hundred values per second; a small window keeps the pipe
 * full while still bounding what a slow caller makes the handler's domus hold.
 */
export const REPLY_WINDOW = 32;

/** A request as its handler sees it. */
export interface ServedRequest {
  /** The request body as the caller encoded it. */
  readonly body: Buffer;
  /** The caller's certificate identity and address. */
  readonly peer: PeerInfo;
  /** The taberna the request arrived at. */
  readonly tabernaId: TabernaId;
  /**
   * Absolute time (`Date.now()` based) after which the handler is stopped: the caller's deadline,
   * or the serving domus's `maxRequestDeadlineMs` after the request was taken when that is sooner.
   */
  readonly deadline: number;
  /**
   * Aborts when the call ends before the handler finished (the caller cancelled, its deadline
   * passed, the service closed); made on first use.
   */
  readonly signal: AbortSignal;
}

const TRUE = Promise.resolve(true);
const FALSE = Promise.resolve(false);

/**
 * The handler's side of one request: send each reply value with `next`, then `complete` (the
 * caller's Observable completes, with a last value if given) or `fail` (the caller's Observable
 * errors with `RemoteRequestError` carrying the error body). Replies travel back on the callis the
 * request arrived on; the last one is the request's decision. `signal` aborts when the call ends
 * early: the caller cancelled, its deadline passed, or the service closed; the handler should
 * stop then, and further calls are ignored.
 */
export class ReplyChannel implements ServedRequest {
  readonly body: Buffer;
  readonly peer: PeerInfo;
  readonly tabernaId: TabernaId;
  readonly deadline: number;
  /** @internal The server's cap, when it set `deadline` before the caller's deadline. */
  readonly cappedAtMs: number | undefined;
  /** @internal Position in the responder's deadline heap. */
  heapIndex = -1;
  // Made on first use of `signal`: most handlers listen through `onAbort`, which is cheaper.
  private abort: AbortController | undefined;
  private abortReason: AureliaError | undefined;
  private abortListeners: ((reason: AureliaError) => void)[] | undefined;
  /** Set while a reply waits for room in the window: later steps queue behind it. */
  private tail: Promise<boolean> | undefined;
  private wake: (() => void) | undefined;
  private finished = false;
  private readonly delivery: Delivery;

  /** Not for applications: created by `RequestReplyResponder.accept`. */
  constructor(
    private readonly owner: RequestReplyResponder,
    private readonly request: TabernaRequest<unknown>,
    frame: RequestFrame,
    tabernaId: TabernaId,
    maxDeadlineMs: number,
  ) {
    this.body = frame.body;
    this.peer = request.peer;
    this.tabernaId = tabernaId;
    // A caller may ask for up to 300 s; the serving domus decides how long it lends a handler.
    const capped = maxDeadlineMs < frame.remainingMs;
    this.cappedAtMs = capped ? maxDeadlineMs : undefined;
    this.deadline = Date.now() + (capped ? maxDeadlineMs : frame.remainingMs);
    this.delivery = request.replyPath;
    this.delivery.onCancel = (deadline) =>
      this.terminate(
        deadline
          ? deadlineError()
          : new AureliaError(ErrorId.RemoteTabernaRejected, 'the caller cancelled the call'),
      );
  }

  /** Aborts when the call ended before the handler finished; `reason` is an `AureliaError`. */
  get signal(): AbortSignal {
    if (this.abort === undefined) {
      this.abort = new AbortController();
      if (this.abortReason !== undefined) this.abort.abort(this.abortReason);
    }
    return this.abort.signal;
  }

  /**
   * Calls `listener` with the reason when the call ends before the handler finished (when
   * `signal` aborts), at once if it already did. Returns a function that removes the listener.
   */
  onAbort(listener: (reason: AureliaError) => void): () => void {
    if (this.abortReason !== undefined) {
      listener(this.abortReason);
      return noop;
    }
    const listeners = (this.abortListeners ??= []);
    listeners.push(listener);
    return () => {
      const i = listeners.indexOf(listener);
      if (i >= 0) listeners.splice(i, 1);
    };
  }

  /** True once the request was decided (completed, failed or ended early). */
  get ended(): boolean {
    return this.finished;
  }

  /**
   * Sends one reply value. Resolves with true once it is on its way, which waits while
   * `REPLY_WINDOW` earlier replies are still unacknowledged by the caller (backpressure), or with
   * false when the call ended instead (the signal says why). Replies arrive in order. Never
   * rejects.
   */
  next(body: Buffer): Promise<boolean> {
    return this.enqueue(() => this.sendNext(body));
  }

  /**
   * Sends the handler's error (`body`, delivered to the caller as `RemoteRequestError.body`)
   * after every earlier reply, and rejects the request with `reason`. Resolves with false when
   * the call had ended; never rejects.
   */
  fail(body: Buffer, reason: string): Promise<boolean> {
    return this.enqueue(() => this.finish(body, reason));
  }

  /**
   * Completes the call after every earlier reply: with `body` as its last value, or with none.
   * Resolves with false when the call had ended otherwise; never rejects.
   */
  complete(body?: Buffer): Promise<boolean> {
    return this.enqueue(() => this.finish(body, undefined));
  }

  /** @internal Ends the call early: aborts the signal and rejects the request. */
  terminate(reason: AureliaError): void {
    if (this.finished) return;
    this.end(reason);
    this.request.reject(reason.message);
  }

  // Runs `step` now when nothing waits for room, otherwise after what waits (in order).
  private enqueue(step: () => boolean | Promise<boolean>): Promise<boolean> {
    if (this.tail === undefined) {
      if (this.finished) return FALSE;
      const result = step();
      if (typeof result === 'boolean') return result ? TRUE : FALSE;
      return this.hold(result);
    }
    return this.hold(this.tail.then(() => (this.finished ? false : step())));
  }

  private hold(run: Promise<boolean>): Promise<boolean> {
    this.tail = run;
    void run.then(() => {
      if (this.tail === run) this.tail = undefined;
    });
    return run;
  }

  private sendNext(body: Buffer): boolean | Promise<boolean> {
    const delivery = this.delivery;
    if (delivery.isSettled) {
      // Decided behind the channel's back (the taberna's accept timeout): the call is over.
      this.end(deadlineError());
      return false;
    }
    if (delivery.repliesSent - delivery.repliesAcked < REPLY_WINDOW) {
      delivery.sendReply(body);
      return true;
    }
    return this.room().then(() => (this.finished ? false : this.sendNext(body)));
  }

  /** Resolves when the caller acknowledged a reply or the call ended. */
  private room(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.wake = resolve;
      this.delivery.onRepliesAcked = () => {
        this.delivery.onRepliesAcked = undefined;
        this.wake = undefined;
        resolve();
      };
    });
  }

  private finish(body: Buffer | undefined, rejectReason: string | undefined): boolean {
    if (this.finished) return false;
    this.end(undefined);
    return this.request.finish({ body }, rejectReason);
  }

  private end(abortReason: AureliaError | undefined): void {
    this.finished = true;
    this.owner.forget(this);
    this.delivery.onCancel = undefined;
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
    if (abortReason) {
      this.abortReason = abortReason;
      this.abort?.abort(abortReason);
      const listeners = this.abortListeners;
      this.abortListeners = undefined;
      if (listeners) for (const listener of listeners) listener(abortReason);
    }
  }
}

/**
 * The handler side of request/reply for one or more tabernae: opens a `ReplyChannel` per
 * REQUEST, ends calls whose caller cancelled or whose caller's deadline passed (one timer for all
 * of them). Owned by whoever reads the tabernae (`RequestReplyServer`, the Nest `AureliaServer`).
 */
export class RequestReplyResponder {
  private readonly open = new Set<ReplyChannel>();
  private readonly deadlines = new DeadlineHeap<ReplyChannel>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closed = false;

  /**
   * `maxDeadlineMs` gives, at each request, the longest a handler may run whatever deadline the
   * caller set (the domus's `maxRequestDeadlineMs`); by default the caller's deadline alone.
   */
  constructor(private readonly maxDeadlineMs: () => number = () => Infinity) {}

  /** Number of calls in progress. */
  get active(): number {
    return this.open.size;
  }

  /**
   * Takes a decoded REQUEST handed to taberna `tabernaId` and returns its reply channel, or
   * `undefined` after rejecting it (the responder is closed, or its sender takes no replies).
   */
  accept(
    request: TabernaRequest<unknown>,
    frame: RequestFrame,
    tabernaId: TabernaId,
  ): ReplyChannel | undefined {
    if (this.closed) {
      request.reject('the request handler is shutting down');
      return undefined;
    }
    if (!request.replyPath.canReply) {
      request.reject('this request arrived by a path that carries no replies');
      return undefined;
    }
    const channel = new ReplyChannel(this, request, frame, tabernaId, this.maxDeadlineMs());
    this.open.add(channel);
    this.deadlines.push(channel);
    if (channel.deadline < this.timerAt) this.arm(channel.deadline);
    return channel;
  }

  /** Ends every open call with `reason` and refuses new ones. */
  close(reason: AureliaError = closedError()): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    for (const channel of [...this.open]) channel.terminate(reason);
    this.deadlines.clear();
  }

  /** @internal A channel ended. */
  forget(channel: ReplyChannel): void {
    this.open.delete(channel);
    this.deadlines.remove(channel);
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.onTimer, Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    for (let c = this.deadlines.popDue(now); c; c = this.deadlines.popDue(now)) {
      c.terminate(c.cappedAtMs === undefined ? deadlineError() : capError(c.cappedAtMs));
    }
    const next = this.deadlines.peek();
    if (next) this.arm(next.deadline);
  };
}

function noop(): void {}

function deadlineError(): AureliaError {
  return new AureliaError(ErrorId.SendTimeout, `the caller's deadline for this request passed`);
}

function capError(capMs: number): AureliaError {
  return new AureliaError(
    ErrorId.SendTimeout,
    `the handler ran for the serving domus's maxRequestDeadlineMs (${capMs} ms), which ends ` +
      `calls before the deadline their caller set; ask its operator, or split the work`,
  );
}

function closedError(): AureliaError {
  return new AureliaError(
    ErrorId.DomusClosed,
    'the serving side shut down before the call ended (its request/reply service closed), so the call did not complete; retry once it is back, or at another instance',
  );
}
