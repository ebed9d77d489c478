// One inbound delivery and the application's decision on it.
import { AureliaError, ErrorId } from '../errors.js';
import type { MessageType } from '../ids.js';

/** Who sent a request: the certificate identity of the peer and the address it came from. */
export interface PeerInfo {
  /** Identity from the peer's certificate (URI SAN, else DNS SAN, else CN). */
  readonly identity: string;
  /** Remote address of the connection (`tls://ip:port` or `unix:///path`), absent for local sends. */
  readonly address?: string;
  /** True when the sender is this domus itself (a local send that never touched the network). */
  readonly local: boolean;
}

/**
 * The last reply an A2 request's decision carries back to its sender: the handler's last value
 * (or `undefined` for a completion without one) on acceptance, its encoded error on rejection.
 */
export interface FinalReply {
  readonly body: Buffer | undefined;
}

/** The outcome of a delivery as the sender sees it. */
export type Decision =
  | { readonly accepted: true; readonly reply?: FinalReply }
  | {
      readonly accepted: false;
      readonly errorId: ErrorId;
      readonly message: string;
      readonly reply?: FinalReply;
    };

const DEFAULT_REJECT_REASON = 'rejected by the application';

/** The accepted decision, shared because it carries no data. */
export const ACCEPTED: Decision = Object.freeze({ accepted: true });

/** Builds a refusal decision. */
export function refusal(errorId: ErrorId, message: string): Decision {
  return { accepted: false, errorId, message };
}

/**
 * Where a delivery's decision goes: an inbound session (which acks on the wire) or a local sender.
 * The token lets one sink serve many deliveries without a closure per message. A sink may turn
 * an accept into a refusal it returns (a blob request whose stream buffer cannot be reserved);
 * returning nothing keeps the decision.
 */
export interface DecisionSink {
  decide(token: number, decision: Decision, delivery: Delivery): Decision | void;
  /**
   * The sender now has its whole `maxTabernaOverflowPerPeer` share of a full taberna waiting for
   * room: it should stop sending more (a remote session stops reading its callis).
   */
  overflowShareFull?(): void;
  /** A share reported full has room again. */
  overflowShareFreed?(): void;
  /**
   * Sends one reply value (not the last) back to the sender of an undecided delivery, on the
   * path the delivery came by. Absent when the sender cannot take replies.
   */
  reply?(token: number, body: Buffer, delivery: Delivery): void;
}

/**
 * A message on its way to a taberna, before decoding. The registry owns it until the application
 * decides or a deadline passes; `settle` runs the sink exactly once.
 */
export class Delivery {
  private settled = false;
  /** The decision that went to the sender (the one given to `settle`, unless the sink refused). */
  outcome: Decision | undefined = undefined;
  /** Absolute time (ms) by which the application must decide, once handed out by its taberna. */
  deadline = 0;
  /** The message decoded by the receiving taberna's codec. */
  decoded: unknown = undefined;
  /** @internal Links of the taberna's list of handed-out deliveries, in deadline order. */
  handedPrev: Delivery | undefined = undefined;
  /** @internal */
  handedNext: Delivery | undefined = undefined;
  /** @internal True while the delivery is in its taberna's handed-out list. */
  isHanded = false;
  /** @internal Called once when the sender cancels the undecided delivery. */
  onCancel: ((deadline: boolean) => void) | undefined = undefined;
  /** @internal Called when the sender acknowledged replies: the total acknowledged so far. */
  onRepliesAcked: ((acked: number) => void) | undefined = undefined;
  /** Reply values sent for this delivery (not counting the final reply). */
  repliesSent = 0;
  /** Reply values the sender acknowledged. */
  repliesAcked = 0;

  constructor(
    readonly msgType: MessageType,
    readonly payload: Buffer,
    readonly peer: PeerInfo,
    readonly sink: DecisionSink,
    readonly token: number,
    readonly blob: unknown = undefined,
  ) {}

  get isSettled(): boolean {
    return this.settled;
  }

  /** True when the sender can take replies to this delivery (an A2 request). */
  get canReply(): boolean {
    return this.sink.reply !== undefined;
  }

  /**
   * Sends one reply value to the sender. Throws `EncodeFailure` when the delivery is decided or
   * its sender takes no replies.
   */
  sendReply(body: Buffer): void {
    if (this.settled || this.sink.reply === undefined) {
      throw new AureliaError(
        ErrorId.EncodeFailure,
        this.settled
          ? 'cannot reply to a request that was already decided'
          : 'the sender of this message takes no replies',
      );
    }
    this.repliesSent++;
    this.sink.reply(this.token, body, this);
  }

  /** The sender cancelled: tells whoever serves the delivery, once, if it is still undecided. */
  cancel(deadline: boolean): void {
    if (this.settled) return;
    const listener = this.onCancel;
    this.onCancel = undefined;
    listener?.(deadline);
  }

  /** The sender acknowledged `acked` reply values in total. */
  repliesAcknowledged(acked: number): void {
    if (acked <= this.repliesAcked) return;
    this.repliesAcked = acked;
    this.onRepliesAcked?.(acked);
  }

  /** Reports the decision once; later calls return false and change nothing. */

