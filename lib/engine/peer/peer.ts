// One dialed peer address: its outbound store, its primary callis, reconnects and deadlines.
import { AureliaError, ErrorId, isErrorId, domusClosedError } from '../errors.js';
import { MessagePriorityClass } from '../ids.js';
import {
  ControlType,
  MAX_REPLY_ACKS_PER_FRAME,
  ReplyFlags,
  type Frame,
  type FrameBatch,
} from '../wire/frame.js';
import {
  decodeAck,
  decodeDrain,
  decodeError,
  decodeReply,
  encodeCancel,
  encodeReplyAcks,
} from '../wire/control.js';
import {
  Callis,
  type CallisConnection,
  type CallisHandler,
  type CallisSettings,
  isPeerViolation,
  reportedByPeer,
} from './callis.js';
import { dialerHello } from './handshake.js';
import { OutboundStore, type OutboundItem, type OutboundSpec } from './outbound-store.js';
import type { MetricsRecorder } from '../reporting/metrics.js';
import type { DomusReportingEvent } from '../reporting/reporting.js';
import { FrameFlags } from '../wire/frame.js';
import type { HelloBlobWindow } from '../wire/control.js';
import { OutboundBlobLink } from '../blob/sender.js';
import type { ReplySink } from '../local-sink.js';

/** How a send is settled once its outcome is known. */
export interface SendContext {
  /** Settles the send; a blob send resolves with its `BlobSender`. */
  resolve(value?: unknown): void;
  reject(err: AureliaError): void;
  /** `performance.now()` at send, for the round-trip histogram. */
  readonly startedAt: number;
  /** Present on an A2 request: where its replies go. */
  readonly replies: ReplySink | undefined;
  /** Seq of the next reply expected (requests only). */
  nextReplySeq: number;
  /** The identity that must receive the message, checked on every callis it is written to. */
  readonly expectedIdentity: string | undefined;
}

/** What an outbound peer needs from its domus. */
export interface PeerHost extends CallisSettings {
  readonly sessionEpoch: bigint;
  readonly metrics: MetricsRecorder;
  sendQueueSize(): number;
  callisConnectTimeoutMs(): number;
  reconnectBackoffMs(): readonly number[];
  /** The blob window this domus proposes to this address's transport. */
  blobProposal(): HelloBlobWindow;
  /** Dials the address and completes A0 (TLS, identity, and the expected identity if given). */
  dial(
    signal: AbortSignal,
    timeoutMs: number,
    expectedIdentity: string | undefined,
  ): Promise<CallisConnection>;
  emit(event: DomusReportingEvent): void;
  error(err: AureliaError): void;
  /** A primary callis to/from `identity` went up or down (for peer gauges and listings). */
  callisUp(identity: string, address: string, kind: 'primary' | 'blob'): void;
  callisDown(identity: string, address: string, kind: 'primary' | 'blob'): void;
  /**
   * The remote announced a drain: moves whatever sends the host can place elsewhere out of
   * `peer` (with `takeQueued`) and returns how many moved.
   */
  onRemoteDraining?(peer: OutboundPeer): number;
  /**
   * The remote refused `context` without any application seeing it (`Draining`, `TabernaBusy`,
   * `UnknownTaberna`): sends it elsewhere and returns true, or false when the host has nowhere
   * else to send it.
   */
  relocate?(context: SendContext, blobRelease: BlobRelease | undefined): boolean;
}

/** Frees a blob send's buffer reservation (idempotent). */
export type BlobRelease = () => void;

type PeerState = 'idle' | 'connecting' | 'up' | 'backoff' | 'closed';

/**
 * Refusals that prove no application saw the message: the receiver is draining, the taberna's
 * queue stayed full, or nothing serves the taberna there (a replica still starting up).
 */
const NOT_STARTED: ReadonlySet<ErrorId> = new Set([
  ErrorId.Draining,
  ErrorId.TabernaBusy,
  ErrorId.UnknownTaberna,
]);

/** A connection that lived less than this counts as a failed attempt for the backoff. */
const MIN_HEALTHY_UPTIME_MS = 1000;

