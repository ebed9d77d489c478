// Where a send goes: a local taberna, or the outbound peer of the address the resolver names.
import { AureliaError, ErrorId, domusClosedError } from './errors.js';
import { DomusAddr } from './addr.js';
import type { AuthMaterial } from './auth.js';
import type { DomusConfigAccess } from './domus.js';
import {
  tabernaIdText,
  type MessagePriorityClass,
  type MessageType,
  type TabernaId,
} from './ids.js';
import { ReplicaSet, type RouteResolver } from './resolver.js';
import {
  ReplicaBalancer,
  type ReplicaBalancerOptions,
  type ReplicaDecision,
} from './balancer/balancer.js';
import type { DomusConfig } from './config.js';
import type { CallisSettings } from './peer/callis.js';
import { randomSessionEpoch } from './peer/epoch.js';
import { type BlobRelease, OutboundPeer, type PeerHost } from './peer/peer.js';
import { FrameFlags } from './wire/frame.js';
import { Delivery, type PeerInfo } from './taberna/request.js';
import type { TabernaRegistry } from './taberna/registry.js';
import type { MetricsRecorder } from './reporting/metrics.js';
import type { DomusReporting } from './reporting/reporting.js';
import type { LinkBook } from './links.js';
import { LocalSink, PendingSend, type ReplySink, promiseOf } from './local-sink.js';
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
  /** What a `'hash'`-balanced route hashes to pick a replica; default the taberna id. */
  readonly balanceKey?: string;
  /** Makes the message an A2 request: its replies come back on the callis it is written to. */
  readonly replies?: ReplySink;
}

/** What the router needs from its domus. */
export interface RouterHost {
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
  /** The listen address, if the domus has one: sends to it are local. */
  localAddr(): DomusAddr | undefined;
  isClosed(): boolean;
}

/**
 * Routes every outgoing message: tabernae of this domus are served by the local sink without the
 * network; anything else goes to the outbound peer of the address the resolver (or the message
 * itself) names, created on first use and forgotten once idle. Owns the outbound peers and the
 * balancer: when the resolver names several replicas (`resolveRoute`), each send is balanced over
 * them, counted outstanding on its replica until it settles, and its outcome (latency, or a
 * failure that was the replica's) fed back.
 */
export class Router {
  private readonly peers = new Map<string, OutboundPeer>();
  private readonly balancer: ReplicaBalancer;
  /** The configuration the balancer's ejection limits were last taken from. */
  private tunedFor: DomusConfig;
  private readonly localSink: LocalSink;
  private readonly selfPeer: PeerInfo;

