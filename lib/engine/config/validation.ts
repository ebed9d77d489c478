// Checking an untyped value against every rule of `DomusConfig`: field ranges, unknown fields
// (with a "did you mean" hint) and the rules between fields.
import { inspect } from 'node:util';
import { AureliaError, ErrorId } from '../errors.js';
import { FIELD_NAMES } from './defaults.js';
import { closestName } from './did-you-mean.js';
import {
  type BlobWindowConfig,
  type DomusConfig,
  type IntegerField,
  freezeCopy,
} from './domus-config.js';
import {
  BLOB_ACK_WINDOW_MAX,
  BLOB_CHUNK_SIZE_MAX,
  DOMUS_CONFIG_MAX,
  RECONNECT_BACKOFF_STEPS_MAX,
  RECONNECT_BACKOFF_STEP_MS_MAX,
} from './limits.js';

const WINDOW_FIELD_NAMES: readonly (keyof BlobWindowConfig)[] = ['chunkSize', 'ackWindow'];

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
    maxInFlightTotal: integer('maxInFlightTotal'),
    maxQueuedBytesTotal: integer('maxQueuedBytesTotal'),
    maxTabernaOverflowPerPeer: integer('maxTabernaOverflowPerPeer'),
    maxDecisionBacklogBytesPerPeer: integer('maxDecisionBacklogBytesPerPeer'),
    maxBlobInboundBytesPerPeer: integer('maxBlobInboundBytesPerPeer'),
    maxRequestDeadlineMs: integer('maxRequestDeadlineMs'),
    replicaFailuresToEject: integer('replicaFailuresToEject'),
    replicaEjectionMs: integer('replicaEjectionMs'),
    replicaMaxEjectionMs: integer('replicaMaxEjectionMs'),
    drainTimeoutMs: integer('drainTimeoutMs'),
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
 * `value` as a record, or `AureliaError(InvalidConfig)` saying that `what` must be an object.
 */
export function asRecord(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(`${what} must be an object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
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