/**
 * The sending side towards one address. Connects on the first send, writes messages on its
 * primary callis in priority order, settles sends on the remote's decisions, replays what a cut
 * connection left undecided to the same session, fails it with `PeerRestarted` when the peer came
 * back with a new session, reconnects with `reconnectBackoffMs`, and enforces each send's
 * deadline with one timer.
 */
export class OutboundPeer implements CallisHandler {
  private readonly store: OutboundStore<SendContext>;
  private state: PeerState = 'idle';
  private callis: Callis | undefined;
  private remoteEpoch: bigint | undefined;
  private identity: string | undefined;
  /** `(msgId, seq)` pairs of replies received and not yet acknowledged, flat. */
  private replyAcks: number[] = [];
  private failures = 0;
  private lastError: AureliaError | undefined;
  private upSince = 0;
  private abort = new AbortController();
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** When the last dial started (`Date.now()`), to pace dials made on demand. */
  private lastDialAt = -Infinity;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private deadlineAt = Infinity;
  private draining = false;
  /** The remote said it drains, on the current callis: nothing new is written to it. */
  private remoteDrains = false;
  private drained: (() => void) | undefined;
  private blobs: OutboundBlobLink | undefined;
  private readonly blobReleases = new Map<SendContext, BlobRelease>();

  constructor(
    /** The dialed address, canonical (`DomusAddr.key`). */
    readonly address: string,
    private readonly host: PeerHost,
  ) {
    const size = host.sendQueueSize();
    this.store = new OutboundStore<SendContext>({
      peerLabel: address,
      capacity: { a2: size, a3: size },
    });
  }

  /** Messages held: queued, written and awaiting a decision, or waiting for replay. */
  get pending(): number {
    return this.store.size;
  }

  /** True when the peer holds nothing and has no connection: it can be forgotten. */
  get idle(): boolean {
    return this.state === 'idle' && this.store.size === 0 && (this.blobs?.size ?? 0) === 0;
  }

  /** Fails blob streams that made no progress for `idleMs`. */
  expireIdleBlobs(now: number, idleMs: number): void {
    this.blobs?.expireIdle(now, idleMs);
  }

  /** True once closed (read through a getter so narrowing across awaits stays honest). */
  private get isClosed(): boolean {
    return this.state === 'closed';
  }

  /** True while the primary callis is up. */
  get connected(): boolean {
    return this.state === 'up';
  }

  /**
   * True once the remote announced a drain on the current connection, until a new connection
   * comes up: it takes nothing new, so a balancer should not choose it.
   */
  get remoteDraining(): boolean {
    return this.remoteDrains;
  }

  /** The identity that answered at this address, once known. */
  get peerIdentity(): string | undefined {
    return this.identity;
  }

  /** Applies a new lane capacity (live config): shrinking evicts nothing. */
  setCapacity(size: number): void {
    this.store.setCapacity({ a2: size, a3: size });
  }

  /**
   * Admits a message and starts connecting if needed. Throws `LocalQueueFull` at once when its
   * lane is full, `AddressMismatch` when the message must reach an identity other than the one
   * connected here; otherwise `message.context` is settled exactly once later.
   */
  submit(message: OutboundSpec<SendContext>, blobRelease?: BlobRelease): void {
    if (this.state === 'closed' || this.draining) {
      throw new AureliaError(ErrorId.DomusClosed, 'the domus is shutting down');
    }
    const context = message.context;
    const expected = context.expectedIdentity;
    if (expected !== undefined && this.state === 'up' && this.identity !== expected) {
      throw this.mismatch(expected);
    }
    let item: OutboundItem<SendContext>;
    try {
      item = this.store.admit(message, Date.now());
    } catch (err) {
      if (AureliaError.is(err, ErrorId.LocalQueueFull)) {
        if (message.priority === MessagePriorityClass.A2) this.host.metrics.queueOverrunsA2++;
        else this.host.metrics.queueOverrunsA3++;
        this.host.emit({
          type: 'OutboundQueueOverrun',
          at: Date.now(),
          address: this.address,
          priority: message.priority,
          capacity:
            message.priority === MessagePriorityClass.A2
              ? this.store.capacity.a2
              : this.store.capacity.a3,
        });
      }
      throw err;
    }
    this.admitted(item, blobRelease);
  }

