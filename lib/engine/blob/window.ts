// Pure per-stream blob flow control: what the sender retains and may write, what the receiver
// expects and may acknowledge. No sockets, no timers.
import { AureliaError, ErrorId } from '../errors.js';

/** A chunk the sender holds until the receiver acknowledges it. */
export interface RetainedChunk {
  readonly chunkId: bigint;
  readonly data: Buffer;
  readonly last: boolean;
}

/**
 * The sending side of one blob stream. Chunks are retained from `push` until a cumulative ack
 * covers them; at most `ackWindow` chunks are unacknowledged at once, and only chunks within
 * `ackWindow` of the first unacknowledged one are written. After a reconnect, `rewind` makes every
 * retained chunk writable again, so the stream resumes from the first unacknowledged chunk, and
 * `ackWindow` follows the window agreed on the new callis.
 */
export class BlobSendWindow {
  private readonly retained: RetainedChunk[] = [];
  private head = 0; // index in `retained` of the first chunk still held
  private cursor = 0; // index in `retained` of the next chunk to write
  private nextId = 0n;
  private ackedThrough = 0n; // every chunk id below this is acknowledged
  private writtenThrough = 0n; // every chunk id below this was written at least once
  private bytes = 0;
  private ended = false;

  private rewoundBelow = 0n; // chunks below this may have been written on more than one callis

  /**
   * `recycle`, if given, receives the data of each acknowledged chunk that was written on one
   * callis only: the receiver has it, so no socket still needs the buffer and it may be reused.
   * Chunks written again after a `rewind` are never recycled (an older callis may still hold them).
   */
  constructor(
    private window: number,
    private readonly recycle?: (data: Buffer) => void,
  ) {
    checkAckWindow(window);
  }

  /** Most chunks unacknowledged at once (the window agreed on the current callis). */
  get ackWindow(): number {
    return this.window;
  }

  /**
   * Applies the window agreed on a new callis. A smaller window holds back retained chunks beyond
   * it (they are written as acks make room) and refuses new ones until the stream is within it.
   */
  set ackWindow(ackWindow: number) {
    this.window = checkAckWindow(ackWindow);
  }

  /** Chunks pushed and not yet acknowledged. */
  get unacknowledged(): number {
    return this.retained.length - this.head;
  }

  /** Data bytes held for possible replay. */
  get bufferedBytes(): number {
    return this.bytes;
  }

  /** True while another chunk may be pushed without exceeding the window. */
  get hasRoom(): boolean {
    return !this.ended && this.unacknowledged < this.window;
  }

  /** True once the last chunk was pushed. */
  get finished(): boolean {
    return this.ended;
  }

  /** True once the last chunk was pushed and acknowledged. */
  get complete(): boolean {
    return this.ended && this.unacknowledged === 0;
  }

  /** Id of the first chunk not yet acknowledged. */
  get firstUnacknowledged(): bigint {
    return this.ackedThrough;
  }

  /**
   * True when a retained chunk not written since the last `rewind` may be written now (it lies
   * within the window).
   */
  get hasWritable(): boolean {
    return this.cursor < this.retained.length && this.cursor - this.head < this.window;
  }

  /**
   * Retains a chunk and returns its id. Throws `BlobAckWindowExceeded` when the window is full
   * and `BlobStreamOutOfOrder` after the last chunk.
   */
  push(data: Buffer, last: boolean): bigint {
    if (this.ended) {
      throw new AureliaError(ErrorId.BlobStreamOutOfOrder, 'the blob stream already ended');
    }
    if (this.unacknowledged >= this.window) {
      throw new AureliaError(
        ErrorId.BlobAckWindowExceeded,
        `${this.unacknowledged} chunks are unacknowledged (window ${this.window})`,
      );
    }
    const chunkId = this.nextId++;
    this.retained.push({ chunkId, data, last });
    this.bytes += data.length;
    if (last) this.ended = true;
    return chunkId;
  }

  /**
   * Returns the next chunk to write and advances past it, or undefined when none is left within
   * the window.
   */
  takeWritable(): RetainedChunk | undefined {
    if (!this.hasWritable) return undefined;
    const chunk = this.retained[this.cursor++]!;
    if (chunk.chunkId >= this.writtenThrough) this.writtenThrough = chunk.chunkId + 1n;
    return chunk;
  }

  /**
   * Applies a cumulative ack: every chunk below `nextExpected` is acknowledged and dropped.
   * Returns the number of data bytes released. A stale ack (not beyond an earlier one) releases
   * nothing. Throws `ProtocolViolation` for an ack of chunks never written.
   */
  ack(nextExpected: bigint): number {
    if (nextExpected <= this.ackedThrough) return 0;
    if (nextExpected > this.writtenThrough) {
      throw new AureliaError(
        ErrorId.ProtocolViolation,
        `ack up to chunk ${nextExpected} but only chunks below ${this.writtenThrough} were written`,
      );
    }
    const count = Number(nextExpected - this.ackedThrough);
    let released = 0;
    for (let i = 0; i < count; i++) {
      const chunk = this.retained[this.head + i]!;
      released += chunk.data.length;
      if (this.recycle && chunk.chunkId >= this.rewoundBelow) this.recycle(chunk.data);
    }
    this.head += count;
    // After a rewind the ack may cover chunks not yet rewritten: skip them.
    if (this.cursor < this.head) this.cursor = this.head;
    this.ackedThrough = nextExpected;
    this.bytes -= released;
    this.compact();
    return released;
  }

