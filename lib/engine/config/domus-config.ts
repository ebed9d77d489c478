// The shape of a domus configuration: its fields, documented one by one, and a frozen copy.

/**
 * Blob flow control for one transport: bytes per chunk and how many chunks may be in flight
 * without an acknowledgement. A blob callis proposes these values in its hello; the peer agrees
 * on values no larger than proposed.
 */
export interface BlobWindowConfig {
  /** Bytes per blob chunk, 1..`BLOB_CHUNK_SIZE_MAX`. */
  readonly chunkSize: number;
  /** Unacknowledged chunks allowed in flight, 1..`BLOB_ACK_WINDOW_MAX`. */
  readonly ackWindow: number;
}

/**
 * Tuning knobs of one domus. A plain, frozen object: build it with `DomusConfigBuilder`, start
 * from `defaultDomusConfig()`, or check an untyped value with `validateDomusConfig`.
 */
export interface DomusConfig {
  /** Per-peer capacity of the A3 outbound lane; a send past it fails with `LocalQueueFull`. */
  readonly sendQueueSize: number;
  /** One absolute deadline per send, covering connect, queueing, replay and acknowledgement. */
  readonly sendTimeoutMs: number;
  /** Deadline for dialling and authenticating one callis; never more than `sendTimeoutMs`. */
  readonly callisConnectTimeoutMs: number;
  /** How long a request may wait in a full taberna queue before the sender gets `TabernaBusy`. */
  readonly acceptTimeoutMs: number;
  /** Undecided requests a taberna holds before new ones wait for room. */
  readonly tabernaAcceptQueueSize: number;
  /** Keepalive period; a callis with nothing received for three periods is half-open. */
  readonly keepaliveIntervalMs: number;
  /** Delays between reconnect attempts; the last step repeats. */
  readonly reconnectBackoffMs: readonly number[];
  /** Deadline for a TLS handshake over TCP. */
  readonly tcpHandshakeTimeoutMs: number;
  /** Deadline for a TLS handshake over a Unix socket. */
  readonly socketHandshakeTimeoutMs: number;
  /** Concurrent unauthenticated inbound handshakes, all sources together. */
  readonly inboundHandshakeLimitTotal: number;
  /** Concurrent unauthenticated inbound handshakes from one source; never more than the total. */
  readonly inboundHandshakeLimitPerPeer: number;
  /** Callis (primary plus blob) one peer may hold open to this domus at once. */
  readonly maxParallelCallisPerPeer: number;
  /** Blob window proposed on blob callis over TCP. */
  readonly tcpBlobWindow: BlobWindowConfig;
  /** Blob window proposed on blob callis over Unix sockets. */
  readonly socketBlobWindow: BlobWindowConfig;
  /** Bytes of outgoing blob data buffered across all streams before writers see backpressure. */
  readonly blobOutboundBufferBytes: number;
  /** Bytes of incoming blob data buffered across all streams before `BlobBufferFull`. */
  readonly blobInboundBufferBytes: number;
  /** Largest message payload sent or accepted, in bytes. */
  readonly maxPayloadLen: number;
  /** Minimum interval between two repeats of the same rate-limited log line. */
  readonly limitedLogIntervalMs: number;
  /**
   * Messages one remote peer session may have delivered here and not yet decided (queued in a
   * taberna, waiting for room, or in the application's hands); at the limit the domus stops
   * reading that peer's callis until decisions free room.
   */
  readonly maxInFlightPerPeer: number;
  /** Payload bytes of those messages; at the limit that peer's reads pause the same way. */
  readonly maxQueuedBytesPerPeer: number;
  /**
   * Undecided messages every remote peer session together may have delivered here, closed
   * sessions' included: the domus-wide ceiling. At it, every session holding one stops being read
   * until decisions free room; a session holding none still gets one message in.
   */
  readonly maxInFlightTotal: number;
  /** Payload bytes of those messages; at the ceiling reads pause the same way. */
  readonly maxQueuedBytesTotal: number;
  /**
   * Messages one remote peer session may have waiting for room in one full taberna; with that
   * many waiting, the domus stops reading the peer until one of them moves on.
   */
  readonly maxTabernaOverflowPerPeer: number;
  /**
   * Bytes of decisions (acks, error frames) waiting to be written to one peer's callis; past it
   * the domus stops reading that callis until the peer reads its answers.
   */
  readonly maxDecisionBacklogBytesPerPeer: number;
  /**
   * Bytes of `blobInboundBufferBytes` one remote peer session may hold reserved for its streams;
   * a blob accepted past it is refused with `BlobBufferFull`. At least one full blob window.
   */
  readonly maxBlobInboundBytesPerPeer: number;
  /**
   * Longest a request handler here may run for one caller, whatever deadline the caller set (a
   * caller may ask for up to 300 000 ms): the handler's deadline is the earlier of the caller's
   * and this many milliseconds after the handler took the request.
   */
  readonly maxRequestDeadlineMs: number;
  /** Consecutive failed sends that eject a replica of a balanced route. */
  readonly replicaFailuresToEject: number;
  /** How long a replica's first ejection lasts; doubles with each ejection in a row. */
  readonly replicaEjectionMs: number;
  /** Longest ejection of a replica; never less than `replicaEjectionMs`. */
  readonly replicaMaxEjectionMs: number;
  /**
   * How long a draining domus (`drain()`, `shutdown()`) waits for the work it accepted before the
   * drain to finish; what is still undecided then fails with `DomusClosed`.
   */
  readonly drainTimeoutMs: number;
}

/** Names of the integer fields of `DomusConfig` (every field but the backoff and blob windows). */
export type IntegerField = {
  [K in keyof DomusConfig]: DomusConfig[K] extends number ? K : never;
}[keyof DomusConfig];

/** A frozen deep copy of `config`, so neither the caller nor the domus can change it later. */
export function freezeCopy(config: DomusConfig): DomusConfig {
  return Object.freeze({
    ...config,
    reconnectBackoffMs: Object.freeze([...config.reconnectBackoffMs]),
    tcpBlobWindow: Object.freeze({ ...config.tcpBlobWindow }),
    socketBlobWindow: Object.freeze({ ...config.socketBlobWindow }),
  });
}
