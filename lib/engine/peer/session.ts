// One remote sender session (identity + epoch): dedupe, delivery to tabernae, decisions back.
import { AureliaError, ErrorId } from '../errors.js';
import { quotePeerText } from '../logger.js';
import { A2_MESSAGE_TYPE_BASE, type TabernaId } from '../ids.js';
import {
  ControlType,
  FrameFlags,
  MAX_ACK_IDS_PER_FRAME,
  type Frame,
  type FrameBatch,
  type FrameHeader,
  type OutboundFrame,
} from '../wire/frame.js';
import { decodeError, encodeAck, encodeError } from '../wire/control.js';
import { type Decision, type DecisionSink, Delivery, type PeerInfo } from '../taberna/request.js';
import { type Callis, type CallisHandler, ReadPause } from './callis.js';
import { DedupeWindow } from './dedupe.js';
import { type IdentityBudget, InboundBudget, type InboundLimits } from './inbound-budget.js';
import type { MetricsRecorder } from '../reporting/metrics.js';
import { type BlobReceiver, InboundBlobLink } from '../blob/receiver.js';
import type { HelloBlobWindow } from '../wire/control.js';

/** What an inbound session needs from its domus. */
export interface SessionHost {
  readonly metrics: MetricsRecorder;
  /** Routes a delivery to a taberna (or refuses it with UnknownTaberna). */
  deliver(dst: TabernaId, delivery: Delivery): void;
  /** How long decided outcomes are remembered for replays (2 × sendTimeoutMs). */
  dedupeRetentionMs(): number;
  /** The session's primary callis closed. */
  onCallisClosed(session: InboundSession, callis: Callis, reason: AureliaError): void;
  /** The session's blob callis closed. */
  onBlobCallisClosed(session: InboundSession, callis: Callis, reason: AureliaError): void;
  /** A message over `maxPayloadLen` was discarded and refused with `err` (for the error feed). */
  onOversizeRefused?(session: InboundSession, err: AureliaError): void;
  /**
   * The application accepted a message with the BLOB flag: reserves its stream's buffer (in the
   * domus and in the session's share) and returns the release, or throws (`BlobBufferFull`, ...)
   * to refuse the message instead.
   */
  admitBlob(session: InboundSession): () => void;
  /** The live per-peer limits on undecided messages and their bytes. */
  limits(): InboundLimits;
  /** The budget all sessions of `identity` share. */
  identityBudget(identity: string): IdentityBudget;
}

/** Most decided outcomes one session remembers for replays. */
const MAX_DECIDED = 65_536;

/**
 * The receiving side of one remote sender session. Messages arrive on the session's current
 * primary callis; each new message id is delivered once to its taberna, replays are answered from
 * the dedupe window, and the application's decisions travel back as batched acks or as error
 * frames. When the callis is replaced after a cut, decisions made meanwhile go out when the sender
 * replays the message.
 */
export class InboundSession implements CallisHandler, DecisionSink {
  private readonly dedupe: DedupeWindow<Decision>;
  private callis: Callis | undefined;
  private acks: number[] = [];
  private blobs: InboundBlobLink | undefined;
  /** What this session holds here; its callis is not read while the budget is exhausted. */
  readonly budget: InboundBudget;
  readonly peer: PeerInfo;
  lastActiveAt = Date.now();

  constructor(
    readonly identity: string,
    readonly epoch: bigint,
    address: string,
    private readonly host: SessionHost,
  ) {
    this.peer = Object.freeze({ identity, address, local: false });
    this.dedupe = new DedupeWindow<Decision>({
      retentionMs: host.dedupeRetentionMs(),
      maxDecided: MAX_DECIDED,
    });
    this.budget = new InboundBudget(() => host.limits(), host.identityBudget(identity));
    this.budget.identity?.members.add(this);
  }

  /** The current primary callis, if connected. */
  get current(): Callis | undefined {
    return this.callis;
  }

  /** Messages delivered to tabernae and not yet decided. */
  get inProgress(): number {
    return this.dedupe.inProgressCount;
  }

  /** Makes `callis` the session's primary callis, closing a previous one. */
  attach(callis: Callis): void {
    const previous = this.callis;
    this.callis = callis;
    this.lastActiveAt = Date.now();
    if (previous && !previous.closed) {
      previous.close(
        new AureliaError(ErrorId.ConnectionLost, `${previous.describe()} replaced by a reconnect`),
      );
    }
    this.applyLimits();
    callis.setHandler(this);
  }

