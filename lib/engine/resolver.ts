// Mapping a target taberna id to the address of the domus that hosts it.
import { DomusAddr } from './addr.js';
import { AureliaError, ErrorId } from './errors.js';
import { assertTabernaId, type TabernaId } from './ids.js';

/**
 * Finds the domus hosting a taberna. Called on every send to a taberna that is not local, so
 * an application can plug in its own discovery. Reports an id it does not know by throwing (or
 * rejecting with) `AureliaError(UnknownTaberna)`.
 */
export interface RouteResolver {
  /** Returns the address hosting `tabernaId`; throws or rejects `UnknownTaberna` if none. */
  resolve(tabernaId: bigint): Promise<DomusAddr> | DomusAddr;
  /**
   * Optional: told when dialing `addr` failed, so a discovering resolver can re-resolve or
   * prefer another endpoint. Must not throw.
   */
  reportFailure?(addr: DomusAddr): void;
}

/**
 * An in-memory `RouteResolver` backed by a mutable map from taberna id to address: for tests,
 * fixtures and small static topologies. Changes apply to the next `resolve`.
 */
export class SimpleResolver implements RouteResolver {
  readonly #routes = new Map<TabernaId, DomusAddr>();

  /**
   * Creates a resolver, optionally filled with `entries`. Throws `AureliaError(InvalidConfig)`
   * for an entry whose id is not a u64 bigint or whose address is not a `DomusAddr`.
   */
  constructor(entries?: Iterable<readonly [bigint, DomusAddr]>) {
    if (entries === undefined) return;
    for (const [id, addr] of entries) this.insert(id, addr);
  }

  /** Number of routes held. */
  get size(): number {
    return this.#routes.size;
  }

  /**
   * Routes `id` to `addr`, replacing any previous route, and returns the previous address (or
   * `undefined`). Throws `AureliaError(InvalidConfig)` when `id` is not a bigint in 0..2^64-1 or
   * `addr` is not a `DomusAddr`.
   */
  insert(id: bigint, addr: DomusAddr): DomusAddr | undefined {
    assertTabernaId(id, ErrorId.InvalidConfig);
    if (!(addr instanceof DomusAddr)) {
      throw new AureliaError(
        ErrorId.InvalidConfig,
        `route for taberna ${id} must be a DomusAddr (use DomusAddr.parse), got ${typeof addr}`,
      );
    }
    const previous = this.#routes.get(id);
    this.#routes.set(id, addr);
    return previous;
  }

  /** Removes the route for `id`; returns whether there was one. */
  remove(id: bigint): boolean {
    return this.#routes.delete(id);
  }

  /** The address routed for `id`, or `undefined` (also for a value that is not a taberna id). */
  get(id: bigint): DomusAddr | undefined {
    return this.#routes.get(id);
  }

  /**
   * The address routed for `tabernaId`. Throws `AureliaError(UnknownTaberna)` naming the id when
   * there is no route, or when the value is not a taberna id at all.
   */
  resolve(tabernaId: bigint): DomusAddr {
    const id = assertTabernaId(tabernaId, ErrorId.UnknownTaberna);
    const addr = this.#routes.get(id);
    if (addr === undefined) {
      throw new AureliaError(ErrorId.UnknownTaberna, `no route to taberna ${id}`);
    }
    return addr;
  }

  /** The current routes, in insertion order. */
  entries(): IterableIterator<[TabernaId, DomusAddr]> {
    return this.#routes.entries();
  }
}
