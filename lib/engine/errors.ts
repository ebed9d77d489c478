// The single error type of the package and its stable numeric identifiers.
import { inspect, type InspectOptionsStylized } from 'node:util';

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
  /**
   * The listen address is taken: another process listens on the TCP port, or a live listener
   * answers on the Unix socket path. Not a configuration mistake as such: stop the other
   * listener, or listen elsewhere.
   */
  AddressInUse = 27,
  /**
   * The receiving domus is draining (shutting down gracefully) and refused the message before any
   * handler saw it: the message certainly did not run there. Retryable: a balanced route sends it
   * to another replica within its deadline by itself; a caller seeing it may retry elsewhere or
   * once the service is back.
   */
  Draining = 28,
  /**
   * The message was written to a replica that went away (its connection died and it could not be
   * reached again) before deciding it: it may or may not have run there, so it is not repeated
   * anywhere. Check the outcome with the service (or make the operation idempotent) before
   * retrying.
   */
  OutcomeUnknown = 29,
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

  /** The name of `kind` (`'SendTimeout'`), or its number as text for an id this version lacks. */
  get kindName(): string {
    return errorIdName(this.kind) ?? String(this.kind);
  }

  /**
   * What `JSON.stringify` writes: `{ name, kind, errorId, message, cause? }` with `kind` the
   * name (`'SendTimeout'`) and `errorId` the number, so logs and reporting events serialized as
   * JSON keep the message (an `Error`'s own `message` is not enumerable). A cause that is an
   * `Error` is written as `{ name, message }`.
   */
  toJSON(): { name: string; kind: string; errorId: number; message: string; cause?: unknown } {
    const json = {
      name: this.name,
      kind: this.kindName,
      errorId: this.kind,
      message: this.message,
    };
    if (this.cause === undefined) return json;
    const cause =
      this.cause instanceof Error && !(this.cause instanceof AureliaError)
        ? { name: this.cause.name, message: this.cause.message }
        : this.cause;
    return { ...json, cause };
  }

  /**
   * How `util.inspect` and `console.log` show the error (for example in a start-up failure): as
   * Node shows any error, with `kind` by name, `kind: InvalidConfig (22)`, instead of a bare
   * number.
   */
  [inspect.custom](_depth: number, options: InspectOptionsStylized): string {
    const shown = new InspectedAureliaError(this.message, { cause: this.cause });
    if (this.cause === undefined) delete shown.cause;
    Object.defineProperty(shown, 'stack', { value: this.stack, enumerable: false });
    const kind = `${this.kindName} (${this.kind})`;
    Object.defineProperty(shown, 'kind', {
      enumerable: true,
      value: { [inspect.custom]: () => options.stylize(kind, 'special') },
    });
    return inspect(shown, options);
  }

  /** True when `err` is an `AureliaError`, optionally of the given kind. */
  static is(err: unknown, kind?: ErrorId): err is AureliaError {
    return err instanceof AureliaError && (kind === undefined || err.kind === kind);
  }
}

// What `AureliaError`'s custom inspection hands to `util.inspect`: a plain error whose class is
// called AureliaError too (Node prints the class name), without the custom inspection.
const InspectedAureliaError = { AureliaError: class extends Error {} }.AureliaError;
Object.defineProperty(InspectedAureliaError.prototype, 'name', { value: 'AureliaError' });

/** The `DomusClosed` error every part of a shut-down domus answers with. */
export function domusClosedError(): AureliaError {
  return new AureliaError(ErrorId.DomusClosed, 'the domus is shut down');
}
