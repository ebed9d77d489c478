// Per-send choices: whether the send opens a blob stream after the message.
import { inspect } from 'node:util';
import { AureliaError, ErrorId } from './errors.js';

/** The plain-object form accepted wherever `SendOptions` are: `{ blob?: boolean }`. */
export interface SendOptionsInit {
  /** Open a blob stream after the message is accepted (default `false`). */
  blob?: boolean;
}

/**
 * Options of one send. With `blob: true` the send resolves with a `BlobSender` once the remote
 * taberna accepted the request; otherwise it resolves when the message was accepted. Instances
 * are frozen; use `SendOptions.MESSAGE_ONLY` and `SendOptions.BLOB` rather than constructing.
 */
export class SendOptions {
  /** A plain message send (the default). */
  static readonly MESSAGE_ONLY: SendOptions = new SendOptions({ blob: false });
  /** A message followed by a blob stream. */
  static readonly BLOB: SendOptions = new SendOptions({ blob: true });

  /** Whether the send carries a blob stream. */
  readonly blob: boolean;

  /** Throws `AureliaError(InvalidConfig)` when `blob` is given and is not a boolean. */
  constructor(init: SendOptionsInit = {}) {
    this.blob = blobFlag(init);
    Object.freeze(this);
  }

  /**
   * Normalises what a caller passed (`undefined`, a `SendOptions`, or `{ blob?: boolean }`) to one
   * of the two shared instances. Throws `AureliaError(InvalidConfig)` for anything else.
   */
  static from(options?: SendOptionsInit | SendOptions): SendOptions {
    if (options === undefined) return SendOptions.MESSAGE_ONLY;
    return blobFlag(options) ? SendOptions.BLOB : SendOptions.MESSAGE_ONLY;
  }
}

function blobFlag(init: unknown): boolean {
  if (typeof init !== 'object' || init === null) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `send options must be an object { blob?: boolean }, got ${inspect(init, { depth: 0 })}`,
    );
  }
  const { blob = false } = init as { blob?: unknown };
  if (typeof blob !== 'boolean') {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `send option blob must be a boolean, got ${inspect(blob, { depth: 0 })}`,
    );
  }
  return blob;
}
