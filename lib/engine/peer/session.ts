// One remote sender session (identity + epoch): dedupe, delivery to tabernae, decisions back.
import { AureliaError, ErrorId } from '../errors.js';
import { quotePeerText } from '../logger.js';
import { A2_MESSAGE_TYPE_BASE, A3_MESSAGE_TYPE_BASE, type TabernaId } from '../ids.js';
import {
  ControlType,
  FrameFlags,
  MAX_ACK_IDS_PER_FRAME,
  ReplyFlags,
  type Frame,
  type FrameBatch,
  type FrameHeader,
  type OutboundFrame,
} from '../wire/frame.js';
import {
  decodeCancel,
  decodeError,
  decodeReplyAcks,
  encodeAck,
  encodeDrain,
  encodeError,
  encodeReply,
} from '../wire/control.js';
import { type Decision, type DecisionSink, Delivery, type PeerInfo } from '../taberna/request.js';
import { type Callis, type CallisHandler, ReadPause } from './callis.js';
import { DedupeWindow } from './dedupe.js';
import { type DomusBudget, InboundBudget, type InboundLimits } from './inbound-budget.js';
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
  /** The live per-peer and domus-wide limits on undecided messages and their bytes. */
  limits(): InboundLimits;
  /** The domus-wide ceiling every session shares. */
  readonly domusBudget: DomusBudget;
  /** True while the domus drains: new messages are refused with `Draining`. */
  draining(): boolean;
}

/** Most decided outcomes one session remembers for replays. */
const MAX_DECIDED = 65_536;
/**
 * Most requests whose final reply one session holds unacknowledged: a requester that never
 * acknowledges replies cannot make the session hold more. Beyond it the oldest is dropped; a
 * replay of its request is then answered with an error instead of the reply.
 */
const MAX_HELD_FINAL_REPLIES = 4096;

/** The replies of one request the sender has not acknowledged yet, in seq order. */
interface ReplyStream {
  readonly delivery: Delivery;
  /** Seq of the next reply to send. */
  nextSeq: number;
  /** Sent and unacknowledged, oldest first. */
  readonly unacked: { seq: number; frame: OutboundFrame }[];
  /** True once the final (last or error) reply was sent. */
  finished: boolean;
}

