// The receiving side of blobs: `BlobReceiver` streams and the inbound blob callis of a session.
import { Readable } from 'node:stream';
import { AureliaError, ErrorId, isErrorId } from '../errors.js';
import { type Callis, type CallisHandler, reportedByPeer } from '../peer/callis.js';
import type { MetricsRecorder } from '../reporting/metrics.js';
import {
  type HelloBlobWindow,
  decodeBlobChunk,
  decodeError,
  encodeBlobComplete,
} from '../wire/control.js';
import { ControlType, type Frame, type FrameBatch } from '../wire/frame.js';
import { type BlobAck, encodeBlobAcks, encodeStreamError } from './ack.js';
import { BlobReceiveWindow } from './window.js';

/** What an inbound blob link needs from its session and domus. */
export interface InboundBlobHost {
  readonly metrics: MetricsRecorder;
  /** The blob callis closed (for gauges and events). */
  onCallisClosed(callis: Callis, reason: AureliaError): void;
}

/** How long an ended stream's id is remembered, so late or replayed chunks are recognised. */
const TOMBSTONE_MS = 10 * 60_000;
const MAX_TOMBSTONES = 65_536;

/**
 * The readable end of a blob stream, found on the receiving request as `blobReceiver`. Chunks
 * arrive in order; they are acknowledged only as the application reads them, so a reader that
 * stops reading stops the sender. The stream ends after the last chunk; it errors when the sender
 * aborts, the sender's domus restarted (`PeerRestarted`), nothing arrived for 2 × the send timeout
 * (`BlobStreamIdleTimeout`) or the sender broke the protocol. `destroy()` aborts the stream and
 * the sending end fails.
 */
export class BlobReceiver extends Readable {
  /** @internal */ readonly window: BlobReceiveWindow;
  private readonly queue: Buffer[] = [];
  private queuedBytes = 0;
  private wanting = false;
  private ended = false;
  /** @internal */ lastActivity = Date.now();
  /** @internal Frees the stream's buffer reservation, taken when the application accepts. */
  release: () => void = noReservation;

  /** Not for applications: the domus creates receivers (`TabernaRequest.blobReceiver`). */
  constructor(
    private readonly link: InboundBlobLink,
    /** The message id of the request that opened the stream. */
    readonly requestMsgId: number,
  ) {
    super({ highWaterMark: 256 * 1024 });
    this.window = new BlobReceiveWindow();
  }

  /** Why the stream failed, once it did (also emitted as `'error'` when someone listens). */
  failure: AureliaError | undefined;

  /**
   * Bytes that arrived and the application has not read yet: chunks not yet acknowledged (at most
   * one window) plus what the stream buffers for reading (`readableLength`).
   */
  get bufferedBytes(): number {
    return this.queuedBytes + this.readableLength;
  }

  /**
   * @internal Fails the stream. Without an `'error'` listener the stream is destroyed without
   * one (and `failure` says why), so an unobserved blob never crashes the process.
   */
  fail(err: AureliaError): void {
    if (this.destroyed) return;
    this.failure = err;
    if (this.listenerCount('error') > 0) this.destroy(err);
    else this.destroy();
  }

  /** @internal A new chunk arrived (already checked against the window). */
  enqueue(data: Buffer): void {
    this.lastActivity = Date.now();
    this.queue.push(data);
    this.queuedBytes += data.length;
    this.drain();
  }

  override _read(): void {
    this.wanting = true;
    this.drain();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    if (!this.ended) {
      this.ended = true;
      this.link.abortLocal(this, err ?? this.failure ?? null);
    }
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.release();
    callback(err);
  }

  private drain(): void {
    let consumed = 0;
    while (this.wanting && this.queue.length > 0) {
      const data = this.queue.shift()!;
      this.queuedBytes -= data.length;
      consumed++;
      if (data.length > 0) this.wanting = this.push(data);
    }
    if (consumed > 0) {
      this.window.consume(consumed);
      this.lastActivity = Date.now();
    }
    if (!this.ended && this.window.drained) {
      this.ended = true;
      this.push(null);
      this.link.completed(this);
      this.release();
    } else if (consumed > 0) {
      this.link.ackLater(this);
    }
  }
}

type Tombstone = 'completed' | 'aborted';

function noReservation(): void {}

/**
 * The blob side of one inbound session: the streams its requests opened, and the current blob
 * callis (replaced when the sender reconnects). Chunks are routed to their stream; acks for what
 * the application consumed, completions and aborts travel back on the blob callis.
 */
