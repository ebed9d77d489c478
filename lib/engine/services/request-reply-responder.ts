// The handler side of A2 request/reply: one reply channel per request, cancels and deadlines.
import { AureliaError, ErrorId } from '../errors.js';
import { DomusAddr } from '../addr.js';
import type { Domus } from '../domus.js';
import { MessagePriorityClass, type TabernaId } from '../ids.js';
import { DeadlineHeap } from '../peer/deadline-heap.js';
import type { PeerInfo, TabernaRequest } from '../taberna/request.js';
import {
  type CancelFrame,
  REPLY_MESSAGE_TYPE,
  REQUEST_TIMEOUT_MAX_MS,
  type RequestFrame,
  encodeReply,
} from './request-reply-wire.js';

/**
 * Replies a handler may have sent and the caller not yet accepted. One round trip per reply
 * would cap a stream at a few hundred values per second; a small window keeps the pipe full
 * while still bounding what a slow caller makes the handler's domus hold.
 */
export const REPLY_WINDOW = 32;
/** Longest pause before retrying a reply the full A2 lane refused. */
const MAX_LANE_BACKOFF_MS = 50;
/** What a reply carries: a value, the last value, or the error. */
type ReplyKind = 0 | 1 | 2;
const NEXT: ReplyKind = 0;
const LAST: ReplyKind = 1;
const ERROR: ReplyKind = 2;

/** A request as its handler sees it. */
export interface ServedRequest {
  /** The request body as the caller encoded it. */
  readonly body: Buffer;
  /** The caller's certificate identity and address. */
  readonly peer: PeerInfo;
  /** The taberna the request arrived at. */
  readonly tabernaId: TabernaId;
  /** Absolute time (`Date.now()` based) after which the caller no longer waits. */
  readonly deadline: number;
}

/**
 * The handler's side of one request: send each reply value with `next`, then `complete` (the
 * request is accepted and the caller's Observable completes) or `fail` (the caller's Observable
 * errors with `RemoteRequestError` carrying the error body). `signal` aborts when the call ends
 * early: the caller cancelled, its deadline passed, a reply could not be delivered, or the
 * service closed; the handler should stop then, and further calls are ignored.
 */
export class ReplyChannel implements ServedRequest {
  readonly body: Buffer;
  readonly peer: PeerInfo;
  readonly tabernaId: TabernaId;
  readonly deadline: number;
  /** @internal Position in the responder's deadline heap. */
  heapIndex = -1;
  // Made on first use of `signal`: most handlers listen through `onAbort`, which is cheaper.
  private abort: AbortController | undefined;
  private abortReason: AureliaError | undefined;
  private abortListeners: ((reason: AureliaError) => void)[] | undefined;
  private seq = 0;
  private tail: Promise<void> = Promise.resolve();
  private readonly inflight: Promise<boolean>[] = [];
  private finished = false;
  private readonly replyAddr: DomusAddr;

  /** Not for applications: created by `RequestReplyResponder.accept`. */
  constructor(
    private readonly owner: RequestReplyResponder,
    private readonly request: TabernaRequest<unknown>,
    private readonly frame: RequestFrame,
    replyAddr: DomusAddr,
    tabernaId: TabernaId,
    readonly key: string,
  ) {
    this.body = frame.body;
    this.peer = request.peer;
    this.tabernaId = tabernaId;
    this.deadline = Date.now() + frame.remainingMs;
    this.replyAddr = replyAddr;
  }

