// Validation of DnsSrvResolver options: DNS names, id ranges, identities, servers and durations.
import { promises as dns } from 'node:dns';
import { BALANCINGS, type Balancing } from '../balancer/balancer.js';
import { AureliaError, ErrorId } from '../errors.js';
import { assertTabernaId, type TabernaId } from '../ids.js';
import { checkRouteIdentity } from '../resolver.js';
import type { DnsSrvRange, DnsSrvResolverOptions } from './dns-srv-resolver.js';

const DEFAULT_TIMEOUT_MS = 5_000;
const DEFAULT_MIN_TTL_MS = 1_000;
const DEFAULT_MAX_TTL_MS = 60_000;
const DEFAULT_FAILURE_HOLD_MS = 10_000;
const DEFAULT_STALE_IF_ERROR_MS = 30_000;
const DAY_MS = 86_400_000;

/** `DnsSrvResolverOptions` checked, with every default filled in. */
export interface CheckedDnsSrvOptions {
  /** Exact taberna ids and their SRV names. */
  readonly exact: ReadonlyMap<TabernaId, string>;
  /** Id ranges, sorted. */
  readonly ranges: readonly DnsSrvRange[];
  /** SRV name → the identity that must serve it. */
  readonly identities: ReadonlyMap<string, string>;
  readonly servers: readonly string[] | undefined;
  readonly timeoutMs: number;
  readonly cacheTtlMs: number | undefined;
  readonly minTtlMs: number;
  readonly maxTtlMs: number;
  readonly failureHoldMs: number;
  readonly staleIfErrorMs: number;
  readonly random: () => number;
  readonly now: () => number;
  readonly balancing: Balancing;
}

/**
 * Checks `options` and fills in the defaults. Throws `AureliaError(InvalidConfig)` naming the
 * option when an id is not a u64 bigint, a service is not a DNS name, ranges are inverted or
 * overlap, `identities` names a service no entry looks up or gives no valid identity, `servers`
 * is empty or not accepted by `node:dns`, a duration is not an integer in its range, `random` or
 * `now` is not a function, or the balancing is unknown.
 */
export function checkDnsSrvOptions(options: DnsSrvResolverOptions): CheckedDnsSrvOptions {
  const exact = new Map<TabernaId, string>();
  for (const [id, service] of options.services ?? []) {
    assertTabernaId(id, ErrorId.InvalidConfig);
    exact.set(id, checkService(service, `services[${id}]`));
  }
  const ranges = checkRanges(options.ranges ?? []);
  const minTtlMs = integer('minTtlMs', options.minTtlMs ?? DEFAULT_MIN_TTL_MS, 0, DAY_MS);
  const maxTtlMs = integer('maxTtlMs', options.maxTtlMs ?? DEFAULT_MAX_TTL_MS, 0, DAY_MS);
  if (maxTtlMs < minTtlMs) {
    throw invalid(`maxTtlMs (${maxTtlMs}) must be at least minTtlMs (${minTtlMs})`);
  }
  if (options.random !== undefined && typeof options.random !== 'function') {
    throw invalid('random must be a function returning numbers in [0, 1)');
  }
  if (options.now !== undefined && typeof options.now !== 'function') {
    throw invalid('now must be a function returning milliseconds');
  }
  if (options.balancing !== undefined && !BALANCINGS.includes(options.balancing)) {
    throw invalid(
      `balancing must be one of ${BALANCINGS.join(', ')}, got ${String(options.balancing)}`,
    );
  }
  return {
    exact,
    ranges,
    identities: checkIdentities(options.identities, [
      ...exact.values(),
      ...ranges.map((r) => r.service),
    ]),
    servers: checkServers(options.servers),
    timeoutMs: integer('timeoutMs', options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 1, 60_000),
    cacheTtlMs:
      options.cacheTtlMs === undefined
        ? undefined
        : integer('cacheTtlMs', options.cacheTtlMs, 0, DAY_MS),
    minTtlMs,
    maxTtlMs,
    failureHoldMs: integer(
      'failureHoldMs',
      options.failureHoldMs ?? DEFAULT_FAILURE_HOLD_MS,
      0,
      3_600_000,
    ),
    staleIfErrorMs: integer(
      'staleIfErrorMs',
      options.staleIfErrorMs ?? DEFAULT_STALE_IF_ERROR_MS,
      0,
      DAY_MS,
    ),
    random: options.random ?? Math.random,
    now: options.now ?? Date.now,
    balancing: options.balancing ?? 'least-loaded',
  };
}

