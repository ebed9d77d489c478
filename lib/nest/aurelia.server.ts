// The Nest transport strategy: every handler pattern becomes a taberna on the domus.
import 'reflect-metadata';
import type { Readable } from 'node:stream';
import {
  type CustomTransportStrategy,
  type IncomingEvent,
  type IncomingRequest,
  type MessageHandler,
  Server,
  type WritePacket,
} from '@nestjs/microservices';
import { NO_MESSAGE_HANDLER } from '@nestjs/microservices/constants.js';
import { Observable, type Subscription, isObservable, takeUntil } from 'rxjs';
import { AureliaError, ErrorId } from '../engine/errors.js';
import { Aurelia } from '../engine/aurelia.js';
import { JsonCodec } from '../engine/codec.js';
import type { Domus } from '../engine/domus.js';
import { tabernaIdText, type TabernaId } from '../engine/ids.js';
import type { TabernaRequest } from '../engine/taberna/request.js';
import type { Taberna } from '../engine/taberna/taberna.js';
import {
  type ReplyChannel,
  RequestReplyResponder,
} from '../engine/services/request-reply-responder.js';
import { requestTabernaOptions } from '../engine/services/request-reply.js';
import {
  type RequestFrame,
  RequestReplyCodec,
  type RequestReplyInbound,
} from '../engine/services/request-reply-wire.js';
import type { DomusReportingEvent } from '../engine/reporting/reporting.js';
import { PacketBodyCodec, asAurelia } from './body.js';
import { AuthorizationGate, type AuthorizationRefusal } from './authorization.js';
import { AureliaContext, HandlerBlob } from './context.js';
import { handlersWithoutListener, messageOf, rejectionReason } from './errors.js';
import type { AureliaModuleOptions, ResolvedAureliaOptions } from './options.js';
import { tabernaIdForRoute } from './pattern.js';
import { buildDomus, resolveOnce } from './runtime.js';
import { type Tracing, loadTracing } from './tracing.js';
import { TABERNA_ID_EXTRA } from './tokens.js';

/** Transport id of Aurelia handlers: `@MessagePattern('x', AURELIA_TRANSPORT)` binds to it only. */
export const AURELIA_TRANSPORT = Symbol('AURELIA_TRANSPORT');

/** States `AureliaServer.status` reports. */
export type AureliaServerStatus = 'listening' | 'closed';

/** Callbacks `AureliaServer.on` takes: one per reporting event type. */
export type AureliaEventsMap = {
  [K in DomusReportingEvent['type']]: (event: Extract<DomusReportingEvent, { type: K }>) => void;
};

/** A handler's taberna and what it serves. */
interface Served {
  readonly taberna: Taberna<RequestReplyInbound<unknown>>;
  readonly pattern: string;
  readonly done: Promise<void>;
}

/**
 * The Aurelia transport strategy. Each `@MessagePattern` / `@EventPattern` handler becomes a
 * taberna whose id is set by `@TabernaHandler` or is the stable hash of the normalized pattern
 * (`tabernaIdForRoute`). Events are accepted when the handler (and everything it returned)
 * finished, and rejected with the handler's error otherwise; messages are answered over the A2
 * request/reply service, one reply per value of the handler's Observable. An event sent with
 * `sendBlob` is accepted as soon as its handler takes the stream (`AureliaContext.getBlob()`);
 * a handler that fails after that, drops the stream unread or ignores it aborts the transfer.
 * Message handlers refuse blobs.
 *
 * Construct it with a `Domus` (borrowed: e.g. the `AureliaModule`'s, via `app.get(AureliaServer)`)
 * or with module options (standalone microservice: it builds its own domus in `listen` and shuts
 * it down in `close`).
 */