  /** The caller's correlation id of this call. */
  get correlationId(): bigint {
    return this.frame.correlationId;
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
   * `REPLY_WINDOW` earlier replies are still unaccepted by the caller (backpressure), or with
   * false when the call ended instead (the signal says why). Replies arrive in order. Never
   * rejects.
   */
  next(body: Buffer): Promise<boolean> {
    return this.enqueue(() => this.push(body, NEXT));
  }

  /**
   * Sends the handler's error (`body`, delivered to the caller as `RemoteRequestError.body`; the
   * caller's call errors as soon as it arrives, after every earlier reply), waits for the
   * replies in flight, then rejects the request with `reason`. Resolves once done; never
   * rejects.
   */
  fail(body: Buffer, reason: string): Promise<boolean> {
    return this.enqueue(async () => {
      if (!(await this.push(body, ERROR))) return false;
      if (!(await this.drain())) return false;
      this.end(undefined, reason);
      return true;
    });
  }

  /**
   * Completes the call: with `body`, as its last value (the caller's call completes as soon as
   * that reply arrives); then, once every reply was accepted, accepts the request (which
   * completes the caller's call if no last value did). Resolves with false when the call ended
   * otherwise; never rejects.
   */
  complete(body?: Buffer): Promise<boolean> {
    return this.enqueue(async () => {
      if (body !== undefined && !(await this.push(body, LAST))) return false;
      if (!(await this.drain())) return false;
      this.end(undefined, undefined);
      return true;
    });
  }

  /** Sends one reply once the window has room; false when the call ended first. */
  private async push(body: Buffer, kind: ReplyKind): Promise<boolean> {
    while (this.inflight.length >= REPLY_WINDOW) {
      await this.inflight.shift();
      if (this.finished) return false;
    }
    const sent = await this.send(body, kind);
    if (!sent) return false;
    this.inflight.push(sent.settled);
    return true;
  }

  private async drain(): Promise<boolean> {
    while (this.inflight.length > 0) await this.inflight.shift();
    return !this.finished;
  }

  /** @internal Ends the call early: aborts the signal and rejects the request. */
  terminate(reason: AureliaError): void {
    if (this.finished) return;
    this.end(reason, reason.message);
  }

  private enqueue(step: () => Promise<boolean>): Promise<boolean> {
    const run = this.tail.then(() => (this.finished ? false : step()));
    this.tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run.catch(() => false);
  }

  /**
   * Hands one reply to the domus, in order. When the A2 lane to the caller is full it waits for
   * this call's earlier replies, or backs off briefly, and tries again within the deadline, so a
   * busy lane slows a stream down instead of failing it. Resolves with the reply's settlement
   * (true once the caller accepted it) after the domus admitted it, or with undefined when the
   * call ended first (wrapped, so awaiting the admission does not await the settlement).
   */
  private async send(
    body: Buffer,
    kind: ReplyKind,
  ): Promise<{ settled: Promise<boolean> } | undefined> {
    const payload = encodeReply({
      correlationId: this.frame.correlationId,
      seq: this.seq++,
      error: kind === ERROR,
      last: kind === LAST,
      body,
    });
    for (let backoffMs = 1; ; backoffMs = Math.min(backoffMs * 2, MAX_LANE_BACKOFF_MS)) {
      if (this.finished) return undefined;
      const remaining = this.deadline - Date.now();
      if (remaining < 1) {
        this.terminate(deadlineError(this.frame));
        return undefined;
      }
      const attempt = this.owner.domus.dispatchUnlessFull({
        priority: MessagePriorityClass.A2,
        msgType: REPLY_MESSAGE_TYPE,
        payload,
        to: this.frame.replyTaberna,
        from: this.tabernaId,
        address: this.replyAddr,
        expectedIdentity: this.peer.local ? undefined : this.peer.identity,
        timeoutMs: Math.min(remaining, REQUEST_TIMEOUT_MAX_MS),
      });
      if (attempt !== undefined) return { settled: this.settle(attempt) };
      // The lane to the caller is full: wait for an earlier reply of this call, or back off.
      const earlier = this.inflight.shift();
      if (earlier) await earlier;
      else await pause(Math.min(backoffMs, remaining));
    }
  }

  private settle(attempt: Promise<void>): Promise<boolean> {
    return attempt.then(
      () => true,
      (err: unknown) => {
        const cause = AureliaError.is(err)
          ? err
          : new AureliaError(ErrorId.EncodeFailure, String(err), { cause: err });
        this.terminate(
          new AureliaError(
            cause.kind,
            `reply to call ${this.frame.correlationId} could not be delivered: ${cause.message}`,
            { cause },
          ),
        );
        return false;
      },
    );
  }

  private end(abortReason: AureliaError | undefined, rejectReason: string | undefined): void {
    if (this.finished) return;
    this.finished = true;
    this.owner.forget(this);
    if (abortReason) {
      this.abortReason = abortReason;
      this.abort?.abort(abortReason);
      const listeners = this.abortListeners;
      this.abortListeners = undefined;
      if (listeners) for (const listener of listeners) listener(abortReason);
    }
    if (rejectReason === undefined) this.request.accept();
    else this.request.reject(rejectReason);
  }
}

/**
 * The handler side of request/reply for one or more tabernae: opens a `ReplyChannel` per
 * REQUEST, matches CANCELs to open calls, and ends calls whose caller's deadline passed (one
 * timer for all of them). Owned by whoever reads the tabernae (`RequestReplyServer`, the Nest
 * `AureliaServer`).
 */
export class RequestReplyResponder {
  private readonly open = new Map<string, ReplyChannel>();
  /** Callers name their reply address in every REQUEST: each distinct one is parsed once. */
  private readonly replyAddrs = new Map<string, DomusAddr>();
  private readonly deadlines = new DeadlineHeap<ReplyChannel>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closed = false;

