// The default value of every configuration field (section 7 of the design).
import { type BlobWindowConfig, type DomusConfig, freezeCopy } from './domus-config.js';
import { MiB } from './limits.js';

/**
 * Default blob windows per transport, chosen with `scripts/blob-rate.mjs` (throughput and CPU per
 * MiB next to a raw TLS copy; see docs/CONFIGURATION.md). This constant is the single place they
 * live.
 */
export const DEFAULT_BLOB_WINDOWS: Readonly<{
  tcp: BlobWindowConfig;
  socket: BlobWindowConfig;
}> = Object.freeze({
  tcp: Object.freeze({ chunkSize: 256 * 1024, ackWindow: 16 }),
  socket: Object.freeze({ chunkSize: 128 * 1024, ackWindow: 16 }),
});

/** The defaults themselves; copy before use (`defaultDomusConfig()` does). */
export const DEFAULTS: DomusConfig = {
  sendQueueSize: 512,
  sendTimeoutMs: 30_000,
  callisConnectTimeoutMs: 15_000,
  acceptTimeoutMs: 5_000,
  tabernaAcceptQueueSize: 2,
  keepaliveIntervalMs: 15_000,
  reconnectBackoffMs: [1_000, 2_000, 4_000],
  tcpHandshakeTimeoutMs: 10_000,
  socketHandshakeTimeoutMs: 5_000,
  inboundHandshakeLimitTotal: 64,
  inboundHandshakeLimitPerPeer: 3,
  maxParallelCallisPerPeer: 8,
  tcpBlobWindow: DEFAULT_BLOB_WINDOWS.tcp,
  socketBlobWindow: DEFAULT_BLOB_WINDOWS.socket,
  blobOutboundBufferBytes: 256 * MiB,
  blobInboundBufferBytes: 256 * MiB,
  maxPayloadLen: 8 * MiB,
  limitedLogIntervalMs: 120_000,
  maxInFlightPerPeer: 1024,
  maxQueuedBytesPerPeer: 64 * MiB,
  maxInFlightTotal: 16_384,
  maxQueuedBytesTotal: 512 * MiB,
  maxTabernaOverflowPerPeer: 128,
  maxDecisionBacklogBytesPerPeer: MiB,
  maxBlobInboundBytesPerPeer: 64 * MiB,
  maxRequestDeadlineMs: 300_000,
  replicaFailuresToEject: 5,
  replicaEjectionMs: 1_000,
  replicaMaxEjectionMs: 30_000,
  drainTimeoutMs: 10_000,
};

/** Every field name of `DomusConfig`, in declaration order. */
export const FIELD_NAMES = Object.freeze(Object.keys(DEFAULTS)) as readonly (keyof DomusConfig)[];

/** Returns a fresh, frozen copy of the default configuration (section 7 of the design). */
export function defaultDomusConfig(): DomusConfig {
  return freezeCopy(DEFAULTS);
}
