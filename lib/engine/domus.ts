// The local peer: its listener, tabernae, outbound peers, inbound sessions, config and reporting.
import { randomBytes } from 'node:crypto';
import { AureliaError, ErrorId, errorIdName } from './errors.js';
import { DomusAddr } from './addr.js';
import { type AuthMaterial, type Pkcs8AuthConfig, loadAuthMaterial } from './auth.js';
import type { MessageCodec } from './codec.js';
import { type DomusConfig, mergeDomusConfig, validateDomusConfig } from './config.js';
import {
  A3_MESSAGE_TYPE_BASE,
  MessagePriorityClass,
  assertTabernaId,
  type MessageType,
  type TabernaId,
} from './ids.js';
import type { RouteResolver } from './resolver.js';
import { SendOptions } from './send-options.js';
import { Callis, type CallisConnection, isPeerViolation } from './peer/callis.js';
import { listenerHello } from './peer/handshake.js';
import { OutboundPeer, type PeerHost, type SendContext } from './peer/peer.js';
import type { OutboundSpec } from './peer/outbound-store.js';
import { InboundSession, type SessionHost } from './peer/session.js';
import { DeadlineHeap } from './peer/deadline-heap.js';
import { type HelloBlobWindow, encodeHelloResponse } from './wire/control.js';
import type { BlobSender } from './blob/sender.js';
import { FrameFlags } from './wire/frame.js';
import { TabernaRegistry } from './taberna/registry.js';
import type { Taberna, TabernaOptions } from './taberna/taberna.js';
import { type Decision, type DecisionSink, Delivery, type PeerInfo } from './taberna/request.js';
import { MetricsRecorder } from './reporting/metrics.js';
import { DomusReporting, type PeerIdentityReport } from './reporting/reporting.js';
import { TlsListener } from './transport/tls-listener.js';
import { dial } from './transport/dial.js';
import { type AureliaLogger, RateLimitedLogger, silentLogger } from './logger.js';

/** @internal An encoded message for `Domus.dispatch`. */
export interface DispatchMessage {
  readonly priority: MessagePriorityClass.A2 | MessagePriorityClass.A3;
  readonly msgType: MessageType;
  readonly payload: Buffer;
  readonly to: TabernaId;
  readonly from?: TabernaId;
  readonly flags?: number;
  /** Send to this address instead of resolving `to`. */
  readonly address?: DomusAddr;
  /** The identity that must answer at the address. */
  readonly expectedIdentity?: string;
  /** Overrides `sendTimeoutMs` for this message. */
  readonly timeoutMs?: number;
}

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
  /** @internal */
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

/** Live connection counts of one remote identity. */
interface PeerLinks {
  primary: number;
  blob: number;
  addresses: Map<string, number>;
}

/**
 * A running Aurelia domus: the local peer. It listens on one address with one certificate
 * identity, hosts tabernae, and sends messages to tabernae here or on other domus. Build it with
 * `Aurelia.domusBuilder(...).build()`.
 */
export class Domus {
  /**
   * Random per-run session epoch (random high 32 bits, zero below); peers see a new one when
   * this domus restarts. Each outbound peer dials with these high bits and its own serial below.
   */
  readonly sessionEpoch: bigint;
  /** Live configuration. */
  readonly config: DomusConfigAccess;
  /** Metrics, connected peers and event feeds. */
  readonly reporting: DomusReporting;
  private readonly metrics = new MetricsRecorder();
  private readonly registry: TabernaRegistry;
  private readonly peers = new Map<string, OutboundPeer>();
  private readonly sessions = new Map<string, InboundSession>();
  private readonly handshaking = new Set<Callis>();
  private readonly inboundCallis = new Map<string, number>();
  private readonly links = new Map<string, PeerLinks>();
  /** Every callis from construction to close, for live config updates. */
  private readonly liveCallis = new Set<Callis>();
  private readonly localSink = new LocalSink(this.metrics);
  private readonly selfPeer: PeerInfo;
  private readonly limitedLog: RateLimitedLogger;
  private listener!: TlsListener;
  private housekeeping: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private closed = false;
  private peerSerial = 0n;
  private blobOutboundReserved = 0;
  private blobInboundReserved = 0;