  /** Pauses or resumes reading the callis after the limits or the budget changed. */
  applyLimits(): void {
    if (this.budget.exhausted) this.callis?.pauseReads(ReadPause.Budget);
    else this.callis?.resumeReads(ReadPause.Budget);
  }

  /**
   * Evicts old outcomes; true when the session holds nothing and has no callis (can be dropped;
   * it then leaves its identity's budget).
   */
  expire(now: number, blobIdleMs: number): boolean {
    this.dedupe.expire(now);
    this.blobs?.expireIdle(now, blobIdleMs);
    const droppable =
      this.callis === undefined &&
      this.dedupe.size === 0 &&
      (this.blobs === undefined || (this.blobs.size === 0 && this.blobs.current === undefined));
    if (droppable) this.budget.identity?.members.delete(this);
    return droppable;
  }

  /** Makes `callis` this session's blob callis, with the window agreed on it. */
  attachBlob(callis: Callis, agreed: HelloBlobWindow): void {
    this.blobLink().attach(callis, agreed);
  }

  private blobLink(): InboundBlobLink {
    this.blobs ??= new InboundBlobLink({
      metrics: this.host.metrics,
      onCallisClosed: (callis, reason) => this.host.onBlobCallisClosed(this, callis, reason),
    });
    return this.blobs;
  }

  /**
   * Closes the session's callis (shutdown) after writing pending decisions; resolves when the
   * socket is gone.
   */
  close(reason: AureliaError): Promise<void> {
    const blobsGone = this.blobs?.close(reason) ?? Promise.resolve();
    const callis = this.callis;
    if (!callis || callis.closed) return blobsGone;
    this.flushAcksInto(callis);
    return Promise.all([callis.close(reason, true), blobsGone]).then(() => undefined);
  }

  /**
   * The sender is taken to have restarted: streams of this (old) session end with `err`, and a
   * sender still alive is told so on its blob callis (now or when it reconnects to this session).
   */
  failBlobs(err: AureliaError): void {
    this.blobs?.failAll(err, true);
  }

  // ---- CallisHandler ----

  /** @internal */
  onFrame(callis: Callis, frame: Frame): void {
    if (frame.msgType >= A2_MESSAGE_TYPE_BASE) {
      this.onMessage(callis, frame);
      return;
    }
    switch (frame.msgType) {
      case ControlType.Close:
        callis.closeByPeer(frame);
        return;
      case ControlType.Error: {
        const { message } = decodeError(frame);
        callis.close(
          new AureliaError(
            ErrorId.ConnectionLost,
            `${callis.describe()} reported: ${quotePeerText(message)}`,
          ),
        );
        return;
      }
      default:
        throw new AureliaError(
          ErrorId.ProtocolViolation,
          `${callis.describe()}: unexpected frame type ${frame.msgType} on an accepted callis`,
        );
    }
  }

  /** @internal */
  onWritable(_callis: Callis, batch: FrameBatch): void {
    if (this.acks.length === 0) return;
    for (const frame of this.takeAckFrames()) batch.add(frame);
  }

  /** @internal */
  onClosed(callis: Callis, reason: AureliaError): void {
    if (callis === this.callis) {
      this.callis = undefined;
      // Acks not yet written are recorded in the dedupe window and go out again on replay.
      this.acks = [];
      this.lastActiveAt = Date.now();
    }
    // A callis replaced by a reconnect is reported too: its host counted it when it came up.
    this.host.onCallisClosed(this, callis, reason);
  }

  /**
   * @internal A message over our `maxPayloadLen` (within the protocol's hard maximum) is being
   * skipped by the decoder. A new one is refused with `EncodeFailure`, so the sender's send fails
   * at once and the callis stays up; a replay of a message delivered under an earlier, larger
   * limit is answered from the dedupe window as any replay is.
   */
  onOversizeMessage(callis: Callis, header: FrameHeader, maxPayloadLen: number): void {
    const id = header.peerMsgId;
    const seen = this.dedupe.observe(id, Date.now());
    if (seen.kind !== 'new') {
      if (seen.kind === 'decided') this.send(id, seen.outcome);
      else if (seen.kind === 'forgotten')
        this.send(id, forgottenReplay(id, this.dedupe.retentionMs));
      return;
    }
    const err = new AureliaError(
      ErrorId.EncodeFailure,
      `message ${id} from ${callis.identity} carries ${header.payloadLen} payload bytes, over the receiving domus's maxPayloadLen ${maxPayloadLen}; it was discarded unread`,
    );
    this.decide(id, refuse(err.kind, err.message));
    this.host.onOversizeRefused?.(this, err);
  }

