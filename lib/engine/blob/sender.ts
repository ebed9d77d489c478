// The sending side of blobs: `BlobSender` streams and the blob callis that carries them.
import { Writable } from 'node:stream';
import { AureliaError, ErrorId, isErrorId } from '../errors.js';
import {
  Callis,
  type CallisConnection,
  type CallisSettings,
  isPeerViolation,
  reportedByPeer,
} from '../peer/callis.js';
import { dialerHello } from '../peer/handshake.js';
import type { MetricsRecorder } from '../reporting/metrics.js';
import type { DomusReportingEvent } from '../reporting/reporting.js';
import {
  type HelloBlobWindow,
  decodeAck,
  decodeBlobComplete,
  decodeError,
  encodeBlobChunkHead,
} from '../wire/control.js';
import { ControlType, type Frame, type FrameBatch } from '../wire/frame.js';
import { decodeBlobAcks, encodeStreamError } from './ack.js';
import { BlobSendWindow } from './window.js';

/** What the blob link of one outbound peer needs from it. */
export interface OutboundBlobHost extends CallisSettings {
  readonly sessionEpoch: bigint;
  readonly metrics: MetricsRecorder;
  /** The dialed address (for events and messages). */
  readonly address: string;
  callisConnectTimeoutMs(): number;
  reconnectBackoffMs(): readonly number[];
  /** The blob window this domus proposes for the transport of this address. */
  proposal(): HelloBlobWindow;
  dial(
    signal: AbortSignal,
    timeoutMs: number,
    expectedIdentity: string | undefined,
  ): Promise<CallisConnection>;
  /** The identity the primary callis proved at this address (the blob callis must match). */
  peerIdentity(): string | undefined;
  /** The session epoch the primary callis learned. */
  remoteEpoch(): bigint | undefined;
  emit(event: DomusReportingEvent): void;
  error(err: AureliaError): void;
  callisUp(identity: string, address: string, kind: 'blob'): void;
  callisDown(identity: string, address: string, kind: 'blob'): void;
}

const EMPTY = Buffer.alloc(0);

/**
 * The writable end of a blob stream, handed out by a `BLOB` send once the remote application
 * accepted the message. Bytes are cut into chunks of the agreed size and flow under the agreed
 * ack window: `write()` returns false while the receiver is behind. `end()` finishes once the
 * receiver has consumed every byte (`'finish'` means delivered); `destroy(err)` aborts the stream
 * and the receiving end fails. Errors: `PeerRestarted`, `BlobStreamIdleTimeout`, `DomusClosed`,
 * or the receiver's abort.
 */
export class BlobSender extends Writable {
  /** @internal */ window: BlobSendWindow | undefined;
  private chunkSize = 0;
  // What the application wrote and the window has not taken yet: consecutive parts (one for
  // `write`, several for `writev`), read from `part` at `offset`.
  private pending:
    | { parts: Buffer[]; part: number; offset: number; callback: (err?: Error | null) => void }
    | undefined;
  private finalCallback: ((err?: Error | null) => void) | undefined;
  private completed = false;
  /** @internal */ lastActivity = Date.now();

  /** Not for applications: the domus creates senders (`SendOutcome.sender`). */
  constructor(
    private readonly link: OutboundBlobLink,
    /** The message id of the request that opened the stream. */
    readonly requestMsgId: number,
    private readonly release: () => void,
  ) {
    super({ highWaterMark: 64 * 1024 });
  }

  /** Why the stream failed, once it did (also emitted as `'error'` when someone listens). */
  failure: AureliaError | undefined;

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

  /** Bytes written and not yet acknowledged by the receiver. */
  get unacknowledgedBytes(): number {
    return this.window?.bufferedBytes ?? 0;
  }