  /** @internal Use `DomusBuilder.build()`. */
  constructor(
    config: DomusConfig,
    private auth: AuthMaterial,
    private readonly resolver: RouteResolver,
    private readonly onShutdown: (domus: Domus) => void,
    private readonly logger: AureliaLogger = silentLogger,
  ) {
    this.sessionEpoch = randomEpoch();
    this.config = new DomusConfigAccess(config, (next, prev) => this.applyConfig(next, prev));
    this.limitedLog = new RateLimitedLogger(logger, { intervalMs: config.limitedLogIntervalMs });
    this.reporting = new DomusReporting(
      this.metrics,
      () => this.peerReports(),
      (err) =>
        this.limitedLog.warn(`${errorIdName(err.kind)}:${firstWords(err.message)}`, err.message, {
          errorId: errorIdName(err.kind),
        }),
      (thrown) => {
        const message = thrown instanceof Error ? thrown.message : String(thrown);
        this.limitedLog.error(
          `subscriber:${firstWords(message)}`,
          `a reporting subscriber threw (the feed goes on): ${message}`,
        );
      },
    );
    this.registry = new TabernaRegistry({
      queueSize: () => this.config.value.tabernaAcceptQueueSize,
      acceptTimeoutMs: () => this.config.value.acceptTimeoutMs,
      onDecided: (_id, delivery, decision) => this.countDecision(delivery, decision),
    });
    this.selfPeer = Object.freeze({ identity: auth.identity, local: true });
  }