export class AureliaServer
  extends Server<AureliaEventsMap, AureliaServerStatus>
  implements CustomTransportStrategy
{
  override readonly transportId = AURELIA_TRANSPORT;
  override readonly propagatesEventHandlerErrors = true;
  private readonly body: PacketBodyCodec;
  private readonly served = new Map<TabernaId, Served>();
  private readonly subscriptions = new Set<Subscription>();
  private readonly pendingListeners: Array<[string, (event: never) => void]> = [];
  private responder: RequestReplyResponder | undefined;
  private authorization: AuthorizationGate | undefined;
  private tracing: Tracing | undefined;
  private domus: Domus | undefined;
  private owned: Aurelia | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    source: Domus | AureliaModuleOptions | ResolvedAureliaOptions,
    options: Partial<
      Pick<ResolvedAureliaOptions, 'codec' | 'server' | 'authorization' | 'logger'>
    > = {},
  ) {
    super();
    const isDomus = typeof (source as Domus).dispatch === 'function';
    const resolved = isDomus ? undefined : resolveOnce(source as AureliaModuleOptions);
    this.source = isDomus ? (source as Domus) : resolved!;
    this.policy = { ...resolved, ...options };
    const serialization = options.server ?? resolved?.server ?? {};
    this.body = new PacketBodyCodec(options.codec ?? resolved?.codec ?? new JsonCodec<unknown>());
    this.initializeSerializer(serialization);
    this.initializeDeserializer(serialization);
  }

  private readonly source: Domus | ResolvedAureliaOptions;
  /** Nest's default processing start hook (it only runs the handler). */
  private readonly plainStartHook = this.onProcessingStartHook;
  private readonly policy: Partial<Pick<ResolvedAureliaOptions, 'authorization' | 'logger'>>;

  /**
   * Registers one taberna per handler and starts serving; calls `callback()` when every taberna
   * is registered, or `callback(err)` with an `AureliaError`: `TabernaAlreadyRegistered` (two
   * handlers, or another registration, on one id — the message names the patterns),
   * `InvalidConfig` (building the owned domus failed, or there are handlers and the domus has no
   * listen address), `DomusClosed`.
   */
  async listen(callback: (err?: unknown) => void): Promise<void> {
    try {
      const domus = await this.ensureDomus();
      this.responder = new RequestReplyResponder(
        () => domus.config.snapshot().maxRequestDeadlineMs,
      );
      this.authorization = AuthorizationGate.for(this.policy, this.messageHandlers, domus);
      this.tracing = await loadTracing();
      const ids = this.plan();
      if (ids.size > 0 && !domus.hasListener) throw handlersWithoutListener([...ids.values()]);
      for (const [id, pattern] of ids) {
        const taberna = await domus.taberna(
          id,
          new RequestReplyCodec(this.body.codec),
          requestTabernaOptions(),
        );
        this.served.set(id, { taberna, pattern, done: this.serve(taberna, pattern) });
      }
      for (const [event, listener] of this.pendingListeners.splice(0))
        this.subscribe(event, listener);
      this._status$.next('listening');
    } catch (err) {
      await this.close();
      callback(err);
      return;
    }
    callback();
  }

  /**
   * Stops serving: first drains the domus (`Domus.drain`: callers are told to send elsewhere,
   * new calls are refused with `Draining`, the calls already accepted get up to `drainTimeoutMs`
   * to finish), then requests still open end (their callers' `send()` errors with
   * `RemoteTabernaRejected`: the service is closed), handler streams are unsubscribed, the
   * tabernae are deregistered (later calls get `UnknownTaberna`), and an owned domus is shut
   * down. Idempotent.
   */
  close(): Promise<void> {
    if (!this.closing) this.closing = this.doClose();
    return this.closing;
  }

  /**
   * Calls `callback` with every reporting event of `type` (`'PeerConnected'`,
   * `'PeerSessionRestarted'`, …) until the server closes.
   */
  on<K extends keyof AureliaEventsMap>(event: K, callback: AureliaEventsMap[K]): void {
    const listener = callback as (event: never) => void;
    if (this.domus) this.subscribe(event, listener);
    else this.pendingListeners.push([event, listener]);
  }

  /** The domus serving the handlers. Throws `AureliaError(InvalidConfig)` before `listen`. */
  unwrap<T = Domus>(): T {
    if (!this.domus) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        'AureliaServer has no domus yet; call listen() (app.startAllMicroservices()) first',
      );
    }
    return this.domus as T;
  }

  /** The taberna id each handler pattern listens on (after `listen`). */
  get tabernae(): ReadonlyMap<string, TabernaId> {
    const out = new Map<string, TabernaId>();
    for (const [id, served] of this.served) out.set(served.pattern, id);
    return out;
  }

  /**
   * Runs an event handler and waits for everything it returned, so the caller hears about a
   * failure (Nest's base transport only starts it).
   */
  override async handleEvent(
    pattern: string,
    packet: IncomingEvent,
    context: AureliaContext,
  ): Promise<void> {
    const handler = this.handlerFor(pattern);
    if (!handler) throw { status: 'error', message: `no event handler for '${pattern}'` };
    await new Promise<void>((resolve, reject) => {
      const started = this.runWithProcessingHooks(context, async (runEndHook) => {
        const result: unknown = await handler(packet.data, context);
        if (!isObservable(result)) {
          runEndHook();
          resolve();
          return;
        }
        result.subscribe({
          error: (err: unknown) => {
            runEndHook();
            reject(err);
          },
          complete: () => {
            runEndHook();
            resolve();
          },
        });
      }) as unknown;
      if (started instanceof Promise) started.catch(reject);
    });
  }

  private async ensureDomus(): Promise<Domus> {
    if (this.domus) return this.domus;
    if (this.closing) throw new AureliaError(ErrorId.DomusClosed, 'AureliaServer is closed');
    if (typeof (this.source as Domus).dispatch === 'function') {
      this.domus = this.source as Domus;
    } else {
      this.owned = new Aurelia();
      this.domus = await buildDomus(this.owned, this.source as ResolvedAureliaOptions);
    }
    return this.domus;
  }

  /**
   * The handler registered under `pattern`. Tabernae carry the normalized pattern the handler was
   * registered with, so a direct lookup finds it; Nest's own lookup (which first tries to parse
   * the pattern as JSON, throwing for every plain string) is only the fallback.
   */
  private handlerFor(pattern: string): MessageHandler | null {
    return this.messageHandlers.get(pattern) ?? this.getHandlerByPattern(pattern);
  }

  /** Maps every handler to its taberna id; two patterns on one id fail here, naming both. */
  private plan(): Map<TabernaId, string> {
    const ids = new Map<TabernaId, string>();
    for (const [pattern, handler] of this.messageHandlers) {
      const explicit = (handler.extras as Record<string, unknown> | undefined)?.[TABERNA_ID_EXTRA];
      const id = typeof explicit === 'bigint' ? explicit : tabernaIdForRoute(pattern);
      const other = ids.get(id);
      if (other !== undefined) {
        throw new AureliaError(
          ErrorId.TabernaAlreadyRegistered,
          `handlers '${other}' and '${pattern}' both map to taberna ${tabernaIdText(id)}`,
        );
      }
      ids.set(id, pattern);
    }
    return ids;
  }

  private async serve(
    taberna: Taberna<RequestReplyInbound<unknown>>,
    pattern: string,
  ): Promise<void> {
    try {
      await taberna.serveEach((request) => this.take(request, taberna.id, pattern));
    } catch {
      // The domus shut down (DomusClosed): nothing more arrives.
    }
  }

  /** Starts handling one request in the turn it arrived. */
  private take(
    request: TabernaRequest<RequestReplyInbound<unknown>>,
    tabernaId: TabernaId,
    pattern: string,
  ): void {
    const frame = request.message;
    const refusal = this.authorization?.check(request.peer, pattern);
    if (refusal) {
      this.refuse(request, frame, tabernaId, refusal);
      return;
    }
    if (request.blobReceiver !== undefined && frame.kind !== 'message') {
      request.reject(
        rejectionReason({
          status: 'error',
          message: `'${pattern}' takes blobs only with events (sendBlob), not with a ${frame.kind}`,
        }),
      );
      return;
    }
    switch (frame.kind) {
      case 'message':
        if (request.blobReceiver === undefined) {
          this.onPlainEvent(request, frame.message, pattern, tabernaId);
        } else {
          void this.onBlobEvent(
            request,
            request.blobReceiver as Readable,
            frame.message,
            pattern,
            tabernaId,
          );
        }
        break;
      case 'request':
        this.onRequest(request, frame, pattern, tabernaId);
        break;
    }
  }

  /** True while no processing start or end hook is set: handlers may run without them. */
  private plainProcessing(): boolean {
    return (
      this.onProcessingStartHook === this.plainStartHook &&
      (this.onProcessingEndHook as unknown) === undefined
    );
  }

  /** An event without a blob: decided when its handler (and what it returned) finished. */
  private onPlainEvent(
    request: TabernaRequest<unknown>,
    value: unknown,
    pattern: string,
    tabernaId: TabernaId,
  ): void {
    try {
      const deserialized = this.deserializer.deserialize(value, { channel: pattern });
      if (!isThenable(deserialized)) {
        this.runPlainEvent(request, deserialized as IncomingEvent, pattern, tabernaId);
        return;
      }
      Promise.resolve(deserialized)
        .then((packet) => this.runPlainEvent(request, packet as IncomingEvent, pattern, tabernaId))
        .catch((err: unknown) => refuseEvent(request, err));
    } catch (err) {
      refuseEvent(request, err);
    }
  }

  /**
   * Runs the handler of a plain event. With no processing hook or span around it, the handler is
   * called directly and a synchronous one decides the event in this turn.
   */
  private runPlainEvent(
    request: TabernaRequest<unknown>,
    packet: IncomingEvent,
    pattern: string,
    tabernaId: TabernaId,
  ): void {
    const handler = this.handlerFor(pattern);
    if (!handler?.isEventHandler) {
      const message = `'${pattern}' takes messages (send), not events`;
      request.reject(rejectionReason({ status: 'error', message }));
      return;
    }
    const context = new AureliaContext([request.peer, tabernaId, pattern, packet.metadata]);
    const span = this.tracing?.server(pattern, packet.metadata, request.peer, tabernaId);
    if (span || !this.plainProcessing()) {
      const handle = (): Promise<void> => this.handleEvent(pattern, packet, context);
      (span ? span.settle(span.run(handle)) : handle()).then(
        () => request.accept(),
        (err: unknown) => refuseEvent(request, err),
      );
      return;
    }
    settleEvent(request, handler(packet.data, context));
  }

  /**
   * Runs the event handler of a blob event and decides the request: accepted when the handler takes the blob
   * (`getBlob()`) or completes, rejected when it throws before. A blob taken and then failed,
   * dropped unread or ignored is aborted, so the sender never sees a truncated success.
   */
  private async onBlobEvent(
    request: TabernaRequest<unknown>,
    blob: Readable,
    value: unknown,
    pattern: string,
    tabernaId: TabernaId,
  ): Promise<void> {
    let view: HandlerBlob | undefined;
    let settled = false;
    const takeBlob = (): Readable => {
      if (!view) {
        request.accept();
        view = new HandlerBlob(blob, () => {
          if (settled) abortBlob(blob, droppedBlob(pattern));
        });
      }
      return view;
    };
    try {
      const deserialized = this.deserializer.deserialize(value, { channel: pattern });
      const packet = (
        deserialized instanceof Promise ? await deserialized : deserialized
      ) as IncomingEvent;
      const handler = this.handlerFor(pattern);
      if (!handler?.isEventHandler) {
        const message = `'${pattern}' is a message handler: blobs go to event handlers (@EventPattern)`;
        request.reject(rejectionReason({ status: 'error', message }));
        return;
      }
      const context = new AureliaContext(
        [request.peer, tabernaId, pattern, packet.metadata],
        takeBlob,
      );
      const span = this.tracing?.server(pattern, packet.metadata, request.peer, tabernaId);
      const handle = (): Promise<void> => this.handleEvent(pattern, packet, context);
      await (span ? span.settle(span.run(handle)) : handle());
      settled = true;
      request.accept();
      if (!view) {
        abortBlob(
          blob,
          `the handler of '${pattern}' completed without taking the blob (AureliaContext.getBlob())`,
        );
      } else if (view.destroyed) {
        abortBlob(blob, droppedBlob(pattern));
      }
    } catch (err) {
      settled = true;
      if (view) abortBlob(blob, rejectionReason(errorPayload(err), BLOB_ABORT_REASON_BYTES));
      else request.reject(rejectionReason(errorPayload(err)));
    }
  }

  /** Answers a call the authorization policy refused; no guard or handler sees it. */
  private refuse(
    request: TabernaRequest<unknown>,
    frame: RequestReplyInbound<unknown>,
    tabernaId: TabernaId,
    refusal: AuthorizationRefusal,
  ): void {
    const channel =
      frame.kind === 'request' && !request.blobReceiver
        ? this.responder?.accept(request, frame, tabernaId)
        : undefined;
    if (channel) void this.respond(channel, '', { err: refusal });
    else request.reject(rejectionReason(refusal));
  }

  private onRequest(
    request: TabernaRequest<unknown>,
    frame: RequestFrame,
    pattern: string,
    tabernaId: TabernaId,
  ): void {
    const channel = this.responder?.accept(request, frame, tabernaId);
    if (!channel) return;
    const fail = (err: unknown): unknown => this.respond(channel, '', { err: errorPayload(err) });
    try {
      const deserialized = this.deserializer.deserialize(this.body.decode(channel.body), {
        channel: pattern,
      });
      const running = isThenable(deserialized)
        ? Promise.resolve(deserialized).then((packet) =>
            this.runRequest(channel, pattern, tabernaId, packet as IncomingRequest),
          )
        : this.runRequest(channel, pattern, tabernaId, deserialized as IncomingRequest);
      if (running instanceof Promise) running.catch(fail);
    } catch (err) {
      fail(err);
    }
  }

  /**
   * Runs the handler of one request and answers it. Returns a promise only while work goes on
   * after this turn; throws (or rejects) with what the handler path threw.
   */
  private runRequest(
    channel: ReplyChannel,
    pattern: string,
    tabernaId: TabernaId,
    packet: IncomingRequest,
  ): unknown {
    const id = typeof packet.id === 'string' ? packet.id : '';
    const handler: MessageHandler | null = this.handlerFor(pattern);
    if (!handler || handler.isEventHandler) {
      const message = handler
        ? `'${pattern}' takes events (emit), not messages`
        : NO_MESSAGE_HANDLER;
      return this.respond(channel, id, { err: { status: 'error', message } });
    }
    const context = new AureliaContext([channel.peer, tabernaId, pattern, packet.metadata]);
    const span = this.tracing?.server(pattern, packet.metadata, channel.peer, tabernaId);
    if (!span && this.plainProcessing()) {
      // No hook or span to run around the handler: its result is answered directly, with the
      // meaning Nest's `transformToObservable` and `send` give it.
      const result: unknown = handler(packet.data, context);
      return result instanceof Promise
        ? result.then((value: unknown) => this.answer(channel, id, value))
        : this.answer(channel, id, result);
    }
    const aborted = abortedBy(channel);
    const handle = (): unknown =>
      this.handleRequest(
        context,
        async () =>
          this.transformToObservable(await handler(packet.data, context)).pipe(takeUntil(aborted)),
        (reply) => {
          span?.reply(reply);
          return this.respond(channel, id, reply);
        },
      );
    return span ? span.run(handle) : handle();
  }

  /** Answers a handler's value: one final reply, or one reply per value of an Observable. */
  private answer(channel: ReplyChannel, id: string, value: unknown): unknown {
    if (!isObservable(value))
      return this.respond(channel, id, { response: value, isDisposed: true });
    this.send(value.pipe(takeUntil(abortedBy(channel))), (reply) =>
      this.respond(channel, id, reply),
    );
    return undefined;
  }

  /**
   * Sends one of Nest's write packets: a value, the error, or the completion. Synchronous when
   * the serializer is: a single-value reply leaves in the same turn the handler's value arrived.
   */
  private respond(
    channel: ReplyChannel,
    id: string,
    packet: WritePacket,
  ): Promise<unknown> | undefined {
    if (channel.ended) return undefined;
    let step: Promise<unknown> | unknown;
    try {
      if (packet.err !== undefined) {
        const err = packet.err;
        step = this.encodeThen({ id, err }, (body) => channel.fail(body, rejectionReason(err)));
      } else if (!packet.isDisposed) {
        step = this.encodeThen({ id, response: packet.response }, (body) => channel.next(body));
      } else if (packet.response !== undefined) {
        // Nest merges a final value into the completion: it travels as the last reply.
        step = this.encodeThen({ id, response: packet.response }, (body) => channel.complete(body));
      } else {
        step = channel.complete();
      }
    } catch (err) {
      return this.failEncoding(channel, id, err);
    }
    return isThenable(step)
      ? Promise.resolve(step).catch((err: unknown) => this.failEncoding(channel, id, err))
      : undefined;
  }

  /** Serializes and encodes `packet`, then runs `then` with the body (at once when possible). */
  private encodeThen<R>(
    packet: WritePacket & { id: string },
    then: (body: Buffer) => R,
  ): R | Promise<R> {
    const serialized = this.serializer.serialize(packet);
    if (isThenable(serialized)) {
      return Promise.resolve(serialized).then((value) => then(this.body.encode(value)));
    }
    return then(this.body.encode(serialized));
  }

  // The reply could not be encoded: the caller hears why instead of waiting for its deadline.
  private async failEncoding(channel: ReplyChannel, id: string, err: unknown): Promise<boolean> {
    const failure = asAurelia(err, ErrorId.EncodeFailure, 'the reply could not be serialized');
    let body: Buffer;
    try {
      body = this.body.encode(
        await this.serializer.serialize({ id, err: { status: 'error', message: failure.message } }),
      );
    } catch {
      body = Buffer.alloc(0);
    }
    return channel.fail(body, failure.message);
  }

  private subscribe(type: string, listener: (event: never) => void): void {
    const domus = this.domus;
    if (!domus) return;
    const subscription = domus.reporting.events$.subscribe((event) => {
      if (event.type === type) listener(event as never);
    });
    this.subscriptions.add(subscription);
  }

  private async doClose(): Promise<void> {
    // Drain first: callers are told to send elsewhere, and the requests already here finish.
    await this.domus?.drain();
    this.responder?.close();
    for (const served of this.served.values()) served.taberna.close();
    await Promise.all([...this.served.values()].map((s) => s.done));
    this.served.clear();
    for (const s of this.subscriptions) s.unsubscribe();
    this.subscriptions.clear();
    if (this.owned) await this.owned.shutdown();
    this._status$.next('closed');
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null | undefined)?.then === 'function';
}

