// The single error type of the package and its stable numeric identifiers.

/**
 * Stable identifier of every failure mode. The numbers travel on the wire (in `error` frames)
 * and never change meaning between releases, so applications can match on them.
 */
export enum ErrorId {
  UnknownTaberna = 1,
  LocalQueueFull = 2,
  PeerUnavailable = 3,
  RemoteTabernaRejected = 4,
  ConnectionLost = 5,
  PeerRestarted = 6,
  ProtocolViolation = 7,
  UnsupportedVersion = 8,
  EncodeFailure = 9,
  DecodeFailure = 10,
  TabernaBusy = 11,
  SendTimeout = 12,
  BlobCallisWithoutPrimary = 13,
  BlobAckWindowExceeded = 14,
  BlobStreamNotFound = 15,
  BlobStreamOutOfOrder = 16,
  BlobStreamIdleTimeout = 17,
  BlobStreamMissingChunk = 18,
  BlobBufferFull = 19,
  AddressMismatch = 20,
  TabernaAlreadyRegistered = 21,
  InvalidConfig = 22,
  DomusClosed = 23,
  ReceiveTimeout = 24,
  SnapshotNotAvailable = 25,
  TabernaShutdown = 26,
}

/** Returns the name of an error id (`'SendTimeout'`), or `undefined` for a number we do not know. */
export function errorIdName(id: number): string | undefined {
  const name = (ErrorId as unknown as Record<number, string | undefined>)[id];
  return typeof name === 'string' ? name : undefined;
}

/** True when `id` is a known `ErrorId` value (used when decoding a peer's `error` frame). */
export function isErrorId(id: number): id is ErrorId {
  return errorIdName(id) !== undefined;
}

/**
 * The one error class thrown or rejected by every Aurelia API. Match on `kind`; `message` is for
 * humans and names the problem (never key material).
 */
export class AureliaError extends Error {
  override readonly name = 'AureliaError';

  constructor(
    readonly kind: ErrorId,
    message?: string,
    options?: { cause?: unknown },
  ) {
    super(message ?? errorIdName(kind) ?? `error ${kind}`, options);
  }

  /** Short form for logs: `SendTimeout: no acknowledgement within 30000 ms`. */
  override toString(): string {
    return `${errorIdName(this.kind) ?? this.kind}: ${this.message}`;
  }

  /** True when `err` is an `AureliaError`, optionally of the given kind. */
  static is(err: unknown, kind?: ErrorId): err is AureliaError {
    return err instanceof AureliaError && (kind === undefined || err.kind === kind);
  }
}