  constructor(
    /** @internal The domus replies are sent from. */
    readonly domus: Domus,
  ) {}

  /** Number of calls in progress. */
  get active(): number {
    return this.open.size;
  }

  private replyAddr(text: string): DomusAddr {
    let addr = this.replyAddrs.get(text);
    if (addr === undefined) {
      addr = DomusAddr.parse(text);
      if (this.replyAddrs.size >= REPLY_ADDR_CACHE_SIZE) this.replyAddrs.clear();
      this.replyAddrs.set(text, addr);
    }
    return addr;
  }

  /**
   * Takes a decoded REQUEST handed to taberna `tabernaId` and returns its reply channel, or
   * `undefined` after rejecting it (bad reply address, duplicate call, responder closed).
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
    let replyAddr: DomusAddr;
    try {
      replyAddr = this.replyAddr(frame.replyAddress);
    } catch (err) {
      request.reject(`bad reply address: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
    const key = callKey(request.peer.identity, frame.replyAddress, frame.correlationId);
    if (this.open.has(key)) {
      request.reject(`call ${frame.correlationId} is already in progress`);
      return undefined;
    }
    const channel = new ReplyChannel(this, request, frame, replyAddr, tabernaId, key);
    this.open.set(key, channel);
    this.deadlines.push(channel);
    if (channel.deadline < this.timerAt) this.arm(channel.deadline);
    return channel;
  }

  /**
   * Handles a CANCEL: ends the matching call (if any) with `SendTimeout` when the caller's
   * deadline passed, `RemoteTabernaRejected` when it unsubscribed, and accepts the CANCEL.
   */
  cancel(request: TabernaRequest<unknown>, frame: CancelFrame): void {
    const channel = this.open.get(
      callKey(request.peer.identity, frame.replyAddress, frame.correlationId),
    );
    channel?.terminate(
      frame.deadline === true
        ? deadlineError(frame)
        : new AureliaError(
            ErrorId.RemoteTabernaRejected,
            `call ${frame.correlationId} was cancelled`,
          ),
    );
    request.accept();
  }

  /** Ends every open call with `reason` and refuses new ones. */
  close(reason: AureliaError = closedError()): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    for (const channel of [...this.open.values()]) channel.terminate(reason);
    this.deadlines.clear();
  }

  /** @internal A channel ended. */
  forget(channel: ReplyChannel): void {
    if (this.open.get(channel.key) === channel) this.open.delete(channel.key);
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
      c.terminate(
        new AureliaError(ErrorId.SendTimeout, `the caller's deadline for this request passed`),
      );
    }
    const next = this.deadlines.peek();
    if (next) this.arm(next.deadline);
  };
}

function noop(): void {}

/** Distinct reply addresses remembered before the cache starts over. */
const REPLY_ADDR_CACHE_SIZE = 1024;

function pause(ms: number): Promise<void> {
  return new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
}

function callKey(identity: string, replyAddress: string, correlationId: bigint): string {
  return `${identity}\n${replyAddress}\n${correlationId}`;
}

function deadlineError(frame: RequestFrame | CancelFrame): AureliaError {
  return new AureliaError(
    ErrorId.SendTimeout,
    `the caller's deadline for call ${frame.correlationId} passed`,
  );
}

function closedError(): AureliaError {
  return new AureliaError(
    ErrorId.DomusClosed,
    'the serving side shut down before the call ended (its request/reply service closed), so the call did not complete; retry once it is back, or at another instance',
  );
}
