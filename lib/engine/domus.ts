// The local peer: its listener, tabernae, outbound peers, inbound sessions, config and reporting.
import { AureliaError, ErrorId, errorIdName, domusClosedError } from './errors.js';
import type { DomusAddr } from './addr.js';
import { type AuthMaterial, type Pkcs8AuthConfig, loadAuthMaterial } from './auth.js';
import type { MessageCodec } from './codec.js';
import { type DomusConfig, mergeDomusConfig, validateDomusConfig } from './config.js';
import {
  A3_MESSAGE_TYPE_BASE,
  MessagePriorityClass,
  assertTabernaId,
  isTabernaId,
  tabernaIdText,
  type TabernaId,
} from './ids.js';
import type { RouteResolver } from './resolver.js';
import { SendOptions } from './send-options.js';
import { type Callis, type CallisSettings, isPeerViolation } from './peer/callis.js';
import type { BlobSender } from './blob/sender.js';
import { BlobBudget } from './blob/budget.js';
import { FrameFlags } from './wire/frame.js';
import { TabernaRegistry } from './taberna/registry.js';
import type { Taberna, TabernaOptions } from './taberna/taberna.js';
import type { Decision, Delivery } from './taberna/request.js';
import { MetricsRecorder } from './reporting/metrics.js';
import { DomusReporting } from './reporting/reporting.js';
import { TlsListener } from './transport/tls-listener.js';
import { type AureliaLogger, RateLimitedLogger, logKeyOf, silentLogger } from './logger.js';
import { LinkBook } from './links.js';
import { InboundAdmission } from './inbound.js';
import { randomSessionEpoch } from './peer/epoch.js';
import { type DispatchMessage, Router } from './routing.js';
import { setTimeout as sleep } from 'node:timers/promises';

export type { DispatchMessage } from './routing.js';

/**
 * Result of a successful send: the remote application accepted the message; for a `BLOB` send,
 * `sender` is the stream to write the blob into.
 */
export type SendOutcome =
  { readonly kind: 'message' } | { readonly kind: 'blob'; readonly sender: BlobSender };

/** How often sessions age out remembered outcomes and idle sessions are dropped. */
const HOUSEKEEPING_INTERVAL_MS = 1000;

/**
 * Live handle to a running domus's configuration: take a snapshot, or apply a validated update
 * without restarting (queue sizes, timeouts, keepalive, payload limit, handshake limits; blob
 * windows for new blob callis).
 */
export class DomusConfigAccess {
  /** Not for applications: the domus creates it (`domus.config`). */
  constructor(
    private current: DomusConfig,
    private readonly apply: (next: DomusConfig, previous: DomusConfig) => void,
  ) {}

  /** The configuration in force now (frozen). */
  snapshot(): DomusConfig {
    return this.current;
  }

  /**
   * Validates `update` (a full config or a partial patch over the current one) and applies it.
   * Throws `AureliaError(InvalidConfig)` naming the field, and changes nothing, when invalid.
   * Returns the configuration now in force.
   */
  update(update: Partial<DomusConfig>): DomusConfig {
    const next = mergeDomusConfig(this.current, update);
    const previous = this.current;
    this.current = next;
    this.apply(next, previous);
    return next;
  }

  /** @internal Read by hot paths. */
  get value(): DomusConfig {
    return this.current;
  }
}

/**
 * A running Aurelia domus: the local peer. It has one certificate identity, sends messages to
 * tabernae here or on other domus, and — when built with a listen address — accepts peers on
 * that address and hosts tabernae they can reach. A domus built without one only calls out:
 * replies come back on the connections it dialed. Build it with
 * `Aurelia.domusBuilder(...).build()`. Routing and the outbound peers live in `Router`, accepted
 * callis and sender sessions in `InboundAdmission`, connection counts in `LinkBook`.
 */
export class Domus {
  /**
   * Random 64-bit epoch of this run, sent in every hello-response so that dialers notice when this
   * domus restarts. Outbound peers dial with epochs of their own, drawn independently.
   */
  readonly sessionEpoch: bigint;
  /** Live configuration. */
  readonly config: DomusConfigAccess;
  /** Metrics, connected peers and event feeds. */
  readonly reporting: DomusReporting;
  private readonly metrics = new MetricsRecorder();
  private readonly registry: TabernaRegistry;
  private readonly links: LinkBook;
  private readonly blobBudget: BlobBudget;
  private readonly router: Router;
  private readonly inbound: InboundAdmission;
  /** Every callis from construction to close, for live config updates. */
  private readonly liveCallis = new Set<Callis>();
  private readonly callisSettings: CallisSettings;
  private readonly limitedLog: RateLimitedLogger;
  /** Absent for a domus built without a listen address (it only calls out). */
  private listener: TlsListener | undefined;
  private housekeeping: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  /** Set when shutdown starts: new sends and tabernae are refused. */
  private closed = false;
  private draining: Promise<void> | undefined;
  /** Set once the drain ended in a shutdown: inbound connections are refused. */
  private inboundStopped = false;