  /** After a reconnect: every retained chunk is written again, oldest first. */
  rewind(): void {
    this.cursor = this.head;
    this.rewoundBelow = this.writtenThrough;
  }

  /** Drops everything held (the stream failed or was aborted). */
  clear(): void {
    this.retained.length = 0;
    this.head = 0;
    this.cursor = 0;
    this.bytes = 0;
  }

  private compact(): void {
    if (this.head < 1024 && this.head * 2 < this.retained.length) return;
    this.retained.splice(0, this.head);
    this.cursor -= this.head;
    this.head = 0;
  }
}

/** What the receiver does with an arriving chunk. */
export type ChunkVerdict = 'new' | 'duplicate';

/**
 * The receiving side of one blob stream. Chunks must arrive in order; a replayed chunk (below
 * the next expected id) is a duplicate to drop and re-acknowledge. The receiver acknowledges
 * chunks cumulatively once the application consumed them, and refuses a chunk beyond the ack
 * window agreed on the callis it arrived on.
 */
export class BlobReceiveWindow {
  private expected = 0n; // next chunk id to receive
  private consumedThrough = 0n; // chunks below this were taken by the application
  private ackedThrough = 0n; // chunks below this were acknowledged to the sender
  private ackDue = false; // the current ack must be (re)sent even if it is not new
  private lastSeen = false;

  /** Id of the next chunk expected. */
  get nextExpected(): bigint {
    return this.expected;
  }

  /** True once the last chunk arrived. */
  get ended(): boolean {
    return this.lastSeen;
  }

  /** True once the last chunk arrived and the application consumed everything. */
  get drained(): boolean {
    return this.lastSeen && this.consumedThrough === this.expected;
  }

  /**
   * Checks a chunk that arrived on a callis whose agreed window is `ackWindow`. Throws
   * `BlobStreamMissingChunk` when chunks were skipped (its id is ahead of the next expected one),
   * `BlobStreamOutOfOrder` for a chunk after the last one, and `BlobAckWindowExceeded` when it
   * lies `ackWindow` or more chunks beyond the last acknowledgement.
   */
  receive(chunkId: bigint, last: boolean, ackWindow: number): ChunkVerdict {
    if (chunkId < this.expected) {
      // A replay: the sender missed our ack, so it must go out again.
      this.ackDue = true;
      return 'duplicate';
    }
    if (this.lastSeen) {
      throw new AureliaError(
        ErrorId.BlobStreamOutOfOrder,
        `chunk ${chunkId} arrived after the stream's last chunk ${this.expected - 1n}`,
      );
    }
    if (chunkId > this.expected) {
      throw new AureliaError(
        ErrorId.BlobStreamMissingChunk,
        `expected chunk ${this.expected}, got ${chunkId}`,
      );
    }
    if (chunkId - this.ackedThrough >= BigInt(ackWindow)) {
      throw new AureliaError(
        ErrorId.BlobAckWindowExceeded,
        `chunk ${chunkId} exceeds the agreed ack window of ${ackWindow} (acknowledged below ${this.ackedThrough})`,
      );
    }
    this.expected++;
    if (last) this.lastSeen = true;
    return 'new';
  }

  /** The application took `count` more chunks (in order). */
  consume(count = 1): void {
    const next = this.consumedThrough + BigInt(count);
    if (next > this.expected) {
      throw new AureliaError(
        ErrorId.ProtocolViolation,
        `consumed ${next} chunks but only ${this.expected} arrived`,
      );
    }
    this.consumedThrough = next;
  }

  /**
   * The cumulative ack to send now (every consumed chunk not yet acknowledged), or undefined when
   * there is nothing new. Marks it sent.
   */
  takeAck(): bigint | undefined {
    if (this.consumedThrough <= this.ackedThrough && !this.ackDue) return undefined;
    this.ackDue = false;
    this.ackedThrough = this.consumedThrough;
    return this.ackedThrough;
  }

  /**
   * After a reconnect the sender replays from the last ack it saw, which may be older than ours:
   * the next `takeAck` repeats what was consumed.
   */
  resendAck(): void {
    this.ackDue = true;
  }
}

function checkAckWindow(ackWindow: number): number {
  if (!Number.isInteger(ackWindow) || ackWindow < 1) {
    throw new AureliaError(ErrorId.InvalidConfig, `ackWindow must be ≥ 1, got ${ackWindow}`);
  }
  return ackWindow;
}
