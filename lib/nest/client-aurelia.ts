// The Nest client proxy: send() over A2 request/reply, emit() as one accepted message, sendBlob().
import 'reflect-metadata';
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  ClientProxy,
  type PacketId,
  type PacketMetadata,
  type ReadPacket,
  type WritePacket,
} from '@nestjs/microservices';
import { Observable, Subject, type Subscription } from 'rxjs';
import { AureliaError, ErrorId } from '../engine/errors.js';
import { Aurelia } from '../engine/aurelia.js';
import { type EncodedMessage, JsonCodec, type MessageCodec } from '../engine/codec.js';
import type { BlobSender } from '../engine/blob/sender.js';
import type { Domus } from '../engine/domus.js';
import { SendOptions } from '../engine/send-options.js';
import { MessagePriorityClass, A3_MESSAGE_TYPE_BASE, type TabernaId } from '../engine/ids.js';
import {
  type CallSink,
  RemoteRequestError,
  RequestReplyClient,
  type RequestOptions,
} from '../engine/services/request-reply-client.js';
import { PacketBodyCodec, asAurelia } from './body.js';
import { blobSendError, callFailure, emitError } from './errors.js';
import type { AureliaEventsMap } from './aurelia.server.js';
import type { AureliaModuleOptions, ResolvedAureliaOptions } from './options.js';
import { normalizePattern, tabernaIdForPattern } from './pattern.js';
import { buildDomus, resolveOnce } from './runtime.js';
import { type Tracing, loadTracing } from './tracing.js';

/**
 * States `ClientAurelia.status` reports: `connecting` while the domus is being built, `ready`
 * once it runs with no peer link yet, `connected` while at least one peer link is up,
 * `disconnected` when the last link dropped (sends still wait for reconnects within their
 * deadline), `closed` after `close()`.
 */
export type AureliaClientStatus = 'connecting' | 'ready' | 'connected' | 'disconnected' | 'closed';

/** Options of a `ClientAurelia` built on an existing domus. */
export type ClientAureliaOptions = Partial<
  Pick<ResolvedAureliaOptions, 'codec' | 'client' | 'requestTimeoutMs'>
>;

/**
 * Nest `ClientProxy` over Aurelia. `send(pattern, data)` calls the `@MessagePattern` handler
 * serving `pattern` (its taberna id is the pattern's hash, or the bigint you pass as pattern)
 * and returns the Observable of its replies: it completes when the handler finished, errors with
 * the handler's error payload (as Nest's built-in transports do), or with an `AureliaError`
 * (`SendTimeout` at the deadline, `PeerRestarted`, `UnknownTaberna`, …). `emit(pattern, data)`
 * completes once the remote handler finished and errors with `RemoteTabernaRejected` (the
 * handler's payload as `cause`) when it threw. `sendBlob(pattern, data, source)` delivers `data`
 * to an `@EventPattern` handler with `source` streamed behind it (see `sendBlob`). Nothing is lost
 * silently and nothing waits past its deadline.
 *
 * Construct it with a `Domus` (borrowed, e.g. the `AureliaModule`'s) or with module options (it
 * builds its own domus in `connect` and shuts it down in `close`).
 */
export class ClientAurelia extends ClientProxy<AureliaEventsMap, AureliaClientStatus> {
  private readonly source: Domus | ResolvedAureliaOptions;
  private readonly body: PacketBodyCodec;
  /** @internal Deadline of `send()` calls, when set. */
  readonly requestTimeoutMs: number | undefined;
  /** The options of every request (one object, shared). */
  private readonly requestOptions: RequestOptions;
  private readonly subscriptions = new Set<Subscription>();
  private readonly pendingListeners: Array<[string, (event: never) => void]> = [];
  private connecting: Promise<RequestReplyClient> | undefined;
  private domus: Domus | undefined;
  private requests: RequestReplyClient | undefined;
  private tracing: Tracing | undefined;
  private owned: Aurelia | undefined;
  private closed = false;
  private hadLinks = false;
  private readonly packetIdPrefix = `${randomBytes(6).toString('base64url')}-`;
  private packetCount = 0;

