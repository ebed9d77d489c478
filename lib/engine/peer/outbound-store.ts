// One remote peer's outbound messages: priority lanes, id assignment, retention for replay, ack
// correlation and deadlines. Pure: no sockets, no timers; the time is passed in.
import { AureliaError, ErrorId } from '../errors.js';
import { MessagePriorityClass, type MessageType, type TabernaId } from '../ids.js';
import { DeadlineHeap } from './deadline-heap.js';
import { type MessageId, NO_MESSAGE_ID, idAfter, isMessageId, nextId } from './serial.js';

/** The priority classes an outbound store holds: A1 control frames are never retained. */
export type OutboundLane = MessagePriorityClass.A2 | MessagePriorityClass.A3;

/** What the owner hands to `admit`: one message to send, with its deadline and the owner's context. */
export interface OutboundSpec<C> {
  /** Lane the message waits in: A2 (services) is written before A3 (application). */
  readonly priority: OutboundLane;
  readonly msgType: MessageType;
  /** Header flags to write with the message (for example `FrameFlags.Blob`). */
  readonly flags: number;
  readonly srcTaberna: TabernaId;
  readonly dstTaberna: TabernaId;
  readonly payload: Buffer;
  /** Absolute time (ms, same clock as every `now`) after which the send fails; finite. */
  readonly deadline: number;
  /** Anything the owner needs to settle the send (typically its promise callbacks). */
  readonly context: C;
}

/**
 * Where an item is: `queued` (never written, waiting in its lane), `written` (written on the
 * current connection, waiting for the remote decision), `replay` (written on a connection that
 * died, waiting to be written again with the same id) or `removed` (returned by one of the
 * removing methods; the store no longer holds it).
 */
export type OutboundItemState = 'queued' | 'written' | 'replay' | 'removed';

/** The handle `admit` returns and every removing method gives back: one message and its progress. */
export interface OutboundItem<C> {
  readonly priority: OutboundLane;
  readonly msgType: MessageType;
  readonly flags: number;
  readonly srcTaberna: TabernaId;
  readonly dstTaberna: TabernaId;
  readonly payload: Buffer;
  readonly deadline: number;
  readonly context: C;
  /** The `now` given to `admit`. */
  readonly admittedAt: number;
  /** Message id, assigned at the first write and kept for replays; `NO_MESSAGE_ID` (0) before. */
  readonly id: MessageId;
  /** `id` under its frame-header name, so a written item is itself an outbound frame. */
  readonly peerMsgId: MessageId;
  readonly state: OutboundItemState;
  /** How many times `takeWritable` has handed the item out (first write plus replays). */
  readonly writeCount: number;
}

/**
 * What `onAck` / `onError` found: `settled` (the item is removed and returned, the owner settles
 * its send), `stale` (an id this store assigned but no longer holds: it expired, was settled,
 * drained or failed by a restart; ignore it) or `unknown` (an id never assigned: 0, not a u32, or
 * serially after the highest id assigned; the remote broke the protocol).
 */
export type SettleResult<C> =
  | { readonly kind: 'settled'; readonly item: OutboundItem<C> }
  | { readonly kind: 'stale'; readonly id: number }
  | { readonly kind: 'unknown'; readonly id: number };

/** What `lookup` found: the item still held, or the id as `stale` / `unknown` (see `SettleResult`). */
export type LookupResult<C> =
  | { readonly kind: 'held'; readonly item: OutboundItem<C> }
  | { readonly kind: 'stale'; readonly id: number }
  | { readonly kind: 'unknown'; readonly id: number };

/** Most items each lane may hold at once (admitted and not yet removed). */
export interface LaneCapacity {
  readonly a2: number;
  readonly a3: number;
}

/** Construction options of an `OutboundStore`. */
export interface OutboundStoreOptions {
  /** Names the peer in error messages (its address, for example `tls://10.0.0.7:7000`). */
  readonly peerLabel: string;
  /** Lane capacities; each an integer ≥ 1. */
  readonly capacity: LaneCapacity;
  /**
   * The id treated as assigned just before the first one: the first write gets `nextId` of it.
   * Defaults to `NO_MESSAGE_ID`, so ids start at 1.
   */
  readonly lastAssignedId?: MessageId;
}

