// The module's static routes: exact patterns and ids, prefixes ('inventory.*'), a default ('*').
import { inspect } from 'node:util';
import { DomusAddr } from '../engine/addr.js';
import { BALANCINGS, type Balancing } from '../engine/balancer/balancer.js';
import { AureliaError, ErrorId } from '../engine/errors.js';
import { assertTabernaId, tabernaIdText, type TabernaId } from '../engine/ids.js';
import {
  ReplicaSet,
  checkRouteIdentity,
  type RouteOptions,
  type RouteResolver,
} from '../engine/resolver.js';
import type { DnsSrvResolver } from '../engine/services/dns-srv-resolver.js';
import { type AureliaPattern, patternForId, tabernaIdForPattern } from './pattern.js';

/** How the route table's `UnknownTaberna` words its fix; callers' wording keeps it whole. */
export const ROUTE_FIX = 'add a route for';

/** Where a route sends: one address or the addresses of several replicas. */
export type AureliaRouteAddress = string | DomusAddr | readonly (string | DomusAddr)[];

/**
 * One static route. `pattern` is a Nest pattern (hashed to its taberna id), an explicit taberna id
 * (a bigint), a prefix — a string ending in `*`, such as `'inventory.*'`, matching every pattern
 * whose normalized text starts with what precedes the `*` — or `'*'` alone, the default route.
 */
export interface AureliaRoute {
  /** A Nest pattern, a bigint taberna id, a prefix `'name.*'` or the default `'*'`. */
  readonly pattern: AureliaPattern;
  /** Where it is served: `tls://host:port`, `unix:///path`, a `DomusAddr`, or an array of them. */
  readonly address: AureliaRouteAddress;
  /** How sends are spread over several addresses; default `'least-loaded'`. */
  readonly balancing?: Balancing;
  /**
   * The certificate identity that must serve the route, e.g. `'spiffe://aurelia.local/billing'`.
   * A `send()`, `emit()` or `sendBlob()` routed by it fails with `AddressMismatch` (and reaches no
   * handler) when the domus at the address proves another identity, so an address taken over by
   * another member of the mesh — a stale DNS name, a reused port — cannot receive the route's
   * traffic. Default: any member of the mesh CA answering at the address.
   */
  readonly identity?: string;
}

/** The `routes` module option: a map of pattern → address(es), or an array of routes. */
export type AureliaRoutes = Readonly<Record<string, AureliaRouteAddress>> | readonly AureliaRoute[];

/** Most prefix matches remembered per table (the patterns a client sends are few). */
const MATCH_MEMORY = 4096;

/**
 * The static routes of an `AureliaModule`, as the domus's `RouteResolver`. A taberna id resolves,
 * in this order, to: its exact route (a pattern or id); the DNS SRV service it is mapped to in
 * `discovery`; the longest prefix route matching its pattern's text; the default route `'*'`.
 * Prefixes match on pattern text, which only the Nest layer knows: a taberna id is a hash, so the
 * table asks `patternForId` for the text of the patterns this process hashed (every `ClientAurelia`
 * send hashes its pattern just before it is routed). A send addressed by a bare taberna id that no
 * one hashed here matches exact routes, DNS and the default route only.
 */
export class RouteTable implements RouteResolver {
  readonly #exact = new Map<TabernaId, ReplicaSet>();
  /** Longest prefix first. */
  readonly #prefixes: { readonly prefix: string; readonly route: ReplicaSet }[] = [];
  #fallback: ReplicaSet | undefined;
  /** Taberna id → the prefix route its pattern matched, so each pattern is matched once. */
  readonly #matched = new Map<TabernaId, ReplicaSet>();
  #discovery: DnsSrvResolver | undefined;

  /**
   * Builds the table from the `routes` option (validated) and the DNS SRV resolver of
   * `discovery`, if any. Throws `AureliaError(InvalidConfig)` starting with
   * `AureliaModule option 'routes…'` for a malformed option, an address that does not parse, an
   * empty address list, an unknown balancing, or a pattern, prefix or default routed twice.
   */
  static from(routes: AureliaRoutes | undefined, discovery?: DnsSrvResolver): RouteTable {
    const table = new RouteTable();
    table.#discovery = discovery;
    if (routes === undefined) return table;
    if (typeof routes !== 'object' || routes === null) {
      throw invalid('routes', 'must be an object of pattern → address or an array of routes');
    }
    const entries: AureliaRoute[] = Array.isArray(routes)
      ? (routes as readonly AureliaRoute[]).slice()
      : Object.entries(routes as Record<string, AureliaRouteAddress>).map(([pattern, address]) => ({
          pattern,
          address,
        }));
    const seen = new Set<string>();
    for (const [i, route] of entries.entries()) table.#add(`routes[${i}]`, route, seen);
    table.#prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
    return table;
  }

  /** Number of static routes (exact, prefix and default). */
  get size(): number {
    return this.#exact.size + this.#prefixes.length + (this.#fallback === undefined ? 0 : 1);
  }

  /** Whether there is neither a static route nor DNS discovery. */
  get empty(): boolean {
    return this.size === 0 && this.#discovery === undefined;
  }

  /**
   * The static route `tabernaId` takes (exact, prefix or default), or `undefined`; DNS SRV is not
   * consulted.
   */
  staticRoute(tabernaId: TabernaId): ReplicaSet | undefined {
    const exact = this.#exact.get(tabernaId);
    if (exact !== undefined) return exact;
    return this.#byPrefix(tabernaId) ?? this.#fallback;
  }