  constructor(
    source: Domus | AureliaModuleOptions | ResolvedAureliaOptions,
    options: ClientAureliaOptions = {},
  ) {
    super();
    const isDomus = typeof (source as Domus).dispatch === 'function';
    const resolved = isDomus ? undefined : resolveOnce(source as AureliaModuleOptions);
    this.source = isDomus ? (source as Domus) : resolved!;
    this.body = new PacketBodyCodec(options.codec ?? resolved?.codec ?? new JsonCodec<unknown>());
    this.requestTimeoutMs = options.requestTimeoutMs ?? resolved?.requestTimeoutMs;
    this.requestOptions = { timeoutMs: this.requestTimeoutMs };
    const serialization = options.client ?? resolved?.client ?? {};
    this.initializeSerializer(serialization);
    this.initializeDeserializer(serialization);
  }

  /**
   * Gets the domus ready (building it for an owned one) and its request/reply service. Resolves
   * with the domus; rejects with `InvalidConfig` (options, files, bind), `AddressInUse` (another
   * listener holds `listen`) or `DomusClosed` (after `close`). Safe to call repeatedly.
   */
  async connect(): Promise<Domus> {
    if (this.closed) throw new AureliaError(ErrorId.DomusClosed, 'this ClientAurelia is closed');
    if (!this.connecting) {
      this._status$.next('connecting');
      this.connecting = this.start();
      this.connecting.catch(() => {
        this.connecting = undefined;
      });
    }
    await this.connecting;
    return this.domus!;
  }