  /**
   * @internal The blob callis is up with `agreed`: start or resume the stream. A resumed stream
   * keeps its chunk size (its chunks are cut) and takes the new callis' ack window.
   */
  attach(agreed: HelloBlobWindow): void {
    if (!this.window) {
      this.window = new BlobSendWindow(agreed.ackWindow, this.link.recycleChunk);
      this.chunkSize = agreed.chunkSize;
    } else {
      this.window.ackWindow = agreed.ackWindow;
      this.window.rewind();
    }
    this.pump();
  }

  /** @internal The receiver consumed every chunk below `nextExpected`. */
  acknowledge(nextExpected: bigint): void {
    if (!this.window) return;
    this.window.ack(nextExpected);
    this.lastActivity = Date.now();
    this.pump();
  }

  /** @internal The receiver has the whole stream. */
  completeRemotely(): void {
    if (this.completed) return;
    if (!this.window?.finished) {
      throw new AureliaError(
        ErrorId.ProtocolViolation,
        `blob-complete for stream ${this.requestMsgId} before its last chunk was written`,
      );
    }
    this.finish();
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (err?: Error | null) => void,
  ): void {
    this.pending = { parts: [chunk], part: 0, offset: 0, callback };
    this.lastActivity = Date.now();
    this.pump();
  }

  override _writev(chunks: { chunk: Buffer }[], callback: (err?: Error | null) => void): void {
    this.pending = { parts: chunks.map((c) => c.chunk), part: 0, offset: 0, callback };
    this.lastActivity = Date.now();
    this.pump();
  }

  override _final(callback: (err?: Error | null) => void): void {
    this.finalCallback = callback;
    this.pump();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    const window = this.window;
    if (!this.completed) {
      this.link.abort(this, err ?? this.failure ?? null);
      this.completed = true;
    }
    window?.clear();
    this.pending = undefined;
    this.link.forget(this);
    this.release();
    callback(err);
  }

  private pump(): void {
    const window = this.window;
    if (!window || this.completed) return;
    let pushed = false;
    const pending = this.pending;
    if (pending) {
      while (window.hasRoom && this.takeChunk(pending, window)) pushed = true;
      if (pending.part >= pending.parts.length) {
        this.pending = undefined;
        pending.callback();
      }
    }
    if (this.finalCallback && !this.pending && window.hasRoom && !window.finished) {
      window.push(EMPTY, true);
      pushed = true;
    }
    // Retained chunks may also have become writable: an ack moved a window smaller than them.
    if (pushed || window.hasWritable) this.link.wake();
  }

  /**
   * Moves up to one chunk of `pending` into the window, copied into a buffer of the link's pool:
   * the application may reuse what it wrote once its callback ran, while chunks are retained
   * until acknowledged. Returns false when nothing was left to take.
   */
  private takeChunk(pending: NonNullable<BlobSender['pending']>, window: BlobSendWindow): boolean {
    let size = 0;
    for (let i = pending.part; i < pending.parts.length && size < this.chunkSize; i++) {
      size += pending.parts[i]!.length - (i === pending.part ? pending.offset : 0);
    }
    size = Math.min(size, this.chunkSize);
    if (size === 0) {
      pending.part = pending.parts.length;
      return false;
    }
    const data = this.link.chunkBuffer(size, this.chunkSize);
    let filled = 0;
    while (filled < size) {
      const part = pending.parts[pending.part]!;
      const n = Math.min(size - filled, part.length - pending.offset);
      part.copy(data, filled, pending.offset, pending.offset + n);
      filled += n;
      pending.offset += n;
      if (pending.offset >= part.length) {
        pending.part++;
        pending.offset = 0;
      }
    }
    window.push(data, false);
    return true;
  }

  private finish(): void {
    this.completed = true;
    this.window?.clear();
    this.link.forget(this);
    this.release();
    const callback = this.finalCallback;
    this.finalCallback = undefined;
    callback?.();
  }
}

type LinkState = 'idle' | 'connecting' | 'up' | 'backoff' | 'closed';

/** Most bytes of acknowledged chunk buffers a link keeps for reuse. */
const CHUNK_POOL_BYTES = 8 * 1024 * 1024;

