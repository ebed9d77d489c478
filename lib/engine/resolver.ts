// Mapping a target taberna id to the address (or the replica addresses) of the domus hosting it.
import { DomusAddr } from './addr.js';
import { BALANCINGS, type Balancing } from './balancer/balancer.js';
import { AureliaError, ErrorId } from './errors.js';
import { assertTabernaId, tabernaIdText, type TabernaId } from './ids.js';

/** How a route is served, besides its addresses (see `ReplicaSet.of`). */
export interface RouteOptions {
  /** How sends are spread over several addresses; default `'least-loaded'`. */
  readonly balancing?: Balancing;
  /**
   * The certificate identity that must serve the route (`spiffe://mesh/billing`, or a DNS or CN
   * identity): every send routed by it fails with `AddressMismatch` when the domus at the address
   * proves another identity, checked on every connection the send is written to. Default: any
   * member of the mesh CA answering at the address.
   */
  readonly identity?: string;
}

/**
 * The replicas a route names: one or more distinct domus addresses serving the same tabernae,
 * how sends are spread over them (see `Balancing`; default `'least-loaded'`) and, optionally, the
 * identity that must serve them. Immutable. A resolver should hand out the same `ReplicaSet`
 * object for a route while the route does not change: round-robin keeps its place per object.
 */
export class ReplicaSet {
  /** The replica addresses, in the order given, without duplicates. */
  readonly addresses: readonly DomusAddr[];
  /** Their keys (`DomusAddr.key`), index for index: what the balancer tracks replicas by. */
  readonly keys: readonly string[];
  /** How sends are spread over the replicas. */
  readonly balancing: Balancing;
  /** The identity every replica must prove, or `undefined` for any member of the mesh. */
  readonly identity: string | undefined;

  private constructor(
    addresses: readonly DomusAddr[],
    balancing: Balancing,
    identity: string | undefined,
  ) {
    this.addresses = Object.freeze(addresses.slice());
    this.keys = Object.freeze(addresses.map((a) => a.key));
    this.balancing = balancing;
    this.identity = identity;
    Object.freeze(this);
  }

  /**
   * A replica set of `addresses` (one address or a non-empty array; duplicates are dropped),
   * spread by `options` (a `Balancing`, or `RouteOptions` with a balancing and the identity that
   * must serve the route). Throws `AureliaError(InvalidConfig)` for an empty array, an element
   * that is not a `DomusAddr`, an unknown balancing, or an identity that is not a non-empty
   * string of at most 1024 characters without control characters.
   */
  static of(
    addresses: DomusAddr | readonly DomusAddr[],
    options: Balancing | RouteOptions = 'least-loaded',
  ): ReplicaSet {
    const { balancing = 'least-loaded', identity } =
      typeof options === 'string' ? { balancing: options } : (options ?? {});
    const list = addresses instanceof DomusAddr ? [addresses] : addresses;
    if (!Array.isArray(list) || list.length === 0) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        'a route needs at least one address (a DomusAddr or a non-empty array of them)',
      );
    }
    const seen = new Set<string>();
    const unique: DomusAddr[] = [];
    for (const [i, addr] of (list as readonly unknown[]).entries()) {
      if (!(addr instanceof DomusAddr)) {
        throw new AureliaError(
          ErrorId.InvalidConfig,
          `route address [${i}] must be a DomusAddr (use DomusAddr.parse), got ${typeof addr}`,
        );
      }
      if (!seen.has(addr.key)) {
        seen.add(addr.key);
        unique.push(addr);
      }
    }
    if (!BALANCINGS.includes(balancing)) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `balancing must be one of ${BALANCINGS.join(', ')}, got ${String(balancing)}`,
      );
    }
    return new ReplicaSet(unique, balancing, checkRouteIdentity(identity));
  }

  /** This set with other `addresses` (a subset, say), keeping its balancing and identity. */
  withAddresses(addresses: readonly DomusAddr[]): ReplicaSet {
    return ReplicaSet.of(addresses, this);
  }

  /** The address whose key is `key`; `undefined` when it is not a replica of this set. */
  addressOf(key: string): DomusAddr | undefined {
    const i = this.keys.indexOf(key);
    return i < 0 ? undefined : this.addresses[i];
  }
}

/**
 * Finds the domus hosting a taberna. Called on every send to a taberna that is not local, so
 * an application can plug in its own discovery. Reports an id it does not know by throwing (or
 * rejecting with) `AureliaError(UnknownTaberna)`.
 *
 * A resolver names one address per taberna with `resolve`; one that knows replicas also
 * implements `resolveRoute`, which the domus then calls instead, balancing each send over the
 * replicas (see `ReplicaSet` and `Balancing`).
 */
export interface RouteResolver {
  /** Returns the address hosting `tabernaId`; throws or rejects `UnknownTaberna` if none. */
  resolve(tabernaId: bigint): Promise<DomusAddr> | DomusAddr;
  /**
   * Optional: the replicas hosting `tabernaId`. When present the domus calls it instead of
   * `resolve`. Throws or rejects `UnknownTaberna` if none; must answer with a `ReplicaSet`.
   */
  resolveRoute?(tabernaId: bigint): Promise<ReplicaSet> | ReplicaSet;
  /**
   * Optional: told when dialing `addr` failed, so a discovering resolver can re-resolve or
   * prefer another endpoint. Must not throw.
   */
  reportFailure?(addr: DomusAddr): void;
}