export class InboundBlobLink implements CallisHandler {
  private readonly streams = new Map<number, BlobReceiver>();
  private readonly tombstones = new Map<number, { kind: Tombstone; at: number }>();
  private readonly acks = new Set<BlobReceiver>();
  private readonly completions: number[] = [];
  private readonly aborts: { requestMsgId: number; err: AureliaError }[] = [];
  private callis: Callis | undefined;
  /** The window agreed on the current (or last) blob callis: chunks must stay within it. */
  private agreed: HelloBlobWindow | undefined;
  /**
   * The largest chunk size agreed with this session so far: a stream keeps the chunk size of the
   * callis it started on, so a replay after a reconnect may carry larger chunks than agreed anew.
   */
  private maxChunkSize = 0;

  constructor(private readonly host: InboundBlobHost) {}

  /** Streams open. */
  get size(): number {
    return this.streams.size;
  }

  /** The current blob callis, if connected. */
  get current(): Callis | undefined {
    return this.callis;
  }

  /**
   * The receiving end of request `requestMsgId`, handed to the application with the request. It
   * takes chunks only once `open`ed; until then a chunk for it is `BlobStreamNotFound`.
   */
  prepare(requestMsgId: number): BlobReceiver {
    return new BlobReceiver(this, requestMsgId);
  }

  /**
   * The application accepted the request: the stream takes chunks from now on, holding the
   * buffer reservation that `release` frees.
   */
  open(receiver: BlobReceiver, release: () => void): void {
    receiver.release = release;
    this.streams.set(receiver.requestMsgId, receiver);
  }

  /** Makes `callis` (with the window agreed on it) the session's blob callis. */
  attach(callis: Callis, agreed: HelloBlobWindow): void {
    const previous = this.callis;
    this.callis = callis;
    this.agreed = agreed;
    this.maxChunkSize = Math.max(this.maxChunkSize, agreed.chunkSize);
    if (previous && !previous.closed) {
      previous.close(
        new AureliaError(ErrorId.ConnectionLost, `${previous.describe()} replaced by a reconnect`),
      );
    }
    for (const receiver of this.streams.values()) {
      // The sender replays from its last ack: tell it again what was consumed.
      receiver.window.resendAck();
      this.acks.add(receiver);
    }
    callis.setHandler(this);
    callis.scheduleFlush();
  }

  /**
   * Fails every stream with `err` and forgets them; with `tellSender`, the sender is told why on
   * the blob callis (now, or on the next one if none is up).
   */
  failAll(err: AureliaError, tellSender = false): void {
    for (const receiver of [...this.streams.values()]) this.fail(receiver, err, tellSender);
  }

  /** Fails streams without progress for `idleMs`; forgets old tombstones. */
  expireIdle(now: number, idleMs: number): void {
    for (const receiver of [...this.streams.values()]) {
      if (now - receiver.lastActivity >= idleMs) {
        this.fail(
          receiver,
          new AureliaError(
            ErrorId.BlobStreamIdleTimeout,
            `blob stream ${receiver.requestMsgId} received nothing for ${now - receiver.lastActivity} ms`,
          ),
          true,
        );
      }
    }
    for (const [id, stone] of this.tombstones) {
      if (now - stone.at < TOMBSTONE_MS) break;
      this.tombstones.delete(id);
    }
  }

  /** Closes the blob callis (shutdown); streams fail with `reason`. */
  close(reason: AureliaError): Promise<void> {
    const open = [...this.streams.keys()];
    this.failAll(reason);
    const callis = this.callis;
    if (!callis || callis.closed) return Promise.resolve();
    // Tell the sender why each stream ends, so it fails now instead of waiting to reconnect.
    for (const requestMsgId of open) callis.sendControl(encodeStreamError(requestMsgId, reason));
    return callis.close(reason, true);
  }

  // ---- from receivers ----

  /** @internal */
  ackLater(receiver: BlobReceiver): void {
    this.acks.add(receiver);
    this.callis?.scheduleFlush();
  }

  /** @internal The application read the whole stream. */
  completed(receiver: BlobReceiver): void {
    this.streams.delete(receiver.requestMsgId);
    this.acks.delete(receiver);
    this.bury(receiver.requestMsgId, 'completed');
    this.completions.push(receiver.requestMsgId);
    this.callis?.scheduleFlush();
  }

  /** @internal The application destroyed the stream before its end: tell the sender. */
  abortLocal(receiver: BlobReceiver, err: Error | null): void {
    if (this.streams.get(receiver.requestMsgId) !== receiver) return;
    this.streams.delete(receiver.requestMsgId);
    this.acks.delete(receiver);
    this.bury(receiver.requestMsgId, 'aborted');
    this.aborts.push({
      requestMsgId: receiver.requestMsgId,
      err: AureliaError.is(err)
        ? err
        : new AureliaError(
            ErrorId.ConnectionLost,
            `the receiver aborted the blob stream${err ? `: ${err.message}` : ''}`,
          ),
    });
    this.callis?.scheduleFlush();
  }