  // ---- DecisionSink ----

  /**
   * @internal The application (or a timeout) decided message `id`; `delivery` is the message's
   * own delivery (absent for refusals made before delivering), whose share of the budget is given
   * back.
   */
  decide(id: number, decision: Decision, delivery?: Delivery): Decision {
    const outcome =
      delivery?.blob === undefined ? decision : this.openBlob(decision, delivery.blob);
    this.dedupe.decide(id, outcome, Date.now());
    this.send(id, outcome);
    if (delivery !== undefined && this.budget.give(delivery.payload.length)) {
      this.callis?.resumeReads(ReadPause.Budget);
    }
    return outcome;
  }

  /** @internal A full taberna holds this session's whole overflow share: stop reading. */
  overflowShareFull(): void {
    this.budget.fullOverflowShares++;
    this.callis?.pauseReads(ReadPause.Budget);
  }

  /** @internal That share has room again. */
  overflowShareFreed(): void {
    this.budget.fullOverflowShares--;
    this.applyLimits();
  }

  /**
   * A blob request was decided: on accept its stream opens, reserving its buffer now (not on
   * arrival, so requests nobody accepted hold none); otherwise, or when the buffer is full, the
   * stream never starts and the request is refused.
   */
  private openBlob(decision: Decision, blob: unknown): Decision {
    const receiver = blob as BlobReceiver;
    let outcome = decision;
    if (decision.accepted && receiver.destroyed) {
      outcome = refuse(ErrorId.ConnectionLost, 'the receiver destroyed the blob stream');
    } else if (decision.accepted) {
      try {
        this.blobLink().open(receiver, this.host.admitBlob(this));
        return decision;
      } catch (err) {
        const failure = AureliaError.is(err)
          ? err
          : new AureliaError(ErrorId.BlobBufferFull, String(err));
        receiver.fail(failure);
        return refuse(failure.kind, failure.message);
      }
    }
    receiver.destroy();
    return outcome;
  }

  private onMessage(callis: Callis, frame: Frame): void {
    const id = frame.peerMsgId;
    const seen = this.dedupe.observe(id, Date.now());
    switch (seen.kind) {
      case 'new': {
        this.host.metrics.messagesReceived++;
        const blob =
          (frame.flags & FrameFlags.Blob) !== 0 ? this.blobLink().prepare(id) : undefined;
        if (this.budget.take(frame.payload.length)) callis.pauseReads(ReadPause.Budget);
        this.host.deliver(
          frame.dstTaberna,
          new Delivery(frame.msgType, frame.payload, this.peer, this, id, blob),
        );
        return;
      }
      case 'in-progress':
        return;
      case 'decided':
        this.send(id, seen.outcome);
        return;
      case 'forgotten':
        this.send(id, forgottenReplay(id, this.dedupe.retentionMs));
        return;
    }
  }

  private send(id: number, decision: Decision): void {
    const callis = this.callis;
    if (!callis || callis.closed) return;
    if (decision.accepted) {
      this.acks.push(id);
      callis.scheduleFlush();
    } else {
      callis.sendControl(
        encodeError({ errorId: decision.errorId, message: decision.message, peerMsgId: id }),
      );
    }
  }

  private flushAcksInto(callis: Callis): void {
    for (const frame of this.takeAckFrames()) callis.sendControl(frame);
  }

  /** Every pending ack as frames of at most `MAX_ACK_IDS_PER_FRAME` ids; empties the list. */
  private takeAckFrames(): OutboundFrame[] {
    const acks = this.acks;
    this.acks = [];
    if (acks.length <= MAX_ACK_IDS_PER_FRAME) return acks.length > 0 ? [encodeAck(acks)] : [];
    const frames: OutboundFrame[] = [];
    for (let i = 0; i < acks.length; i += MAX_ACK_IDS_PER_FRAME) {
      frames.push(encodeAck(acks.slice(i, i + MAX_ACK_IDS_PER_FRAME)));
    }
    return frames;
  }
}

function refuse(errorId: ErrorId, message: string): Decision {
  return { accepted: false, errorId, message };
}

function forgottenReplay(id: number, retentionMs: number): Decision {
  return refuse(
    ErrorId.SendTimeout,
    `message ${id} was replayed after its outcome was forgotten (older than ${retentionMs} ms)`,
  );
}