  /** @internal Binds the listener; called once by the builder. */
  async start(addr: DomusAddr): Promise<void> {
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
      onConnection: (conn) => this.onInbound(conn),
      onRefused: (err) => {
        this.metrics.handshakesRefused++;
        if (isPeerViolation(err)) this.metrics.protocolViolations++;
        this.reporting.error(err);
      },
    });
    this.housekeeping = setInterval(() => this.tidy(), HOUSEKEEPING_INTERVAL_MS);
    this.housekeeping.unref();
    this.logger.log(`domus ${this.auth.identity} listening on ${this.listener.localAddr}`);
  }

  /** The address the listener is bound to (with the real port when built with port 0). */
  get localAddr(): DomusAddr {
    return this.listener.localAddr;
  }

  /** This domus's certificate identity (URI SAN, else DNS SAN, else CN). */
  get identity(): string {
    return this.auth.identity;
  }

  /**
   * Registers a taberna with `id`, decoding its messages with `codec`; `options` may override
   * the accept queue size and accept timeout for this taberna. Rejects with `InvalidConfig` for
   * a bad id or option,
   * `TabernaAlreadyRegistered` when the id is taken and `DomusClosed` after shutdown.
   */
  async taberna<T>(
    id: TabernaId,
    codec: MessageCodec<T>,
    options?: TabernaOptions,
  ): Promise<Taberna<T>> {
    if (this.closed) throw closedError();
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
      if (this.closed) throw closedError();
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
      return this.route(spec, 0, undefined, MESSAGE_OUTCOME) as Promise<SendOutcome>;
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  private async sendBlob(spec: DispatchMessage): Promise<SendOutcome> {
    if (this.registry.has(spec.to)) {
      throw new AureliaError(
        ErrorId.BlobCallisWithoutPrimary,
        `taberna ${spec.to} is on this domus; blob streams travel between domus only`,
      );
    }
    const release = this.reserveBlob('outbound');
    let sender: unknown;
    try {
      sender = await this.route(spec, FrameFlags.Blob, release, undefined);
    } catch (err) {
      release();
      throw err;
    }
    return { kind: 'blob', sender: sender as BlobSender };
  }

  /**
   * Reserves one stream's worth of blob buffer (chunk size × ack window of the larger transport
   * window) against `blobOutboundBufferBytes` / `blobInboundBufferBytes`; throws
   * `BlobBufferFull` when it does not fit. Returns an idempotent release.
   */
  private reserveBlob(direction: 'outbound' | 'inbound'): () => void {
    const c = this.config.value;
    const bytes = Math.max(
      c.tcpBlobWindow.chunkSize * c.tcpBlobWindow.ackWindow,
      c.socketBlobWindow.chunkSize * c.socketBlobWindow.ackWindow,
    );
    const limit = direction === 'outbound' ? c.blobOutboundBufferBytes : c.blobInboundBufferBytes;
    const used = direction === 'outbound' ? this.blobOutboundReserved : this.blobInboundReserved;
    if (used + bytes > limit) {
      throw new AureliaError(
        ErrorId.BlobBufferFull,
        `a new ${direction} blob stream needs ${bytes} bytes of buffer; ${used} of ${limit} (blob${direction === 'outbound' ? 'Outbound' : 'Inbound'}BufferBytes) are taken`,
      );
    }
    if (direction === 'outbound') this.blobOutboundReserved += bytes;
    else this.blobInboundReserved += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      if (direction === 'outbound') this.blobOutboundReserved -= bytes;
      else this.blobInboundReserved -= bytes;
    };
  }

  /**
   * @internal Sends an already encoded A2 or A3 message (A2 services use this). Resolves on the
   * target application's accept; rejects like `send`. With `address`, the resolver is bypassed
   * and, with `expectedIdentity`, whoever answers there must prove that identity
   * (`AddressMismatch` otherwise).
   */
  dispatch(message: DispatchMessage): Promise<void> {
    return this.route(message, dispatchFlags(message), undefined, undefined) as Promise<void>;
  }

  /**
   * @internal Like `dispatch`, but when the lane to the target's address is full at once
   * (`LocalQueueFull`) it returns `undefined` instead of a rejection, so an A2 service can wait
   * and retry without a turn of the event loop to find out. A target whose address the resolver
   * answers asynchronously reports a full lane as a rejection, as `dispatch` does.
   */
  dispatchUnlessFull(message: DispatchMessage): Promise<void> | undefined {
    try {
      return this.routeOrThrow(
        message,
        dispatchFlags(message),
        undefined,
        undefined,
      ) as Promise<void>;
    } catch (err) {
      if (AureliaError.is(err, ErrorId.LocalQueueFull)) return undefined;
      return Promise.reject(err as Error);
    }
  }

  // Not `async`: a send whose target resolves at once takes no extra promise or microtask turn.
  // Every failure still arrives as a rejected promise.
  // `outcome` is what a message send resolves with (a blob send resolves with its sender).
  private route(
    message: DispatchMessage,
    flags: number,
    blobRelease: (() => void) | undefined,
    outcome: unknown,
  ): Promise<unknown> {
    try {
      return this.routeOrThrow(message, flags, blobRelease, outcome);
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  // `route` without the conversion: what fails before anything was admitted throws.
  private routeOrThrow(
    message: DispatchMessage,
    flags: number,
    blobRelease: (() => void) | undefined,
    outcome: unknown,
  ): Promise<unknown> {
    if (this.closed) throw closedError();
    const config = this.config.value;
    const { payload, to } = message;
    if (payload.length > config.maxPayloadLen) {
      throw new AureliaError(
        ErrorId.EncodeFailure,
        `payload of ${payload.length} bytes exceeds maxPayloadLen ${config.maxPayloadLen}`,
      );
    }
    const startedAt = performance.now();
    const deadline = Date.now() + (message.timeoutMs ?? config.sendTimeoutMs);
    if (message.address === undefined && this.registry.has(to)) {
      return this.sendLocal(message, deadline, startedAt, outcome);
    }
    const addr = message.address ?? this.resolve(to, deadline);
    if (addr instanceof DomusAddr) {
      return this.routeTo(addr, message, flags, deadline, startedAt, blobRelease, outcome);
    }
    return addr.then((resolved) =>
      this.routeTo(resolved, message, flags, deadline, startedAt, blobRelease, outcome),
    );
  }

  private routeTo(
    addr: DomusAddr,
    message: DispatchMessage,
    flags: number,
    deadline: number,
    startedAt: number,
    blobRelease: (() => void) | undefined,
    outcome: unknown,
  ): Promise<unknown> {
    if (addr.key === this.listener.localAddr.key) {
      return this.sendLocal(message, deadline, startedAt, outcome);
    }
    if (this.closed) return Promise.reject(closedError());
    let peer = this.peers.get(addr.key);
    if (!peer) {
      peer = new OutboundPeer(addr.key, this.peerHost(addr));
      this.peers.set(addr.key, peer);
    }
    const pending = PendingSend.of(message, flags & FrameFlags.Blob, deadline, startedAt, outcome);
    const promise = promiseOf(pending);
    // Throws (LocalQueueFull, AddressMismatch, DomusClosed) before anything was admitted.
    peer.submit(pending, message.expectedIdentity, blobRelease);
    return promise;
  }

  /**
   * Swaps the authentication material for new handshakes (accepted and dialed); live callis are
   * untouched. Rejects with `InvalidConfig` (and changes nothing) when the material is invalid or
   * would change the domus's identity.
   */
  async reloadAuth(auth: Pkcs8AuthConfig): Promise<void> {
    if (this.closed) throw closedError();
    const material = loadAuthMaterial(auth);
    if (material.identity !== this.auth.identity) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `reloadAuth cannot change this domus's identity from ${this.auth.identity} to ${material.identity}`,
      );
    }
    this.auth = material;
    this.listener.setSecureContext(material.secureContext);
    this.reporting.emit({ type: 'AuthReloaded', at: Date.now(), identity: material.identity });
  }

  /**
   * Shuts down gracefully: stops accepting at once, fails queued inbound requests and pending
   * `next()` with `DomusClosed`, lets sends already on a live connection finish or fail by their
   * deadline (queued work for unreachable peers fails with `DomusClosed` at once), says `close`
   * on every callis and resolves when no socket, listener or timer is left. Idempotent.
   */
  shutdown(): Promise<void> {
    if (!this.closing) this.closing = this.doShutdown();
    return this.closing;
  }

  private async doShutdown(): Promise<void> {
    this.reporting.emit({ type: 'ShutdownStarted', at: Date.now() });
    this.closed = true;
    if (this.housekeeping) clearInterval(this.housekeeping);
    this.housekeeping = undefined;
    const listenerClosed = this.listener.close();
    for (const callis of this.handshaking) callis.close(closedError());
    this.handshaking.clear();
    this.registry.shutdown();
    this.localSink.shutdown();
    await Promise.all([...this.peers.values()].map((peer) => peer.drain()));
    const goodbyes: Promise<void>[] = [];
    for (const peer of this.peers.values()) goodbyes.push(peer.close());
    for (const session of this.sessions.values()) goodbyes.push(session.close(closedError()));
    this.peers.clear();
    this.sessions.clear();
    await Promise.all([listenerClosed, ...goodbyes]);
    this.reporting.emit({ type: 'ShutdownComplete', at: Date.now() });
    this.logger.log(`domus ${this.auth.identity} shut down`);
    // Resolve once subscribers have seen ShutdownComplete, unless they are too slow to wait for.
    await this.reporting.close(FEED_DRAIN_BOUND_MS);
    this.onShutdown(this);
  }

  // ---- sending ----

  private sendLocal(
    message: DispatchMessage,
    deadline: number,
    startedAt: number,
    outcome: unknown,
  ): Promise<unknown> {
    this.metrics.messagesSent++;
    const pending = PendingSend.of(message, 0, deadline, startedAt, outcome);
    const promise = promiseOf(pending);
    const token = this.localSink.add(pending, deadline);
    this.registry.deliver(
      message.to,
      new Delivery(message.msgType, message.payload, this.selfPeer, this.localSink, token),
    );
    return promise;
  }

  /**
   * Asks the resolver for `to`'s address: the address itself when the resolver answers at once,
   * otherwise a promise bounded by the send's deadline. Failures are `UnknownTaberna` (thrown, or
   * rejected for an asynchronous resolver) and `SendTimeout` at the deadline.
   */
  private resolve(to: TabernaId, deadline: number): DomusAddr | Promise<DomusAddr> {
    let result: DomusAddr | Promise<DomusAddr>;
    try {
      result = this.resolver.resolve(to);
    } catch (err) {
      throw resolveFailure(to, err);
    }
    if (result instanceof DomusAddr) return result;
    if (typeof (result as { then?: unknown } | undefined)?.then !== 'function') throw noAddress(to);
    return withDeadline(result, deadline, to).then(
      (addr) => {
        if (!(addr instanceof DomusAddr)) throw noAddress(to);
        return addr;
      },
      (err: unknown) => {
        throw resolveFailure(to, err);
      },
    );
  }

  /** The epoch a new outbound peer object dials with (see `randomEpoch`). */
  private nextPeerEpoch(): bigint {
    this.peerSerial = (this.peerSerial % SERIAL_MASK) + 1n;
    return this.sessionEpoch | this.peerSerial;
  }

  private peerHost(addr: DomusAddr): PeerHost {
    const config = this.config;
    return {
      sessionEpoch: this.nextPeerEpoch(),
      metrics: this.metrics,
      sendQueueSize: () => config.value.sendQueueSize,
      callisConnectTimeoutMs: () => config.value.callisConnectTimeoutMs,
      reconnectBackoffMs: () => config.value.reconnectBackoffMs,
      maxPayloadLen: () => config.value.maxPayloadLen,
      keepaliveIntervalMs: () => config.value.keepaliveIntervalMs,
      onBackpressure: this.onBackpressure,
      traffic: this.metrics,
      live: this.liveCallis,
      blobProposal: () =>
        addr.kind === 'tcp' ? config.value.tcpBlobWindow : config.value.socketBlobWindow,
      dial: async (signal, timeoutMs, expectedIdentity) => {
        try {
          return await dial(addr, {
            secureContext: this.auth.secureContext,
            timeoutMs,
            signal,
            expectedIdentity,
          });
        } catch (err) {
          if (!signal.aborted) this.reportDialFailure(addr);
          throw err;
        }
      },
      emit: (event) => this.reporting.emit(event),
      error: (err) => this.reporting.error(err),
      callisUp: (identity, address, kind) => this.callisUp(identity, address, kind),
      callisDown: (identity, address, kind) => this.callisDown(identity, address, kind),
    };
  }

  private reportDialFailure(addr: DomusAddr): void {
    try {
      this.resolver.reportFailure?.(addr);
    } catch (err) {
      this.reporting.error(
        new AureliaError(
          ErrorId.InvalidConfig,
          `the resolver's reportFailure threw: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        ),
      );
    }
  }

  // ---- receiving ----

  private async onInbound(conn: CallisConnection): Promise<void> {
    const config = this.config.value;
    if (this.closed) {
      conn.socket.destroy();
      return;
    }
    const open = this.inboundCallis.get(conn.identity) ?? 0;
    if (open >= config.maxParallelCallisPerPeer) {
      const err = new AureliaError(
        ErrorId.PeerUnavailable,
        `${conn.identity} already holds ${open} callis (maxParallelCallisPerPeer ${config.maxParallelCallisPerPeer}); refusing another`,
      );
      this.reporting.error(err);
      conn.socket.destroy();
      return;
    }
    this.inboundCallis.set(conn.identity, open + 1);
    const callis = new Callis(conn, this.sessionHostSettings, 'inbound');
    this.handshaking.add(callis);
    const timeoutMs =
      conn.transport === 'tcp' ? config.tcpHandshakeTimeoutMs : config.socketHandshakeTimeoutMs;
    let hello;
    try {
      hello = await listenerHello(callis, timeoutMs);
    } catch (err) {
      this.handshaking.delete(callis);
      this.releaseInbound(conn.identity);
      if (AureliaError.is(err)) {
        if (isPeerViolation(err)) this.metrics.protocolViolations++;
        if (err.kind !== ErrorId.DomusClosed) this.reporting.error(err);
      }
      return;
    }
    this.handshaking.delete(callis);
    if (this.closed || callis.closed) {
      this.releaseInbound(conn.identity);
      callis.close(closedError(), true);
      return;
    }
    const key = InboundSession.key(conn.identity, hello.sessionEpoch);
    let session = this.sessions.get(key);
    if (hello.blobWindow) {
      this.acceptBlobCallis(callis, session, hello.blobWindow, conn.transport);
      return;
    }
    if (!session) {
      for (const old of this.sessions.values()) {
        if (old.identity === conn.identity && !sameDomusRun(old.epoch, hello.sessionEpoch)) {
          old.failBlobs(
            new AureliaError(
              ErrorId.PeerRestarted,
              `${conn.identity} restarted; blob streams of its previous session were lost`,
            ),
          );
        }
      }
      session = new InboundSession(
        conn.identity,
        hello.sessionEpoch,
        conn.remoteAddress,
        this.sessionHost,
      );
      this.sessions.set(key, session);
    }
    callis.sendControl(encodeHelloResponse({ sessionEpoch: this.sessionEpoch }));
    session.attach(callis);
    this.callisUp(conn.identity, conn.remoteAddress, 'primary');
    this.reporting.emit({
      type: 'PrimaryCallisConnected',
      at: Date.now(),
      identity: conn.identity,
      address: conn.remoteAddress,
      direction: 'inbound',
    });
  }

  /** A blob hello: joins the sender's existing session with the agreed window. */
  private acceptBlobCallis(
    callis: Callis,
    session: InboundSession | undefined,
    proposed: HelloBlobWindow,
    transport: 'tcp' | 'socket',
  ): void {
    const identity = callis.identity;
    if (!session) {
      this.releaseInbound(identity);
      this.metrics.protocolViolations++;
      callis.abort(
        new AureliaError(
          ErrorId.BlobCallisWithoutPrimary,
          `${callis.describe()} opened a blob callis for a session with no primary callis`,
        ),
      );
      return;
    }
    const own =
      transport === 'tcp' ? this.config.value.tcpBlobWindow : this.config.value.socketBlobWindow;
    const agreed = {
      chunkSize: Math.min(proposed.chunkSize, own.chunkSize),
      ackWindow: Math.min(proposed.ackWindow, own.ackWindow),
    };
    callis.sendControl(
      encodeHelloResponse({ sessionEpoch: this.sessionEpoch, blobWindow: agreed }),
    );
    session.attachBlob(callis, agreed);
    const address = callis.connection.remoteAddress;
    this.callisUp(identity, address, 'blob');
    this.reporting.emit({
      type: 'BlobCallisConnected',
      at: Date.now(),
      identity,
      address,
      direction: 'inbound',
      blobWindow: agreed,
    });
  }

  private releaseInbound(identity: string): void {
    const open = (this.inboundCallis.get(identity) ?? 1) - 1;
    if (open <= 0) this.inboundCallis.delete(identity);
    else this.inboundCallis.set(identity, open);
  }

  private readonly onBackpressure = (callis: Callis): void => {
    this.reporting.emit({
      type: 'BackpressureTriggered',
      at: Date.now(),
      identity: callis.identity,
      address: callis.connection.remoteAddress,
    });
  };

  private readonly sessionHostSettings = {
    maxPayloadLen: () => this.config.value.maxPayloadLen,
    keepaliveIntervalMs: () => this.config.value.keepaliveIntervalMs,
    onBackpressure: this.onBackpressure,
    traffic: this.metrics,
    live: this.liveCallis,
  };

  private readonly sessionHost: SessionHost = {
    metrics: this.metrics,
    deliver: (dst, delivery) => this.registry.deliver(dst, delivery),
    dedupeRetentionMs: () => 2 * this.config.value.sendTimeoutMs,
    admitBlob: () => this.reserveBlob('inbound'),
    onBlobCallisClosed: (session, callis, reason) => {
      this.releaseInbound(session.identity);
      if (isPeerViolation(reason)) this.metrics.protocolViolations++;
      this.callisDown(session.identity, callis.connection.remoteAddress, 'blob');
      this.reporting.emit({
        type: 'BlobCallisDisconnected',
        at: Date.now(),
        identity: session.identity,
        address: callis.connection.remoteAddress,
        direction: 'inbound',
        reason: reason.message,
      });
    },
    onOversizeRefused: (_session, err) => this.reporting.error(err),
    onCallisClosed: (session, callis, reason) => {
      this.releaseInbound(session.identity);
      if (isPeerViolation(reason)) this.metrics.protocolViolations++;
      this.callisDown(session.identity, callis.connection.remoteAddress, 'primary');
      this.reporting.emit({
        type: 'PrimaryCallisDisconnected',
        at: Date.now(),
        identity: session.identity,
        address: callis.connection.remoteAddress,
        direction: 'inbound',
        reason: reason.message,
      });
    },
  };

  // ---- bookkeeping ----

  private countDecision(delivery: Delivery, decision: Decision): void {
    if (delivery.peer.local) return; // counted on the sending side by the local sink
    if (decision.accepted) this.metrics.messagesAccepted++;
    else this.metrics.messagesRejected++;
  }

  private callisUp(identity: string, address: string, kind: 'primary' | 'blob'): void {
    let links = this.links.get(identity);
    if (!links) {
      links = { primary: 0, blob: 0, addresses: new Map() };
      this.links.set(identity, links);
      this.metrics.peerDelta(1);
      this.reporting.emit({ type: 'PeerConnected', at: Date.now(), identity, address });
    }
    links[kind]++;
    links.addresses.set(address, (links.addresses.get(address) ?? 0) + 1);
    this.metrics.callisDelta(kind, 1);
  }

  private callisDown(identity: string, address: string, kind: 'primary' | 'blob'): void {
    const links = this.links.get(identity);
    if (!links) return;
    links[kind]--;
    const n = (links.addresses.get(address) ?? 1) - 1;
    if (n <= 0) links.addresses.delete(address);
    else links.addresses.set(address, n);
    this.metrics.callisDelta(kind, -1);
    if (links.primary + links.blob <= 0) {
      this.links.delete(identity);
      this.metrics.peerDelta(-1);
      this.reporting.emit({ type: 'PeerDisconnected', at: Date.now(), identity, address });
    }
  }

  private peerReports(): PeerIdentityReport[] {
    const out: PeerIdentityReport[] = [];
    for (const [identity, links] of this.links) {
      out.push({
        identity,
        addresses: [...links.addresses.keys()],
        primaryCallis: links.primary,
        blobCallis: links.blob,
      });
    }
    return out;
  }

  private applyConfig(next: DomusConfig, previous: DomusConfig): void {
    const changed = (Object.keys(next) as (keyof DomusConfig)[]).filter(
      (k) => JSON.stringify(next[k]) !== JSON.stringify(previous[k]),
    );
    if (next.sendQueueSize !== previous.sendQueueSize) {
      for (const peer of this.peers.values()) peer.setCapacity(next.sendQueueSize);
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
    this.reporting.emit({ type: 'ConfigReloaded', at: Date.now(), changed });
  }

  private tidy(): void {
    const now = Date.now();
    const blobIdleMs = 2 * this.config.value.sendTimeoutMs;
    for (const [key, session] of this.sessions) {
      if (session.expire(now, blobIdleMs)) this.sessions.delete(key);
    }
    for (const peer of this.peers.values()) peer.expireIdleBlobs(now, blobIdleMs);
    for (const [key, peer] of this.peers) {
      if (peer.idle) {
        this.peers.delete(key);
        void peer.close();
      }
    }
  }
}

const MESSAGE_OUTCOME: SendOutcome = Object.freeze({ kind: 'message' });

/** The header flags of a dispatched message: never BLOB, so the send resolves with nothing. */
function dispatchFlags(message: DispatchMessage): number {
  return (message.flags ?? 0) & ~FrameFlags.Blob;
}

/** How long a shutdown waits for the reporting feeds to deliver what they still hold. */
const FEED_DRAIN_BOUND_MS = 1000;

// The promise executor of `PendingSend.promise`, shared so that a send allocates no closure for it:
// `new Promise` runs it synchronously, while `capturing` names the send being created.
let capturing: PendingSend | undefined;
function captureSettlers(resolve: (value: unknown) => void, reject: (err: Error) => void): void {
  const pending = capturing as PendingSend;
  pending.resolveWith = resolve;
  pending.rejectWith = reject;
}

/** The caller's promise for `pending`, settled by its `resolve` / `reject`; call once per send. */
function promiseOf(pending: PendingSend): Promise<unknown> {
  capturing = pending;
  const promise = new Promise<unknown>(captureSettlers);
  capturing = undefined;
  return promise;
}

/**
 * One send in flight: the message as the outbound store admits it, and how the caller's promise
 * settles. One object per send, so the hot path allocates little.
 */
class PendingSend implements OutboundSpec<SendContext>, SendContext {
  resolveWith: (value: unknown) => void = noop;
  rejectWith: (err: Error) => void = noop;

  constructor(
    readonly priority: MessagePriorityClass.A2 | MessagePriorityClass.A3,
    readonly msgType: MessageType,
    readonly flags: number,
    readonly srcTaberna: TabernaId,
    readonly dstTaberna: TabernaId,
    readonly payload: Buffer,
    readonly deadline: number,
    readonly startedAt: number,
    /** What an accepted message send resolves with; a blob send resolves with its sender. */
    private readonly outcome: unknown,
  ) {}

  static of(
    message: DispatchMessage,
    flags: number,
    deadline: number,
    startedAt: number,
    outcome: unknown,
  ): PendingSend {
    return new PendingSend(
      message.priority,
      message.msgType,
      flags,
      message.from ?? 0n,
      message.to,
      message.payload,
      deadline,
      startedAt,
      outcome,
    );
  }

  get context(): SendContext {
    return this;
  }

  resolve(value?: unknown): void {
    this.resolveWith(value === undefined ? this.outcome : value);
  }

  reject(err: AureliaError): void {
    this.rejectWith(err);
  }
}

function noop(): void {}

/** Settles local sends: the same decision path as remote ones, without the network. */
class LocalSink implements DecisionSink {
  private readonly pending = new Map<number, LocalSend>();
  private readonly deadlines = new DeadlineHeap<LocalSend>();
  private nextToken = 1;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;

  constructor(private readonly metrics: MetricsRecorder) {}

  add(context: SendContext, deadline: number): number {
    // Counted as received here, as an inbound session counts a remote message it delivers.
    this.metrics.messagesReceived++;
    const token = this.nextToken++;
    const entry: LocalSend = { token, context, deadline, heapIndex: -1 };
    this.pending.set(token, entry);
    this.deadlines.push(entry);
    if (deadline < this.timerAt) this.arm(deadline);
    return token;
  }

  decide(token: number, decision: Decision): void {
    const entry = this.pending.get(token);
    if (!entry) return;
    this.pending.delete(token);
    this.deadlines.remove(entry);
    if (decision.accepted) {
      this.metrics.sendsAccepted++;
      this.metrics.messagesAccepted++;
      this.metrics.recordSendLatency(performance.now() - entry.context.startedAt);
      entry.context.resolve();
    } else {
      this.metrics.sendsFailed++;
      this.metrics.messagesRejected++;
      entry.context.reject(new AureliaError(decision.errorId, decision.message));
    }
  }

  shutdown(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    for (const entry of this.pending.values()) entry.context.reject(closedError());
    this.pending.clear();
    this.deadlines.clear();
  }

  private arm(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.onTimer, Math.max(0, at - Date.now()));
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    for (let e = this.deadlines.popDue(now); e; e = this.deadlines.popDue(now)) {
      this.pending.delete(e.token);
      this.metrics.sendsFailed++;
      e.context.reject(
        new AureliaError(ErrorId.SendTimeout, `no decision from the local taberna in time`),
      );
    }
    const next = this.deadlines.peek();
    if (next) this.arm(next.deadline);
  };
}

interface LocalSend {
  readonly token: number;
  readonly context: SendContext;
  readonly deadline: number;
  heapIndex: number;
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

function resolveFailure(to: TabernaId, err: unknown): AureliaError {
  if (AureliaError.is(err)) return err;
  return new AureliaError(
    ErrorId.UnknownTaberna,
    `resolving taberna ${to} failed: ${err instanceof Error ? err.message : String(err)}`,
    { cause: err },
  );
}

function noAddress(to: TabernaId): AureliaError {
  return new AureliaError(
    ErrorId.UnknownTaberna,
    `the resolver returned no DomusAddr for taberna ${to}`,
  );
}

function withDeadline<T>(promise: Promise<T>, deadline: number, to: TabernaId): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new AureliaError(ErrorId.SendTimeout, `resolving taberna ${to} did not finish in time`),
        ),
      Math.max(0, deadline - Date.now()),
    );
    promise.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/** The message's first words with numbers removed: a key grouping repeats of one problem. */
function firstWords(message: string): string {
  return message.replace(/\d+/g, '#').slice(0, 80);
}

// A domus epoch is random in its high 32 bits and zero below. Each outbound peer object it creates
// dials with its own epoch: those high bits and a serial number below. The receiver keys sessions
// by the whole epoch, so every peer object has its own session and message-id space (one domus
// reached at two addresses is two sessions), while a change of the high bits tells it that the
// sending domus restarted.
function randomEpoch(): bigint {
  for (;;) {
    const high = randomBytes(4).readUInt32BE(0);
    if (high !== 0) return BigInt(high) << 32n;
  }
}

const SERIAL_MASK = 0xffff_ffffn;

/** True when two dialer epochs come from the same run of one domus. */
function sameDomusRun(a: bigint, b: bigint): boolean {
  return a >> 32n === b >> 32n;
}

function closedError(): AureliaError {
  return new AureliaError(ErrorId.DomusClosed, 'the domus is shut down');
}

/** Loads and checks what a domus needs before binding (used by the builder). */
export function prepareDomus(
  config: DomusConfig,
  auth: Pkcs8AuthConfig,
): { config: DomusConfig; auth: AuthMaterial } {
  return { config: validateDomusConfig(config), auth: loadAuthMaterial(auth) };
}
