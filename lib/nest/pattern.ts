// How Nest message patterns become taberna ids: normalization and the documented stable hash.
import 'reflect-metadata';
import { createHash } from 'node:crypto';
import { transformPatternToRoute } from '@nestjs/microservices/utils/index.js';
import { AureliaError, ErrorId } from '../engine/errors.js';
import { isTabernaId, tabernaIdText, type TabernaId } from '../engine/ids.js';
import { RESERVED_TABERNA_ID_BASE } from '../engine/services/request-reply-wire.js';

/** Prefix hashed before the normalized pattern, so the ids are Aurelia's own (version 1). */
export const PATTERN_HASH_PREFIX = 'aurelia-mesh/nest-pattern/v1\0';

/** A Nest pattern (string, number or object) or an explicit taberna id. */
export type AureliaPattern = string | number | Record<string, unknown> | bigint;

/**
 * Nest's normalized form of `pattern` (object keys sorted, as `@MessagePattern` registers it).
 * Throws `AureliaError(InvalidConfig)` for a pattern Nest cannot normalize (null, undefined,
 * a boolean, or one too deep or wide).
 */
export function normalizePattern(pattern: unknown): string {
  const route: unknown = transformPatternToRoute(pattern as never);
  if (typeof route !== 'string' || route === '[MAX_DEPTH_REACHED]' || route === '[TOO_MANY_KEYS]') {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `pattern ${describe(pattern)} cannot be normalized (use a string, a number or a plain object of at most 20 keys and depth 5)`,
    );
  }
  return route;
}

/**
 * The taberna id of a normalized pattern: the first 8 bytes (big-endian) of
 * SHA-256(`PATTERN_HASH_PREFIX` + normalized pattern, UTF-8). An id that would fall in the
 * reserved range (the top 256 ids) has its top bit cleared. Stable across processes, versions
 * and platforms, so services agree on ids without coordination.
 */
export function tabernaIdForRoute(route: string): TabernaId {
  const known = routeIds.get(route);
  if (known !== undefined) return known;
  if (routeIds.size >= ROUTE_ID_CACHE_SIZE) routeIds.clear();
  const id = hashRoute(route);
  routeIds.set(route, id);
  idRoutes.delete(id);
  idRoutes.set(id, route);
  if (idRoutes.size > PATTERN_MEMORY) idRoutes.delete(idRoutes.keys().next().value!);
  return id;
}

/**
 * The normalized pattern whose hash is `id`, when this process hashed it recently (every
 * `ClientAurelia` send and every handler registration hashes its pattern just before use);
 * `undefined` otherwise. Prefix routes match on it, since an id cannot be turned back into text.
 */
export function patternForId(id: TabernaId): string | undefined {
  return idRoutes.get(id);
}

// Clients hash the same few patterns on every send: remember the ids of recent routes.
const ROUTE_ID_CACHE_SIZE = 4096;
const routeIds = new Map<string, TabernaId>();
// The reverse, kept longer than the forward cache (which re-hashes, and so refreshes this, after
// it is cleared), oldest hashed first out: a pattern hashed for a send is still here when that
// send is routed.
const PATTERN_MEMORY = 4 * ROUTE_ID_CACHE_SIZE;
const idRoutes = new Map<TabernaId, string>();

function hashRoute(route: string): TabernaId {
  const digest = createHash('sha256')
    .update(PATTERN_HASH_PREFIX + route, 'utf8')
    .digest();
  return outsideReservedRange(digest.readBigUInt64BE(0));
}

/**
 * @internal The hash-to-id step after the digest: a u64 in the reserved range (the top 256 ids)
 * has its top bit cleared, any other is kept. Exported for tests: no practical input hashes there.
 */
export function outsideReservedRange(id: TabernaId): TabernaId {
  return id >= RESERVED_TABERNA_ID_BASE ? id - (1n << 63n) : id;
}

/**
 * The taberna id a pattern addresses: a bigint is the id itself (checked to be a u64 outside the
 * reserved range), anything else is normalized and hashed (`tabernaIdForRoute`). Throws
 * `AureliaError(InvalidConfig)` naming the pattern when it is neither.
 */
export function tabernaIdForPattern(pattern: AureliaPattern | unknown): TabernaId {
  if (typeof pattern === 'bigint') return checkExplicitId(pattern);
  // Nest's route of a string is the string itself: a known one skips the normalizer.
  if (typeof pattern === 'string') {
    const known = routeIds.get(pattern);
    if (known !== undefined) return known;
  }
  return tabernaIdForRoute(normalizePattern(pattern));
}

/**
 * Checks an explicit taberna id: a u64 below the reserved range. Throws
 * `AureliaError(InvalidConfig)` otherwise.
 */
export function checkExplicitId(id: bigint): TabernaId {
  if (!isTabernaId(id) || id >= RESERVED_TABERNA_ID_BASE) {
    const shown = isTabernaId(id) ? tabernaIdText(id) : `${id}n`;
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `taberna id ${shown} is not a u64 below the reserved range ` +
        `(${tabernaIdText(RESERVED_TABERNA_ID_BASE)} and up); choose a smaller id`,
    );
  }
  return id;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || value === undefined || typeof value !== 'object') return String(value);
  return 'object';
}