/**
 * The blob callis of one outbound peer: dialed when the first stream opens, with a hello that
 * proposes the blob window; re-dialed after a cut while streams remain, each resuming from its
 * first unacknowledged chunk. Chunks of concurrent streams are interleaved one per stream per
 * round, so every stream progresses.
 */
export class OutboundBlobLink {
  private readonly streams = new Map<number, BlobSender>();
  private readonly aborts: { requestMsgId: number; err: AureliaError }[] = [];
  private state: LinkState = 'idle';
  private callis: Callis | undefined;
  private agreed: HelloBlobWindow | undefined;
  private failures = 0;
  private abortController = new AbortController();
  private reconnectTimer: NodeJS.Timeout | undefined;
  private rotation = 0;
  // Chunk buffers of acknowledged chunks, reused for new chunks of the current chunk size, so a
  // long stream does not allocate (and collect) a buffer per chunk.
  private readonly chunkPool: Buffer[] = [];

  constructor(private readonly host: OutboundBlobHost) {}

  /** @internal A buffer of `size` bytes for a new chunk (reused when `size` is a full chunk). */
  chunkBuffer(size: number, chunkSize: number): Buffer {
    if (size === chunkSize) {
      const reused = this.chunkPool.pop();
      if (reused?.length === size) return reused;
    }
    return Buffer.allocUnsafeSlow(size);
  }

  /** @internal Takes back the buffer of an acknowledged chunk (see `BlobSendWindow`). */
  readonly recycleChunk = (data: Buffer): void => {
    const chunkSize = this.agreed?.chunkSize;
    if (data.length !== chunkSize || this.chunkPool.length * chunkSize >= CHUNK_POOL_BYTES) return;
    if (this.chunkPool.length > 0 && this.chunkPool[0]!.length !== chunkSize) {
      this.chunkPool.length = 0;
    }
    this.chunkPool.push(data);
  };

  /** Streams open on this link. */
  get size(): number {
    return this.streams.size;
  }

  /** Opens the stream of request `requestMsgId`; `release` frees its buffer reservation. */
  open(requestMsgId: number, release: () => void): BlobSender {
    if (this.state === 'closed') {
      release();
      throw new AureliaError(ErrorId.DomusClosed, 'the domus is shut down');
    }
    const sender = new BlobSender(this, requestMsgId, release);
    this.streams.set(requestMsgId, sender);
    if (this.state === 'up' && this.agreed) sender.attach(this.agreed);
    else if (this.state === 'idle') void this.connect();
    return sender;
  }

  /** @internal A stream has chunks to write. */
  wake(): void {
    this.callis?.scheduleFlush();
  }

  /** @internal A stream ended (completed, failed or aborted). */
  forget(sender: BlobSender): void {
    if (this.streams.get(sender.requestMsgId) === sender) this.streams.delete(sender.requestMsgId);
  }

  /** @internal Tells the receiver that `sender` was aborted (sent once the link is up). */
  abort(sender: BlobSender, err: Error | null): void {
    if (!this.streams.has(sender.requestMsgId)) return;
    const reason = AureliaError.is(err)
      ? err
      : new AureliaError(
          ErrorId.ConnectionLost,
          `the sender aborted the blob stream${err ? `: ${err.message}` : ''}`,
        );
    this.aborts.push({ requestMsgId: sender.requestMsgId, err: reason });
    this.wake();
  }

  /** Fails every stream with `err` (peer restarted, shutdown). */
  failAll(err: AureliaError): void {
    for (const sender of [...this.streams.values()]) sender.fail(err);
    this.streams.clear();
  }

  /** Fails streams without progress for `idleMs`. */
  expireIdle(now: number, idleMs: number): void {
    for (const sender of [...this.streams.values()]) {
      if (now - sender.lastActivity >= idleMs) {
        sender.fail(
          new AureliaError(
            ErrorId.BlobStreamIdleTimeout,
            `blob stream ${sender.requestMsgId} to ${this.host.address} made no progress for ${now - sender.lastActivity} ms`,
          ),
        );
      }
    }
  }

