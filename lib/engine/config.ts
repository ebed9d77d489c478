// Domus tuning knobs: their defaults, their limits, and the one validator every entry point uses.
import { inspect } from 'node:util';
import { AureliaError, ErrorId } from './errors.js';

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
  /** Consecutive failed sends that eject a replica of a balanced route. */
  readonly replicaFailuresToEject: number;
  /** How long a replica's first ejection lasts; doubles with each ejection in a row. */
  readonly replicaEjectionMs: number;
  /** Longest ejection of a replica; never less than `replicaEjectionMs`. */
  readonly replicaMaxEjectionMs: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/** Largest blob chunk a domus proposes or accepts: 1 MiB. */
export const BLOB_CHUNK_SIZE_MAX = MiB;
/** Largest blob acknowledgement window a domus proposes or accepts. */
export const BLOB_ACK_WINDOW_MAX = 4096;
/** Most steps `reconnectBackoffMs` may list. */
export const RECONNECT_BACKOFF_STEPS_MAX = 16;
/** Largest single `reconnectBackoffMs` step. */
export const RECONNECT_BACKOFF_STEP_MS_MAX = 300_000;

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

type IntegerField = {
  [K in keyof DomusConfig]: DomusConfig[K] extends number ? K : never;
}[keyof DomusConfig];

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
  maxTabernaOverflowPerPeer: 65_536,
  maxDecisionBacklogBytesPerPeer: 64 * MiB,
  maxBlobInboundBytesPerPeer: 8 * GiB,
  replicaFailuresToEject: 1000,
  replicaEjectionMs: 3_600_000,
  replicaMaxEjectionMs: 3_600_000,
});

const DEFAULTS: DomusConfig = {
  sendQueueSize: 128,
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
  maxTabernaOverflowPerPeer: 128,
  maxDecisionBacklogBytesPerPeer: MiB,
  maxBlobInboundBytesPerPeer: 64 * MiB,
  replicaFailuresToEject: 5,
  replicaEjectionMs: 1_000,
  replicaMaxEjectionMs: 30_000,
};

const FIELD_NAMES = Object.freeze(Object.keys(DEFAULTS)) as readonly (keyof DomusConfig)[];
const WINDOW_FIELD_NAMES: readonly (keyof BlobWindowConfig)[] = ['chunkSize', 'ackWindow'];

/** Returns a fresh, frozen copy of the default configuration (section 7 of the design). */
export function defaultDomusConfig(): DomusConfig {
  return freezeCopy(DEFAULTS);
}

/**
 * Checks that `value` is a complete `DomusConfig` and returns a frozen deep copy of it.
 * Throws `AureliaError(InvalidConfig)` naming the first offending field and its allowed range:
 * a field that is missing, not a safe integer, 0 or negative, over its maximum, an unknown
 * field (a typo such as `sendTimeout`), or a broken cross-field rule (connect timeout over the
 * send timeout, per-peer handshake limit over the total, a blob buffer smaller than one window).
 */
export function validateDomusConfig(value: unknown): DomusConfig {
  const record = asRecord(value, 'DomusConfig');
  rejectUnknownFields(record, FIELD_NAMES, 'config field');
  const integer = (name: IntegerField): number =>
    checkInteger(name, record[name], DOMUS_CONFIG_MAX[name]);
  const config: DomusConfig = {
    sendQueueSize: integer('sendQueueSize'),
    sendTimeoutMs: integer('sendTimeoutMs'),
    callisConnectTimeoutMs: integer('callisConnectTimeoutMs'),
    acceptTimeoutMs: integer('acceptTimeoutMs'),
    tabernaAcceptQueueSize: integer('tabernaAcceptQueueSize'),
    keepaliveIntervalMs: integer('keepaliveIntervalMs'),
    reconnectBackoffMs: checkBackoff(record.reconnectBackoffMs),
    tcpHandshakeTimeoutMs: integer('tcpHandshakeTimeoutMs'),
    socketHandshakeTimeoutMs: integer('socketHandshakeTimeoutMs'),
    inboundHandshakeLimitTotal: integer('inboundHandshakeLimitTotal'),
    inboundHandshakeLimitPerPeer: integer('inboundHandshakeLimitPerPeer'),
    maxParallelCallisPerPeer: integer('maxParallelCallisPerPeer'),
    tcpBlobWindow: checkBlobWindow('tcpBlobWindow', record.tcpBlobWindow),
    socketBlobWindow: checkBlobWindow('socketBlobWindow', record.socketBlobWindow),
    blobOutboundBufferBytes: integer('blobOutboundBufferBytes'),
    blobInboundBufferBytes: integer('blobInboundBufferBytes'),
    maxPayloadLen: integer('maxPayloadLen'),
    limitedLogIntervalMs: integer('limitedLogIntervalMs'),
    maxInFlightPerPeer: integer('maxInFlightPerPeer'),
    maxQueuedBytesPerPeer: integer('maxQueuedBytesPerPeer'),
    maxTabernaOverflowPerPeer: integer('maxTabernaOverflowPerPeer'),
    maxDecisionBacklogBytesPerPeer: integer('maxDecisionBacklogBytesPerPeer'),
    maxBlobInboundBytesPerPeer: integer('maxBlobInboundBytesPerPeer'),
    replicaFailuresToEject: integer('replicaFailuresToEject'),
    replicaEjectionMs: integer('replicaEjectionMs'),
    replicaMaxEjectionMs: integer('replicaMaxEjectionMs'),
  };
  checkCrossFieldRules(config);
  return freezeCopy(config);
}