  /** Not for applications: use `DomusBuilder.build()`. */
  constructor(
    config: DomusConfig,
    private auth: AuthMaterial,
    resolver: RouteResolver,
    private readonly onShutdown: (domus: Domus) => void,
    private readonly logger: AureliaLogger = silentLogger,
  ) {
    this.sessionEpoch = randomSessionEpoch();
    this.config = new DomusConfigAccess(config, (next, prev) => this.applyConfig(next, prev));
    this.limitedLog = new RateLimitedLogger(logger, { intervalMs: config.limitedLogIntervalMs });
    this.reporting = new DomusReporting(
      this.metrics,
      () => this.links.reports(),
      (err) =>
        this.limitedLog.warn(logKeyOf(`${errorIdName(err.kind)}`, err.message), err.message, {
          errorId: errorIdName(err.kind),
        }),
      (thrown) => {
        const message = thrown instanceof Error ? thrown.message : String(thrown);
        this.limitedLog.error(
          logKeyOf('subscriber', message),
          `a reporting subscriber threw (the feed goes on): ${message}`,
        );
      },
    );
    this.registry = new TabernaRegistry({
      queueSize: () => this.config.value.tabernaAcceptQueueSize,
      acceptTimeoutMs: () => this.config.value.acceptTimeoutMs,
      overflowPerPeer: () => this.config.value.maxTabernaOverflowPerPeer,
      onDecided: (_id, delivery, decision) => this.countDecision(delivery, decision),
    });
    this.links = new LinkBook(this.metrics, this.reporting);
    this.blobBudget = new BlobBudget(() => this.config.value);
    this.callisSettings = {
      maxPayloadLen: () => this.config.value.maxPayloadLen,
      keepaliveIntervalMs: () => this.config.value.keepaliveIntervalMs,
      onBackpressure: (callis) =>
        this.reporting.emit({
          type: 'BackpressureTriggered',
          at: Date.now(),
          identity: callis.identity,
          address: callis.connection.remoteAddress,
        }),
      decisionBacklogBytes: () => this.config.value.maxDecisionBacklogBytesPerPeer,
      onReadsPaused: () => this.metrics.peerReadPauses++,
      traffic: this.metrics,
      live: this.liveCallis,
    };
    const shared = {
      sessionEpoch: this.sessionEpoch,
      metrics: this.metrics,
      reporting: this.reporting,
      links: this.links,
      callisSettings: this.callisSettings,
    };
    this.router = new Router({
      ...shared,
      config: this.config,
      registry: this.registry,
      resolver,
      identity: auth.identity,
      auth: () => this.auth,
      localAddr: () => this.listener?.localAddr,
      isClosed: () => this.closed,
    });
    this.inbound = new InboundAdmission({
      ...shared,
      blobBudget: this.blobBudget,
      config: () => this.config.value,
      isClosed: () => this.inboundStopped,
      isDraining: () => this.draining !== undefined,
      deliver: (dst, delivery) => this.registry.deliver(dst, delivery),
    });
    this.reporting.security.noteCertificate(auth.identity, auth.certificate);
  }

  /**
   * @internal Binds the listener on `addr` (none without one) and starts housekeeping; called
   * once by the builder.
   */
  async start(addr: DomusAddr | undefined): Promise<void> {
    if (addr !== undefined) await this.listen(addr);
    this.housekeeping = setInterval(() => this.tidy(), HOUSEKEEPING_INTERVAL_MS);
    this.housekeeping.unref();
    this.logger.log(
      this.listener === undefined
        ? `domus ${this.auth.identity} started without a listen address (it only calls out)`
        : `domus ${this.auth.identity} listening on ${this.listener.localAddr}`,
    );
  }