// The store's own view of an item: the public handle plus the links of the list and heap that
// hold it, so every removal is O(1) or O(log n) without searching.
class StoredItem<C> implements OutboundItem<C> {
  readonly priority: OutboundLane;
  readonly msgType: MessageType;
  readonly flags: number;
  readonly srcTaberna: TabernaId;
  readonly dstTaberna: TabernaId;
  readonly payload: Buffer;
  readonly deadline: number;
  readonly context: C;
  id: MessageId = NO_MESSAGE_ID;
  state: OutboundItemState = 'queued';
  writeCount = 0;
  heapIndex = -1;
  prev: StoredItem<C> | undefined = undefined;
  next: StoredItem<C> | undefined = undefined;

  constructor(
    spec: OutboundSpec<C>,
    readonly admittedAt: number,
  ) {
    this.priority = spec.priority;
    this.msgType = spec.msgType;
    this.flags = spec.flags;
    this.srcTaberna = spec.srcTaberna;
    this.dstTaberna = spec.dstTaberna;
    this.payload = spec.payload;
    this.deadline = spec.deadline;
    this.context = spec.context;
  }

  get peerMsgId(): MessageId {
    return this.id;
  }
}

// Intrusive doubly linked list: an item is in at most one list, found through its `state`.
class ItemList<C> {
  head: StoredItem<C> | undefined = undefined;
  tail: StoredItem<C> | undefined = undefined;
  length = 0;

  pushBack(item: StoredItem<C>): void {
    item.prev = this.tail;
    item.next = undefined;
    if (this.tail) this.tail.next = item;
    else this.head = item;
    this.tail = item;
    this.length++;
  }

  pushFront(item: StoredItem<C>): void {
    item.next = this.head;
    item.prev = undefined;
    if (this.head) this.head.prev = item;
    else this.tail = item;
    this.head = item;
    this.length++;
  }

  shift(): StoredItem<C> | undefined {
    const item = this.head;
    if (item) this.remove(item);
    return item;
  }

  pop(): StoredItem<C> | undefined {
    const item = this.tail;
    if (item) this.remove(item);
    return item;
  }

  remove(item: StoredItem<C>): void {
    if (item.prev) item.prev.next = item.next;
    else this.head = item.next;
    if (item.next) item.next.prev = item.prev;
    else this.tail = item.prev;
    item.prev = undefined;
    item.next = undefined;
    this.length--;
  }

  /** Unlinks every item, appending them to `out` in list order. */
  drainInto(out: StoredItem<C>[]): void {
    for (let item = this.shift(); item; item = this.shift()) out.push(item);
  }
}

function checkCapacity(lane: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `outbound ${lane} lane capacity must be an integer ≥ 1, got ${value}`,
    );
  }
  return value;
}

/**
 * The outbound messages to one remote peer, from `admit` until the remote decides, the deadline
 * passes, the remote restarts or the owner drains the store.
 *
 * Each message is returned to the owner exactly once, by exactly one of `onAck`/`onError`
 * (`settled`), `expire`, `takeRetainedForRestart` or `drainAll`. Ids are assigned at the first
 * write, so first transmissions carry serially increasing ids; replays keep their id and are
 * written before anything new, in id order. Every operation is O(1) or O(log n) per item.
 */
export class OutboundStore<C> {
  /** Names the peer in error messages. */
  readonly peerLabel: string;
  private capA2: number;
  private capA3: number;
  private readonly laneA2 = new ItemList<C>();
  private readonly laneA3 = new ItemList<C>();
  /** Written on the current connection, in id order. */
  private readonly written = new ItemList<C>();
  /** Written on a dead connection, in id order; every id here is after every id in `written`. */
  private readonly replay = new ItemList<C>();
  private readonly byId = new Map<MessageId, StoredItem<C>>();
  private readonly deadlines = new DeadlineHeap<StoredItem<C>>();
  private countA2 = 0;
  private countA3 = 0;
  private waitingBytes = 0;
  private allBytes = 0;
  private lastId: MessageId;
  private assignedAny = false;