  constructor(private readonly host: RouterHost) {
    this.localSink = new LocalSink(host.metrics);
    this.selfPeer = Object.freeze({ identity: host.identity, local: true });
    this.tunedFor = host.config.value;
    this.balancer = new ReplicaBalancer(ejectionLimits(this.tunedFor));
    host.metrics.replicaReports = () => this.balancer.replicas(Date.now());
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
    if (this.host.isClosed()) throw domusClosedError();
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
    const target = message.address ?? this.resolve(to, deadline);
    if (target instanceof DomusAddr || target instanceof ReplicaSet) {
      return this.routeTo(target, message, flags, deadline, startedAt, blobRelease, outcome);
    }
    return target.then((resolved) =>
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

  /** Fails idle blob streams, forgets peers that hold nothing and replicas long unused. */
  tidy(now: number, blobIdleMs: number): void {
    this.balancer.forgetIdle(now, REPLICA_IDLE_MS);
    for (const peer of this.peers.values()) peer.expireIdleBlobs(now, blobIdleMs);
    for (const [key, peer] of this.peers) {
      if (peer.idle) {
        this.peers.delete(key);
        void peer.close();
      }
    }
  }

  private routeTo(
    target: DomusAddr | ReplicaSet,
    message: DispatchMessage,
    flags: number,
    deadline: number,
    startedAt: number,
    blobRelease: (() => void) | undefined,
    outcome: unknown,
  ): Promise<unknown> {
    let addr: DomusAddr;
    let replica: string | undefined;
    let route: ReplicaSet | undefined;
    if (target instanceof DomusAddr) addr = target;
    else {
      // A route that names its identity: the send may only be written to that identity.
      if (target.identity !== undefined) message = withRouteIdentity(message, target.identity);
      if (target.addresses.length === 1) addr = target.addresses[0];
      else {
        route = target;
        replica = this.pickReplica(route, hashKey(route, message), this.unavailable);
        addr = route.addressOf(replica)!;
      }
    }
    if (addr.key === this.host.localAddr()?.key) {
      return this.sendLocal(message, deadline, startedAt, outcome);
    }
    if (this.host.isClosed()) return Promise.reject(domusClosedError());
    const peer = this.peerFor(addr);
    const blob = flags & FrameFlags.Blob;
    if (replica === undefined) {
      const pending = PendingSend.of(message, blob, deadline, startedAt, outcome);
      const promise = promiseOf(pending);
      // Throws (LocalQueueFull, AddressMismatch, DomusClosed) before anything was admitted.
      peer.submit(pending, blobRelease);
      return promise;
    }
    const pending = BalancedSend.of(message, blob, deadline, startedAt, outcome);
    pending.tracker = this;
    pending.replica = replica;
    pending.route = route!;
    pending.key = hashKey(route!, message);
    const promise = promiseOf(pending);
    this.balancer.started(replica);
    try {
      peer.submit(pending, blobRelease);
    } catch (err) {
      // Refused before anything was admitted: not the replica's doing.
      this.balancer.released(replica);
      throw err;
    }
    return promise;
  }

  /**
   * The replica of `route` this send goes to. A replica due for its probe is probed with the
   * send when its link is up; otherwise by a dial alone (no call is risked where no link is),
   * and the send picks again.
   */
  private pickReplica(
    route: ReplicaSet,
    key: string,
    unavailable: (replica: string) => boolean,
  ): string {
    const now = Date.now();
    let replica = '';
    for (let tries = 0; tries <= route.keys.length; tries++) {
      const pick = this.tuned().pick(route.keys, route.balancing, now, key, unavailable);
      replica = pick.replica;
      if (pick.decision === undefined) break;
      this.report(pick.decision, now);
      const peer = this.peerFor(route.addressOf(replica)!);
      if (peer.connected) break;
      peer.probe();
    }
    return replica;
  }

  /** A replica announced a drain: it takes nothing new until it reconnects. */
  private readonly unavailable = (replica: string): boolean =>
    this.peers.get(replica)?.remoteDraining === true;

  /**
   * Sends a balanced send that no application has seen to another replica of its route, within
   * its deadline: the replica it was on is draining, unreachable, or refused it as draining, busy
   * or not serving the taberna. False (the send is untouched) when no other replica is available,
   * the send already moved once per replica, the deadline passed or this domus is closing.
   */
  private moveSend(send: BalancedSend, blobRelease: BlobRelease | undefined): boolean {
    if (send.tracker === undefined || this.host.isClosed() || Date.now() >= send.deadline) {
      return false;
    }
    // A route none of whose replicas serves the taberna cannot pass a send round forever.
    if (send.moves >= send.route.keys.length) return false;
    const from = send.replica;
    const elsewhere = (replica: string): boolean => replica === from || this.unavailable(replica);
    if (send.route.keys.every(elsewhere)) return false;
    const to = this.pickReplica(send.route, send.key, elsewhere);
    const addr = send.route.addressOf(to)!;
    if (elsewhere(to) || addr.key === this.host.localAddr()?.key) return false;
    this.balancer.released(from);
    this.balancer.started(to);
    send.replica = to;
    send.moves++;
    this.host.metrics.sendsFailedOver++;
    try {
      this.peerFor(addr).submit(send, blobRelease);
    } catch (err) {
      // Refused before admission (a full lane there): the send fails with that reason.
      this.balancer.released(to);
      send.tracker = undefined;
      blobRelease?.();
      send.reject(err as AureliaError);
    }
    return true;
  }

  /** Moves the queued balanced sends of `peer` that another replica can take; returns how many. */
  private moveQueued(peer: OutboundPeer): number {
    const taken = peer.takeQueued((context) => context instanceof BalancedSend);
    let moved = 0;
    for (const { context, blobRelease } of taken) {
      const send = context as BalancedSend;
      if (this.moveSend(send, blobRelease)) moved++;
      else peer.readmit(send, blobRelease);
    }
    return moved;
  }

  /**
   * A replica's link died and dialling it again failed: what was queued for it moves to the other
   * replicas, and what it was sent but never decided fails with `OutcomeUnknown` at once (it may
   * have run there; it is never sent again) instead of waiting for its deadline.
   */
  private abandonReplica(peer: OutboundPeer): void {
    this.moveQueued(peer);
    peer.failRetained(
      (context) => context instanceof BalancedSend,
      new AureliaError(
        ErrorId.OutcomeUnknown,
        `${peer.peerIdentity ?? peer.address} at ${peer.address} went away before deciding the message; it may or may not have run there and was not sent anywhere else`,
      ),
    );
  }

  /** @internal A balanced send settled: feeds its outcome back to the balancer. */
  settled(replica: string, startedAt: number, err: AureliaError | undefined): void {
    const now = Date.now();
    if (err !== undefined && !REPLICA_FAILURES.has(err.kind)) {
      // The replica answered (a rejection, a busy taberna) or a domus is closing.
      if (err.kind === ErrorId.DomusClosed || err.kind === ErrorId.Draining) {
        this.balancer.released(replica);
      } else this.balancer.settled(replica, true, now, performance.now() - startedAt);
      return;
    }
    const decision = this.tuned().settled(
      replica,
      err === undefined,
      now,
      err === undefined ? performance.now() - startedAt : undefined,
    );
    if (decision !== undefined) this.report(decision, now);
  }

  /** The balancer, with the ejection limits of the live configuration. */
  private tuned(): ReplicaBalancer {
    const config = this.host.config.value;
    if (config !== this.tunedFor) {
      this.tunedFor = config;
      this.balancer.tune(ejectionLimits(config));
    }
    return this.balancer;
  }

  private report(decision: ReplicaDecision, now: number): void {
    const reporting = this.host.reporting;
    if (decision.type === 'ReplicaEjected') {
      this.host.metrics.replicaEjections++;
      reporting.emit({
        type: 'ReplicaEjected',
        at: now,
        address: decision.replica,
        failures: decision.failures,
        ejections: decision.ejections,
        until: decision.until,
      });
    } else {
      reporting.emit({ type: decision.type, at: now, address: decision.replica });
    }
  }

  private peerFor(addr: DomusAddr): OutboundPeer {
    let peer = this.peers.get(addr.key);
    if (!peer) {
      peer = new OutboundPeer(addr.key, this.peerHost(addr));
      this.peers.set(addr.key, peer);
    }
    return peer;
  }

  private sendLocal(
    message: DispatchMessage,
    deadline: number,
    startedAt: number,
    outcome: unknown,
  ): Promise<unknown> {
    const expected = message.expectedIdentity;
    if (expected !== undefined && expected !== this.host.identity) {
      this.host.metrics.identityMismatches++;
      return Promise.reject(identityMismatch(message.to, expected, this.host.identity));
    }
    this.host.metrics.messagesSent++;
    const pending = PendingSend.of(message, 0, deadline, startedAt, outcome);
    const promise = promiseOf(pending);
    const token = this.localSink.add(pending, deadline);
    const delivery = new Delivery(
      message.msgType,
      message.payload,
      this.selfPeer,
      this.localSink,
      token,
    );
    if (message.replies) message.replies.cancelRequest = (late) => delivery.cancel(late);
    this.host.registry.deliver(message.to, delivery);
    return promise;
  }

  /**
   * Asks the resolver for `to`'s replicas (`resolveRoute`) or address (`resolve`): the answer
   * itself when the resolver answers at once, otherwise a promise bounded by the send's deadline.
   * Failures are `UnknownTaberna` (thrown, or rejected for an asynchronous resolver) and
   * `SendTimeout` at the deadline.
   */
  private resolve(
    to: TabernaId,
    deadline: number,
  ): DomusAddr | ReplicaSet | Promise<DomusAddr | ReplicaSet> {
    const resolver = this.host.resolver;
    let result: DomusAddr | ReplicaSet | Promise<DomusAddr | ReplicaSet>;
    try {
      result =
        resolver.resolveRoute === undefined ? resolver.resolve(to) : resolver.resolveRoute(to);
    } catch (err) {
      throw resolveFailure(to, err);
    }
    if (result instanceof DomusAddr || result instanceof ReplicaSet) return result;
    if (typeof (result as { then?: unknown } | undefined)?.then !== 'function') throw noAddress(to);
    return withDeadline(result, deadline, to).then(
      (answer) => {
        if (!(answer instanceof DomusAddr || answer instanceof ReplicaSet)) throw noAddress(to);
        return answer;
      },
      (err: unknown) => {
        throw resolveFailure(to, err);
      },
    );
  }

  private peerHost(addr: DomusAddr): PeerHost {
    const host = this.host;
    const config = host.config;
    const settings = host.callisSettings;
    return {
      // Each outbound peer object is a session of its own at the receiver, with a fresh epoch.
      sessionEpoch: randomSessionEpoch(),
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
      emit: (event) => {
        // Every failed connection attempt (dial, TLS or hello) reports this event.
        if (event.type === 'PeerDialFailed') this.replicaUnreachable(addr.key);
        host.reporting.emit(event);
      },
      error: (err) => host.reporting.error(err),
      callisUp: (identity, address, kind) => {
        host.links.up(identity, address, kind);
        if (kind === 'primary') this.replicaReachable(addr.key);
      },
      callisDown: (identity, address, kind) => {
        host.links.down(identity, address, kind);
        // A replica that announced its drain and then closed is gone: out of rotation until a
        // dial finds it back (its restart), without waiting for a send to fail there.
        if (kind === 'primary' && this.peers.get(addr.key)?.remoteDraining === true) {
          this.replicaUnreachable(addr.key);
        }
      },
      onRemoteDraining: (peer) => this.moveQueued(peer),
      relocate: (context, blobRelease) =>
        context instanceof BalancedSend && this.moveSend(context, blobRelease),
    };
  }

  /** A link to a replica came up: readmits it when that was its probe. */
  private replicaReachable(replica: string): void {
    const now = Date.now();
    const decision = this.tuned().connected(replica, now);
    if (decision !== undefined) this.report(decision, now);
  }

  /** A replica that cannot be dialled takes no more sends until its ejection ends. */
  private replicaUnreachable(replica: string): void {
    if (!this.balancer.tracks(replica)) return;
    const now = Date.now();
    const decision = this.tuned().connectFailed(replica, now);
    if (decision !== undefined) this.report(decision, now);
    const peer = this.peers.get(replica);
    if (peer !== undefined) this.abandonReplica(peer);
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

function ejectionLimits(config: DomusConfig): ReplicaBalancerOptions {
  return {
    failuresToEject: config.replicaFailuresToEject,
    ejectionMs: config.replicaEjectionMs,
    maxEjectionMs: config.replicaMaxEjectionMs,
  };
}
/** A replica no send used for this long (and not ejected) is forgotten by the balancer. */
const REPLICA_IDLE_MS = 10 * 60_000;
/**
 * Failures that count against the replica a send went to: it could not be reached, lost the
 * link or its session, answered as someone else, or did not decide in time. Other rejections are
 * answers (the replica is alive and judged the message).
 */
const REPLICA_FAILURES: ReadonlySet<ErrorId> = new Set([
  ErrorId.PeerUnavailable,
  ErrorId.ConnectionLost,
  ErrorId.PeerRestarted,
  ErrorId.AddressMismatch,
  ErrorId.SendTimeout,
  ErrorId.OutcomeUnknown,
]);

/**
 * A send to one replica of a balanced route: reports how it settled to the router, and carries
 * its route so that it can move to another replica while no application has seen it.
 */
class BalancedSend extends PendingSend {
  tracker: Router | undefined;
  replica = '';
  route!: ReplicaSet;
  /** Its hashing key (`'hash'` routes). */
  key = '';
  /** Times it moved to another replica (at most one per replica of its route). */
  moves = 0;

  override resolve(value?: unknown): void {
    this.settle(undefined);
    super.resolve(value);
  }

  override reject(err: AureliaError): void {
    this.settle(err);
    super.reject(err);
  }

  /** Reports once: a send settles once, but a stray second call must not count twice. */
  private settle(err: AureliaError | undefined): void {
    const tracker = this.tracker;
    if (tracker === undefined) return;
    this.tracker = undefined;
    tracker.settled(this.replica, this.startedAt, err);
  }
}

/**
 * `message` bound to the identity its route names. A message that already expects another
 * identity can be served by neither: it keeps its own, and fails with `AddressMismatch` wherever
 * it is written, as the route's identity is the only one that may answer there.
 */
function withRouteIdentity(message: DispatchMessage, identity: string): DispatchMessage {
  const expected = message.expectedIdentity;
  if (expected === identity) return message;
  if (expected !== undefined) {
    throw new AureliaError(
      ErrorId.AddressMismatch,
      `the route to taberna ${tabernaIdText(message.to)} is served by ${identity}, ` +
        `but the send expects ${expected}: route it to a domus of ${expected}, or expect ${identity}`,
    );
  }
  return { ...message, expectedIdentity: identity };
}

function identityMismatch(to: TabernaId, expected: string, actual: string): AureliaError {
  return new AureliaError(
    ErrorId.AddressMismatch,
    `taberna ${tabernaIdText(to)} routes to this domus, which is ${actual}, but the send may only ` +
      `reach ${expected}: correct the route or the expected identity`,
  );
}

/** What a `'hash'`-balanced route hashes for `message`; empty for other balancings. */
function hashKey(route: ReplicaSet, message: DispatchMessage): string {
  return route.balancing === 'hash' ? (message.balanceKey ?? String(message.to)) : '';
}

function resolveFailure(to: TabernaId, err: unknown): AureliaError {
  if (AureliaError.is(err)) return err;
  return new AureliaError(
    ErrorId.UnknownTaberna,
    `resolving taberna ${tabernaIdText(to)} failed: ${err instanceof Error ? err.message : String(err)}`,
    { cause: err },
  );
}

function noAddress(to: TabernaId): AureliaError {
  return new AureliaError(
    ErrorId.UnknownTaberna,
    `the resolver returned no DomusAddr for taberna ${tabernaIdText(to)}`,
  );
}

function withDeadline<T>(promise: Promise<T>, deadline: number, to: TabernaId): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () =>
        reject(
          new AureliaError(
            ErrorId.SendTimeout,
            `resolving taberna ${tabernaIdText(to)} did not finish in time`,
          ),
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
