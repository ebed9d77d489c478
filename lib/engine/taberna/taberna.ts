// A named inbound endpoint: its bounded accept queue, waiting receivers and decision deadlines.
import { AureliaError, ErrorId } from '../errors.js';
import { DeadlineHeap } from '../peer/deadline-heap.js';
import type { MessageCodec } from '../codec.js';
import { tabernaIdText, type TabernaId } from '../ids.js';
import {
  type Decision,
  type DecisionSink,
  type Delivery,
  TabernaRequest,
  refusal,
} from './request.js';

/** What a taberna reads from the live configuration and reports to its owner. */
export interface TabernaHost {
  /** Current `tabernaAcceptQueueSize`. */
  queueSize(): number;
  /** Current `acceptTimeoutMs`. */
  acceptTimeoutMs(): number;
  /** Current `maxTabernaOverflowPerPeer`. */
  overflowPerPeer(): number;
  /** Called once per decision (application, timeout, shutdown) for metrics and logs. */
  onDecided(id: TabernaId, delivery: Delivery, decision: Decision): void;
  /** Called when the application closes the taberna, so the registry forgets it. */
  onClosed(taberna: Taberna<unknown>): void;
}

/**
 * Per-taberna overrides of the domus configuration. A2 services use them, e.g. a request/reply
 * taberna whose decision comes only when a long reply stream ends.
 */
export interface TabernaOptions {
  /** Overrides `tabernaAcceptQueueSize` for this taberna (1..1024). */
  readonly queueSize?: number;
  /** Overrides `acceptTimeoutMs` for this taberna (1..300000). */
  readonly acceptTimeoutMs?: number;
}

const DEFAULT_NEXT_TIMEOUT_MS = 1000;
const MAX_NEXT_TIMEOUT_MS = 2 ** 31 - 1;

/** A pending `next()` call. */
interface Waiter<T> {
  resolve(request: TabernaRequest<T>): void;
  reject(err: AureliaError): void;
  /** The timeout asked for, for the error message. */
  timeoutMs: number;
  /** The waiter's deadline entry; absent for async iteration (bounded by the taberna's life). */
  entry: Timed<T> | undefined;
  settled: boolean;
}

/**
 * Deliveries waiting for room and `next()` calls with a timeout, kept in one heap. Handed-out
 * deliveries, one per request in the application's hands, have deadlines in hand-out order (the
 * accept timeout rarely changes), so they live in a list sorted by deadline instead: O(1) in and
 * out on the hot path. One timer serves both.
 */
type Timed<T> =
  | { kind: 'waiting'; delivery: Delivery; deadline: number; heapIndex: number }
  | { kind: 'receiver'; waiter: Waiter<T>; deadline: number; heapIndex: number };

/**
 * A registered inbound endpoint. Messages arrive in a queue of `tabernaAcceptQueueSize`; when it
 * is full, further messages wait up to `acceptTimeoutMs` for room and then fail at the sender with
 * `TabernaBusy`. When one remote peer session has `maxTabernaOverflowPerPeer` of them waiting,
 * its sink is told to stop sending (its callis stops being read) until one of them moves on, so
 * no peer takes more than its share of the line. A request handed to the application must be
 * decided within `acceptTimeoutMs`, otherwise it is rejected. Below that share a full or slow
 * taberna never delays another: nothing here blocks the connection that delivered the message.
 */
