// One authenticated connection to a peer: frame decoding, coalesced writes, keepalive, close.
import type { Duplex } from 'node:stream';
import { quotePeerText } from '../logger.js';
import { AureliaError, ErrorId } from '../errors.js';
import type { TransportKind } from '../addr.js';
import { FrameDecoder } from '../wire/decoder.js';
import { DOMUS_CONFIG_MAX } from '../config.js';
import {
  ControlType,
  FrameBatch,
  HEADER_LEN,
  describeFrame,
  type Frame,
  type FrameHeader,
  type OutboundFrame,
} from '../wire/frame.js';
import { decodeClose, encodeClose, encodeError, encodeKeepalive } from '../wire/control.js';

/** An authenticated byte stream and who is at the other end (produced by the transport layer). */
export interface CallisConnection {
  readonly socket: Duplex & { destroyed: boolean };
  /** The peer's certificate identity. */
  readonly identity: string;
  /** The peer's address as a string (`tls://ip:port`, `unix:///path`). */
  readonly remoteAddress: string;
  readonly transport: TransportKind;
}

/** What a callis reports to its owner. */
export interface CallisHandler {
  /** A decoded frame (control or message), in stream order. */
  onFrame(callis: Callis, frame: Frame): void;
  /**
   * The callis is about to write: append message frames to `batch` while `batch.byteLength` is
   * below `budget`. Control frames queued with `sendControl` are already in the batch.
   */
  onWritable(callis: Callis, batch: FrameBatch, budget: number): void;
  /** The callis closed; called exactly once, with why. */
  onClosed(callis: Callis, reason: AureliaError): void;
  /**
   * A message frame announced a payload over the current `maxPayloadLen` but within the
   * protocol's hard maximum (`DOMUS_CONFIG_MAX.maxPayloadLen`): its bytes are being skipped, and
   * the handler answers it (a live decrease of `maxPayloadLen` must not turn a message already
   * on its way into a protocol violation). A handler without this method gets the frame treated
   * as a protocol violation, as one over the hard maximum always is.
   */
  onOversizeMessage?(callis: Callis, header: FrameHeader, maxPayloadLen: number): void;
}

/** Counters one callis keeps for metrics. */
export interface CallisCounters {
  bytesIn: number;
  bytesOut: number;
  framesIn: number;
  framesOut: number;
}

/** Live settings a callis reads. */
export interface CallisSettings {
  maxPayloadLen(): number;
  keepaliveIntervalMs(): number;
  /** The socket's buffer filled up: writing pauses until it drains. */
  onBackpressure?(callis: Callis): void;
  /**
   * `maxDecisionBacklogBytesPerPeer`: bytes of control frames an accepted callis may have queued
   * or unsent in its socket before it stops reading the peer (absent: no bound).
   */
  decisionBacklogBytes?(): number;
  /** The callis stopped reading its socket (a peer budget ran out, or its answers back up). */
  onReadsPaused?(callis: Callis): void;
  /** Domus-wide byte counters the callis adds its traffic to. */
  readonly traffic?: { bytesIn: number; bytesOut: number };
  /**
   * The domus's set of live callis: a callis is in it from construction until it closes, so a
   * live configuration update can reach every callis (keepalive timers, payload limit).
   */
  readonly live?: Set<Callis>;
}

/** Bytes gathered into one write before yielding to the event loop. */
const FLUSH_BUDGET_BYTES = 512 * 1024;
/** Bytes a callis lets queue in its socket before it stops taking messages. */
const SOCKET_BUFFER_BYTES = 1024 * 1024;
const HALF_OPEN_FACTOR = 3;

/**
 * Why a callis is not reading its socket; it reads again once no reason is left. Only accepted
 * callis pause: a dialed callis always reads, so two domus never wait on each other's reads.
 */
export const ReadPause = Object.freeze({
  /** The peer session holds as many undecided messages or bytes as its budget allows. */
  Budget: 1,
  /** Our answers to the peer are backed up beyond `maxDecisionBacklogBytesPerPeer`. */
  Backlog: 2,
});

/** A frame decoded while reading was paused, handed over when reading resumes. */
type Parked = { frame: Frame } | { oversize: FrameHeader; limit: number };