  private async listen(addr: DomusAddr): Promise<void> {
    this.listener = await TlsListener.listen({
      addr,
      secureContext: this.auth.secureContext,
      limits: () => {
        const c = this.config.value;
        return {
          total: c.inboundHandshakeLimitTotal,
          perPeer: c.inboundHandshakeLimitPerPeer,
          tcpHandshakeTimeoutMs: c.tcpHandshakeTimeoutMs,
          socketHandshakeTimeoutMs: c.socketHandshakeTimeoutMs,
        };
      },
      onConnection: (conn) => this.inbound.onConnection(conn),
      onRefused: (err) => {
        this.metrics.handshakesRefused++;
        if (isPeerViolation(err)) this.metrics.protocolViolations++;
        this.reporting.error(err);
      },
    });
  }

  /**
   * The address the listener is bound to (with the real port when built with port 0). Throws
   * `AureliaError(InvalidConfig)` for a domus built without a listen address (see `hasListener`).
   */
  get localAddr(): DomusAddr {
    if (this.listener === undefined) throw noListenerError('it has no address peers could dial');
    return this.listener.localAddr;
  }

  /**
   * Whether this domus has a listener. A domus built without a listen address has none: it calls
   * other domus (their replies come back on the connections it dialed) but hosts no tabernae.
   */
  get hasListener(): boolean {
    return this.listener !== undefined;
  }

  /** This domus's certificate identity (see `readCertificateIdentity` for the rule). */
  get identity(): string {
    return this.auth.identity;
  }

  /**
   * @internal Bytes of answers (acks, replies, error frames) this domus holds unsent for its
   * inbound peers, in its own buffers: what a peer that does not read makes it keep.
   */
  get inboundUnsentBytes(): number {
    return this.inbound.unsentBytes();
  }

  /**
   * Registers a taberna with `id`, decoding its messages with `codec`; `options` may override
   * the accept queue size and accept timeout for this taberna. Rejects with `InvalidConfig` for
   * a bad id or option, or when the domus has no listener (no peer could reach the taberna),
   * `TabernaAlreadyRegistered` when the id is taken and `DomusClosed` after shutdown.
   */
  async taberna<T>(
    id: TabernaId,
    codec: MessageCodec<T>,
    options?: TabernaOptions,
  ): Promise<Taberna<T>> {
    if (this.closed) throw domusClosedError();
    if (this.listener === undefined) {
      const which = isTabernaId(id) ? `taberna ${tabernaIdText(id)}` : 'a taberna';
      throw noListenerError(`no peer could reach ${which}`);
    }
    return this.registry.register(id, codec, options);
  }

  /**
   * Sends `message` to taberna `to` — on this domus or wherever the resolver says — and resolves
   * once the target application accepted it. Rejects with:
   * `EncodeFailure` (codec failed, type below the A3 range, payload over `maxPayloadLen`),
   * `UnknownTaberna`, `LocalQueueFull` (the peer's lane is full, at once), `RemoteTabernaRejected`,
   * `TabernaBusy`, `DecodeFailure` (the receiver could not decode it), `AddressMismatch`,
   * `PeerRestarted`, `SendTimeout` (nothing decided within `sendTimeoutMs`) or `DomusClosed`.
   * A `BLOB` send also rejects with `BlobCallisWithoutPrimary` when `to` is a taberna of this
   * domus (blob streams travel between domus only) and with `BlobBufferFull` when the stream's
   * buffer cannot be reserved here or at the receiver.
   */
  send<T>(
    codec: MessageCodec<T>,
    to: TabernaId,
    message: T,
    options?: SendOptions | { blob?: boolean },
  ): Promise<SendOutcome> {
    // Not `async`: a message send takes one promise, settled by the decision itself.
    try {
      if (this.closed) throw domusClosedError();
      const opts = SendOptions.from(options);
      assertTabernaId(to, ErrorId.UnknownTaberna);
      const { msgType, payload } = encode(codec, message);
      if (msgType < A3_MESSAGE_TYPE_BASE) {
        throw new AureliaError(
          ErrorId.EncodeFailure,
          `message type ${msgType} is below the A3 range (${A3_MESSAGE_TYPE_BASE}); use a3MessageType()`,
        );
      }
      const spec: DispatchMessage = { priority: MessagePriorityClass.A3, msgType, payload, to };
      if (opts.blob) return this.sendBlob(spec);
      return this.router.route(spec, 0, undefined, MESSAGE_OUTCOME) as Promise<SendOutcome>;
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private async sendBlob(spec: DispatchMessage): Promise<SendOutcome> {
    if (this.registry.has(spec.to)) {
      throw new AureliaError(
        ErrorId.BlobCallisWithoutPrimary,
        `taberna ${tabernaIdText(spec.to)} is on this domus; blob streams travel between domus only`,
      );
    }
    const release = this.blobBudget.reserve('outbound');
    let sender: unknown;
    try {
      sender = await this.router.route(spec, FrameFlags.Blob, release, undefined);
    } catch (err) {
      release();
      throw err;
    }
    return { kind: 'blob', sender: sender as BlobSender };
  }

  /**
   * @internal Sends an already encoded A2 or A3 message (A2 services use this). Resolves on the
   * target application's accept; rejects like `send`. With `address`, the resolver is bypassed;
   * with `expectedIdentity`, only that identity may receive it (`AddressMismatch` otherwise);
   * with `replies`, it is a request whose replies come back on the callis it is written to.
   */
  dispatch(message: DispatchMessage): Promise<void> {
    return this.router.route(
      message,
      dispatchFlags(message),
      undefined,
      undefined,
    ) as Promise<void>;
  }

  /**
   * Swaps the authentication material for new handshakes (accepted and dialed); live callis are
   * untouched. Rejects with `InvalidConfig` (and changes nothing) when the material is invalid or
   * would change the domus's identity.
   */
  async reloadAuth(auth: Pkcs8AuthConfig): Promise<void> {
    if (this.closed) throw domusClosedError();
    const material = loadAuthMaterial(auth);
    if (material.identity !== this.auth.identity) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `reloadAuth cannot change this domus's identity from ${this.auth.identity} to ${material.identity}`,
      );
    }
    this.auth = material;
    this.listener?.setSecureContext(material.secureContext);
    this.reporting.security.noteCertificate(material.identity, material.certificate);
    this.reporting.emit({ type: 'AuthReloaded', at: Date.now(), identity: material.identity });
  }