/** What a route may be given as: one address, several, or a prepared `ReplicaSet`. */
export type RouteTarget = DomusAddr | readonly DomusAddr[] | ReplicaSet;

/**
 * An in-memory `RouteResolver` backed by a mutable map from taberna id to replicas: for tests,
 * fixtures and small static topologies. Changes apply to the next send.
 */
export class SimpleResolver implements RouteResolver {
  readonly #routes = new Map<TabernaId, ReplicaSet>();

  /**
   * Creates a resolver, optionally filled with `entries` (each an id and one address, an array of
   * replica addresses or a `ReplicaSet`). Throws `AureliaError(InvalidConfig)` for an entry whose
   * id is not a u64 bigint or whose addresses are not `DomusAddr`s.
   */
  constructor(entries?: Iterable<readonly [bigint, RouteTarget]>) {
    if (entries === undefined) return;
    for (const [id, target] of entries) this.insert(id, target);
  }

  /** Number of routes held. */
  get size(): number {
    return this.#routes.size;
  }

  /**
   * Routes `id` to `target` (one address, an array of replica addresses balanced
   * `'least-loaded'`, or a `ReplicaSet`), replacing any previous route, and returns the previous
   * route's first address (or `undefined`). Throws `AureliaError(InvalidConfig)` when `id` is not
   * a bigint in 0..2^64-1 or the addresses are not `DomusAddr`s (an empty array included).
   */
  insert(id: bigint, target: RouteTarget): DomusAddr | undefined {
    assertTabernaId(id, ErrorId.InvalidConfig);
    const route = toReplicaSet(target, `route for taberna ${tabernaIdText(id)}`);
    const previous = this.#routes.get(id);
    this.#routes.set(id, route);
    return previous?.addresses[0];
  }

  /** Removes the route for `id`; returns whether there was one. */
  remove(id: bigint): boolean {
    return this.#routes.delete(id);
  }

  /**
   * The (first) address routed for `id`, or `undefined` (also for a value that is not a taberna
   * id). `getRoute` gives every replica.
   */
  get(id: bigint): DomusAddr | undefined {
    return this.#routes.get(id)?.addresses[0];
  }

  /** The replicas routed for `id`, or `undefined`. */
  getRoute(id: bigint): ReplicaSet | undefined {
    return this.#routes.get(id);
  }

  /**
   * The (first) address routed for `tabernaId`. Throws `AureliaError(UnknownTaberna)` naming the
   * id when there is no route, or when the value is not a taberna id at all.
   */
  resolve(tabernaId: bigint): DomusAddr {
    return this.resolveRoute(tabernaId).addresses[0];
  }

  /**
   * The replicas routed for `tabernaId` (the same object until the route changes). Throws
   * `AureliaError(UnknownTaberna)` naming the id when there is no route, or when the value is not
   * a taberna id at all.
   */
  resolveRoute(tabernaId: bigint): ReplicaSet {
    const id = assertTabernaId(tabernaId, ErrorId.UnknownTaberna);
    const route = this.#routes.get(id);
    if (route === undefined) {
      throw new AureliaError(
        ErrorId.UnknownTaberna,
        `no route to taberna ${tabernaIdText(id)}: add one (SimpleResolver.insert, or a route in AureliaModule's routes)`,
      );
    }
    return route;
  }

  /** The current routes with their first address, in insertion order (`routes()` for all). */
  *entries(): IterableIterator<[TabernaId, DomusAddr]> {
    for (const [id, route] of this.#routes) yield [id, route.addresses[0]];
  }

  /** The current routes with every replica, in insertion order. */
  routes(): IterableIterator<[TabernaId, ReplicaSet]> {
    return this.#routes.entries();
  }
}

/**
 * `target` as a `ReplicaSet` (an address or an array become one balanced `'least-loaded'`).
 * Throws `AureliaError(InvalidConfig)` starting with `what` when it is neither.
 */
export function toReplicaSet(target: unknown, what: string): ReplicaSet {
  if (target instanceof ReplicaSet) return target;
  if (target instanceof DomusAddr || Array.isArray(target)) {
    try {
      return ReplicaSet.of(target as DomusAddr | readonly DomusAddr[]);
    } catch (err) {
      throw new AureliaError(ErrorId.InvalidConfig, `${what}: ${(err as Error).message}`);
    }
  }
  throw new AureliaError(
    ErrorId.InvalidConfig,
    `${what} must be a DomusAddr (use DomusAddr.parse), an array of them or a ReplicaSet, got ${typeof target}`,
  );
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;
const MAX_IDENTITY_LEN = 1024;

/**
 * `identity` when it can name a certificate identity (a non-empty string of at most 1024
 * characters without control characters) or is `undefined`; throws `AureliaError(InvalidConfig)`
 * otherwise.
 */
export function checkRouteIdentity(identity: unknown): string | undefined {
  if (identity === undefined) return undefined;
  if (
    typeof identity !== 'string' ||
    identity.length === 0 ||
    identity.length > MAX_IDENTITY_LEN ||
    CONTROL.test(identity)
  ) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `a route's identity must be a certificate identity such as 'spiffe://aurelia.local/billing' ` +
        `(a non-empty string of at most ${MAX_IDENTITY_LEN} characters without control characters), ` +
        `got ${typeof identity === 'string' ? JSON.stringify(identity.slice(0, 80)) : typeof identity}`,
    );
  }
  return identity;
}
