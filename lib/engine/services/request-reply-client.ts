// The caller side of A2 request/reply: pending calls and the domus's reply taberna.
import { randomBytes } from 'node:crypto';
import { Observable, type Subscriber } from 'rxjs';
import { AureliaError, ErrorId } from '../errors.js';
import { DomusAddr } from '../addr.js';
import type { Domus } from '../domus.js';
import { MessagePriorityClass, type TabernaId } from '../ids.js';
import type { PeerInfo, TabernaRequest } from '../taberna/request.js';
import type { Taberna } from '../taberna/taberna.js';
import {
  CANCEL_MESSAGE_TYPE,
  REPLY_TABERNA_ID,
  REQUEST_MESSAGE_TYPE,
  REQUEST_TIMEOUT_MAX_MS,
  type ReplyFrame,
  RequestReplyCodec,
  type RequestReplyInbound,
  encodeCancel,
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
   * Where the handler sends replies; default `domus.localAddr`. Set it when the listener is bound
   * to a wildcard or sits behind a proxy. Replies are only ever delivered to a peer proving the
   * caller's certificate identity, whatever this says.
   */
  readonly replyAddress?: DomusAddr | string;
}

/** One call the caller waits on. */
interface PendingCall {
  readonly subscriber: Subscriber<Buffer>;
  readonly to: TabernaId;
  readonly replyAddress: string;
  nextSeq: number;
  /** Identity of the first replier; later replies must come from it. */
  replier: string | undefined;
  /** The handler's error body, waiting for the request's rejection. */
  errorBody: Buffer | undefined;
  done: boolean;
}

const clients = new WeakMap<Domus, Promise<RequestReplyClient>>();

/** Replies queued for one caller before they are refused with `TabernaBusy`. */
const REPLY_QUEUE_SIZE = 1024;
/** How long a best-effort CANCEL may take. */
const CANCEL_TIMEOUT_MS = 2000;

/**
 * The caller side of request/reply on one domus: sends REQUEST messages and routes the REPLY
 * messages arriving on the domus's reply taberna (`REPLY_TABERNA_ID`) to the calls waiting for
 * them. Get it with `RequestReplyClient.for(domus)`; there is one per domus.
 */
export class RequestReplyClient {
  private readonly pending = new Map<bigint, PendingCall>();
  private nextCorrelation: bigint;

  private constructor(
    private readonly domus: Domus,
    private readonly taberna: Taberna<RequestReplyInbound<never>>,
  ) {
    this.nextCorrelation = randomBytes(8).readBigUInt64BE(0);
    void this.run();
  }

  /**
   * Returns the domus's request/reply client, registering its reply taberna on first use.
   * Rejects with `TabernaAlreadyRegistered` when an application registered `REPLY_TABERNA_ID`,
   * `DomusClosed` after shutdown.
   */
  static for(domus: Domus): Promise<RequestReplyClient> {
    let client = clients.get(domus);
    if (!client) {
      client = domus
        .taberna(REPLY_TABERNA_ID, new RequestReplyCodec(), {
          queueSize: REPLY_QUEUE_SIZE,
        })
        .then((taberna) => new RequestReplyClient(domus, taberna));
      clients.set(domus, client);
      client.catch(() => clients.delete(domus));
    }
    return client;
  }