export class Taberna<T> implements AsyncIterable<TabernaRequest<T>> {
  // A DecisionObserver too, structurally: naming it in `implements` would break the published
  // .d.ts, which strips the internal `onDecided`.
  private readonly ready: Delivery[] = [];
  private readyHead = 0;
  private readonly overflow: Delivery[] = [];
  private overflowHead = 0;
  private readonly waiters: Waiter<T>[] = [];
  private waitersHead = 0;
  private readonly timed = new DeadlineHeap<Timed<T>>();
  private handedHead: Delivery | undefined;
  private handedTail: Delivery | undefined;
  private readonly waitingEntry = new Map<Delivery, Timed<T>>();
  /** Deliveries waiting for room, per remote sender session (its decision sink). */
  private readonly waitingBySender = new Map<DecisionSink, number>();
  /** Senders told their share is full, until it has room again. */
  private readonly fullSenders = new Set<DecisionSink>();
  /** The `serveEach` handler and its completion, while it serves. */
  private consumer:
    | {
        handler: (request: TabernaRequest<T>) => void;
        resolve: () => void;
        reject: (err: AureliaError) => void;
      }
    | undefined;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closedWith: AureliaError | undefined;

  /** Not for applications: use `Domus.taberna`. */
  constructor(
    /** The taberna id senders address. */
    readonly id: TabernaId,
    private readonly codec: MessageCodec<T>,
    private readonly host: TabernaHost,
    private readonly options: TabernaOptions = {},
  ) {}

  private queueSize(): number {
    return this.options.queueSize ?? this.host.queueSize();
  }

  private acceptTimeoutMs(): number {
    return this.options.acceptTimeoutMs ?? this.host.acceptTimeoutMs();
  }

  /** True once the taberna was closed or its domus shut down. */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Number of messages waiting for the application (queued plus waiting for room). */
  get backlog(): number {
    return this.ready.length - this.readyHead + (this.overflow.length - this.overflowHead);
  }