  /**
   * Reports the decision once and records the `outcome` the sink made of it; later calls return
   * false and change nothing.
   */
  settle(decision: Decision): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.outcome = this.sink.decide(this.token, decision, this) ?? decision;
    return true;
  }
}

/** Hooks the owning taberna needs when the application decides. */
export interface DecisionObserver {
  onDecided(delivery: Delivery, decision: Decision): void;
}

/**
 * The application's handle to decide on a request, detached from the message (see
 * `TabernaRequest.intoParts`). Deciding twice, or after the accept timeout ran out, is a no-op
 * that returns false.
 */
export class TabernaCompletion {
  constructor(
    private readonly delivery: Delivery,
    private readonly observer: DecisionObserver,
  ) {}

  /** True once a decision was made (by the application or by the accept timeout). */
  get decided(): boolean {
    return this.delivery.isSettled;
  }

  /**
   * Accepts the message: the sender's `send` resolves. Returns false if already decided, or if
   * it is a blob request whose stream buffer could not be reserved (the request is refused with
   * `BlobBufferFull` instead, and its blob receiver fails with it).
   */
  accept(): boolean {
    return this.decide(ACCEPTED);
  }

  /**
   * Rejects the message: the sender's `send` rejects with `RemoteTabernaRejected` carrying
   * `reason`. Returns false if already decided.
   */
  reject(reason = DEFAULT_REJECT_REASON): boolean {
    return this.decide(refusal(ErrorId.RemoteTabernaRejected, truncateReason(reason)));
  }

  private decide(decision: Decision): boolean {
    return decide(this.delivery, this.observer, decision);
  }
}

function decide(delivery: Delivery, observer: DecisionObserver, decision: Decision): boolean {
  if (!delivery.settle(decision)) return false;
  const outcome = delivery.outcome ?? decision;
  observer.onDecided(delivery, outcome);
  return outcome === decision;
}

/** The parts of a request once split: the message, its blob receiver if any, and the completion. */
export interface TabernaRequestParts<T, B = unknown> {
  readonly message: T;
  readonly blobReceiver: B | undefined;
  readonly completion: TabernaCompletion;
}

/**
 * A single inbound message handed to the application. The application must call `accept()` or
 * `reject()`; a request left undecided is rejected when the taberna's accept timeout
 * (`acceptTimeoutMs`) runs out.
 */
export class TabernaRequest<T, B = unknown> {
  constructor(
    /** The decoded message. */
    readonly message: T,
    private readonly delivery: Delivery,
    private readonly observer: DecisionObserver,
  ) {}

  /** The sender's identity and address. */
  get peer(): PeerInfo {
    return this.delivery.peer;
  }

  /** The wire message type the message arrived with. */
  get msgType(): MessageType {
    return this.delivery.msgType;
  }

  /** The blob stream attached to this request, when the sender opened one. */
  get blobReceiver(): B | undefined {
    return this.delivery.blob as B | undefined;
  }

  /** True once a decision was made. */
  get decided(): boolean {
    return this.delivery.isSettled;
  }

  /**
   * Accepts the message. Returns false if it was already decided (or timed out), or if it is a
   * blob request whose stream buffer could not be reserved: the request is then refused with
   * `BlobBufferFull` (per domus `blobInboundBufferBytes`, per peer `maxBlobInboundBytesPerPeer`)
   * and `blobReceiver` fails with that error.
   */
  accept(): boolean {
    return decide(this.delivery, this.observer, ACCEPTED);
  }

  /** Rejects the message with an optional reason (≤ 1024 bytes travel to the sender). */
  reject(reason = DEFAULT_REJECT_REASON): boolean {
    return decide(
      this.delivery,
      this.observer,
      refusal(ErrorId.RemoteTabernaRejected, truncateReason(reason)),
    );
  }

  /** @internal The delivery behind this request (A2 services reply through it). */
  get replyPath(): Delivery {
    return this.delivery;
  }

  /**
   * @internal Decides the request with a final reply: `accepted` with the last value (or none),
   * or rejected with `reason` and the handler's encoded error. Returns false if already decided.
   */
  finish(reply: FinalReply, rejectReason?: string): boolean {
    const decision: Decision =
      rejectReason === undefined
        ? { accepted: true, reply }
        : {
            accepted: false,
            errorId: ErrorId.RemoteTabernaRejected,
            message: truncateReason(rejectReason),
            reply,
          };
    return decide(this.delivery, this.observer, decision);
  }

  /** Splits the request so the message, blob and decision can go to different owners. */
  intoParts(): TabernaRequestParts<T, B> {
    return {
      message: this.message,
      blobReceiver: this.blobReceiver,
      completion: new TabernaCompletion(this.delivery, this.observer),
    };
  }
}

const MAX_REASON_BYTES = 1024;

/** Cuts a reason to what an `error` frame can carry, at a character boundary. */
export function truncateReason(reason: string): string {
  if (typeof reason !== 'string') {
    throw new AureliaError(ErrorId.EncodeFailure, 'a rejection reason must be a string');
  }
  if (Buffer.byteLength(reason) <= MAX_REASON_BYTES) return reason;
  let cut = reason.slice(0, MAX_REASON_BYTES);
  while (Buffer.byteLength(cut) > MAX_REASON_BYTES) cut = cut.slice(0, -1);
  return cut;
}
