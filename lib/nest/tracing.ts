// OpenTelemetry spans and W3C trace context for Aurelia calls, when @opentelemetry/api is present.
import type * as OpenTelemetry from '@opentelemetry/api';
import type { PacketMetadata, WritePacket } from '@nestjs/microservices';
import type { TabernaId } from '../engine/ids.js';
import type { PeerInfo } from '../engine/taberna/request.js';
import { messageOf } from './errors.js';

type Api = typeof OpenTelemetry;

/** Value of the `rpc.system` attribute of Aurelia spans. */
export const RPC_SYSTEM = 'aurelia';
/** Name of the tracer Aurelia's spans come from. */
export const TRACER_NAME = 'aurelia-mesh';

/** How a client call was made: the span's `aurelia.call` attribute. */
export type TracedCall = 'send' | 'emit' | 'sendBlob';

let loading: Promise<Tracing | undefined> | undefined;

/**
 * @internal Loads `@opentelemetry/api` once, if it is installed, and returns the tracing that
 * uses it; `undefined` without it (nothing else is loaded then, and nothing changes).
 */
export function loadTracing(): Promise<Tracing | undefined> {
  loading ??= import('@opentelemetry/api').then(
    (api) => new Tracing(api),
    () => undefined,
  );
  return loading;
}

/**
 * @internal Starts Aurelia's client and server spans through the global OpenTelemetry API (the
 * tracer provider, context manager and propagator the application registered) following the RPC
 * semantic conventions: `rpc.system` = `aurelia`, `rpc.method` = the pattern, the span named
 * after the pattern, one event per streamed message, the error status on failure.
 */
export class Tracing {
  readonly #api: Api;
  readonly #tracer: OpenTelemetry.Tracer;

  constructor(api: Api) {
    this.#api = api;
    this.#tracer = api.trace.getTracer(TRACER_NAME);
  }

  /**
   * Starts the client span of one call to `pattern` as a child of the active context and writes
   * its W3C trace context (`traceparent`, `tracestate`) into `packet.metadata`. `undefined` (and
   * the packet untouched) when no tracer provider is registered and no trace is active.
   */
  client(
    call: TracedCall,
    pattern: string,
    packet: { metadata?: PacketMetadata },
  ): ClientSpan | undefined {
    const api = this.#api;
    const span = this.#tracer.startSpan(pattern, {
      kind: api.SpanKind.CLIENT,
      attributes: { 'rpc.system': RPC_SYSTEM, 'rpc.method': pattern, 'aurelia.call': call },
    });
    // No tracer provider and no trace around: there is nothing to record or pass on.
    if (!span.isRecording() && !api.trace.isSpanContextValid(span.spanContext())) return undefined;
    const carrier: PacketMetadata = { ...packet.metadata };
    api.propagation.inject(api.trace.setSpan(api.context.active(), span), carrier);
    packet.metadata = carrier;
    return new ClientSpan(api, span);
  }

  /**
   * Starts the server span of a call that arrived with `metadata`: the child of the caller's
   * span when the metadata carries its trace context, else a new trace. `undefined` when no
   * tracer provider is registered and the call carried no trace context.
   */
  server(
    pattern: string,
    metadata: unknown,
    peer: PeerInfo,
    tabernaId: TabernaId,
  ): ServerSpan | undefined {
    const api = this.#api;
    const carrier = typeof metadata === 'object' && metadata !== null ? metadata : {};
    const parent = api.propagation.extract(api.ROOT_CONTEXT, carrier);
    const attributes: OpenTelemetry.Attributes = {
      'rpc.system': RPC_SYSTEM,
      'rpc.method': pattern,
      'aurelia.peer.identity': peer.identity,
      'aurelia.taberna.id': `0x${tabernaId.toString(16)}`,
    };
    if (peer.address !== undefined) attributes['aurelia.peer.address'] = peer.address;
    const span = this.#tracer.startSpan(pattern, { kind: api.SpanKind.SERVER, attributes }, parent);
    if (!span.isRecording() && !api.trace.isSpanContextValid(span.spanContext())) return undefined;
    return new ServerSpan(api, span, api.trace.setSpan(parent, span));
  }
}

/** One traced call's span, ended once. */
abstract class CallSpan {
  #ended = false;
  #messages = 0;

  constructor(
    protected readonly api: Api,
    protected readonly span: OpenTelemetry.Span,
  ) {}

  /** Records one streamed message (`SENT` by a server, `RECEIVED` by a client). */
  message(type: 'SENT' | 'RECEIVED'): void {
    if (this.#ended) return;
    this.span.addEvent('message', {
      'message.type': type,
      'message.id': ++this.#messages,
    });
  }

  /** Ends the span, with the error status when `err` is given. Idempotent. */
  end(err?: unknown): void {
    if (this.#ended) return;
    this.#ended = true;
    if (err !== undefined) {
      const message = messageOf(err);
      if (err instanceof Error) this.span.recordException(err);
      else this.span.addEvent('exception', { 'exception.message': message });
      this.span.setStatus({ code: this.api.SpanStatusCode.ERROR, message });
    }
    this.span.end();
  }

  /** Ends the span when `promise` settles (the error status if it rejects); returns `promise`. */
  settle<T>(promise: Promise<T>): Promise<T> {
    promise.then(
      () => this.end(),
      (err: unknown) => this.end(err),
    );
    return promise;
  }
}

/** @internal The span of one `send()`, `emit()` or `sendBlob()`. */
export class ClientSpan extends CallSpan {
  /** Wraps Nest's reply callback: each value is a message, an error or the completion ends. */
  observe(callback: (packet: WritePacket) => void): (packet: WritePacket) => void {
    return (packet) => {
      if (packet.err !== undefined) this.end(packet.err);
      else {
        if (packet.response !== undefined || !packet.isDisposed) this.message('RECEIVED');
        if (packet.isDisposed) this.end();
      }
      callback(packet);
    };
  }
}

/** @internal The span of one handled call, the context its handler runs in. */
export class ServerSpan extends CallSpan {
  constructor(
    api: Api,
    span: OpenTelemetry.Span,
    private readonly context: OpenTelemetry.Context,
  ) {
    super(api, span);
  }

  /** Runs `fn` with this span active, so spans the handler starts are its children. */
  run<T>(fn: () => T): T {
    return this.api.context.with(this.context, fn);
  }

  /** Records one of Nest's reply packets: a value is a message; an error or completion ends. */
  reply(packet: WritePacket): void {
    if (packet.err !== undefined) return this.end(packet.err);
    if (packet.response !== undefined || !packet.isDisposed) this.message('SENT');
    if (packet.isDisposed) this.end();
  }
}