  /** A message entered the store: its deadline is armed and a connection is sought or flushed. */
  private admitted(item: OutboundItem<SendContext>, blobRelease: BlobRelease | undefined): void {
    const context = item.context;
    if (blobRelease) this.blobReleases.set(context, blobRelease);
    if (context.replies) context.replies.cancelRequest = (late) => this.cancel(item, late);
    this.armDeadline(item.deadline);
    if (this.state === 'up') this.callis?.scheduleFlush();
    else if (this.state === 'idle') void this.connect();
    else if (this.state === 'backoff') this.dialOnDemand();
  }

  /**
   * A new send while a reconnect waits out its backoff dials at once (the peer may be back), but
   * at most once per first `reconnectBackoffMs` step, so sends to a peer that stays down do not
   * turn into a dial each.
   */
  private dialOnDemand(): void {
    if (Date.now() - this.lastDialAt < this.host.reconnectBackoffMs()[0]) return;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    void this.connect();
  }

  /**
   * Dials when idle, without a message: a balancer probes an ejected replica this way, so no call
   * is risked on it. The outcome reaches the host as a callis up or a dial failure.
   */
  probe(): void {
    if (this.state === 'idle' && !this.draining) void this.connect();
  }

  /**
   * Shutdown: queued work towards a peer that is not connected fails with `DomusClosed` at once;
   * on a live connection, what is queued is still written and every send finishes or fails by
   * its deadline. Resolves when nothing is held any more.
   */
  drain(): Promise<void> {
    this.draining = true;
    if (this.state !== 'up') this.failAll(domusClosedError());
    if (this.store.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      this.drained = resolve;
    });
  }

  /**
   * Fails whatever is still held with `DomusClosed`, says goodbye on the callis and stops;
   * resolves when the socket is gone.
   */
  close(): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    this.failAll(domusClosedError());
    this.state = 'closed';
    this.abort.abort();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.reconnectTimer = undefined;
    this.deadlineTimer = undefined;
    const blobsGone = this.blobs?.close() ?? Promise.resolve();
    const callis = this.callis;
    this.callis = undefined;
    if (!callis) return blobsGone;
    const gone = callis.close(domusClosedError(), true);
    this.onCallisGone(callis, domusClosedError());
    return Promise.all([gone, blobsGone]).then(() => undefined);
  }

  private mismatch(expected: string): AureliaError {
    this.host.metrics.identityMismatches++;
    return new AureliaError(
      ErrorId.AddressMismatch,
      `${this.address} is served by ${this.identity ?? 'an unknown identity'}, not by the expected ${expected}`,
    );
  }

  /**
   * Asks the remote to stop handling request `item` (best effort): sent on the live callis once
   * the request was written (its id names it in the remote session); a request never written is
   * left to its deadline.
   */
  private cancel(item: OutboundItem<SendContext>, deadline: boolean): void {
    const callis = this.callis;
    if (item.writeCount === 0 || !callis || callis.closed) return;
    callis.sendControl(encodeCancel(item.id, deadline));
  }

  // ---- connecting ----

  private async connect(): Promise<void> {
    this.state = 'connecting';
    this.reconnectTimer = undefined;
    this.lastDialAt = Date.now();
    const host = this.host;
    host.metrics.dialAttempts++;
    const timeoutMs = host.callisConnectTimeoutMs();
    const startedAt = Date.now();
    let callis: Callis | undefined;
    try {
      const connection = await host.dial(this.abort.signal, timeoutMs, undefined);
      if (this.isClosed) {
        connection.socket.destroy();
        return;
      }
      callis = new Callis(connection, host, 'outbound');
      const hello = await dialerHello(
        callis,
        { sessionEpoch: host.sessionEpoch, reconnect: this.remoteEpoch !== undefined },
        Math.max(1, timeoutMs - (Date.now() - startedAt)),
      );
      if (this.isClosed) {
        void callis.close(domusClosedError(), true);
        return;
      }
      this.onConnected(callis, hello.sessionEpoch);
    } catch (err) {
      const error = AureliaError.is(err)
        ? err
        : new AureliaError(ErrorId.PeerUnavailable, `dialing ${this.address}: ${String(err)}`);
      if (callis && !callis.closed) void callis.close(error);
      if (this.isClosed) return;
      this.onDialFailed(error);
    }
  }

  private onConnected(callis: Callis, epoch: bigint): void {
    const host = this.host;
    if (callis.closed) {
      // It closed between the hello and now (a peer going away at once).
      this.onDialFailed(
        new AureliaError(
          ErrorId.ConnectionLost,
          `${callis.describe()} closed right after the hello`,
        ),
      );
      return;
    }
    const identity = callis.identity;
    const restarted = this.remoteEpoch !== undefined && this.remoteEpoch !== epoch;
    this.remoteEpoch = epoch;
    this.identity = identity;
    this.callis = callis;
    this.state = 'up';
    this.remoteDrains = false;
    this.upSince = Date.now();
    this.lastError = undefined;
    callis.setHandler(this);
    host.callisUp(identity, this.address, 'primary');
    host.emit({
      type: 'PrimaryCallisConnected',
      at: Date.now(),
      identity,
      address: this.address,
      direction: 'outbound',
    });
    if (restarted) {
      const failed = this.store.takeRetainedForRestart();
      const err = new AureliaError(
        ErrorId.PeerRestarted,
        `${identity} at ${this.address} restarted; the message may not have been delivered`,
      );
      for (const item of failed) this.fail(item, err);
      this.blobs?.failAll(
        new AureliaError(
          ErrorId.PeerRestarted,
          `${identity} at ${this.address} restarted; its blob streams were lost`,
        ),
      );
      host.emit({
        type: 'PeerSessionRestarted',
        at: Date.now(),
        identity,
        address: this.address,
        failedMessages: failed.length,
      });
    }
    if (this.store.hasWritable()) callis.scheduleFlush();
    this.checkDrained();
  }

  private onDialFailed(error: AureliaError): void {
    const host = this.host;
    host.metrics.dialFailures++;
    // A listener that answered the hello with garbage or an unknown version broke the protocol.
    if (isPeerViolation(error)) host.metrics.protocolViolations++;
    this.failures++;
    this.lastError = error;
    host.emit({
      type: 'PeerDialFailed',
      at: Date.now(),
      address: this.address,
      error,
      attempt: this.failures,
    });
    host.error(error);
    if (error.kind === ErrorId.AddressMismatch) {
      // Someone else answers at this address: retrying will not deliver to the intended peer.
      host.metrics.identityMismatches++;
      this.failAll(error);
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.state === 'closed') return;
    if (this.store.size === 0 || this.draining) {
      if (this.draining) this.failAll(domusClosedError());
      this.state = 'idle';
      return;
    }
    const steps = this.host.reconnectBackoffMs();
    const delay = this.failures === 0 ? 0 : steps[Math.min(this.failures - 1, steps.length - 1)];
    this.state = 'backoff';
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
  }

  // ---- CallisHandler ----

  /** CallisHandler: a frame arrived on one of this peer's callis. */
  onFrame(callis: Callis, frame: Frame): void {
    switch (frame.msgType) {
      case ControlType.Ack: {
        const ids = decodeAck(frame);
        for (let i = 0; i < ids.length; i++) this.onDecision(callis, ids[i], undefined);
        return;
      }
      case ControlType.Error: {
        const { errorId, message, peerMsgId } = decodeError(frame);
        const kind = isErrorId(errorId) ? errorId : ErrorId.ProtocolViolation;
        if (peerMsgId === 0) {
          callis.close(reportedByPeer(callis, kind, message));
          return;
        }
        this.onDecision(
          callis,
          peerMsgId,
          new AureliaError(kind, refusalText(kind, message, callis.identity, this.address)),
        );
        return;
      }
      case ControlType.Reply:
        this.onReply(callis, frame);
        return;
      case ControlType.Drain:
        decodeDrain(frame);
        this.onRemoteDraining(callis);
        return;
      case ControlType.Close:
        callis.closeByPeer(frame);
        return;
      default:
        throw new AureliaError(
          ErrorId.ProtocolViolation,
          `${callis.describe()}: unexpected frame type ${frame.msgType} on a dialed callis`,
        );
    }
  }

  /**
   * A reply to one of our requests. It can only name a message written on this peer's callis,
   * so it comes from the identity and session that received the request; its seq must be the
   * next one expected (an earlier one is a resend after a reconnect, dropped).
   */
  private onReply(callis: Callis, frame: Frame): void {
    const reply = decodeReply(frame);
    const id = frame.peerMsgId;
    const found = this.store.lookup(id);
    if (found.kind === 'unknown') {
      throw new AureliaError(
        ErrorId.ProtocolViolation,
        `${callis.describe()}: reply to message ${id}, which was never sent`,
      );
    }
    // The call is over (settled, expired): acknowledge so the remote stops holding the reply.
    if (found.kind === 'stale') return this.ackReply(callis, id, reply.seq);
    const context = found.item.context;
    const sink = context.replies;
    if (sink === undefined) {
      throw new AureliaError(
        ErrorId.ProtocolViolation,
        `${callis.describe()}: reply to message ${id}, which is not a request`,
      );
    }
    if (reply.seq !== context.nextReplySeq) {
      if (reply.seq < context.nextReplySeq) return this.ackReply(callis, id, reply.seq);
      throw new AureliaError(
        ErrorId.ProtocolViolation,
        `${callis.describe()}: reply ${reply.seq} to message ${id} skips reply ${context.nextReplySeq}`,
      );
    }
    context.nextReplySeq++;
    this.ackReply(callis, id, reply.seq);
    const flags = reply.flags;
    if ((flags & ReplyFlags.Error) !== 0) {
      sink.onErrorBody(Buffer.from(reply.body));
      this.onDecision(
        callis,
        id,
        new AureliaError(ErrorId.RemoteTabernaRejected, reply.reason || 'the request failed'),
      );
      return;
    }
    if ((flags & ReplyFlags.Empty) === 0) sink.onReply(reply.body);
    if ((flags & ReplyFlags.Last) !== 0) this.onDecision(callis, id, undefined);
  }

  /**
   * The listener we dialed drains: it only concerns what we send it on this connection. What it
   * already saw is still written (replays) and decided; nothing new goes out until a new
   * connection, and the host may move queued sends elsewhere.
   */
  private onRemoteDraining(callis: Callis): void {
    if (callis !== this.callis || this.remoteDrains) return;
    this.remoteDrains = true;
    const moved = this.host.onRemoteDraining?.(this) ?? 0;
    this.host.emit({
      type: 'PeerDraining',
      at: Date.now(),
      identity: callis.identity,
      address: this.address,
      moved,
    });
  }

  /**
   * Removes and returns the sends never written that `movable` accepts, for the owner to place
   * elsewhere (they were never seen by the remote, so sending them to another replica cannot
   * deliver them twice). Their deadline and blob reservation go with them.
   */
  takeQueued(
    movable: (context: SendContext) => boolean,
  ): { context: SendContext; blobRelease: BlobRelease | undefined }[] {
    const taken = this.store.takeQueued((item) => movable(item.context));
    const out: { context: SendContext; blobRelease: BlobRelease | undefined }[] = [];
    for (const { context } of taken) {
      const blobRelease = this.blobReleases.get(context);
      this.blobReleases.delete(context);
      out.push({ context, blobRelease });
    }
    this.checkDrained();
    return out;
  }

  /**
   * Puts back a send taken with `takeQueued` that the owner could not place elsewhere: it waits
   * at the end of its lane (it cannot be refused: the place it left is free).
   */
  readmit(spec: OutboundSpec<SendContext>, blobRelease: BlobRelease | undefined): void {
    this.admitted(this.store.admit(spec, Date.now()), blobRelease);
  }

  /**
   * Fails with `err` every send written to this address and not decided that `matches` accepts
   * (its remote will not come back to decide it).
   */
  failRetained(matches: (context: SendContext) => boolean, err: AureliaError): void {
    for (const item of this.store.takeRetained((i) => matches(i.context))) this.fail(item, err);
    this.checkDrained();
  }

  /**
   * A refusal proving no application saw the message (`NOT_STARTED`): the host may send it to
   * another replica. True when it did (the send lives on there).
   */
  private retry(item: OutboundItem<SendContext>): boolean {
    const context = item.context;
    const release = this.blobReleases.get(context);
    if (this.host.relocate?.(context, release) !== true) return false;
    this.blobReleases.delete(context);
    return true;
  }

  private ackReply(callis: Callis, id: number, seq: number): void {
    if (this.replyAcks.length === 0) callis.scheduleFlush();
    this.replyAcks.push(id, seq);
  }

  /** CallisHandler: a callis can take more writes (reply acknowledgements first, then messages). */
  onWritable(callis: Callis, batch: FrameBatch, budget: number): void {
    if (this.replyAcks.length > 0) {
      const acks = this.replyAcks;
      this.replyAcks = [];
      const perFrame = MAX_REPLY_ACKS_PER_FRAME * 2;
      for (let i = 0; i < acks.length; i += perFrame) {
        batch.add(
          encodeReplyAcks(i === 0 && acks.length <= perFrame ? acks : acks.slice(i, i + perFrame)),
        );
      }
    }
    if (!this.store.hasWritable()) return;
    const items = this.store.takeWritable(budget, this.remoteDrains);
    let first = 0;
    for (let i = 0; i < items.length; i++) {
      const item = items[i];
      const expected = item.context.expectedIdentity;
      if (expected !== undefined && expected !== callis.identity) {
        // Re-checked on every callis it is written to: another identity answers here now.
        const result = this.store.onError(item.id);
        if (result.kind === 'settled') this.fail(result.item, this.mismatch(expected));
        continue;
      }
      if (item.writeCount === 1) first++;
      batch.add(item);
    }
    this.host.metrics.messagesSent += first;
  }

  /** CallisHandler: a callis closed. */
  onClosed(callis: Callis, reason: AureliaError): void {
    if (callis !== this.callis) return;
    this.callis = undefined;
    this.replyAcks = [];
    this.onCallisGone(callis, reason);
    this.store.onDisconnect();
    if (this.state === 'closed') return;
    this.lastError = reason;
    if (Date.now() - this.upSince < MIN_HEALTHY_UPTIME_MS) this.failures++;
    else this.failures = 0;
    this.scheduleReconnect();
  }

  private onCallisGone(callis: Callis, reason: AureliaError): void {
    const host = this.host;
    if (isPeerViolation(reason)) host.metrics.protocolViolations++;
    host.callisDown(callis.identity, this.address, 'primary');
    host.emit({
      type: 'PrimaryCallisDisconnected',
      at: Date.now(),
      identity: callis.identity,
      address: this.address,
      direction: 'outbound',
      reason: reason.message,
    });
    if (reason.kind !== ErrorId.DomusClosed && !callis.closedByPeer) host.error(reason);
  }

  private onDecision(callis: Callis, id: number, error: AureliaError | undefined): void {
    const result = error ? this.store.onError(id) : this.store.onAck(id);
    if (result.kind === 'settled') {
      const context = result.item.context;
      if (error && NOT_STARTED.has(error.kind) && this.retry(result.item)) {
        this.checkDrained();
        return;
      }
      if (error) {
        this.host.metrics.sendsFailed++;
        this.releaseBlob(context);
        context.reject(error);
      } else {
        this.host.metrics.sendsAccepted++;
        this.host.metrics.recordSendLatency(performance.now() - context.startedAt);
        if ((result.item.flags & FrameFlags.Blob) !== 0) this.openBlob(result.item.id, context);
        else context.resolve();
      }
      this.checkDrained();
    } else if (result.kind === 'unknown') {
      throw new AureliaError(
        ErrorId.ProtocolViolation,
        `${callis.describe()}: decision for message ${id}, which was never sent`,
      );
    }
  }

  // ---- deadlines ----

  private armDeadline(deadline: number): void {
    if (deadline >= this.deadlineAt) return;
    if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
    this.deadlineAt = deadline;
    this.deadlineTimer = setTimeout(this.onDeadline, Math.max(0, deadline - Date.now()));
  }

  private readonly onDeadline = (): void => {
    this.deadlineTimer = undefined;
    this.deadlineAt = Infinity;
    const now = Date.now();
    const expired = this.store.expire(now);
    for (const item of expired) {
      // A request still running remotely is told the caller's time ran out (best effort).
      if (item.context.replies !== undefined) this.cancel(item, true);
      this.fail(item, this.timeoutError(item, now));
    }
    const next = this.store.nextDeadline();
    if (next !== undefined) this.armDeadline(next);
    this.checkDrained();
  };

  private timeoutError(item: OutboundItem<SendContext>, now: number): AureliaError {
    const waited = now - item.admittedAt;
    if (this.state === 'up' || item.writeCount > 0) {
      return new AureliaError(
        ErrorId.SendTimeout,
        `no decision from ${this.identity ?? this.address} within ${waited} ms`,
      );
    }
    const cause = this.lastError ? `: ${this.lastError.message}` : '';
    return new AureliaError(
      ErrorId.SendTimeout,
      `could not reach ${this.address} within ${waited} ms${cause}`,
    );
  }

  private fail(item: OutboundItem<SendContext>, err: AureliaError): void {
    this.host.metrics.sendsFailed++;
    this.releaseBlob(item.context);
    item.context.reject(err);
  }

  private releaseBlob(context: SendContext): void {
    const release = this.blobReleases.get(context);
    if (!release) return;
    this.blobReleases.delete(context);
    release();
  }

  /** The remote accepted a blob request: its stream starts on the blob callis. */
  private openBlob(requestMsgId: number, context: SendContext): void {
    const release = this.blobReleases.get(context) ?? (() => {});
    this.blobReleases.delete(context);
    try {
      context.resolve(this.blobLink().open(requestMsgId, release));
    } catch (err) {
      context.reject(
        AureliaError.is(err) ? err : new AureliaError(ErrorId.ConnectionLost, String(err)),
      );
    }
  }

  private blobLink(): OutboundBlobLink {
    if (!this.blobs) {
      const host = this.host;
      this.blobs = new OutboundBlobLink({
        sessionEpoch: host.sessionEpoch,
        metrics: host.metrics,
        address: this.address,
        maxPayloadLen: () => host.maxPayloadLen(),
        keepaliveIntervalMs: () => host.keepaliveIntervalMs(),
        traffic: host.traffic,
        live: host.live,
        callisConnectTimeoutMs: () => host.callisConnectTimeoutMs(),
        reconnectBackoffMs: () => host.reconnectBackoffMs(),
        proposal: () => host.blobProposal(),
        dial: (signal, timeoutMs, expected) => host.dial(signal, timeoutMs, expected),
        peerIdentity: () => this.identity,
        remoteEpoch: () => this.remoteEpoch,
        emit: (event) => host.emit(event),
        error: (err) => host.error(err),
        callisUp: (identity, address, kind) => host.callisUp(identity, address, kind),
        callisDown: (identity, address, kind) => host.callisDown(identity, address, kind),
      });
    }
    return this.blobs;
  }

  private failAll(err: AureliaError): void {
    for (const item of this.store.drainAll()) this.fail(item, err);
    this.checkDrained();
  }

  private checkDrained(): void {
    if (this.store.size === 0 && this.deadlineTimer) {
      clearTimeout(this.deadlineTimer);
      this.deadlineTimer = undefined;
      this.deadlineAt = Infinity;
    }
    if (this.drained && this.store.size === 0) {
      const done = this.drained;
      this.drained = undefined;
      done();
    }
  }
}

/**
 * The message of a peer's refusal of one message: an `UnknownTaberna` (nothing serves the taberna
 * at the receiver) also names the receiver, its identity and the address it was reached at, which
 * only the sender knows.
 */
function refusalText(kind: ErrorId, message: string, identity: string, address: string): string {
  return kind === ErrorId.UnknownTaberna ? `${message} (at ${identity}, ${address})` : message;
}