/**
 * Owns one socket. Reads are decoded into frames and handed to the handler; writes are coalesced:
 * whatever is queued during one event-loop turn leaves in a single `write`, A1 control frames
 * first. When the socket signals backpressure the callis stops asking for messages until `drain`.
 * A keepalive goes out after one quiet interval; after three intervals with nothing received the
 * callis is declared half-open and closed with `ConnectionLost`.
 */
// Errors that close a callis because the peer reported a problem with our own frames: the peer
// did not break the protocol, so nobody counts them as its violation.
const peerReports = new WeakSet<AureliaError>();

/**
 * The error to close `callis` with when the peer sent an `error` frame of `kind` about the
 * callis itself (no message id): it keeps the peer's kind for whoever fails on it.
 */
export function reportedByPeer(callis: Callis, kind: ErrorId, message: string): AureliaError {
  const err = new AureliaError(kind, `${callis.describe()} reported: ${quotePeerText(message)}`);
  peerReports.add(err);
  return err;
}

/**
 * True when `err` closed a callis because the peer broke the wire protocol (a malformed or
 * unexpected frame, an unknown version, a broken blob stream rule), as opposed to the peer
 * reporting such a problem about our frames (`reportedByPeer`). Counted in
 * `protocolViolations`.
 */
export function isPeerViolation(err: AureliaError): boolean {
  switch (err.kind) {
    case ErrorId.ProtocolViolation:
    case ErrorId.UnsupportedVersion:
    case ErrorId.BlobAckWindowExceeded:
    case ErrorId.BlobStreamNotFound:
    case ErrorId.BlobStreamOutOfOrder:
    case ErrorId.BlobStreamMissingChunk:
      return !peerReports.has(err);
    default:
      return false;
  }
}

export class Callis {
  readonly counters: CallisCounters = { bytesIn: 0, bytesOut: 0, framesIn: 0, framesOut: 0 };
  private readonly decoder: FrameDecoder;
  private readonly control: OutboundFrame[] = [];
  private readonly batch = new FrameBatch();
  private handler: CallisHandler | undefined;
  private held: Frame[] | undefined;
  /** `ReadPause` bits in force; 0 while reading. */
  private pausedFor = 0;
  /** Frames of the chunk being decoded when reading paused, in order. */
  private parked: Parked[] = [];
  private parkedHead = 0;
  /** Bytes of control frames queued since the last flush. */
  private controlBytes = 0;