  /**
   * Fails every stream with `DomusClosed` and closes the blob callis, telling the receiver why
   * each stream ends so it fails now rather than at its idle timeout.
   */
  close(): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    this.failAll(new AureliaError(ErrorId.DomusClosed, 'the domus is shut down'));
    this.state = 'closed';
    // Failing the streams queued their aborts; they leave ahead of the close frame.
    for (const { requestMsgId, err } of this.aborts.splice(0)) {
      this.callis?.sendControl(encodeStreamError(requestMsgId, err));
    }
    this.abortController.abort();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    const callis = this.callis;
    this.callis = undefined;
    if (!callis) return Promise.resolve();
    const gone = callis.close(
      new AureliaError(ErrorId.DomusClosed, 'the domus is shut down'),
      true,
    );
    this.down(callis, new AureliaError(ErrorId.DomusClosed, 'the domus is shut down'));
    return gone;
  }

  private async connect(): Promise<void> {
    this.state = 'connecting';
    this.reconnectTimer = undefined;
    const host = this.host;
    const timeoutMs = host.callisConnectTimeoutMs();
    const startedAt = Date.now();
    let callis: Callis | undefined;
    try {
      const connection = await host.dial(
        this.abortController.signal,
        timeoutMs,
        host.peerIdentity(),
      );
      if (this.isClosed()) {
        connection.socket.destroy();
        return;
      }
      callis = new Callis(connection, host, 'outbound');
      const proposal = host.proposal();
      const answer = await dialerHello(
        callis,
        { sessionEpoch: host.sessionEpoch, blobWindow: proposal },
        Math.max(1, timeoutMs - (Date.now() - startedAt)),
      );
      if (this.isClosed()) {
        void callis.close(new AureliaError(ErrorId.DomusClosed, 'the domus is shut down'), true);
        return;
      }
      const agreed = answer.blobWindow;
      if (
        !agreed ||
        agreed.chunkSize > proposal.chunkSize ||
        agreed.ackWindow > proposal.ackWindow
      ) {
        throw new AureliaError(
          ErrorId.ProtocolViolation,
          `${callis.describe()} answered the blob hello with ${agreed ? `${agreed.chunkSize} B × ${agreed.ackWindow}` : 'no window'}, not a window within the proposed ${proposal.chunkSize} B × ${proposal.ackWindow}`,
        );
      }
      const known = host.remoteEpoch();
      if (known !== undefined && known !== answer.sessionEpoch) {
        this.failAll(
          new AureliaError(
            ErrorId.PeerRestarted,
            `${callis.identity} at ${host.address} restarted; its blob streams were lost`,
          ),
        );
      }
      if (callis.closed)
        throw new AureliaError(ErrorId.ConnectionLost, `${callis.describe()} closed`);
      this.up(callis, agreed);
    } catch (err) {
      const error = AureliaError.is(err)
        ? err
        : new AureliaError(
            ErrorId.PeerUnavailable,
            `dialing the blob callis to ${host.address}: ${String(err)}`,
          );
      if (callis && !callis.closed) void callis.close(error);
      if (this.isClosed()) return;
      if (error.kind === ErrorId.BlobCallisWithoutPrimary) {
        // The receiver holds no session for us any more: our streams there can never complete.
        this.failAll(
          new AureliaError(
            ErrorId.PeerRestarted,
            `${host.address} no longer holds this session, so its blob streams were lost: ${error.message}`,
          ),
        );
      }
      // The hello exchange failed before the link's handler (which counts on close) took over.
      if (isPeerViolation(error)) host.metrics.protocolViolations++;
      this.failures++;
      host.error(error);
      this.scheduleReconnect();
    }
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private up(callis: Callis, agreed: HelloBlobWindow): void {
    this.callis = callis;
    this.agreed = agreed;
    this.state = 'up';
    this.failures = 0;
    callis.setHandler(this.handler);
    this.host.callisUp(callis.identity, this.host.address, 'blob');
    this.host.emit({
      type: 'BlobCallisConnected',
      at: Date.now(),
      identity: callis.identity,
      address: this.host.address,
      direction: 'outbound',
      blobWindow: agreed,
    });
    for (const sender of this.streams.values()) sender.attach(agreed);
    callis.scheduleFlush();
  }

  private down(callis: Callis, reason: AureliaError): void {
    this.host.callisDown(callis.identity, this.host.address, 'blob');
    this.host.emit({
      type: 'BlobCallisDisconnected',
      at: Date.now(),
      identity: callis.identity,
      address: this.host.address,
      direction: 'outbound',
      reason: reason.message,
    });
  }

  private scheduleReconnect(): void {
    if (this.state === 'closed') return;
    if (this.streams.size === 0) {
      this.state = 'idle';
      return;
    }
    const steps = this.host.reconnectBackoffMs();
    const delay = this.failures === 0 ? 0 : steps[Math.min(this.failures - 1, steps.length - 1)]!;
    this.state = 'backoff';
    this.reconnectTimer = setTimeout(() => void this.connect(), delay);
  }

  private readonly handler = {
    onFrame: (callis: Callis, frame: Frame): void => this.onFrame(callis, frame),
    onWritable: (_callis: Callis, batch: FrameBatch, budget: number): void =>
      this.onWritable(batch, budget),
    onClosed: (callis: Callis, reason: AureliaError): void => {
      if (callis !== this.callis) return;
      this.callis = undefined;
      this.down(callis, reason);
      if (isPeerViolation(reason)) this.host.metrics.protocolViolations++;
      if (this.state === 'closed') return;
      if (reason.kind !== ErrorId.DomusClosed && !callis.closedByPeer) this.host.error(reason);
      this.failures++;
      this.scheduleReconnect();
    },
  };

  private onFrame(callis: Callis, frame: Frame): void {
    switch (frame.msgType) {
      case ControlType.Ack:
        for (const ack of decodeBlobAcks(decodeAck(frame))) {
          this.streams.get(ack.requestMsgId)?.acknowledge(ack.nextExpected);
        }
        return;
      case ControlType.BlobComplete:
        this.streams.get(decodeBlobComplete(frame))?.completeRemotely();
        return;
      case ControlType.Error: {
        const { errorId, message, peerMsgId } = decodeError(frame);
        const kind = isErrorId(errorId) ? errorId : ErrorId.ProtocolViolation;
        if (peerMsgId === 0) {
          callis.close(reportedByPeer(callis, kind, message));
          return;
        }
        this.streams.get(peerMsgId)?.fail(new AureliaError(kind, message));
        return;
      }
      case ControlType.Close:
        callis.closeByPeer(frame);
        return;
      default:
        throw new AureliaError(
          ErrorId.ProtocolViolation,
          `${callis.describe()}: unexpected frame type ${frame.msgType} on a dialed blob callis`,
        );
    }
  }

  private onWritable(batch: FrameBatch, budget: number): void {
    for (const { requestMsgId, err } of this.aborts.splice(0)) {
      batch.add(encodeStreamError(requestMsgId, err));
    }
    const streams = [...this.streams.values()];
    if (streams.length === 0) return;
    const metrics = this.host.metrics;
    // One chunk per stream per round, starting one stream further each flush: fair interleaving.
    const start = this.rotation++ % streams.length;
    let progressed = true;
    while (progressed && batch.byteLength < budget) {
      progressed = false;
      for (let i = 0; i < streams.length && batch.byteLength < budget; i++) {
        const sender = streams[(start + i) % streams.length]!;
        const chunk = sender.window?.takeWritable();
        if (!chunk) continue;
        batch.addEncoded([
          encodeBlobChunkHead(
            { requestMsgId: sender.requestMsgId, chunkId: chunk.chunkId, last: chunk.last },
            chunk.data.length,
          ),
          chunk.data,
        ]);
        metrics.blobBytesOut += chunk.data.length;
        progressed = true;
      }
    }
  }
}