  /**
   * The replicas serving `tabernaId` in the table's order (see the class). Throws (or, through
   * DNS, rejects) `AureliaError(UnknownTaberna)` naming the id and its pattern when nothing
   * routes it; DNS failures are `DnsSrvResolver.resolveRoute`'s.
   */
  resolveRoute(tabernaId: bigint): Promise<ReplicaSet> | ReplicaSet {
    const id = assertTabernaId(tabernaId, ErrorId.UnknownTaberna);
    const exact = this.#exact.get(id);
    if (exact !== undefined) return exact;
    const dns = this.#discovery;
    if (dns !== undefined && dns.serviceFor(id) !== undefined) return dns.resolveRoute(id);
    const route = this.#byPrefix(id) ?? this.#fallback;
    if (route === undefined) throw this.#noRoute(id);
    return route;
  }

  /** The first address of `resolveRoute`'s answer (DNS answers pick by weight); fails alike. */
  resolve(tabernaId: bigint): Promise<DomusAddr> | DomusAddr {
    const id = assertTabernaId(tabernaId, ErrorId.UnknownTaberna);
    const dns = this.#discovery;
    if (dns !== undefined && !this.#exact.has(id) && dns.serviceFor(id) !== undefined) {
      return dns.resolve(id);
    }
    const route = this.resolveRoute(id) as ReplicaSet;
    return route.addresses[0];
  }

  /** Passes a dial failure to DNS discovery, which re-resolves the services holding `addr`. */
  reportFailure(addr: DomusAddr): void {
    this.#discovery?.reportFailure(addr);
  }

  #byPrefix(id: TabernaId): ReplicaSet | undefined {
    if (this.#prefixes.length === 0) return undefined;
    const known = this.#matched.get(id);
    if (known !== undefined) return known;
    const text = patternForId(id);
    if (text === undefined) return undefined;
    for (const { prefix, route } of this.#prefixes) {
      if (text.startsWith(prefix)) {
        if (this.#matched.size >= MATCH_MEMORY) this.#matched.clear();
        this.#matched.set(id, route);
        return route;
      }
    }
    return undefined;
  }

  #noRoute(id: TabernaId): AureliaError {
    const text = patternForId(id);
    const what =
      text === undefined
        ? `taberna ${tabernaIdText(id)}`
        : `pattern ${inspect(text)} (taberna ${tabernaIdText(id)})`;
    const example =
      text === undefined ? `{ pattern: 0x${id.toString(16)}n, address }` : inspect(text);
    return new AureliaError(
      ErrorId.UnknownTaberna,
      `no route to ${what}: ${ROUTE_FIX} ${example}, a prefix route such as 'name.*' or a ` +
        `default route '*' to the AureliaModule 'routes' option`,
    );
  }

  #add(name: string, route: AureliaRoute, seen: Set<string>): void {
    if (typeof route !== 'object' || route === null) {
      throw invalid(name, 'must be { pattern, address, balancing?, identity? }');
    }
    const balancing = route.balancing ?? 'least-loaded';
    if (!BALANCINGS.includes(balancing)) {
      throw invalid(
        `${name}.balancing`,
        `must be one of ${BALANCINGS.join(', ')}, got ${inspect(balancing)}`,
      );
    }
    let identity: string | undefined;
    try {
      identity = checkRouteIdentity(route.identity);
    } catch (err) {
      throw invalid(`${name}.identity`, (err as Error).message.replace(/^a route's identity /, ''));
    }
    const set = replicaSet(`${name}.address`, route.address, { balancing, identity });
    const pattern = route.pattern;
    if (typeof pattern === 'string' && pattern.endsWith('*')) {
      const prefix = pattern.slice(0, -1);
      once(seen, `prefix:${prefix}`, name, pattern === '*' ? 'the default route' : pattern);
      if (prefix === '') this.#fallback = set;
      else this.#prefixes.push({ prefix, route: set });
      return;
    }
    let id: TabernaId;
    try {
      id = tabernaIdForPattern(pattern);
    } catch (err) {
      throw invalid(name, err instanceof Error ? err.message : String(err));
    }
    once(seen, `id:${id}`, name, `taberna ${tabernaIdText(id)} (${inspect(pattern)})`);
    this.#exact.set(id, set);
  }
}

function replicaSet(name: string, value: unknown, options: RouteOptions): ReplicaSet {
  const list = Array.isArray(value) ? (value as unknown[]) : [value];
  if (list.length === 0) throw invalid(name, 'must name at least one address');
  const addresses = list.map((item, i) =>
    addressOption(Array.isArray(value) ? `${name}[${i}]` : name, item),
  );
  return ReplicaSet.of(addresses, options);
}

/**
 * The address a module option names: a `DomusAddr` as is, a string parsed. Throws
 * `AureliaError(InvalidConfig)` starting with `AureliaModule option '<name>'` otherwise.
 */
export function addressOption(name: string, value: unknown): DomusAddr {
  if (value instanceof DomusAddr) return value;
  if (typeof value !== 'string') {
    throw invalid(name, `must be an address string or a DomusAddr, got ${inspect(value)}`);
  }
  try {
    return DomusAddr.parse(value);
  } catch (err) {
    throw invalid(name, err instanceof Error ? err.message : String(err));
  }
}

function once(seen: Set<string>, key: string, name: string, what: string): void {
  if (seen.has(key)) throw invalid(name, `routes ${what} again; give each one route`);
  seen.add(key);
}

function invalid(option: string, problem: string): AureliaError {
  return new AureliaError(ErrorId.InvalidConfig, `AureliaModule option '${option}' ${problem}`);
}