  /** Throws `AureliaError(InvalidConfig)` when a capacity is not an integer ≥ 1. */
  constructor(options: OutboundStoreOptions) {
    this.peerLabel = options.peerLabel;
    this.capA2 = checkCapacity('A2', options.capacity.a2);
    this.capA3 = checkCapacity('A3', options.capacity.a3);
    const last = options.lastAssignedId ?? NO_MESSAGE_ID;
    if (last !== NO_MESSAGE_ID && !isMessageId(last)) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `lastAssignedId must be a u32 message id, got ${last}`,
      );
    }
    this.lastId = last;
  }

  /**
   * Admits a message into its lane and returns its handle. Throws `AureliaError(LocalQueueFull)`
   * at once when the lane already holds its capacity of unsettled messages (queued or written),
   * and `AureliaError(EncodeFailure)` for a priority other than A2 or A3. An item whose deadline
   * is already ≤ `now` is admitted and comes back from the next `expire`.
   */
  admit(spec: OutboundSpec<C>, now: number): OutboundItem<C> {
    const lane = spec.priority;
    if (lane === MessagePriorityClass.A2) {
      if (this.countA2 >= this.capA2) throw this.laneFull('A2', this.capA2);
      this.countA2++;
    } else if (lane === MessagePriorityClass.A3) {
      if (this.countA3 >= this.capA3) throw this.laneFull('A3', this.capA3);
      this.countA3++;
    } else {
      throw new AureliaError(
        ErrorId.EncodeFailure,
        `the outbound store to ${this.peerLabel} holds A2 and A3 messages only, got priority class ${String(lane)}`,
      );
    }
    const item = new StoredItem(spec, now);
    (lane === MessagePriorityClass.A2 ? this.laneA2 : this.laneA3).pushBack(item);
    this.deadlines.push(item);
    const len = item.payload.length;
    this.waitingBytes += len;
    this.allBytes += len;
    return item;
  }

  /**
   * Hands out the items to write now, in wire order: replays first (by id), then the A2 lane, then
   * the A3 lane, first-in first-out within a lane. Stops as soon as the payload bytes handed out
   * reach `budgetBytes` (default: no limit), but always returns at least one item when any is
   * writable. A never-written item gets the next message id here. Every returned item is
   * `written` on the current connection until settled, expired or `onDisconnect`. With
   * `replaysOnly`, nothing never written is handed out (the remote is draining: it takes no new
   * work, but decides what it already saw).
   */
  takeWritable(budgetBytes = Infinity, replaysOnly = false): OutboundItem<C>[] {
    const out: StoredItem<C>[] = [];
    let used = 0;
    while (used < budgetBytes || out.length === 0) {
      let item = this.replay.shift();
      if (item === undefined) {
        if (replaysOnly) break;
        item = this.laneA2.shift() ?? this.laneA3.shift();
        if (item === undefined) break;
        // A held item lives until its deadline (at most minutes), far less than the 2^31 ids it
        // would take to come round to its id again, so the next id is always free.
        this.lastId = nextId(this.lastId);
        this.assignedAny = true;
        item.id = this.lastId;
        this.byId.set(item.id, item);
      }
      item.state = 'written';
      item.writeCount++;
      this.written.pushBack(item);
      const len = item.payload.length;
      this.waitingBytes -= len;
      used += len;
      out.push(item);
    }
    return out;
  }

  /**
   * The remote accepted message `id`: removes and returns its item as `settled`, or reports the id
   * as `stale` or `unknown` (see `SettleResult`). Never throws.
   */
  onAck(id: number): SettleResult<C> {
    return this.settle(id);
  }

  /**
   * The remote answered message `id` with an error (rejected, unknown taberna, busy …): removes and
   * returns its item as `settled`, or reports the id as `stale` or `unknown`. Never throws.
   */
  onError(id: number): SettleResult<C> {
    return this.settle(id);
  }

  /**
   * The current connection died: every item written on it and not settled becomes pending again,
   * to be written first on the next connection with its id, in id order. Returns how many items
   * moved.
   */
  onDisconnect(): number {
    const moved = this.written.length;
    // Written ids all precede the pending replays, so prepending keeps the replay list in id order.
    for (let item = this.written.pop(); item; item = this.written.pop()) {
      item.state = 'replay';
      this.replay.pushFront(item);
      this.waitingBytes += item.payload.length;
    }
    return moved;
  }

  /**
   * The remote came back with a new session epoch, so it cannot know any id written to the old
   * session: removes and returns every item written at least once (in id order), for the owner to
   * fail with `PeerRestarted`. Items never written stay queued for the new session.
   */
  takeRetainedForRestart(): OutboundItem<C>[] {
    const out: StoredItem<C>[] = [];
    this.removeAllOf(this.written, out);
    this.removeAllOf(this.replay, out);
    return out;
  }

  /**
   * Removes and returns the items never written (both lanes, A2 first, admission order within a
   * lane) that `movable` accepts; the others keep their place. For the owner to send elsewhere:
   * no remote has seen them, and they have no id yet.
   */
  takeQueued(movable: (item: OutboundItem<C>) => boolean): OutboundItem<C>[] {
    return this.takeMatching([this.laneA2, this.laneA3], movable);
  }

  /**
   * Removes and returns the items written at least once and not settled (on the current
   * connection or waiting for replay, in id order) that `matches` accepts: for the owner to fail
   * when their remote will not come back.
   */
  takeRetained(matches: (item: OutboundItem<C>) => boolean): OutboundItem<C>[] {
    return this.takeMatching([this.written, this.replay], matches);
  }

  /**
   * Removes and returns every item whose deadline is ≤ `now`, whatever its state, earliest deadline
   * first (ties in admission order). The owner fails them with `SendTimeout`.
   */
  expire(now: number): OutboundItem<C>[] {
    const out: StoredItem<C>[] = [];
    for (let item = this.deadlines.popDue(now); item; item = this.deadlines.popDue(now)) {
      this.unlink(item);
      this.forget(item);
      out.push(item);
    }
    return out;
  }

  /** The earliest deadline of any held item, or `undefined` when the store is empty. */
  nextDeadline(): number | undefined {
    return this.deadlines.peek()?.deadline;
  }

  /**
   * Removes and returns everything the store holds (closing the peer, shutdown): written items,
   * then replays, then the A2 lane, then the A3 lane.
   */
  drainAll(): OutboundItem<C>[] {
    const out: StoredItem<C>[] = [];
    this.written.drainInto(out);
    this.replay.drainInto(out);
    this.laneA2.drainInto(out);
    this.laneA3.drainInto(out);
    this.deadlines.clear();
    this.byId.clear();
    for (const item of out) item.state = 'removed';
    this.countA2 = 0;
    this.countA3 = 0;
    this.waitingBytes = 0;
    this.allBytes = 0;
    return out;
  }

  /**
   * Changes lane capacities live; an omitted lane keeps its capacity. Shrinking evicts nothing: it
   * only makes `admit` fail until the lane's count drops below the new capacity. Throws
   * `AureliaError(InvalidConfig)` (and changes nothing) when a capacity is not an integer ≥ 1.
   */
  setCapacity(capacity: Partial<LaneCapacity>): void {
    const a2 = capacity.a2 === undefined ? this.capA2 : checkCapacity('A2', capacity.a2);
    const a3 = capacity.a3 === undefined ? this.capA3 : checkCapacity('A3', capacity.a3);
    this.capA2 = a2;
    this.capA3 = a3;
  }

  /** Current lane capacities. */
  get capacity(): LaneCapacity {
    return { a2: this.capA2, a3: this.capA3 };
  }

  /** Items held in `lane`, whatever their state: what its capacity is measured against. */
  laneCount(lane: OutboundLane): number {
    return lane === MessagePriorityClass.A2 ? this.countA2 : this.countA3;
  }

  /** Every item held. */
  get size(): number {
    return this.countA2 + this.countA3;
  }

  /** Items never written yet (both lanes). */
  get queuedCount(): number {
    return this.laneA2.length + this.laneA3.length;
  }

  /** Items written on the current connection and not settled. */
  get writtenCount(): number {
    return this.written.length;
  }

  /** Items waiting to be written again after a lost connection. */
  get replayCount(): number {
    return this.replay.length;
  }

  /** Payload bytes waiting to be written (queued and replay items). */
  get queuedBytes(): number {
    return this.waitingBytes;
  }

  /** Payload bytes of every item held. */
  get heldBytes(): number {
    return this.allBytes;
  }

  /** The last id assigned, or `NO_MESSAGE_ID` when nothing has been written yet. */
  get highestAssignedId(): MessageId {
    return this.assignedAny ? this.lastId : NO_MESSAGE_ID;
  }

  /** True when `takeWritable` would return something. */
  hasWritable(): boolean {
    return this.replay.length + this.laneA2.length + this.laneA3.length > 0;
  }

  /**
   * The item holding message `id` without removing it (`held`), or the id classified as `stale`
   * or `unknown` as `onAck` would. Never throws.
   */
  lookup(id: number): LookupResult<C> {
    if (!isMessageId(id) || !this.assignedAny || idAfter(id, this.lastId)) {
      return { kind: 'unknown', id };
    }
    const item = this.byId.get(id);
    return item === undefined ? { kind: 'stale', id } : { kind: 'held', item };
  }

  private settle(id: number): SettleResult<C> {
    if (!isMessageId(id) || !this.assignedAny || idAfter(id, this.lastId)) {
      return { kind: 'unknown', id };
    }
    const item = this.byId.get(id);
    if (item === undefined) return { kind: 'stale', id };
    this.unlink(item);
    this.deadlines.remove(item);
    this.forget(item);
    return { kind: 'settled', item };
  }

  /** Removes and returns the items of `lists` that `matches` accepts, list by list, in order. */
  private takeMatching(
    lists: readonly ItemList<C>[],
    matches: (item: OutboundItem<C>) => boolean,
  ): OutboundItem<C>[] {
    const out: StoredItem<C>[] = [];
    for (const list of lists) {
      for (let item = list.head; item;) {
        const next = item.next;
        if (matches(item)) {
          this.unlink(item);
          this.deadlines.remove(item);
          this.forget(item);
          out.push(item);
        }
        item = next;
      }
    }
    return out;
  }

  /** Removes every item of `list` from the store, appending them to `out` in list order. */
  private removeAllOf(list: ItemList<C>, out: StoredItem<C>[]): void {
    for (let item = list.head; item; item = list.head) {
      this.unlink(item);
      this.deadlines.remove(item);
      this.forget(item);
      out.push(item);
    }
  }

  /** Takes `item` out of the list its state places it in. */
  private unlink(item: StoredItem<C>): void {
    switch (item.state) {
      case 'queued':
        (item.priority === MessagePriorityClass.A2 ? this.laneA2 : this.laneA3).remove(item);
        this.waitingBytes -= item.payload.length;
        break;
      case 'written':
        this.written.remove(item);
        break;
      case 'replay':
        this.replay.remove(item);
        this.waitingBytes -= item.payload.length;
        break;
      case 'removed':
        break;
    }
  }

  /** Drops the bookkeeping of an unlinked item and marks it removed. */
  private forget(item: StoredItem<C>): void {
    if (item.id !== NO_MESSAGE_ID) this.byId.delete(item.id);
    if (item.priority === MessagePriorityClass.A2) this.countA2--;
    else this.countA3--;
    this.allBytes -= item.payload.length;
    item.state = 'removed';
  }

  private laneFull(lane: string, capacity: number): AureliaError {
    return new AureliaError(
      ErrorId.LocalQueueFull,
      `the ${lane} outbound lane to ${this.peerLabel} is full: ${capacity} messages are waiting to be written or acknowledged`,
    );
  }
}