  /** Stops reporting; shuts an owned domus down (calls in flight fail with `DomusClosed`). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.subscriptions) s.unsubscribe();
    this.subscriptions.clear();
    await this.connecting?.catch(() => undefined);
    if (this.owned) await this.owned.shutdown();
    this._status$.next('closed');
  }

  /** The domus this client sends from. Throws `InvalidConfig` before `connect`. */
  unwrap<T = Domus>(): T {
    if (!this.domus) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        'ClientAurelia is not connected; call connect()',
      );
    }
    return this.domus as T;
  }

  /** Calls `callback` with every reporting event of `type` until the client closes. */
  override on<K extends keyof AureliaEventsMap>(event: K, callback: AureliaEventsMap[K]): void {
    const listener = callback as (event: never) => void;
    if (this.domus) this.subscribe(event, listener);
    else this.pendingListeners.push([event, listener]);
  }

  private async start(): Promise<RequestReplyClient> {
    let domus: Domus;
    if (typeof (this.source as Domus).dispatch === 'function') {
      domus = this.source as Domus;
    } else {
      this.owned = new Aurelia();
      domus = await buildDomus(this.owned, this.source as ResolvedAureliaOptions);
    }
    const requests = await RequestReplyClient.for(domus);
    this.tracing = await loadTracing();
    this.domus = domus;
    this.requests = requests;
    this.watchLinks(domus);
    for (const [event, listener] of this.pendingListeners.splice(0))
      this.subscribe(event, listener);
    return requests;
  }

  /**
   * Nest's `send()`. Once connected, the call is published when the Observable is subscribed,
   * without the connect step Nest runs before every call (an async turn and two operators);
   * before that, and for invalid input, Nest's own `send()` runs. Semantics are Nest's either way:
   * cold, one call per subscription, replies through `createObserver`.
   */
  override send<TResult = unknown, TInput = unknown>(
    pattern: unknown,
    data: TInput,
  ): Observable<TResult> {
    if (this.requests === undefined || this.closed || pattern == null || data == null) {
      return super.send<TResult, TInput>(pattern, data);
    }
    return new Observable<TResult>((observer) =>
      this.publish(this.createPacket(pattern, data), this.createObserver(observer)),
    );
  }

  /**
   * Nest's `emit()`. Once connected, the event is dispatched at once (no connect step) and the
   * returned Observable is hot, as Nest's: it emits the dispatch result and completes, or errors,
   * and a late subscriber hears how it ended. Before connecting, Nest's own `emit()` runs.
   */
  override emit<TResult = unknown, TInput = unknown>(
    pattern: unknown,
    data: TInput,
  ): Observable<TResult> {
    if (this.requests === undefined || this.closed || pattern == null || data == null) {
      return super.emit<TResult, TInput>(pattern, data);
    }
    const outcome = new Subject<TResult>();
    let dispatched: Promise<TResult>;
    try {
      dispatched = this.dispatchEvent<TResult>(this.createPacket(pattern, data));
    } catch (err) {
      // A pattern that cannot be sent fails the Observable, as Nest's own emit() does.
      dispatched = Promise.reject(err as Error);
    }
    dispatched.then(
      (value) => {
        outcome.next(value);
        outcome.complete();
      },
      (err: unknown) => outcome.error(err),
    );
    return outcome.asObservable();
  }

  /**
   * Gives a request packet its id: this client's random prefix and a counter, unique per client
   * like Nest's random ids, at a fraction of their cost. Aurelia matches replies to calls by the
   * message they answer, so the id only serves serializers and handlers that read it.
   */
  protected override assignPacketId(packet: ReadPacket): ReadPacket & PacketId {
    return Object.assign(packet, {
      id: `${this.packetIdPrefix}${(++this.packetCount).toString(36)}`,
    });
  }

  // Synchronous when the serializer and deserializer answer at once: no promise per call.
  protected publish(packet: ReadPacket, callback: (packet: WritePacket) => void): () => void {
    const pattern = patternText(packet.pattern);
    const span = this.tracing?.client('send', pattern, packet);
    const call = new NestCall(this, span ? span.observe(callback) : callback, pattern, span);
    let value: unknown;
    let to: TabernaId;
    try {
      to = tabernaIdForPattern(packet.pattern);
      value = this.serializer.serialize(this.assignPacketId({ ...packet, pattern }));
    } catch (err) {
      call.fail(serializerError(err, 'request'));
      return call.cancel;
    }
    if (isThenable(value)) {
      Promise.resolve(value).then(
        (serialized) => this.startCall(call, to, serialized),
        (err: unknown) => call.fail(serializerError(err, 'request')),
      );
    } else {
      this.startCall(call, to, value);
    }
    return call.cancel;
  }

  private startCall(call: NestCall, to: TabernaId, serialized: unknown): void {
    if (call.cancelled) return;
    let body: Buffer;
    try {
      body = this.body.encode(serialized);
    } catch (err) {
      call.fail(err);
      return;
    }
    call.started(this.requests!.call(to, body, this.requestOptions, call));
  }

  /** @internal Turns one reply body into Nest's write packet (maybe asynchronously). */
  readReply(reply: Buffer): WritePacket | Promise<WritePacket> {
    const packet = this.deserializer.deserialize(this.body.decode(reply));
    return isThenable(packet) ? Promise.resolve(packet).then(replyPacket) : replyPacket(packet);
  }

  /** @internal Turns a call's failure into Nest's error packet (maybe asynchronously). */
  readFailure(err: unknown): WritePacket | Promise<WritePacket> {
    if (!(err instanceof RemoteRequestError) || err.body === undefined || err.body.length === 0) {
      return { err };
    }
    const fallback = (): WritePacket => ({ err });
    try {
      const packet = this.deserializer.deserialize(this.body.decode(err.body));
      if (isThenable(packet)) {
        return Promise.resolve(packet).then((p) => errorPacket(p) ?? fallback(), fallback);
      }
      return errorPacket(packet) ?? fallback();
    } catch {
      // Unreadable error body: report the rejection itself.
      return fallback();
    }
  }

  /**
   * Sends `data` to the `@EventPattern` handler serving `pattern` (serialized like `emit`) and,
   * once the handler accepted it — by taking the stream with `AureliaContext.getBlob()`, or by
   * completing — streams `source` to it with `stream.pipeline`, so a receiver that reads slowly
   * slows `source` down. The returned Observable is cold and runs once: subscribing starts the
   * transfer; it emits `undefined` and completes when the receiver has read every byte.
   *
   * It errors with an `AureliaError`: `RemoteTabernaRejected` when the handler (or a guard, pipe
   * or filter before it) threw before taking the stream, or threw after taking it (the stream is
   * aborted; `cause` holds the handler's error payload when it fit the wire), or ignored the
   * stream; `SendTimeout` when nothing accepted the request within the deadline
   * (`requestTimeoutMs`, bounded by the domus's `sendTimeoutMs`); `BlobStreamIdleTimeout` when
   * the stream made no progress for 2 × `sendTimeoutMs`; `ConnectionLost` when `source` failed
   * (`cause` is its error; the receiver sees an abort, never a truncated success);
   * `PeerRestarted`, `UnknownTaberna`, `BlobBufferFull`, `DomusClosed`, `EncodeFailure`.
   * Unsubscribing before completion aborts the stream on both ends. On any failure `source` is
   * destroyed, as `stream.pipeline` does.
   */
  sendBlob(pattern: unknown, data: unknown, source: Readable): Observable<void> {
    let started = false;
    return new Observable<void>((subscriber) => {
      if (started) {
        subscriber.error(
          new AureliaError(
            ErrorId.InvalidConfig,
            `sendBlob('${patternText(pattern)}') runs once: its source stream was already taken by the first subscription`,
          ),
        );
        return undefined;
      }
      started = true;
      let transfer: BlobTransfer;
      try {
        transfer = new BlobTransfer(patternText(pattern));
      } catch (err) {
        source.destroy();
        subscriber.error(err);
        return undefined;
      }
      const traced: { metadata?: PacketMetadata } = {};
      const span = this.tracing?.client('sendBlob', transfer.pattern, traced);
      const sent = this.transferBlob(transfer, pattern, data, source, traced.metadata);
      (span ? span.settle(sent) : sent).then(
        () => {
          transfer.settled = true;
          subscriber.next();
          subscriber.complete();
        },
        (err: unknown) => {
          transfer.settled = true;
          subscriber.error(err);
        },
      );
      return () => transfer.cancel();
    });
  }

  private async transferBlob(
    transfer: BlobTransfer,
    pattern: unknown,
    data: unknown,
    source: Readable,
    metadata: PacketMetadata | undefined,
  ): Promise<void> {
    let sender: BlobSender;
    try {
      await this.connect();
      // The pattern as emit() sends it: an explicit bigint id as its digits, which JSON can carry.
      const text = transfer.pattern;
      const encoded = await this.encodeEvent(
        metadata ? { pattern: text, data, metadata } : { pattern: text, data },
      );
      sender = await transfer.open(this.domus!, tabernaIdForPattern(pattern), encoded, {
        timeoutMs: this.requestTimeoutMs,
      });
    } catch (err) {
      source.destroy();
      const failure = asAurelia(
        err,
        ErrorId.EncodeFailure,
        'the blob request could not be serialized',
      );
      throw blobSendError(
        callFailure(failure, transfer.pattern, this.requestTimeoutMs) as AureliaError,
        transfer.pattern,
      );
    }
    try {
      await pipeline(source, sender);
    } catch (err) {
      throw blobSendError(sender.failure ?? err, transfer.pattern);
    }
  }

  protected dispatchEvent<T = unknown>(packet: ReadPacket): Promise<T> {
    const span = this.tracing?.client('emit', patternText(packet.pattern), packet);
    return span ? span.settle(this.emitPacket<T>(packet)) : this.emitPacket<T>(packet);
  }

  // Not `async`: an event whose serializer answers at once takes no promise besides the send's.
  private emitPacket<T>(packet: ReadPacket): Promise<T> {
    const pattern = patternText(packet.pattern);
    let value: unknown;
    try {
      value = this.serializer.serialize({ ...packet, pattern });
    } catch (err) {
      return Promise.reject(serializerError(err, 'event'));
    }
    if (isThenable(value)) {
      return Promise.resolve(value).then(
        (serialized) => this.sendEvent<T>(packet.pattern, pattern, serialized),
        (err: unknown) => {
          throw serializerError(err, 'event');
        },
      );
    }
    return this.sendEvent<T>(packet.pattern, pattern, value);
  }

  private sendEvent<T>(raw: unknown, pattern: string, value: unknown): Promise<T> {
    let encoded: EncodedMessage;
    let to: TabernaId;
    try {
      to = tabernaIdForPattern(raw);
      encoded = this.encodeEvent(value);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.domus!.dispatch({
      priority: MessagePriorityClass.A3,
      msgType: encoded.msgType,
      payload: encoded.payload,
      to,
      timeoutMs: this.requestTimeoutMs,
    }).then(
      () => undefined as T,
      (err: unknown) => {
        throw emitError(callFailure(err, pattern, this.requestTimeoutMs), pattern);
      },
    );
  }

  /** Encodes a serialized event packet; throws `EncodeFailure` naming the problem. */
  private encodeEvent(value: unknown): EncodedMessage {
    let encoded;
    try {
      encoded = this.body.codec.encodeApp(value);
    } catch (err) {
      throw asAurelia(err, ErrorId.EncodeFailure, 'the event could not be encoded');
    }
    if (encoded.msgType < A3_MESSAGE_TYPE_BASE) {
      throw new AureliaError(
        ErrorId.EncodeFailure,
        `the codec's message type ${encoded.msgType} is below the A3 range (${A3_MESSAGE_TYPE_BASE})`,
      );
    }
    return encoded;
  }

  private watchLinks(domus: Domus): void {
    const update = (): void => {
      if (this.closed) return;
      const links = domus.reporting.connectedPeers().length;
      this._status$.next(links > 0 ? 'connected' : this.hadLinks ? 'disconnected' : 'ready');
      if (links > 0) this.hadLinks = true;
    };
    update();
    const subscription = domus.reporting.events$.subscribe((event) => {
      if (event.type === 'PeerConnected' || event.type === 'PeerDisconnected') update();
    });
    this.subscriptions.add(subscription);
  }

  private subscribe(type: string, listener: (event: never) => void): void {
    const domus = this.domus;
    if (!domus || this.closed) return;
    const subscription = domus.reporting.events$.subscribe((event) => {
      if (event.type === type) listener(event as never);
    });
    this.subscriptions.add(subscription);
  }
}