/** The `identities` option as a map; each name must be one of `named`. */
function checkIdentities(
  identities: Iterable<readonly [string, string]> | undefined,
  named: readonly string[],
): Map<string, string> {
  const checked = new Map<string, string>();
  for (const [service, identity] of identities ?? []) {
    const name = checkService(service, 'identities key');
    if (!named.includes(name)) {
      throw invalid(`identities names ${name}, which no services or ranges entry looks up`);
    }
    try {
      checked.set(name, checkRouteIdentity(identity)!);
    } catch (err) {
      throw invalid(`identities[${name}]: ${(err as Error).message}`);
    }
  }
  return checked;
}

const DNS_LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** A DNS name (a trailing dot dropped); throws `InvalidConfig` naming `field` otherwise. */
export function checkService(service: unknown, field: string): string {
  if (typeof service !== 'string') throw invalid(`${field} must be a DNS name string`);
  const name = service.endsWith('.') ? service.slice(0, -1) : service;
  if (name.length === 0 || name.length > 253 || !name.split('.').every((l) => DNS_LABEL.test(l))) {
    throw invalid(
      `${field} ${JSON.stringify(service)} is not a DNS name ` +
        '(dot-separated labels of letters, digits, "-" and "_", at most 253 characters)',
    );
  }
  return name;
}

/** Id ranges, sorted; throws `InvalidConfig` for an inverted or overlapping one. */
export function checkRanges(ranges: readonly DnsSrvRange[]): DnsSrvRange[] {
  if (!Array.isArray(ranges)) throw invalid('ranges must be an array of { from, to, service }');
  const checked = ranges.map((range, i) => {
    const from = assertTabernaId(range?.from, ErrorId.InvalidConfig);
    const to = assertTabernaId(range?.to, ErrorId.InvalidConfig);
    if (from > to) throw invalid(`ranges[${i}] is inverted: from ${from} is after to ${to}`);
    return Object.freeze({
      from,
      to,
      service: checkService(range.service, `ranges[${i}].service`),
    });
  });
  const sorted = [...checked].sort((a, b) => (a.from < b.from ? -1 : a.from > b.from ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i].from <= sorted[i - 1].to) {
      throw invalid(
        `ranges ${sorted[i - 1].from}..${sorted[i - 1].to} and ` +
          `${sorted[i].from}..${sorted[i].to} overlap`,
      );
    }
  }
  return sorted;
}

/** DNS servers `node:dns` accepts, frozen; throws `InvalidConfig` otherwise. */
export function checkServers(
  servers: readonly string[] | undefined,
): readonly string[] | undefined {
  if (servers === undefined) return undefined;
  if (!Array.isArray(servers) || servers.length === 0) {
    throw invalid('servers must be a non-empty array of "IP" or "IP:PORT" strings');
  }
  try {
    // node:dns validates the forms; a throwaway resolver holds no socket until it queries.
    new dns.Resolver().setServers(servers);
  } catch (err) {
    throw invalid(
      `servers ${JSON.stringify(servers)} are not valid DNS servers: ${(err as Error).message}`,
    );
  }
  return Object.freeze([...servers]);
}

/** `value` when an integer in `min..max`; throws `InvalidConfig` naming `field` otherwise. */
export function integer(field: string, value: number, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${field} must be an integer in ${min}..${max}, got ${String(value)}`);
  }
  return value;
}

/** An `InvalidConfig` error with `message`. */
export function invalid(message: string): AureliaError {
  return new AureliaError(ErrorId.InvalidConfig, message);
}