/** Nest's error payload for anything a handler path threw (already shaped, or raw). */
function errorPayload(err: unknown): unknown {
  if (err instanceof AureliaError) return { status: 'error', message: err.toString() };
  if (err instanceof Error) return { status: 'error', message: messageOf(err) };
  return err;
}

/** Decides an event by what its handler returned: a value now, a Promise or Observable later. */
function settleEvent(request: TabernaRequest<unknown>, outcome: unknown): void {
  if (outcome instanceof Promise) {
    outcome.then(
      (value: unknown) => settleEvent(request, value),
      (err: unknown) => refuseEvent(request, err),
    );
  } else if (isObservable(outcome)) {
    outcome.subscribe({
      error: (err: unknown) => refuseEvent(request, err),
      complete: () => request.accept(),
    });
  } else {
    request.accept();
  }
}

/** Rejects an event with the handler's error payload. */
function refuseEvent(request: TabernaRequest<unknown>, err: unknown): void {
  request.reject(rejectionReason(errorPayload(err)));
}

/** What an aborted blob stream's error frame carries of the reason. */
const BLOB_ABORT_REASON_BYTES = 1000;

/**
 * Aborts a received blob: the sender's stream fails with `RemoteTabernaRejected` and `reason`.
 * Does nothing to a stream that already ended or failed (the engine decided its outcome).
 */
function abortBlob(blob: Readable, reason: string): void {
  if (blob.destroyed || blob.readableEnded) return;
  // The handler may have dropped its listeners; the abort must not surface as uncaught.
  blob.once('error', () => undefined);
  blob.destroy(new AureliaError(ErrorId.RemoteTabernaRejected, reason));
}

/** An Observable that emits once when the call ends early (completing handler streams early). */
function abortedBy(channel: ReplyChannel): Observable<void> {
  return new Observable<void>((subscriber) => channel.onAbort(() => subscriber.next()));
}

function droppedBlob(pattern: string): string {
  return `the handler of '${pattern}' stopped reading the blob before its end`;
}