  /**
   * Starts a graceful drain without closing: every connected sender is told (a `drain` frame) to
   * write nothing new here, so its balancer stops choosing this domus and moves what it had
   * queued to other replicas; a message that still arrives, and a remote request waiting in a
   * taberna that no handler took yet, is refused with `Draining` (its sender retries it
   * elsewhere). Resolves once everything accepted before is
   * decided, its replies acknowledged and its blob streams ended, or when `drainTimeoutMs` has
   * passed, whichever comes first; never rejects. Sends of this domus keep working meanwhile, so
   * handlers finishing their work can still call other services. `shutdown()` drains first by
   * itself. Idempotent.
   */
  drain(): Promise<void> {
    if (!this.draining) this.draining = this.doDrain();
    return this.draining;
  }

  private async doDrain(): Promise<void> {
    if (this.inboundStopped) return;
    const startedAt = Date.now();
    this.reporting.emit({ type: 'DrainStarted', at: startedAt });
    this.inbound.announceDrain();
    this.registry.refuseUntaken(
      new AureliaError(
        ErrorId.Draining,
        'the receiving domus is shutting down; no handler had taken this message',
      ),
    );
    const deadline = startedAt + this.config.value.drainTimeoutMs;
    // Checked on a short period rather than per decision, keeping the decision path untouched.
    while (this.inbound.busy() && Date.now() < deadline) {
      await sleep(Math.min(DRAIN_CHECK_MS, Math.max(1, deadline - Date.now())));
    }
    this.reporting.emit({ type: 'DrainComplete', at: Date.now(), finished: !this.inbound.busy() });
  }

  /**
   * Shuts down gracefully: refuses new sends and tabernae at once, drains (see `drain`: peers
   * are told, what arrives is refused with `Draining`, accepted work gets up to `drainTimeoutMs`)
   * while sends already on a live connection finish or fail by their deadline (queued work for
   * unreachable peers fails with `DomusClosed` at once); then fails what is still queued or
   * undecided inbound and pending `next()` with `DomusClosed`, says `close` on every callis and
   * resolves when no socket, listener or timer is left. Idempotent.
   */
  shutdown(): Promise<void> {
    if (!this.closing) this.closing = this.doShutdown();
    return this.closing;
  }