  /** Number of calls waiting for replies. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Sends `body` to the request handler at taberna `to` and returns the Observable of its reply
   * bodies (cold: each subscription makes one call). It completes once the handler finished and
   * every reply was delivered; it errors with `RemoteRequestError` (the handler failed),
   * `SendTimeout` (the deadline passed), `PeerRestarted`, `UnknownTaberna`, `LocalQueueFull`,
   * `InvalidConfig` (bad options), `DomusClosed` or any other send failure. Unsubscribing sends
   * a best-effort CANCEL so the handler stops.
   */
  request(to: TabernaId, body: Buffer, options: RequestOptions = {}): Observable<Buffer> {
    return new Observable<Buffer>((subscriber) => {
      let timeoutMs: number;
      let replyAddress: string;
      try {
        timeoutMs = this.timeoutOf(options);
        replyAddress = this.replyAddressOf(options);
      } catch (err) {
        subscriber.error(err);
        return undefined;
      }
      const correlationId = this.takeCorrelation();
      const call: PendingCall = {
        subscriber,
        to,
        replyAddress,
        nextSeq: 0,
        replier: undefined,
        errorBody: undefined,
        done: false,
      };
      let payload: Buffer;
      try {
        payload = encodeRequest({
          correlationId,
          replyTaberna: REPLY_TABERNA_ID,
          remainingMs: timeoutMs,
          replyAddress,
          body,
        });
      } catch (err) {
        subscriber.error(err);
        return undefined;
      }
      this.pending.set(correlationId, call);
      this.domus
        .dispatch({
          priority: MessagePriorityClass.A2,
          msgType: REQUEST_MESSAGE_TYPE,
          payload,
          to,
          from: REPLY_TABERNA_ID,
          timeoutMs,
        })
        .then(
          () => this.finish(correlationId, call, undefined),
          (err: unknown) => this.finish(correlationId, call, err),
        );
      return () => {
        if (call.done) return;
        call.done = true;
        this.pending.delete(correlationId);
        this.cancel(call, correlationId);
      };
    });
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

  private replyAddressOf(options: RequestOptions): string {
    const addr = options.replyAddress ?? this.domus.localAddr;
    return (addr instanceof DomusAddr ? addr : DomusAddr.parse(addr)).toString();
  }

  private takeCorrelation(): bigint {
    const id = this.nextCorrelation;
    this.nextCorrelation = (id + 1n) & 0xffff_ffff_ffff_ffffn;
    return id;
  }

  private finish(correlationId: bigint, call: PendingCall, err: unknown): void {
    if (call.done) return;
    call.done = true;
    this.pending.delete(correlationId);
    if (err === undefined) {
      call.subscriber.complete();
    } else if (
      AureliaError.is(err, ErrorId.RemoteTabernaRejected) &&
      !(err instanceof RemoteRequestError)
    ) {
      call.subscriber.error(new RemoteRequestError(err.message, call.errorBody));
    } else {
      // The handler counts the caller's time from the request's arrival, so a request that
      // waited in a queue or for a reconnect would outlive this deadline there: stop it now.
      if (AureliaError.is(err, ErrorId.SendTimeout)) this.cancel(call, correlationId, true);
      call.subscriber.error(err);
    }
  }

  private cancel(call: PendingCall, correlationId: bigint, deadline = false): void {
    let payload: Buffer;
    try {
      payload = encodeCancel({ correlationId, replyAddress: call.replyAddress, deadline });
    } catch {
      return;
    }
    // Best effort: if the CANCEL is lost, the handler stops when its next reply is refused.
    this.domus
      .dispatch({
        priority: MessagePriorityClass.A2,
        msgType: CANCEL_MESSAGE_TYPE,
        payload,
        to: call.to,
        from: REPLY_TABERNA_ID,
        timeoutMs: CANCEL_TIMEOUT_MS,
      })
      .catch(() => undefined);
  }

  private async run(): Promise<void> {
    try {
      for await (const request of this.taberna) this.onReply(request);
    } catch {
      // The domus shut down (DomusClosed): the calls still waiting fail through their sends.
    } finally {
      clients.delete(this.domus);
    }
  }

  private onReply(request: TabernaRequest<RequestReplyInbound<never>>): void {
    const frame = request.message;
    if (frame.kind !== 'reply') {
      request.reject(`taberna ${REPLY_TABERNA_ID} only takes REPLY messages`);
      return;
    }
    const call = this.pending.get(frame.correlationId);
    if (!call || call.done) {
      request.reject(`no call ${frame.correlationId} is waiting (finished, cancelled or unknown)`);
      return;
    }
    const refusal = this.check(call, frame, request.peer);
    if (refusal) {
      request.reject(refusal);
      return;
    }
    call.nextSeq++;
    if (frame.error) {
      // The handler failed: the call ends now; the request's rejection follows.
      call.errorBody = Buffer.from(frame.body);
      this.finish(frame.correlationId, call, remoteFailure(call));
    } else {
      call.subscriber.next(frame.body);
      if (frame.last) this.finish(frame.correlationId, call, undefined);
    }
    request.accept();
  }

  private check(call: PendingCall, frame: ReplyFrame, peer: PeerInfo): string | undefined {
    if (call.replier !== undefined && call.replier !== peer.identity) {
      return `replies to call ${frame.correlationId} come from ${call.replier}, not ${peer.identity}`;
    }
    call.replier = peer.identity;
    if (frame.seq !== call.nextSeq) {
      return `reply ${frame.seq} of call ${frame.correlationId} is out of order (expected ${call.nextSeq})`;
    }
    return undefined;
  }
}

function remoteFailure(call: PendingCall): RemoteRequestError {
  return new RemoteRequestError(`the request handler at taberna ${call.to} failed`, call.errorBody);
}