/**
 * Applies `patch` over `base` and returns the validated, frozen result. A patch field whose value
 * is `undefined` leaves the base value in place, so optional settings can be passed through
 * unchanged. Throws `AureliaError(InvalidConfig)` when either argument is not an object, the patch
 * names an unknown field, or the merged configuration breaks any rule of `validateDomusConfig`.
 */
export function mergeDomusConfig(base: DomusConfig, patch: Partial<DomusConfig>): DomusConfig {
  const baseRecord = asRecord(base, 'base DomusConfig');
  const patchRecord = asRecord(patch, 'DomusConfig patch');
  const merged: Record<string, unknown> = { ...baseRecord };
  for (const [name, value] of Object.entries(patchRecord)) {
    if (value !== undefined) merged[name] = value;
  }
  return validateDomusConfig(merged);
}

type MutableDomusConfig = { -readonly [K in keyof DomusConfig]: DomusConfig[K] };

/**
 * Fluent builder for `DomusConfig`: one chainable setter per field, named like the field, plus
 * `blobWindow` for both transports at once. Setters only record values; `build()` validates once
 * and throws `AureliaError(InvalidConfig)` naming the offending field and its allowed range.
 *
 * @example
 * const config = new DomusConfigBuilder().sendQueueSize(256).sendTimeoutMs(5_000).build();
 */
export class DomusConfigBuilder {
  #values: MutableDomusConfig;

  /** Starts from the defaults of `defaultDomusConfig()`. */
  constructor() {
    this.#values = { ...DEFAULTS };
  }

  /**
   * Starts from an existing configuration (typically a running domus's snapshot). The config is
   * copied and only checked by `build()`; throws `AureliaError(InvalidConfig)` at once when
   * `config` is not an object at all.
   */
  static from(config: DomusConfig): DomusConfigBuilder {
    const record = asRecord(config, 'DomusConfig');
    const builder = new DomusConfigBuilder();
    builder.#values = shallowCopyEach(record) as MutableDomusConfig;
    return builder;
  }

  /** Sets `sendQueueSize` (1..4096). */
  sendQueueSize(value: number): this {
    return this.#set('sendQueueSize', value);
  }

  /** Sets `sendTimeoutMs` (1..300000). */
  sendTimeoutMs(value: number): this {
    return this.#set('sendTimeoutMs', value);
  }

  /** Sets `callisConnectTimeoutMs` (1..300000, at most `sendTimeoutMs`). */
  callisConnectTimeoutMs(value: number): this {
    return this.#set('callisConnectTimeoutMs', value);
  }

  /** Sets `acceptTimeoutMs` (1..60000). */
  acceptTimeoutMs(value: number): this {
    return this.#set('acceptTimeoutMs', value);
  }

  /** Sets `tabernaAcceptQueueSize` (1..1024). */
  tabernaAcceptQueueSize(value: number): this {
    return this.#set('tabernaAcceptQueueSize', value);
  }

  /** Sets `keepaliveIntervalMs` (1..300000). */
  keepaliveIntervalMs(value: number): this {
    return this.#set('keepaliveIntervalMs', value);
  }

  /** Sets `reconnectBackoffMs` (1..16 steps, each 1..300000); the array is copied. */
  reconnectBackoffMs(steps: readonly number[]): this {
    return this.#set('reconnectBackoffMs', steps);
  }

  /** Sets `tcpHandshakeTimeoutMs` (1..300000). */
  tcpHandshakeTimeoutMs(value: number): this {
    return this.#set('tcpHandshakeTimeoutMs', value);
  }

  /** Sets `socketHandshakeTimeoutMs` (1..120000). */
  socketHandshakeTimeoutMs(value: number): this {
    return this.#set('socketHandshakeTimeoutMs', value);
  }