  // ---- CallisHandler ----

  /** CallisHandler: a frame arrived on the blob callis. */
  onFrame(callis: Callis, frame: Frame): void {
    switch (frame.msgType) {
      case ControlType.BlobChunk:
        this.onChunk(callis, frame);
        return;
      case ControlType.Error: {
        const { errorId, message, peerMsgId } = decodeError(frame);
        const kind = isErrorId(errorId) ? errorId : ErrorId.ConnectionLost;
        const receiver = this.streams.get(peerMsgId);
        if (receiver) {
          this.fail(receiver, new AureliaError(kind, message), false);
        } else if (peerMsgId === 0) {
          callis.close(reportedByPeer(callis, kind, message));
        }
        return;
      }
      case ControlType.Close:
        callis.closeByPeer(frame);
        return;
      default:
        throw new AureliaError(
          ErrorId.ProtocolViolation,
          `${callis.describe()}: unexpected frame type ${frame.msgType} on an accepted blob callis`,
        );
    }
  }

  /** CallisHandler: the blob callis can take more writes. */
  onWritable(_callis: Callis, batch: FrameBatch): void {
    for (const { requestMsgId, err } of this.aborts.splice(0)) {
      batch.add(encodeStreamError(requestMsgId, err));
    }
    for (const id of this.completions.splice(0)) batch.add(encodeBlobComplete(id));
    if (this.acks.size === 0) return;
    const acks: BlobAck[] = [];
    for (const receiver of this.acks) {
      const next = receiver.window.takeAck();
      if (next !== undefined)
        acks.push({ requestMsgId: receiver.requestMsgId, nextExpected: next });
    }
    this.acks.clear();
    for (const frame of encodeBlobAcks(acks)) batch.add(frame);
  }

  /** CallisHandler: the blob callis closed. */
  onClosed(callis: Callis, reason: AureliaError): void {
    // Streams wait for the sender to reconnect and replay; the idle timeout bounds the wait.
    if (callis === this.callis) this.callis = undefined;
    // A callis replaced by a reconnect is reported too: its host counted it when it came up.
    this.host.onCallisClosed(callis, reason);
  }

  private onChunk(callis: Callis, frame: Frame): void {
    const agreed = this.agreed;
    // A replaced callis is closed before its successor is attached, so this is only a guard.
    if (callis !== this.callis || !agreed) return;
    const chunk = decodeBlobChunk(frame, this.maxChunkSize);
    const receiver = this.streams.get(chunk.requestMsgId);
    if (!receiver) {
      const stone = this.tombstones.get(chunk.requestMsgId);
      if (stone?.kind === 'completed' && chunk.last) {
        // A replay of a stream we finished: the completion was lost with the old callis.
        this.completions.push(chunk.requestMsgId);
        this.callis?.scheduleFlush();
      }
      if (stone) return;
      throw new AureliaError(
        ErrorId.BlobStreamNotFound,
        `blob chunk ${chunk.chunkId} for stream ${chunk.requestMsgId}, which this session never opened`,
      );
    }
    let verdict;
    try {
      verdict = receiver.window.receive(chunk.chunkId, chunk.last, agreed.ackWindow);
    } catch (err) {
      // The sender broke the stream's rules: the stream fails and the callis closes.
      if (AureliaError.is(err)) this.fail(receiver, err, false);
      throw err;
    }
    this.host.metrics.blobBytesIn += chunk.data.length;
    if (verdict === 'duplicate') {
      this.acks.add(receiver);
      this.callis?.scheduleFlush();
      return;
    }
    receiver.enqueue(chunk.data);
  }

  private fail(receiver: BlobReceiver, err: AureliaError, tellSender: boolean): void {
    if (this.streams.get(receiver.requestMsgId) !== receiver) return;
    this.streams.delete(receiver.requestMsgId);
    this.acks.delete(receiver);
    this.bury(receiver.requestMsgId, 'aborted');
    if (tellSender) {
      this.aborts.push({ requestMsgId: receiver.requestMsgId, err });
      this.callis?.scheduleFlush();
    }
    receiver.fail(err);
  }

  private bury(requestMsgId: number, kind: Tombstone): void {
    this.tombstones.delete(requestMsgId);
    this.tombstones.set(requestMsgId, { kind, at: Date.now() });
    if (this.tombstones.size > MAX_TOMBSTONES) {
      const oldest = this.tombstones.keys().next().value;
      if (oldest !== undefined) this.tombstones.delete(oldest);
    }
  }
}
