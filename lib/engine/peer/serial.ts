// Serial arithmetic over u32 message ids (RFC 1982 style): the ring 1..2^32-1, with 0 meaning "none".

/**
 * A message id as carried in a frame header's `peerMsgId`: an integer in 1..`MAX_MESSAGE_ID`.
 * `NO_MESSAGE_ID` (0) is reserved for "none" (an unassigned id, or no id seen yet).
 */
export type MessageId = number;

/** The reserved id meaning "none": never assigned to a message. */
export const NO_MESSAGE_ID: MessageId = 0;

/** The largest message id; the id after it is 1. */
export const MAX_MESSAGE_ID: MessageId = 0xffff_ffff;

/** Number of usable ids on the ring (1..MAX_MESSAGE_ID). Odd, so no two ids are ambiguous. */
const RING_SIZE = MAX_MESSAGE_ID;

/**
 * Largest forward distance for which `idAfter` answers "after": ids further apart than this in
 * flight at once cannot be ordered. A sender keeps far fewer ids than this unsettled.
 */
export const SERIAL_WINDOW = 2 ** 31 - 1;

/** True when `value` is a usable message id: an integer in 1..`MAX_MESSAGE_ID` (0 is not). */
export function isMessageId(value: unknown): value is MessageId {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= MAX_MESSAGE_ID;
}

/**
 * Returns the id that follows `id`: `id + 1`, except that the id after `MAX_MESSAGE_ID` is 1 and
 * the id after `NO_MESSAGE_ID` is 1 (so a counter starting at 0 hands out 1 first). `id` must be
 * an integer in 0..`MAX_MESSAGE_ID`; the function does not check, as it runs once per message.
 */
export function nextId(id: MessageId): MessageId {
  return id >= MAX_MESSAGE_ID ? 1 : id + 1;
}

/**
 * Number of `nextId` steps from `from` to `to` (0 when equal, at most 2^32 - 2). Both must be
 * usable ids (1..`MAX_MESSAGE_ID`).
 */
export function idDistance(from: MessageId, to: MessageId): number {
  const d = to - from;
  return d < 0 ? d + RING_SIZE : d;
}

/**
 * True when `a` comes serially after `b`: `a` is 1..`SERIAL_WINDOW` steps ahead of `b` on the
 * ring. For two distinct usable ids exactly one of `idAfter(a, b)` and `idAfter(b, a)` holds, but
 * the answer only reflects the order the ids were assigned in while they are less than
 * `SERIAL_WINDOW` apart. Every usable id is after `NO_MESSAGE_ID`; `NO_MESSAGE_ID` is after nothing.
 */
export function idAfter(a: MessageId, b: MessageId): boolean {
  if (a === NO_MESSAGE_ID) return false;
  if (b === NO_MESSAGE_ID) return true;
  const d = idDistance(b, a);
  return d !== 0 && d <= SERIAL_WINDOW;
}

/**
 * Orders two ids serially for `Array.prototype.sort`: negative when `a` comes before `b`, 0 when
 * equal, positive when after. Meaningful only for ids within `SERIAL_WINDOW` of each other.
 */
export function compareIds(a: MessageId, b: MessageId): number {
  if (a === b) return 0;
  return idAfter(a, b) ? 1 : -1;
}