  /** Sets `inboundHandshakeLimitTotal` (1..1024). */
  inboundHandshakeLimitTotal(value: number): this {
    return this.#set('inboundHandshakeLimitTotal', value);
  }

  /** Sets `inboundHandshakeLimitPerPeer` (1..64, at most `inboundHandshakeLimitTotal`). */
  inboundHandshakeLimitPerPeer(value: number): this {
    return this.#set('inboundHandshakeLimitPerPeer', value);
  }

  /** Sets `maxParallelCallisPerPeer` (1..64). */
  maxParallelCallisPerPeer(value: number): this {
    return this.#set('maxParallelCallisPerPeer', value);
  }

  /** Sets the blob window used over TCP; the object is copied. */
  tcpBlobWindow(window: BlobWindowConfig): this {
    return this.#set('tcpBlobWindow', window);
  }

  /** Sets the blob window used over Unix sockets; the object is copied. */
  socketBlobWindow(window: BlobWindowConfig): this {
    return this.#set('socketBlobWindow', window);
  }

  /** Sets the same blob window for both transports (`tcpBlobWindow` and `socketBlobWindow`). */
  blobWindow(window: BlobWindowConfig): this {
    return this.#set('tcpBlobWindow', window).#set('socketBlobWindow', window);
  }

  /** Sets `blobOutboundBufferBytes` (1..8 GiB, at least one full blob window). */
  blobOutboundBufferBytes(value: number): this {
    return this.#set('blobOutboundBufferBytes', value);
  }

  /** Sets `blobInboundBufferBytes` (1..8 GiB, at least one full blob window). */
  blobInboundBufferBytes(value: number): this {
    return this.#set('blobInboundBufferBytes', value);
  }

  /** Sets `maxPayloadLen` (1..64 MiB). */
  maxPayloadLen(value: number): this {
    return this.#set('maxPayloadLen', value);
  }

  /** Sets `limitedLogIntervalMs` (1..3600000). */
  limitedLogIntervalMs(value: number): this {
    return this.#set('limitedLogIntervalMs', value);
  }

  /** Sets `maxInFlightPerPeer` (1..65536). */
  maxInFlightPerPeer(value: number): this {
    return this.#set('maxInFlightPerPeer', value);
  }

  /** Sets `maxQueuedBytesPerPeer` (1..8 GiB). */
  maxQueuedBytesPerPeer(value: number): this {
    return this.#set('maxQueuedBytesPerPeer', value);
  }

  /** Sets `maxTabernaOverflowPerPeer` (1..65536). */
  maxTabernaOverflowPerPeer(value: number): this {
    return this.#set('maxTabernaOverflowPerPeer', value);
  }

  /** Sets `maxDecisionBacklogBytesPerPeer` (1..64 MiB). */
  maxDecisionBacklogBytesPerPeer(value: number): this {
    return this.#set('maxDecisionBacklogBytesPerPeer', value);
  }

  /** Sets `maxBlobInboundBytesPerPeer` (1..8 GiB, at least one full blob window). */
  maxBlobInboundBytesPerPeer(value: number): this {
    return this.#set('maxBlobInboundBytesPerPeer', value);
  }

  /** Sets `replicaFailuresToEject` (1..1000). */
  replicaFailuresToEject(value: number): this {
    return this.#set('replicaFailuresToEject', value);
  }

  /** Sets `replicaEjectionMs` (1..3600000, at most `replicaMaxEjectionMs`). */
  replicaEjectionMs(value: number): this {
    return this.#set('replicaEjectionMs', value);
  }

  /** Sets `replicaMaxEjectionMs` (1..3600000, at least `replicaEjectionMs`). */
  replicaMaxEjectionMs(value: number): this {
    return this.#set('replicaMaxEjectionMs', value);
  }

  /**
   * Validates the recorded values and returns a frozen `DomusConfig`. Throws
   * `AureliaError(InvalidConfig)` naming the first offending field and its allowed range. The
   * builder stays usable: fix the field and call `build()` again.
   */
  build(): DomusConfig {
    return validateDomusConfig(this.#values);
  }

  #set<K extends keyof DomusConfig>(name: K, value: DomusConfig[K]): this {
    this.#values[name] = shallowCopy(value) as DomusConfig[K];
    return this;
  }
}

function checkInteger(name: string, value: unknown, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max) {
    throw invalid(`${name} must be an integer in 1..${max}, got ${describe(value)}`);
  }
  return value;
}

