// The fluent builder of `DomusConfig`: one setter per field, validated once by `build()`.
import { DEFAULTS } from './defaults.js';
import type { BlobWindowConfig, DomusConfig } from './domus-config.js';
import { asRecord, validateDomusConfig } from './validation.js';

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

  /** Sets `maxInFlightTotal` (1..1048576). */
  maxInFlightTotal(value: number): this {
    return this.#set('maxInFlightTotal', value);
  }

  /** Sets `maxQueuedBytesTotal` (1..64 GiB). */
  maxQueuedBytesTotal(value: number): this {
    return this.#set('maxQueuedBytesTotal', value);
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

  /** Sets `maxRequestDeadlineMs` (1..300000). */
  maxRequestDeadlineMs(value: number): this {
    return this.#set('maxRequestDeadlineMs', value);
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

  /** Sets `drainTimeoutMs` (1..300000). */
  drainTimeoutMs(value: number): this {
    return this.#set('drainTimeoutMs', value);
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
