// Sends in flight as the domus holds them (PendingSend) and the sink that settles local ones.
import { AureliaError, ErrorId, domusClosedError } from './errors.js';
import type { MessagePriorityClass, MessageType, TabernaId } from './ids.js';
import type { SendContext } from './peer/peer.js';
import type { OutboundSpec } from './peer/outbound-store.js';
import { DeadlineHeap } from './peer/deadline-heap.js';
import type { Decision, DecisionSink, Delivery } from './taberna/request.js';
import type { MetricsRecorder } from './reporting/metrics.js';
import type { DispatchMessage } from './routing.js';

// The promise executor of `PendingSend.promise`, shared so that a send allocates no closure for it:
// `new Promise` runs it synchronously, while `capturing` names the send being created.
let capturing: PendingSend | undefined;
function captureSettlers(resolve: (value: unknown) => void, reject: (err: Error) => void): void {
  const pending = capturing as PendingSend;
  pending.resolveWith = resolve;
  pending.rejectWith = reject;
}

/** The caller's promise for `pending`, settled by its `resolve` / `reject`; call once per send. */
export function promiseOf(pending: PendingSend): Promise<unknown> {
  capturing = pending;
  const promise = new Promise<unknown>(captureSettlers);
  capturing = undefined;
  return promise;
}

/**
 * Receives the replies of an A2 request (a dispatched message with `replies`). The domus sets
 * `cancelRequest` once the request is on its way: calling it asks the handler's side to stop.
 */
export interface ReplySink {
  /** One reply value, in order; a last value arrives here just before the send resolves. */
  onReply(body: Buffer): void;
  /** The handler's encoded error, just before the send rejects with `RemoteTabernaRejected`. */
  onErrorBody(body: Buffer): void;
  /** Set by the domus: best-effort cancellation (`deadline` when the caller's time ran out). */
  cancelRequest?: (deadline: boolean) => void;
}

/**
 * One send in flight: the message as the outbound store admits it, and how the caller's promise
 * settles. One object per send, so the hot path allocates little.
 */
export class PendingSend implements OutboundSpec<SendContext>, SendContext {
  resolveWith: (value: unknown) => void = noop;
  rejectWith: (err: Error) => void = noop;
  /** Seq of the next reply expected (requests only). */
  nextReplySeq = 0;

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
    /** Where the replies of an A2 request go. */
    readonly replies: ReplySink | undefined,
    /** The identity that must receive the message, checked on every callis it is written to. */
    readonly expectedIdentity: string | undefined,
  ) {}

  /** A send of `message`; called on a subclass, an instance of that subclass. */
  static of<T extends PendingSend>(
    this: new (...args: ConstructorParameters<typeof PendingSend>) => T,
    message: DispatchMessage,
    flags: number,
    deadline: number,
    startedAt: number,
    outcome: unknown,
  ): T {
    return new this(
      message.priority,
      message.msgType,
      flags,
      message.from ?? 0n,
      message.to,
      message.payload,
      deadline,
      startedAt,
      outcome,
      message.replies,
      message.expectedIdentity,
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
export class LocalSink implements DecisionSink {
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

  reply(token: number, body: Buffer, delivery: Delivery): void {
    const entry = this.pending.get(token);
    if (!entry) return;
    entry.context.replies?.onReply(body);
    // Delivered in the same turn: acknowledged at once, so a local stream never waits for room.
    delivery.repliesAcknowledged(delivery.repliesSent);
  }

  decide(token: number, decision: Decision): void {
    const entry = this.pending.get(token);
    if (!entry) return;
    this.pending.delete(token);
    this.deadlines.remove(entry);
    const body = decision.reply?.body;
    if (body !== undefined) {
      if (decision.accepted) entry.context.replies?.onReply(body);
      else entry.context.replies?.onErrorBody(body);
    }
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
    for (const entry of this.pending.values()) entry.context.reject(domusClosedError());
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