function checkBackoff(value: unknown): readonly number[] {
  const name = 'reconnectBackoffMs';
  if (!Array.isArray(value) || value.length < 1 || value.length > RECONNECT_BACKOFF_STEPS_MAX) {
    throw invalid(
      `${name} must be an array of 1..${RECONNECT_BACKOFF_STEPS_MAX} delays in ms, got ${describe(value)}`,
    );
  }
  // Index by position so holes in a sparse array are reported rather than skipped.
  const steps: number[] = [];
  for (let i = 0; i < value.length; i += 1) {
    steps.push(checkInteger(`${name}[${i}]`, value[i], RECONNECT_BACKOFF_STEP_MS_MAX));
  }
  return steps;
}

function checkBlobWindow(name: string, value: unknown): BlobWindowConfig {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`${name} must be an object { chunkSize, ackWindow }, got ${describe(value)}`);
  }
  const record = value as Record<string, unknown>;
  rejectUnknownFields(record, WINDOW_FIELD_NAMES, `field of ${name}`);
  return {
    chunkSize: checkInteger(`${name}.chunkSize`, record.chunkSize, BLOB_CHUNK_SIZE_MAX),
    ackWindow: checkInteger(`${name}.ackWindow`, record.ackWindow, BLOB_ACK_WINDOW_MAX),
  };
}

function checkCrossFieldRules(config: DomusConfig): void {
  checkNotOver(config, 'callisConnectTimeoutMs', 'sendTimeoutMs');
  checkNotOver(config, 'inboundHandshakeLimitPerPeer', 'inboundHandshakeLimitTotal');
  checkNotOver(config, 'replicaEjectionMs', 'replicaMaxEjectionMs');
  // A buffer smaller than one window could never let a single window of chunks through.
  const windows = [
    ['tcpBlobWindow', config.tcpBlobWindow],
    ['socketBlobWindow', config.socketBlobWindow],
  ] as const;
  for (const buffer of [
    'blobOutboundBufferBytes',
    'blobInboundBufferBytes',
    'maxBlobInboundBytesPerPeer',
  ] as const) {
    for (const [windowName, window] of windows) {
      const needed = window.chunkSize * window.ackWindow;
      if (config[buffer] < needed) {
        throw invalid(
          `${buffer} (${config[buffer]}) must hold one full blob window: at least ${needed} bytes ` +
            `(${windowName}.chunkSize ${window.chunkSize} × ${windowName}.ackWindow ${window.ackWindow})`,
        );
      }
    }
  }
}

function checkNotOver(config: DomusConfig, small: IntegerField, large: IntegerField): void {
  if (config[small] > config[large]) {
    throw invalid(
      `${small} (${config[small]}) must not exceed ${large} (${config[large]}); ` +
        `lower ${small} or raise ${large}`,
    );
  }
}

function rejectUnknownFields(
  record: Record<string, unknown>,
  known: readonly string[],
  what: string,
): void {
  for (const name of Object.keys(record)) {
    if (known.includes(name)) continue;
    const guess = closestName(name, known);
    const hint =
      guess === undefined ? `known fields: ${known.join(', ')}` : `did you mean ${guess}?`;
    throw invalid(`unknown ${what} ${JSON.stringify(name)}; ${hint}`);
  }
}

/**
 * The known name most likely meant by a typo (a prefix match or a small edit distance), or
 * undefined when none is close: for "did you mean" hints.
 */
export function closestName(name: string, known: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestDistance = Math.max(2, Math.floor(name.length / 4)) + 1;
  for (const candidate of known) {
    const candidateLower = candidate.toLowerCase();
    if (lower.length >= 4 && candidateLower.startsWith(lower)) return candidate;
    const distance = editDistance(lower, candidateLower);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i += 1) {
    const current = [i];
    for (let j = 1; j <= b.length; j += 1) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

function asRecord(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`${what} must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

function freezeCopy(config: DomusConfig): DomusConfig {
  return Object.freeze({
    ...config,
    reconnectBackoffMs: Object.freeze([...config.reconnectBackoffMs]),
    tcpBlobWindow: Object.freeze({ ...config.tcpBlobWindow }),
    socketBlobWindow: Object.freeze({ ...config.socketBlobWindow }),
  });
}

/** Copies arrays and plain objects one level deep so later mutation by the caller has no effect. */
function shallowCopy(value: unknown): unknown {
  if (Array.isArray(value)) return [...(value as unknown[])];
  if (typeof value === 'object' && value !== null) return { ...value };
  return value;
}

function shallowCopyEach(record: Record<string, unknown>): Record<string, unknown> {
  const copy: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(record)) copy[name] = shallowCopy(value);
  return copy;
}

function describe(value: unknown): string {
  if (typeof value === 'number') return Object.is(value, -0) ? '-0' : String(value);
  return inspect(value, {
    depth: 1,
    breakLength: Infinity,
    maxArrayLength: 20,
    maxStringLength: 80,
  });
}

function invalid(message: string): AureliaError {
  return new AureliaError(ErrorId.InvalidConfig, message);
}
