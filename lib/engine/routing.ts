// Where a send goes: a local taberna, or the outbound peer of the address the resolver names.
import { AureliaError, ErrorId } from './errors.js';
import { DomusAddr } from './addr.js';
import type { AuthMaterial } from './auth.js';
import type { DomusConfigAccess } from './domus.js';
import type { MessagePriorityClass, MessageType, TabernaId } from './ids.js';
import type { RouteResolver } from './resolver.js';
import type { CallisSettings } from './peer/callis.js';
import { OutboundPeer, type PeerHost } from './peer/peer.js';
import { FrameFlags } from './wire/frame.js';
import { Delivery, type PeerInfo } from './taberna/request.js';
import type { TabernaRegistry } from './taberna/registry.js';
import type { MetricsRecorder } from './reporting/metrics.js';
import type { DomusReporting } from './reporting/reporting.js';
import type { LinkBook } from './links.js';
import { LocalSink, PendingSend, promiseOf } from './local-sink.js';
import { dial } from './transport/dial.js';

/** An encoded message for `Domus.dispatch` (engine-internal; not exported by any entry). */
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

/** What the router needs from its domus. */
export interface RouterHost {
  readonly sessionEpoch: bigint;
  readonly config: DomusConfigAccess;
  readonly metrics: MetricsRecorder;
  readonly reporting: DomusReporting;
  readonly registry: TabernaRegistry;
  readonly links: LinkBook;
  readonly callisSettings: CallisSettings;
  readonly resolver: RouteResolver;
  /** The certificate identity local deliveries are attributed to. */
  readonly identity: string;
  auth(): AuthMaterial;
  localAddr(): DomusAddr;
  isClosed(): boolean;
}

/**
 * Routes every outgoing message: tabernae of this domus are served by the local sink without the
 * network; anything else goes to the outbound peer of the address the resolver (or the message
 * itself) names, created on first use and forgotten once idle. Owns the outbound peers.
 */
export class Router {
  private readonly peers = new Map<string, OutboundPeer>();
  private readonly localSink: LocalSink;
  private readonly selfPeer: PeerInfo;
  private peerSerial = 0n;

  constructor(private readonly host: RouterHost) {
    this.localSink = new LocalSink(host.metrics);
    this.selfPeer = Object.freeze({ identity: host.identity, local: true });
  }

  /** Outbound peers, for live configuration updates. */
  get outboundPeers(): Iterable<OutboundPeer> {
    return this.peers.values();
  }

  // Not `async`: a send whose target resolves at once takes no extra promise or microtask turn.
  // Every failure still arrives as a rejected promise.
  // `outcome` is what a message send resolves with (a blob send resolves with its sender).
  route(
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
  routeOrThrow(
    message: DispatchMessage,
    flags: number,
    blobRelease: (() => void) | undefined,
    outcome: unknown,
  ): Promise<unknown> {
    if (this.host.isClosed()) throw closedError();
    const config = this.host.config.value;
    const { payload, to } = message;
    if (payload.length > config.maxPayloadLen) {
      throw new AureliaError(
        ErrorId.EncodeFailure,
        `payload of ${payload.length} bytes exceeds maxPayloadLen ${config.maxPayloadLen}`,
      );
    }
    const startedAt = performance.now();
    const deadline = Date.now() + (message.timeoutMs ?? config.sendTimeoutMs);
    if (message.address === undefined && this.host.registry.has(to)) {
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

  /** Shutdown: fails what waits locally, lets peers finish what is on a live connection. */
  async drain(): Promise<void> {
    this.localSink.shutdown();
    await Promise.all([...this.peers.values()].map((peer) => peer.drain()));
  }

  /** Shutdown: closes every outbound peer. */
  close(): Promise<void>[] {
    const goodbyes: Promise<void>[] = [];
    for (const peer of this.peers.values()) goodbyes.push(peer.close());
    this.peers.clear();
    return goodbyes;
  }

  /** Fails idle blob streams and forgets peers that hold nothing. */
  tidy(now: number, blobIdleMs: number): void {
    for (const peer of this.peers.values()) peer.expireIdleBlobs(now, blobIdleMs);
    for (const [key, peer] of this.peers) {
      if (peer.idle) {
        this.peers.delete(key);
        void peer.close();
      }
    }
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
    if (addr.key === this.host.localAddr().key) {
      return this.sendLocal(message, deadline, startedAt, outcome);
    }
    if (this.host.isClosed()) return Promise.reject(closedError());
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

  private sendLocal(
    message: DispatchMessage,
    deadline: number,
    startedAt: number,
    outcome: unknown,
  ): Promise<unknown> {
    this.host.metrics.messagesSent++;
    const pending = PendingSend.of(message, 0, deadline, startedAt, outcome);
    const promise = promiseOf(pending);
    const token = this.localSink.add(pending, deadline);
    this.host.registry.deliver(
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
      result = this.host.resolver.resolve(to);
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

  /** The epoch a new outbound peer object dials with: the domus's high bits, a serial below. */
  private nextPeerEpoch(): bigint {
    this.peerSerial = (this.peerSerial % SERIAL_MASK) + 1n;
    return this.host.sessionEpoch | this.peerSerial;
  }

  private peerHost(addr: DomusAddr): PeerHost {
    const host = this.host;
    const config = host.config;
    const settings = host.callisSettings;
    return {
      sessionEpoch: this.nextPeerEpoch(),
      metrics: host.metrics,
      sendQueueSize: () => config.value.sendQueueSize,
      callisConnectTimeoutMs: () => config.value.callisConnectTimeoutMs,
      reconnectBackoffMs: () => config.value.reconnectBackoffMs,
      maxPayloadLen: settings.maxPayloadLen,
      keepaliveIntervalMs: settings.keepaliveIntervalMs,
      onBackpressure: settings.onBackpressure,
      traffic: settings.traffic,
      live: settings.live,
      blobProposal: () =>
        addr.kind === 'tcp' ? config.value.tcpBlobWindow : config.value.socketBlobWindow,
      dial: async (signal, timeoutMs, expectedIdentity) => {
        try {
          return await dial(addr, {
            secureContext: host.auth().secureContext,
            timeoutMs,
            signal,
            expectedIdentity,
          });
        } catch (err) {
          if (!signal.aborted) this.reportDialFailure(addr);
          throw err;
        }
      },
      emit: (event) => host.reporting.emit(event),
      error: (err) => host.reporting.error(err),
      callisUp: (identity, address, kind) => host.links.up(identity, address, kind),
      callisDown: (identity, address, kind) => host.links.down(identity, address, kind),
    };
  }

  private reportDialFailure(addr: DomusAddr): void {
    try {
      this.host.resolver.reportFailure?.(addr);
    } catch (err) {
      this.host.reporting.error(
        new AureliaError(
          ErrorId.InvalidConfig,
          `the resolver's reportFailure threw: ${err instanceof Error ? err.message : String(err)}`,
          { cause: err },
        ),
      );
    }
  }
}

const SERIAL_MASK = 0xffff_ffffn;

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

function closedError(): AureliaError {
  return new AureliaError(ErrorId.DomusClosed, 'the domus is shut down');
}