  /**
   * Resolves with the next request. Rejects with `ReceiveTimeout` when none arrives within
   * `timeoutMs` (default 1000), `TabernaShutdown` once the taberna is closed, `DomusClosed` once
   * the domus shut down.
   */
  next(timeoutMs: number = DEFAULT_NEXT_TIMEOUT_MS): Promise<TabernaRequest<T>> {
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_NEXT_TIMEOUT_MS) {
      return Promise.reject(
        new AureliaError(
          ErrorId.InvalidConfig,
          `next() timeout must be an integer in 0..${MAX_NEXT_TIMEOUT_MS} ms, got ${timeoutMs}`,
        ),
      );
    }
    return this.receive(timeoutMs);
  }

  /**
   * Iterates over requests as they arrive; the iteration ends when the taberna is closed and
   * throws `DomusClosed` when the domus shuts down.
   */
  async *[Symbol.asyncIterator](): AsyncIterator<TabernaRequest<T>> {
    for (;;) {
      try {
        yield await this.receive(Infinity);
      } catch (err) {
        if (AureliaError.is(err, ErrorId.TabernaShutdown)) return;
        throw err;
      }
    }
  }

  /**
   * @internal Hands every request to `handler` in the turn it arrives, oldest first: what a
   * `for await` loop over the taberna does, without a promise and a turn per request. One
   * consumer per taberna; `next()` and iteration must not be used beside it. A request whose
   * handler throws is rejected with the error's message. Resolves when the taberna is closed;
   * rejects with `DomusClosed` when the domus shuts down, `InvalidConfig` when already served.
   */
  serveEach(handler: (request: TabernaRequest<T>) => void): Promise<void> {
    if (this.closedWith) {
      return AureliaError.is(this.closedWith, ErrorId.TabernaShutdown)
        ? Promise.resolve()
        : Promise.reject(this.closedWith);
    }
    if (this.consumer) {
      return Promise.reject(
        new AureliaError(
          ErrorId.InvalidConfig,
          `taberna ${tabernaIdText(this.id)} already has a consumer`,
        ),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.consumer = { handler, resolve, reject };
      for (let d = this.takeReady(); d && this.consumer; d = this.takeReady()) this.consume(d);
    });
  }

  /** Gives one delivery to the consumer; a consumer that throws refuses it with the error. */
  private consume(delivery: Delivery): void {
    const request = this.handOut(delivery);
    try {
      this.consumer!.handler(request);
    } catch (err) {
      if (!delivery.isSettled) request.reject(err instanceof Error ? err.message : String(err));
    }
  }

  /**
   * Deregisters the taberna: later sends to its id fail with `UnknownTaberna`, messages not yet
   * decided fail with `TabernaShutdown`, pending `next()` calls reject with `TabernaShutdown`.
   */
  close(): void {
    if (this.closedWith) return;
    this.terminate(
      new AureliaError(ErrorId.TabernaShutdown, `taberna ${tabernaIdText(this.id)} was closed`),
    );
    this.host.onClosed(this as Taberna<unknown>);
  }

  /** @internal Domus shutdown: like `close` but with `DomusClosed`, without deregistering. */
  shutdown(): void {
    if (this.closedWith) return;
    this.terminate(new AureliaError(ErrorId.DomusClosed, 'the domus is shut down'));
  }

  /**
   * @internal The domus drains: refuses with `reason` every remote request the application has
   * not taken yet (queued, or waiting for room), so their senders may send them elsewhere. Local
   * requests stay queued; the taberna keeps serving.
   */
  refuseUntaken(reason: AureliaError): void {
    if (this.closedWith) return;
    const refused = refusal(reason.kind, reason.message);
    const local: Delivery[] = [];
    for (let d = this.takeReady(); d; d = this.takeReady()) {
      if (d.peer.local) local.push(d);
      else this.settleInternal(d, refused);
    }
    for (const d of local) this.ready.push(d);
  }

  /**
   * @internal Hands a message to this taberna. Decodes it first: a message the codec cannot
   * decode is refused with `DecodeFailure` at once.
   */
  deliver(delivery: Delivery): void {
    if (this.closedWith) {
      this.settleInternal(delivery, refusal(this.closedWith.kind, this.closedWith.message));
      return;
    }
    if (!this.decode(delivery)) return;
    if (this.consumer) {
      // A consumer leaves nothing queued: this delivery is the oldest.
      this.consume(delivery);
      return;
    }
    const waiter = this.takeWaiter();
    if (waiter) {
      if (waiter.entry) this.timed.remove(waiter.entry);
      waiter.settled = true;
      waiter.resolve(this.handOut(delivery));
      return;
    }
    if (this.ready.length - this.readyHead < this.queueSize()) {
      this.ready.push(delivery);
      return;
    }
    // Full: wait for room until the accept timeout, then the sender hears TabernaBusy.
    this.startedWaiting(delivery);
    this.overflow.push(delivery);
    const entry: Timed<T> = {
      kind: 'waiting',
      delivery,
      deadline: Date.now() + this.acceptTimeoutMs(),
      heapIndex: -1,
    };
    this.waitingEntry.set(delivery, entry);
    this.timed.push(entry);
    this.armTimer();
  }

  /** @internal DecisionObserver: the application decided a handed-out request. */
  onDecided(delivery: Delivery, decision: Decision): void {
    if (delivery.isHanded) this.unlinkHanded(delivery);
    this.host.onDecided(this.id, delivery, decision);
  }

  /** Waits up to `timeoutMs` (Infinity: for as long as the taberna lives) for a request. */
  private receive(timeoutMs: number): Promise<TabernaRequest<T>> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const delivery = this.takeReady();
    if (delivery) return Promise.resolve(this.handOut(delivery));
    if (timeoutMs <= 0) return Promise.reject(this.receiveTimeout(timeoutMs));
    return new Promise<TabernaRequest<T>>((resolve, reject) => {
      const waiter: Waiter<T> = { resolve, reject, timeoutMs, entry: undefined, settled: false };
      this.waiters.push(waiter);
      if (timeoutMs !== Infinity) {
        waiter.entry = {
          kind: 'receiver',
          waiter,
          deadline: Date.now() + timeoutMs,
          heapIndex: -1,
        };
        this.timed.push(waiter.entry);
        this.armTimer();
      }
    });
  }

  private receiveTimeout(timeoutMs: number): AureliaError {
    return new AureliaError(
      ErrorId.ReceiveTimeout,
      `no message for taberna ${tabernaIdText(this.id)} within ${timeoutMs} ms`,
    );
  }

  /** Takes the oldest queued delivery and refills the queue from the overflow. */
  private takeReady(): Delivery | undefined {
    if (this.readyHead >= this.ready.length) return undefined;
    const delivery = this.ready[this.readyHead++];
    if (this.readyHead > 64 && this.readyHead * 2 > this.ready.length) {
      this.ready.splice(0, this.readyHead);
      this.readyHead = 0;
    }
    const moved = this.takeOverflow();
    if (moved) {
      this.ready.push(moved);
      // Only now: the freed sender may deliver at once, and must queue behind `moved`.
      this.stoppedWaiting(moved);
    }
    return delivery;
  }

  private takeOverflow(): Delivery | undefined {
    while (this.overflowHead < this.overflow.length) {
      const delivery = this.overflow[this.overflowHead++];
      if (this.overflowHead > 64 && this.overflowHead * 2 > this.overflow.length) {
        this.overflow.splice(0, this.overflowHead);
        this.overflowHead = 0;
      }
      if (delivery.isSettled) continue;
      const entry = this.waitingEntry.get(delivery);
      if (entry) {
        this.waitingEntry.delete(delivery);
        this.timed.remove(entry);
      }
      return delivery;
    }
    return undefined;
  }

  private takeWaiter(): Waiter<T> | undefined {
    while (this.waitersHead < this.waiters.length) {
      const waiter = this.waiters[this.waitersHead++];
      if (this.waitersHead > 64 && this.waitersHead * 2 > this.waiters.length) {
        this.waiters.splice(0, this.waitersHead);
        this.waitersHead = 0;
      }
      if (!waiter.settled) return waiter;
    }
    return undefined;
  }

  /**
   * Counts a remote delivery that waits for room against its sender's share, telling the sender
   * once the share is full. Local sends are bounded by their own lanes.
   */
  private startedWaiting(delivery: Delivery): void {
    if (delivery.peer.local) return;
    const sink = delivery.sink;
    const waiting = (this.waitingBySender.get(sink) ?? 0) + 1;
    this.waitingBySender.set(sink, waiting);
    if (waiting >= this.host.overflowPerPeer() && !this.fullSenders.has(sink)) {
      this.fullSenders.add(sink);
      sink.overflowShareFull?.();
    }
  }

  private stoppedWaiting(delivery: Delivery): void {
    if (delivery.peer.local) return;
    const sink = delivery.sink;
    const waiting = (this.waitingBySender.get(sink) ?? 1) - 1;
    if (waiting <= 0) this.waitingBySender.delete(sink);
    else this.waitingBySender.set(sink, waiting);
    if (waiting < this.host.overflowPerPeer() && this.fullSenders.delete(sink)) {
      sink.overflowShareFreed?.();
    }
  }

  /** Decodes with the taberna's codec; refuses the delivery with DecodeFailure if it cannot. */
  private decode(delivery: Delivery): boolean {
    try {
      delivery.decoded = this.codec.decodeApp(delivery.msgType, delivery.payload);
      return true;
    } catch (err) {
      const detail = err instanceof Error ? err.message : String(err);
      this.settleInternal(
        delivery,
        refusal(
          ErrorId.DecodeFailure,
          `taberna ${tabernaIdText(this.id)} could not decode the message: ${detail}`,
        ),
      );
      return false;
    }
  }

  /** Gives a decoded delivery to the application and starts its decision clock. */
  private handOut(delivery: Delivery): TabernaRequest<T> {
    this.startDecisionClock(delivery);
    return new TabernaRequest<T>(delivery.decoded as T, delivery, this);
  }

  private startDecisionClock(delivery: Delivery): void {
    const deadline = Date.now() + this.acceptTimeoutMs();
    delivery.deadline = deadline;
    delivery.isHanded = true;
    // Insert in deadline order, searching from the tail: one step unless the timeout shrank.
    let before = this.handedTail;
    while (before !== undefined && before.deadline > deadline) before = before.handedPrev;
    const after = before === undefined ? this.handedHead : before.handedNext;
    delivery.handedPrev = before;
    delivery.handedNext = after;
    if (before === undefined) this.handedHead = delivery;
    else before.handedNext = delivery;
    if (after === undefined) this.handedTail = delivery;
    else after.handedPrev = delivery;
    this.armTimer();
  }

  private unlinkHanded(delivery: Delivery): void {
    const { handedPrev: prev, handedNext: next } = delivery;
    if (prev === undefined) this.handedHead = next;
    else prev.handedNext = next;
    if (next === undefined) this.handedTail = prev;
    else next.handedPrev = prev;
    delivery.handedPrev = undefined;
    delivery.handedNext = undefined;
    delivery.isHanded = false;
  }

  private settleInternal(delivery: Delivery, decision: Decision): void {
    if (delivery.settle(decision)) this.host.onDecided(this.id, delivery, decision);
  }

  // Only ever moves the timer earlier: a timer left behind by a removed entry fires, finds nothing
  // due, and re-arms for what is left — cheaper than re-arming on every decision.
  private armTimer(): void {
    const head = this.timed.peek();
    const handed = this.handedHead;
    let at = head ? head.deadline : Infinity;
    if (handed !== undefined && handed.deadline < at) at = handed.deadline;
    if (at >= this.timerAt) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === Infinity) return;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, at - Date.now()));
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    for (let head = this.timed.popDue(now); head; head = this.timed.popDue(now)) {
      switch (head.kind) {
        case 'waiting':
          this.waitingEntry.delete(head.delivery);
          this.stoppedWaiting(head.delivery);
          this.settleInternal(
            head.delivery,
            refusal(
              ErrorId.TabernaBusy,
              `taberna ${tabernaIdText(this.id)} had no room for ${this.acceptTimeoutMs()} ms`,
            ),
          );
          break;
        case 'receiver':
          if (!head.waiter.settled) {
            head.waiter.settled = true;
            head.waiter.reject(this.receiveTimeout(head.waiter.timeoutMs));
          }
          break;
      }
    }
    for (let d = this.handedHead; d !== undefined && d.deadline <= now; d = this.handedHead) {
      this.unlinkHanded(d);
      this.settleInternal(
        d,
        refusal(
          ErrorId.RemoteTabernaRejected,
          `taberna ${tabernaIdText(this.id)} did not decide within ${this.acceptTimeoutMs()} ms`,
        ),
      );
    }
    this.armTimer();
  }

  private terminate(reason: AureliaError): void {
    this.closedWith = reason;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    const refused = refusal(reason.kind, reason.message);
    for (let d = this.takeReady(); d; d = this.takeReady()) this.settleInternal(d, refused);
    for (let d = this.takeOverflow(); d; d = this.takeOverflow()) {
      this.stoppedWaiting(d);
      this.settleInternal(d, refused);
    }
    for (let d = this.handedHead; d !== undefined; d = this.handedHead) {
      this.unlinkHanded(d);
      this.settleInternal(d, refused);
    }
    this.waitingEntry.clear();
    this.waitingBySender.clear();
    for (const sink of this.fullSenders) sink.overflowShareFreed?.();
    this.fullSenders.clear();
    this.timed.clear();
    for (let w = this.takeWaiter(); w; w = this.takeWaiter()) {
      w.settled = true;
      w.reject(reason);
    }
    const consumer = this.consumer;
    this.consumer = undefined;
    if (AureliaError.is(reason, ErrorId.TabernaShutdown)) consumer?.resolve();
    else consumer?.reject(reason);
  }
}
