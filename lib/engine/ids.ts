// Identifier types and the message-type ranges that decide a message's priority class.
import { AureliaError, ErrorId } from './errors.js';

/** Identifier of a taberna: an unsigned 64-bit integer. */
export type TabernaId = bigint;

/** Message type discriminator on the wire: an unsigned 32-bit integer. */
export type MessageType = number;

/** Last message type of the A1 transport-control range. */
export const A1_MESSAGE_TYPE_MAX: MessageType = 0xffff;
/** First message type of the A2 service range. */
export const A2_MESSAGE_TYPE_BASE: MessageType = 0x1_0000;
/** Last message type of the A2 service range. */
export const A2_MESSAGE_TYPE_MAX: MessageType = 0xff_ffff;
/** First message type of the A3 application range. */
export const A3_MESSAGE_TYPE_BASE: MessageType = 0x100_0000;
/** Largest offset `a3MessageType` accepts: `A3_MESSAGE_TYPE_BASE + offset` still fits in a u32. */
export const A3_MESSAGE_TYPE_MAX_OFFSET = 0xffff_ffff - A3_MESSAGE_TYPE_BASE;

const U64_MAX = (1n << 64n) - 1n;

/** Priority class of a message type on the primary callis: A1 is written before A2, A2 before A3. */
export enum MessagePriorityClass {
  A1 = 1,
  A2 = 2,
  A3 = 3,
}

/**
 * Returns the A3 (application) message type `A3_MESSAGE_TYPE_BASE + offset`.
 * Throws `AureliaError(EncodeFailure)` when `offset` is negative, not an integer or past
 * `A3_MESSAGE_TYPE_MAX_OFFSET`.
 */
export function a3MessageType(offset: number): MessageType {
  const type = tryA3MessageType(offset);
  if (type === undefined) {
    throw new AureliaError(
      ErrorId.EncodeFailure,
      `A3 message type offset ${offset} is outside 0..${A3_MESSAGE_TYPE_MAX_OFFSET}`,
    );
  }
  return type;
}

/** Like `a3MessageType`, but returns `undefined` instead of throwing. */
export function tryA3MessageType(offset: number): MessageType | undefined {
  if (!Number.isInteger(offset) || offset < 0 || offset > A3_MESSAGE_TYPE_MAX_OFFSET) {
    return undefined;
  }
  return A3_MESSAGE_TYPE_BASE + offset;
}

/** True when `value` is a valid u32 message type. */
export function isMessageType(value: number): value is MessageType {
  return Number.isInteger(value) && value >= 0 && value <= 0xffff_ffff;
}

/**
 * Classifies a message type into its priority class. Throws `AureliaError(EncodeFailure)` for a
 * value that is not a u32.
 */
export function classifyMessagePriority(type: MessageType): MessagePriorityClass {
  if (!isMessageType(type)) {
    throw new AureliaError(ErrorId.EncodeFailure, `message type ${type} is not a u32`);
  }
  if (type <= A1_MESSAGE_TYPE_MAX) return MessagePriorityClass.A1;
  if (type <= A2_MESSAGE_TYPE_MAX) return MessagePriorityClass.A2;
  return MessagePriorityClass.A3;
}

/**
 * A taberna id as messages and docs write it: hexadecimal (`0xa41f570ee2576613`, the form
 * `tabernaIdForPattern` ids are documented in), followed by the decimal value for an id below
 * 2^32, which is usually one an application chose (`0x1092 (4242)`).
 */
export function tabernaIdText(id: bigint): string {
  const hex = `0x${id.toString(16)}`;
  return id >= 0n && id < 0x1_0000_0000n ? `${hex} (${id})` : hex;
}

/** True when `value` is a valid taberna id (a bigint in 0..2^64-1). */
export function isTabernaId(value: unknown): value is TabernaId {
  return typeof value === 'bigint' && value >= 0n && value <= U64_MAX;
}

/**
 * Checks that `value` is a taberna id and returns it; otherwise throws `AureliaError` of `kind`
 * naming what was given.
 */
export function assertTabernaId(value: unknown, kind: ErrorId = ErrorId.UnknownTaberna): TabernaId {
  if (!isTabernaId(value)) {
    const shown = typeof value === 'bigint' ? `${value}n` : typeof value;
    throw new AureliaError(kind, `taberna id must be a bigint in 0..2^64-1, got ${shown}`);
  }
  return value;
}