/** The pattern as text in packets: Nest's normalized form, or the explicit id's digits. */
function patternText(pattern: unknown): string {
  return typeof pattern === 'bigint' ? pattern.toString() : normalizePattern(pattern);
}

/** A user serializer's failure as the `EncodeFailure` callers get for any unsendable packet. */
function serializerError(err: unknown, what: 'request' | 'event'): AureliaError {
  return asAurelia(err, ErrorId.EncodeFailure, `the serializer failed on the ${what}`);
}

/** A codec that hands the engine a message this client already encoded. */
const PRE_ENCODED: MessageCodec<EncodedMessage> = {
  encodeApp: (message) => message,
  decodeApp: () => {
    throw new AureliaError(ErrorId.DecodeFailure, 'a pre-encoded message is never decoded');
  },
};

/**
 * One `sendBlob` run: the deadline of its request and the cancellation that may come at any
 * point (before the remote accepted, while streaming, never after it settled).
 */
class BlobTransfer {
  settled = false;
  private sender: BlobSender | undefined;
  private failure: unknown;
  private reject: ((err: unknown) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly pattern: string) {}

  /**
   * Sends the request and resolves with the stream once the remote accepted it. With
   * `timeoutMs` it rejects with `SendTimeout` after that long; a stream accepted later is
   * aborted at once, so the handler never waits for bytes that will not come.
   */
  open(
    domus: Domus,
    to: bigint,
    encoded: EncodedMessage,
    { timeoutMs }: { timeoutMs: number | undefined },
  ): Promise<BlobSender> {
    return new Promise<BlobSender>((resolve, reject) => {
      if (this.failure !== undefined) {
        // Cancelled while connecting or serializing: nothing is sent.
        reject(this.failure);
        return;
      }
      this.reject = reject;
      if (timeoutMs !== undefined) {
        this.timer = setTimeout(
          () =>
            this.fail(
              new AureliaError(
                ErrorId.SendTimeout,
                `the handler of '${this.pattern}' did not accept the blob request within ${timeoutMs} ms`,
              ),
            ),
          timeoutMs,
        );
      }
      domus.send(PRE_ENCODED, to, encoded, SendOptions.BLOB).then(
        (outcome) => {
          if (outcome.kind !== 'blob') {
            this.fail(new AureliaError(ErrorId.ProtocolViolation, 'a blob send opened no stream'));
            return;
          }
          if (this.failure) {
            // Too late: the caller already heard why; the handler must not wait for bytes.
            abort(outcome.sender, this.failure);
            return;
          }
          clearTimeout(this.timer);
          this.sender = outcome.sender;
          resolve(outcome.sender);
        },
        (err: unknown) => this.fail(err),
      );
    });
  }