/** Recorded in the dedupe window for a request decided by a final reply held in `streams`. */
const REPLIED: Decision = Object.freeze({ accepted: true });

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
  /** Undecided A2 requests by message id: cancels and replies find them here. */
  private readonly requests = new Map<number, Delivery>();
  /** Requests with replies the sender has not acknowledged (final ones in decision order). */
  private readonly streams = new Map<number, ReplyStream>();
  private heldFinals = 0;
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
    this.budget = new InboundBudget(() => host.limits(), host.domusBudget);
    host.domusBudget.members.add(this);
  }

  /** The current primary callis, if connected. */
  get current(): Callis | undefined {
    return this.callis;
  }

  /** @internal Bytes of answers its primary callis holds unsent (see `Callis.unsentBytes`). */
  get unsentBytes(): number {
    return this.callis?.unsentBytes ?? 0;
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
    if (this.host.draining()) callis.sendControl(encodeDrain());
    // Replies of calls still running may have died with the old callis: send the unacknowledged
    // ones again (the sender drops those it already has by their seq). Finished calls are answered
    // when the sender replays their request.
    for (const stream of this.streams.values()) {
      if (stream.finished) continue;
      for (const sent of stream.unacked) callis.sendControl(sent.frame);
    }
  }

  /** Pauses or resumes reading the callis after the limits or the budget changed. */
  applyLimits(): void {
    if (this.budget.exhausted) this.callis?.pauseReads(ReadPause.Budget);
    else this.callis?.resumeReads(ReadPause.Budget);
  }

  /**
   * Evicts old outcomes; true when the session holds nothing and has no callis (can be dropped;
   * it then leaves the domus-wide budget's members).
   */
  expire(now: number, blobIdleMs: number): boolean {
    this.dedupe.expire(now);
    this.blobs?.expireIdle(now, blobIdleMs);
    const droppable =
      this.callis === undefined &&
      this.dedupe.size === 0 &&
      this.streams.size === 0 &&
      (this.blobs === undefined || (this.blobs.size === 0 && this.blobs.current === undefined));
    if (droppable) this.host.domusBudget.members.delete(this);
    return droppable;
  }

  /**
   * True while the session holds work the domus must finish before it closes: messages delivered
   * and undecided, replies the sender has not acknowledged, or blob streams still open.
   */
  get busy(): boolean {
    return this.dedupe.inProgressCount > 0 || this.streams.size > 0 || (this.blobs?.size ?? 0) > 0;
  }

  /** The domus began draining: asks the sender to write nothing new on this session. */
  announceDrain(): void {
    const callis = this.callis;
    if (callis && !callis.closed) callis.sendControl(encodeDrain());
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
      case ControlType.ReplyAck:
        this.onReplyAcks(callis, decodeReplyAcks(frame));
        return;
      case ControlType.Cancel: {
        const { requestMsgId, deadline } = decodeCancel(frame);
        // Only this session's own requests can be named: a cancel for anything else is moot.
        this.requests.get(requestMsgId)?.cancel(deadline);
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
    if (delivery !== undefined && this.requests.get(id) === delivery) this.requests.delete(id);
    const outcome =
      delivery?.blob === undefined ? decision : this.openBlob(decision, delivery.blob);
    if (outcome.reply !== undefined && delivery !== undefined) {
      this.dedupe.decide(id, REPLIED, Date.now());
      this.sendFinalReply(id, outcome, delivery);
    } else {
      this.dedupe.decide(id, outcome, Date.now());
      this.send(id, outcome);
    }
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

  /** @internal One reply value for request `id`, on the callis the request came by. */
  reply(id: number, body: Buffer, delivery: Delivery): void {
    const stream = this.streamOf(id, delivery);
    this.pushReply(id, stream, { seq: stream.nextSeq++, flags: ReplyFlags.None, reason: '', body });
  }

  private sendFinalReply(id: number, decision: Decision, delivery: Delivery): void {
    const stream = this.streamOf(id, delivery);
    const body = decision.reply?.body;
    let flags: number = decision.accepted ? ReplyFlags.Last : ReplyFlags.Error;
    if (body === undefined) flags |= ReplyFlags.Empty;
    stream.finished = true;
    this.heldFinals++;
    this.pushReply(id, stream, {
      seq: stream.nextSeq++,
      flags,
      reason: decision.accepted ? '' : decision.message,
      body: body ?? EMPTY_BODY,
    });
    if (this.heldFinals > MAX_HELD_FINAL_REPLIES) this.dropOldestFinal();
  }

  private streamOf(id: number, delivery: Delivery): ReplyStream {
    let stream = this.streams.get(id);
    if (stream === undefined) {
      stream = { delivery, nextSeq: 0, unacked: [], finished: false };
      this.streams.set(id, stream);
    }
    return stream;
  }

  private pushReply(
    id: number,
    stream: ReplyStream,
    reply: { seq: number; flags: number; reason: string; body: Buffer },
  ): void {
    const frame = encodeReply(id, reply);
    stream.unacked.push({ seq: reply.seq, frame });
    const callis = this.callis;
    if (callis && !callis.closed) callis.sendControl(frame);
  }

  /** The sender acknowledged replies: free them and let their handlers send more. */
  private onReplyAcks(callis: Callis, pairs: number[]): void {
    for (let i = 0; i < pairs.length; i += 2) {
      const id = pairs[i];
      const seq = pairs[i + 1];
      const stream = this.streams.get(id);
      if (stream === undefined) continue; // already acknowledged, or never ours to hold
      if (seq >= stream.nextSeq) {
        throw new AureliaError(
          ErrorId.ProtocolViolation,
          `${callis.describe()}: acknowledged reply ${seq} of message ${id}, which was never sent`,
        );
      }
      const unacked = stream.unacked;
      let dropped = 0;
      while (dropped < unacked.length && unacked[dropped].seq <= seq) dropped++;
      if (dropped === 0) continue;
      unacked.splice(0, dropped);
      if (unacked.length === 0 && stream.finished) {
        this.streams.delete(id);
        this.heldFinals--;
      } else {
        stream.delivery.repliesAcknowledged(seq + 1);
      }
    }
  }

  /** Drops the oldest held final reply (its request's replay will be refused instead). */
  private dropOldestFinal(): void {
    for (const [id, stream] of this.streams) {
      if (!stream.finished) continue;
      this.streams.delete(id);
      this.heldFinals--;
      return;
    }
  }

  private onMessage(callis: Callis, frame: Frame): void {
    const id = frame.peerMsgId;
    const seen = this.dedupe.observe(id, Date.now());
    switch (seen.kind) {
      case 'new': {
        if (this.host.draining()) {
          // Never seen by a handler: refused as certainly not started, so the sender may retry
          // it elsewhere. Recorded like any decision, so a replay gets the same answer.
          this.decide(id, DRAINING);
          return;
        }
        this.host.metrics.messagesReceived++;
        const blob =
          (frame.flags & FrameFlags.Blob) !== 0 ? this.blobLink().prepare(id) : undefined;
        if (this.budget.take(frame.payload.length)) callis.pauseReads(ReadPause.Budget);
        const delivery = new Delivery(frame.msgType, frame.payload, this.peer, this, id, blob);
        if (frame.msgType < A3_MESSAGE_TYPE_BASE) this.requests.set(id, delivery);
        this.host.deliver(frame.dstTaberna, delivery);
        return;
      }
      case 'in-progress':
        return;
      case 'decided':
        if (seen.outcome === REPLIED) this.resendReplies(id);
        else this.send(id, seen.outcome);
        return;
      case 'forgotten':
        this.send(id, forgottenReplay(id, this.dedupe.retentionMs));
        return;
    }
  }

  /** A replayed request already answered with replies: the ones not acknowledged go again. */
  private resendReplies(id: number): void {
    const stream = this.streams.get(id);
    const callis = this.callis;
    if (!callis || callis.closed) return;
    if (stream === undefined) {
      // Acknowledged (an honest sender would not replay it) or dropped past the holding limit.
      callis.sendControl(
        encodeError({
          errorId: ErrorId.SendTimeout,
          message: `the reply to message ${id} is no longer held (acknowledged, or more than ${MAX_HELD_FINAL_REPLIES} replies went unacknowledged)`,
          peerMsgId: id,
        }),
      );
      return;
    }
    for (const sent of stream.unacked) callis.sendControl(sent.frame);
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

const EMPTY_BODY = Buffer.alloc(0);

const DRAINING: Decision = Object.freeze({
  accepted: false,
  errorId: ErrorId.Draining,
  message: 'the receiving domus is shutting down and took no new work; no handler saw this message',
});

function refuse(errorId: ErrorId, message: string): Decision {
  return { accepted: false, errorId, message };
}

function forgottenReplay(id: number, retentionMs: number): Decision {
  return refuse(
    ErrorId.SendTimeout,
    `message ${id} was replayed after its outcome was forgotten (older than ${retentionMs} ms)`,
  );
}