  private async doShutdown(): Promise<void> {
    this.reporting.emit({ type: 'ShutdownStarted', at: Date.now() });
    this.closed = true;
    await Promise.all([this.drain(), this.router.drain()]);
    this.inboundStopped = true;
    if (this.housekeeping) clearInterval(this.housekeeping);
    this.housekeeping = undefined;
    const listenerClosed = this.listener?.close();
    this.inbound.stopHandshakes(domusClosedError());
    this.registry.shutdown();
    const goodbyes = [...this.router.close(), ...this.inbound.close(domusClosedError())];
    await Promise.all([listenerClosed, ...goodbyes]);
    this.reporting.emit({ type: 'ShutdownComplete', at: Date.now() });
    this.logger.log(`domus ${this.auth.identity} shut down`);
    // Resolve once subscribers have seen ShutdownComplete, unless they are too slow to wait for.
    await this.reporting.close(FEED_DRAIN_BOUND_MS);
    this.onShutdown(this);
  }

  private countDecision(delivery: Delivery, decision: Decision): void {
    if (delivery.peer.local) return; // counted on the sending side by the local sink
    if (decision.accepted) this.metrics.messagesAccepted++;
    else this.metrics.messagesRejected++;
  }

  private applyConfig(next: DomusConfig, previous: DomusConfig): void {
    const changed = (Object.keys(next) as (keyof DomusConfig)[]).filter(
      (k) => JSON.stringify(next[k]) !== JSON.stringify(previous[k]),
    );
    if (next.sendQueueSize !== previous.sendQueueSize) {
      for (const peer of this.router.outboundPeers) peer.setCapacity(next.sendQueueSize);
    }
    if (next.limitedLogIntervalMs !== previous.limitedLogIntervalMs) {
      this.limitedLog.intervalMs = next.limitedLogIntervalMs;
    }
    if (next.maxPayloadLen !== previous.maxPayloadLen) {
      for (const callis of this.liveCallis) callis.setMaxPayloadLen(next.maxPayloadLen);
    }
    if (next.keepaliveIntervalMs !== previous.keepaliveIntervalMs) {
      for (const callis of this.liveCallis) callis.rearmKeepalive();
    }
    if (
      next.maxInFlightPerPeer !== previous.maxInFlightPerPeer ||
      next.maxQueuedBytesPerPeer !== previous.maxQueuedBytesPerPeer
    ) {
      this.inbound.applyLimits();
    }
    this.reporting.emit({ type: 'ConfigReloaded', at: Date.now(), changed });
  }

  private tidy(): void {
    const now = Date.now();
    const blobIdleMs = 2 * this.config.value.sendTimeoutMs;
    this.inbound.tidy(now, blobIdleMs);
    this.router.tidy(now, blobIdleMs);
  }
}

const MESSAGE_OUTCOME: SendOutcome = Object.freeze({ kind: 'message' });

/** The header flags of a dispatched message: never BLOB, so the send resolves with nothing. */
function dispatchFlags(message: DispatchMessage): number {
  return (message.flags ?? 0) & ~FrameFlags.Blob;
}

/** How often a drain checks whether the work it waits for is finished. */
const DRAIN_CHECK_MS = 10;

/** How long a shutdown waits for the reporting feeds to deliver what they still hold. */
const FEED_DRAIN_BOUND_MS = 1000;

/** `InvalidConfig` for something only a domus with a listener can do. */
function noListenerError(consequence: string): AureliaError {
  return new AureliaError(
    ErrorId.InvalidConfig,
    `this domus was built without a listen address, so ${consequence}: give it one ` +
      `(the AureliaModule option 'listen', or the address of Aurelia.domusBuilder) to serve peers`,
  );
}

function encode<T>(codec: MessageCodec<T>, message: T): { msgType: number; payload: Buffer } {
  let encoded;
  try {
    encoded = codec.encodeApp(message);
  } catch (err) {
    if (AureliaError.is(err)) throw err;
    throw new AureliaError(
      ErrorId.EncodeFailure,
      `the codec failed to encode the message: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  if (!encoded || !Buffer.isBuffer(encoded.payload) || !Number.isInteger(encoded.msgType)) {
    throw new AureliaError(
      ErrorId.EncodeFailure,
      'the codec returned no { msgType: integer, payload: Buffer }',
    );
  }
  if (encoded.msgType < 0 || encoded.msgType > 0xffff_ffff) {
    throw new AureliaError(ErrorId.EncodeFailure, `message type ${encoded.msgType} is not a u32`);
  }
  return encoded;
}

/** Loads and checks what a domus needs before binding (used by the builder). */
export function prepareDomus(
  config: DomusConfig,
  auth: Pkcs8AuthConfig,
): { config: DomusConfig; auth: AuthMaterial } {
  return { config: validateDomusConfig(config), auth: loadAuthMaterial(auth) };
}
