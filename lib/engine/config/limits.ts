// The limits of every configuration field: upper bounds of integers, blob windows and backoff.
import type { IntegerField } from './domus-config.js';

/** One mebibyte, for sizes written in MiB. */
export const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Largest blob chunk a domus proposes or accepts: 1 MiB. */
export const BLOB_CHUNK_SIZE_MAX = MiB;
/** Largest blob acknowledgement window a domus proposes or accepts. */
export const BLOB_ACK_WINDOW_MAX = 4096;
/** Most steps `reconnectBackoffMs` may list. */
export const RECONNECT_BACKOFF_STEPS_MAX = 16;
/** Largest single `reconnectBackoffMs` step. */
export const RECONNECT_BACKOFF_STEP_MS_MAX = 300_000;

/** Upper bound of every integer field of `DomusConfig`; the lower bound is always 1. */
export const DOMUS_CONFIG_MAX: Readonly<Record<IntegerField, number>> = Object.freeze({
  sendQueueSize: 4096,
  sendTimeoutMs: 300_000,
  callisConnectTimeoutMs: 300_000,
  acceptTimeoutMs: 60_000,
  tabernaAcceptQueueSize: 1024,
  keepaliveIntervalMs: 300_000,
  tcpHandshakeTimeoutMs: 300_000,
  socketHandshakeTimeoutMs: 120_000,
  inboundHandshakeLimitTotal: 1024,
  inboundHandshakeLimitPerPeer: 64,
  maxParallelCallisPerPeer: 64,
  blobOutboundBufferBytes: 8 * GiB,
  blobInboundBufferBytes: 8 * GiB,
  maxPayloadLen: 64 * MiB,
  limitedLogIntervalMs: 3_600_000,
  maxInFlightPerPeer: 65_536,
  maxQueuedBytesPerPeer: 8 * GiB,
  maxInFlightTotal: 1_048_576,
  maxQueuedBytesTotal: 64 * GiB,
  maxTabernaOverflowPerPeer: 65_536,
  maxDecisionBacklogBytesPerPeer: 64 * MiB,
  maxBlobInboundBytesPerPeer: 8 * GiB,
  // The longest deadline a REQUEST can carry on the wire (REQUEST_TIMEOUT_MAX_MS).
  maxRequestDeadlineMs: 300_000,
  replicaFailuresToEject: 1000,
  replicaEjectionMs: 3_600_000,
  replicaMaxEjectionMs: 3_600_000,
  drainTimeoutMs: 300_000,
});