  /** The caller unsubscribed: aborts the stream (now, or as soon as the remote accepts). */
  cancel(): void {
    if (this.settled) return;
    const reason = this.abortReason();
    if (this.sender) abort(this.sender, reason);
    else this.fail(reason);
  }

  /** Ends the request phase with `err` (once). */
  private fail(err: unknown): void {
    if (this.failure !== undefined || this.sender) return;
    this.failure = err;
    clearTimeout(this.timer);
    this.reject?.(err);
  }

  private abortReason(): AureliaError {
    return new AureliaError(
      ErrorId.ConnectionLost,
      `the blob for '${this.pattern}' was aborted: the caller unsubscribed`,
    );
  }
}

/** Aborts `sender` (the receiver fails with `reason`) without an unhandled `'error'`. */
function abort(sender: BlobSender, reason: unknown): void {
  sender.once('error', () => undefined);
  sender.destroy(reason instanceof Error ? reason : undefined);
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}

function replyPacket(packet: unknown): WritePacket {
  const p = packet as WritePacket;
  if (p.err !== undefined) return { err: p.err };
  return { response: p.response, isDisposed: p.isDisposed };
}

function errorPacket(packet: unknown): WritePacket | undefined {
  const p = packet as WritePacket;
  return p.err !== undefined ? { err: p.err } : undefined;
}