  /**
   * @internal Bytes this callis holds unsent: control frames queued for the next flush and the
   * socket's own write buffer (what the kernel has not taken yet).
   */
  get unsentBytes(): number {
    return this.controlBytes + this.connection.socket.writableLength;
  }
  private flushScheduled = false;
  private blocked = false;
  private closing = false;
  private closedReason: AureliaError | undefined;
  private peerSaidGoodbye = false;
  private lastReceivedAt = Date.now();
  private lastWrittenAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);
  private readonly onDrain = (): void => {
    this.blocked = false;
    this.resumeReads(ReadPause.Backlog);
    this.scheduleFlush();
  };
  private readonly onError = (err: Error): void => {
    this.fail(new AureliaError(ErrorId.ConnectionLost, `${this.describe()}: ${err.message}`));
  };
  private readonly onEnd = (): void => {
    this.fail(new AureliaError(ErrorId.ConnectionLost, `${this.describe()} closed by the peer`));
  };

  constructor(
    readonly connection: CallisConnection,
    private readonly settings: CallisSettings,
    /** `outbound` when this domus dialed, `inbound` when it accepted. */
    readonly role: 'outbound' | 'inbound',
  ) {
    this.decoder = new FrameDecoder({
      maxPayloadLen: settings.maxPayloadLen(),
      maxDiscardLen: DOMUS_CONFIG_MAX.maxPayloadLen,
      onFrame: (frame) => this.deliver(frame),
      onOversize: (header) => this.deliverOversize(header),
    });
    settings.live?.add(this);
    // Reading starts in setHandler: attaching 'data' now would let frames in before a handler.
    const socket = connection.socket;
    socket.on('drain', this.onDrain);
    socket.on('error', this.onError);
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    this.armTimer();
  }

  /** The peer's certificate identity. */
  get identity(): string {
    return this.connection.identity;
  }

  /** True once closed (or closing). */
  get closed(): boolean {
    return this.closing || this.closedReason !== undefined;
  }

  /** True while the socket has more buffered than it wants: the owner should hold messages. */
  get congested(): boolean {
    return this.blocked;
  }

  /**
   * Sets who receives frames and is asked for messages; frames wait until one is set. Frames
   * held by `holdFrames` are handed to the new handler first, in order.
   */
  setHandler(handler: CallisHandler): void {
    const first = this.handler === undefined;
    this.handler = handler;
    if (first && !this.closed) this.connection.socket.on('data', this.onData);
    const held = this.held;
    this.held = undefined;
    if (held && this.pausedFor !== 0) {
      // The new handler already stopped reading (a session with an exhausted budget): they wait.
      for (const frame of held) this.parked.push({ frame });
    } else if (held) {
      for (const frame of held) {
        if (this.closedReason) break;
        try {
          handler.onFrame(this, frame);
        } catch (err) {
          this.abort(asProtocolError(err, this.describe()));
          break;
        }
      }
    }
    if (this.control.length > 0) this.scheduleFlush();
  }

  /**
   * Queues frames that arrive from now on until the next `setHandler`: the hello exchange ends
   * with this, so frames the peer sent right after its hello wait for the real handler.
   */
  holdFrames(): void {
    this.held ??= [];
  }

  /** Applies a new maximum payload length to frames not yet started. */
  setMaxPayloadLen(maxPayloadLen: number): void {
    this.decoder.setMaxPayloadLen(maxPayloadLen);
  }

  /**
   * Re-arms the keepalive timer with the current `keepaliveIntervalMs` (after a live update), so
   * a shorter interval takes effect now rather than when the timer armed with the old one fires.
   */
  rearmKeepalive(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.armTimer();
  }

  /**
   * Queues an A1 control frame; it leaves before any message in the next flush. On an accepted
   * callis, reading pauses while queued and unsent control bytes exceed the decision backlog
   * bound, so a peer that does not read its answers cannot make them grow.
   */
  sendControl(frame: OutboundFrame): void {
    if (this.closed) return;
    this.control.push(frame);
    this.controlBytes += HEADER_LEN + frame.payload.length;
    const bound = this.backlogBound();
    if (this.controlBytes + this.connection.socket.writableLength >= bound) {
      this.pauseReads(ReadPause.Backlog);
    }
    this.scheduleFlush();
  }

  /**
   * Stops reading the socket for `reason` (a `ReadPause` bit). Frames already decoded from the
   * current chunk are kept, in order, and handed over when reading resumes. While paused for
   * `Budget` the half-open check is suspended (the silence is ours, not the peer's); a peer that
   * leaves our answers unread (`Backlog`) for three keepalive intervals is dropped as half-open.
   */
  pauseReads(reason: number): void {
    if (this.closed || (this.pausedFor & reason) !== 0) return;
    const wasReading = this.pausedFor === 0;
    this.pausedFor |= reason;
    if (!wasReading) return;
    this.connection.socket.pause();
    this.settings.onReadsPaused?.(this);
  }

  /** Lifts `reason`; once none is left, hands over parked frames and reads the socket again. */
  resumeReads(reason: number): void {
    if ((this.pausedFor & reason) === 0) return;
    this.pausedFor &= ~reason;
    if (this.pausedFor !== 0 || this.closed) return;
    this.lastReceivedAt = Date.now();
    this.releaseParked();
    if (this.pausedFor === 0 && !this.closed) this.connection.socket.resume();
  }

  /** True while reading is paused for any reason. */
  get readsPaused(): boolean {
    return this.pausedFor !== 0;
  }

  /** Asks for a flush on this event-loop turn: the handler will be offered room for messages. */
  scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(this.flush);
  }

  /**
   * Closes the callis. With `graceful`, queued control frames and a `close` frame are written
   * first and the socket is ended; otherwise it is destroyed at once. The handler's `onClosed`
   * runs once, with `reason`.
   */
  close(reason: AureliaError, graceful = false): Promise<void> {
    const gone = this.whenSocketClosed();
    if (this.closed) return gone;
    if (graceful && !this.connection.socket.destroyed) {
      this.closing = true;
      const batch = this.batch;
      batch.clear();
      for (const frame of this.control) batch.add(frame);
      this.control.length = 0;
      batch.add(encodeClose(reason.message.slice(0, 200)));
      const socket = this.connection.socket;
      const bytes = batch.take();
      this.counters.bytesOut += bytes.length;
      if (this.settings.traffic) this.settings.traffic.bytesOut += bytes.length;
      socket.end(bytes);
      // A peer that never reads must not keep the socket: bound the goodbye.
      const guard = setTimeout(() => socket.destroy(), 1000);
      guard.unref();
      socket.once('close', () => clearTimeout(guard));
      this.finish(reason);
      return gone;
    }
    this.finish(reason);
    this.connection.socket.destroy();
    return gone;
  }

  /**
   * True when the callis ended because the peer said goodbye with a `close` frame (for example
   * while shutting down): an orderly end, reported as a disconnect event, not as an error.
   */
  get closedByPeer(): boolean {
    return this.peerSaidGoodbye;
  }

  /** Handles the peer's `close` frame: closes with `ConnectionLost` carrying the peer's reason. */
  closeByPeer(frame: Frame): void {
    if (this.closed) return;
    this.peerSaidGoodbye = true;
    const text = decodeClose(frame);
    const reason = text ? quotePeerText(text) : 'no reason given';
    void this.close(
      new AureliaError(
        ErrorId.ConnectionLost,
        `${this.describe()} was closed by the peer: ${reason}`,
      ),
    );
  }

  /** Resolves once the socket is fully closed. */
  private whenSocketClosed(): Promise<void> {
    const socket = this.connection.socket as Duplex & { closed?: boolean };
    if (socket.closed) return Promise.resolve();
    return new Promise((resolve) => socket.once('close', () => resolve()));
  }

  /**
   * Reports a protocol violation to the peer (best effort) and closes the callis with it.
   * `UnsupportedVersion` is reported with its own error id.
   */
  abort(err: AureliaError): void {
    if (this.closed) return;
    const socket = this.connection.socket;
    try {
      const batch = this.batch;
      batch.clear();
      batch.add(
        encodeError({ errorId: err.kind, message: err.message.slice(0, 1000), peerMsgId: 0 }),
      );
      socket.end(batch.take());
    } catch {
      // The peer is being dropped; failing to tell it why changes nothing.
    }
    this.finish(err);
    const guard = setTimeout(() => socket.destroy(), 200);
    guard.unref();
    socket.once('close', () => clearTimeout(guard));
  }

  describe(): string {
    return `${this.role} callis ${this.role === 'outbound' ? 'to' : 'from'} ${this.connection.identity} (${this.connection.remoteAddress})`;
  }

  private receive(chunk: Buffer): void {
    this.lastReceivedAt = Date.now();
    this.counters.bytesIn += chunk.length;
    if (this.settings.traffic) this.settings.traffic.bytesIn += chunk.length;
    try {
      this.decoder.push(chunk);
    } catch (err) {
      this.abort(asProtocolError(err, this.describe()));
    }
  }

  private deliver(frame: Frame): void {
    if (this.closedReason) return;
    this.counters.framesIn++;
    if (frame.msgType === ControlType.Keepalive) return;
    if (this.held) {
      this.held.push(frame);
      return;
    }
    if (!this.handler) {
      throw new AureliaError(ErrorId.ProtocolViolation, `${this.describe()}: frame before hello`);
    }
    if (this.pausedFor !== 0) {
      this.parked.push({ frame });
      return;
    }
    this.handler.onFrame(this, frame);
  }

  /** Hands parked frames to the handler, in order, until they run out or reading pauses again. */
  private releaseParked(): void {
    const parked = this.parked;
    const handler = this.handler;
    if (!handler) return;
    while (this.pausedFor === 0 && !this.closedReason && this.parkedHead < parked.length) {
      const item = parked[this.parkedHead++];
      try {
        if ('frame' in item) handler.onFrame(this, item.frame);
        else handler.onOversizeMessage?.(this, item.oversize, item.limit);
      } catch (err) {
        this.abort(asProtocolError(err, this.describe()));
        return;
      }
    }
    if (this.parkedHead >= parked.length) {
      parked.length = 0;
      this.parkedHead = 0;
    }
  }

  /**
   * After a flush: keeps reading paused while the socket holds more unsent bytes than the
   * decision backlog bound and is waiting for 'drain' (which lifts the pause), else resumes.
   */
  private checkBacklog(): void {
    const socket = this.connection.socket;
    if (socket.writableNeedDrain && socket.writableLength >= this.backlogBound()) {
      this.pauseReads(ReadPause.Backlog);
    } else {
      this.resumeReads(ReadPause.Backlog);
    }
  }

  /** The decision backlog bound: accepted callis only (a dialed one always reads). */
  private backlogBound(): number {
    if (this.role !== 'inbound') return Infinity;
    return this.settings.decisionBacklogBytes?.() ?? Infinity;
  }

  private deliverOversize(header: FrameHeader): void {
    if (this.closedReason) return;
    const handler = this.handler;
    const limit = this.decoder.maxPayloadLen;
    if (this.held || handler?.onOversizeMessage === undefined) {
      throw new AureliaError(
        ErrorId.ProtocolViolation,
        `${this.describe()}: ${describeFrame(header.msgType, header.peerMsgId)}: payload length ${header.payloadLen} exceeds maxPayloadLen ${limit}`,
      );
    }
    this.counters.framesIn++;
    if (this.pausedFor !== 0) {
      this.parked.push({ oversize: header, limit });
      return;
    }
    handler.onOversizeMessage(this, header, limit);
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.closed) return;
    const batch = this.batch;
    batch.clear();
    for (const frame of this.control) batch.add(frame);
    this.control.length = 0;
    this.controlBytes = 0;
    if (!this.blocked && this.handler) this.handler.onWritable(this, batch, FLUSH_BUDGET_BYTES);
    if (batch.frameCount === 0) {
      this.checkBacklog();
      return;
    }
    this.counters.framesOut += batch.frameCount;
    const bytes = batch.take();
    this.counters.bytesOut += bytes.length;
    if (this.settings.traffic) this.settings.traffic.bytesOut += bytes.length;
    this.lastWrittenAt = Date.now();
    const socket = this.connection.socket;
    socket.write(bytes);
    this.checkBacklog();
    // Keep up to SOCKET_BUFFER_BYTES queued in the socket so the kernel never waits for us; past
    // that, hold messages until 'drain' (write() has returned false by then, so 'drain' comes).
    if (socket.writableLength >= SOCKET_BUFFER_BYTES) {
      this.blocked = true;
      this.settings.onBackpressure?.(this);
    } else if (this.handler && bytes.length >= FLUSH_BUDGET_BYTES) this.scheduleFlush();
  };

  private armTimer(): void {
    if (this.closed) return;
    const interval = this.settings.keepaliveIntervalMs();
    const now = Date.now();
    const nextKeepalive = this.lastWrittenAt + interval;
    const halfOpenAt = this.lastReceivedAt + HALF_OPEN_FACTOR * interval;
    const at = Math.min(nextKeepalive, halfOpenAt);
    this.timer = setTimeout(this.onTimer, Math.max(1, at - now));
    this.timer.unref();
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    if (this.closed) return;
    const interval = this.settings.keepaliveIntervalMs();
    const now = Date.now();
    // Paused for the peer's budget, the silence is ours; paused because the peer does not read
    // our answers, it is the peer's, and a peer gone silent is still dropped.
    const silenceIsOurs = (this.pausedFor & ReadPause.Budget) !== 0;
    if (!silenceIsOurs && now - this.lastReceivedAt >= HALF_OPEN_FACTOR * interval) {
      this.close(
        new AureliaError(
          ErrorId.ConnectionLost,
          `${this.describe()} is half-open: nothing received for ${now - this.lastReceivedAt} ms`,
        ),
      );
      return;
    }
    if (now - this.lastWrittenAt >= interval) {
      this.control.push(encodeKeepalive());
      this.scheduleFlush();
      this.lastWrittenAt = now;
    }
    this.armTimer();
  };

  private fail(reason: AureliaError): void {
    if (this.closedReason) return;
    this.finish(reason);
    this.connection.socket.destroy();
  }

  private finish(reason: AureliaError): void {
    if (this.closedReason) return;
    this.closedReason = reason;
    this.closing = true;
    this.settings.live?.delete(this);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const socket = this.connection.socket;
    socket.off('data', this.onData);
    socket.off('drain', this.onDrain);
    socket.off('end', this.onEnd);
    socket.off('close', this.onEnd);
    // Keep an error listener: a late socket error must not become an uncaught exception.
    socket.off('error', this.onError);
    socket.on('error', ignore);
    this.control.length = 0;
    this.parked.length = 0;
    this.parkedHead = 0;
    this.handler?.onClosed(this, reason);
  }
}

function ignore(): void {}

function asProtocolError(err: unknown, where: string): AureliaError {
  return AureliaError.is(err)
    ? err
    : new AureliaError(ErrorId.ProtocolViolation, `${where}: ${String(err)}`, { cause: err });
}