/**
 * One `send()` call as Nest sees it: the engine call's replies become Nest write packets, in
 * order even when the deserializer is asynchronous (a chain is only built then), and the first
 * error or completion ends it.
 */
class NestCall implements CallSink {
  cancelled = false;
  private stop: (() => void) | undefined;
  /** Pending asynchronous deliveries: later ones wait behind it to keep the order. */
  private tail: Promise<void> | undefined;

  constructor(
    private readonly client: ClientAurelia,
    private readonly callback: (packet: WritePacket) => void,
    private readonly pattern: string,
    private readonly span: { end(): void } | undefined,
  ) {}

  readonly cancel = (): void => {
    this.cancelled = true;
    this.span?.end();
    this.stop?.();
  };

  started(stop: () => void): void {
    this.stop = stop;
    if (this.cancelled) stop();
  }

  next(body: Buffer): void {
    this.deliver(() => this.client.readReply(body));
  }

  error(err: unknown): void {
    this.deliver(() =>
      this.client.readFailure(callFailure(err, this.pattern, this.client.requestTimeoutMs)),
    );
  }

  complete(): void {
    this.deliver(disposed);
  }

  fail(err: unknown): void {
    this.deliver(() => ({ err }));
  }

  private deliver(make: () => WritePacket | Promise<WritePacket>): void {
    if (this.tail !== undefined) {
      const run = this.tail.then(() => this.settle(make));
      this.hold(run);
      return;
    }
    const out = this.settle(make);
    if (out !== undefined) this.hold(out);
  }

  private hold(run: Promise<void>): void {
    this.tail = run;
    void run.then(() => {
      if (this.tail === run) this.tail = undefined;
    });
  }

  /** Produces and hands over one packet; returns a promise only when `make` was asynchronous. */
  private settle(make: () => WritePacket | Promise<WritePacket>): Promise<void> | undefined {
    if (this.cancelled) return undefined;
    let out: WritePacket | Promise<WritePacket>;
    try {
      out = make();
    } catch (err) {
      out = { err: unreadable(err) };
    }
    if (isThenable(out)) {
      return Promise.resolve(out).then(
        (packet) => this.hand(packet),
        (err: unknown) => this.hand({ err: unreadable(err) }),
      );
    }
    this.hand(out);
    return undefined;
  }

  private hand(packet: WritePacket): void {
    if (this.cancelled) return;
    if (packet.err !== undefined || packet.isDisposed) {
      this.cancelled = true;
      // An unreadable reply ends the call here; the handler is told to stop.
      this.stop?.();
    }
    this.callback(packet);
  }
}

function disposed(): WritePacket {
  return DISPOSED;
}

const DISPOSED: WritePacket = Object.freeze({ isDisposed: true });

function unreadable(err: unknown): AureliaError {
  return asAurelia(err, ErrorId.DecodeFailure, 'the reply could not be read');
}
