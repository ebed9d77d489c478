// Discovery through DNS SRV records: taberna id → service name → prioritised, weighted endpoints.
import { promises as dns } from 'node:dns';
import { isIP } from 'node:net';
import { DomusAddr } from '../addr.js';
import { AureliaError, ErrorId } from '../errors.js';
import { assertTabernaId, tabernaIdText, type TabernaId } from '../ids.js';
import type { Balancing } from '../balancer/balancer.js';
import { ReplicaSet, type RouteResolver } from '../resolver.js';
import { type CheckedDnsSrvOptions, checkDnsSrvOptions } from './dns-srv-options.js';
import { type Endpoint, groupByPriority, pickWeighted } from './dns-srv-selection.js';

/** An inclusive range of taberna ids served by one SRV service name. */
export interface DnsSrvRange {
  /** First id of the range. */
  readonly from: bigint;
  /** Last id of the range (inclusive). */
  readonly to: bigint;
  /** The SRV name to query, e.g. `_billing._tcp.mesh.svc.cluster.local`. */
  readonly service: string;
}

/** Options of a `DnsSrvResolver`; every duration is in milliseconds. */
export interface DnsSrvResolverOptions {
  /** Exact taberna ids and the SRV name each is looked up under (a `Map` works). */
  readonly services?: Iterable<readonly [bigint, string]>;
  /** Id ranges and their SRV names; consulted when no exact id matches. Ranges may not overlap. */
  readonly ranges?: readonly DnsSrvRange[];
  /**
   * DNS servers to ask (`'10.0.0.10'`, `'127.0.0.1:5353'`, `'[::1]:53'`), as for
   * `dns.setServers`. Default: the system's resolver configuration.
   */
  readonly servers?: readonly string[];
  /** Bound on one whole lookup (SRV plus the targets' A/AAAA), 1..60000; default 5000. */
  readonly timeoutMs?: number;
  /**
   * Fixed cache lifetime of an answer, 0..86400000. When set, DNS TTLs are ignored. When not set,
   * an answer lives as long as the shortest A/AAAA TTL of its targets, clamped to
   * `minTtlMs..maxTtlMs` (node:dns does not report the SRV record's own TTL).
   */
  readonly cacheTtlMs?: number;
  /** Lower clamp of a DNS-derived lifetime, 0..86400000; default 1000 (Consul answers TTL 0). */
  readonly minTtlMs?: number;
  /** Upper clamp of a DNS-derived lifetime, 0..86400000, at least `minTtlMs`; default 60000. */
  readonly maxTtlMs?: number;
  /**
   * How long an address reported by `reportFailure` is avoided while other endpoints are
   * available, 0..3600000; default 10000.
   */
  readonly failureHoldMs?: number;
  /**
   * How long past its expiry an answer may still be used when refreshing it fails with a DNS
   * timeout or server failure, 0..86400000; default 30000. Meanwhile the refresh is retried at
   * most once per `max(minTtlMs, 1000)`. An answer removed by `invalidate` or `reportFailure` is
   * never reused.
   */
  readonly staleIfErrorMs?: number;
  /**
   * How a domus spreads sends over the replicas of one answer (see `resolveRoute`); default
   * `'least-loaded'`.
   */
  readonly balancing?: Balancing;
  /**
   * SRV names (as in `services` and `ranges`) and the certificate identity that must serve each
   * (a `Map` works): every send routed through that name fails with `AddressMismatch` at a target
   * that proves another identity, so a forged or poisoned SRV answer cannot redirect traffic to
   * another member of the mesh. A name without an entry accepts any member of the mesh CA.
   */
  readonly identities?: Iterable<readonly [string, string]>;
  /** Uniform random numbers in [0, 1) for weighted selection; default `Math.random`. */
  readonly random?: () => number;
  /** Clock for cache lifetimes and failure holds; default `Date.now`. */
  readonly now?: () => number;
}

interface CacheEntry {
  /** Endpoints grouped by priority, lowest first; zero weights first inside a group (RFC 2782). */
  readonly groups: readonly (readonly Endpoint[])[];
  /** Address keys present in the answer. */
  readonly keys: ReadonlySet<string>;
  /** Every address of each priority group as one replica set, group for group. */
  readonly routes: readonly ReplicaSet[];
  /** When the answer must be refreshed. */
  readonly expiresAt: number;
  /** Until when it may stand in for a refresh that fails (`staleIfErrorMs` past its TTL). */
  readonly staleUntil: number;
}

interface TargetAddresses {
  readonly ips: readonly string[];
  /** Shortest TTL of the address records, in seconds; undefined for an IP literal target. */
  readonly ttlSeconds: number | undefined;
}

/** Least time between lookups while a stale answer stands in for a failing refresh. */
const RETRY_AFTER_ERROR_MS = 1_000;
/** DNS error codes meaning "this name has no such records", as opposed to "DNS is unavailable". */
const ABSENT = new Set<string>([dns.NOTFOUND, dns.NODATA]);

/**
 * A `RouteResolver` that finds the domus hosting a taberna through DNS SRV records, the discovery
 * operators already run (Kubernetes headless services, Consul). Each taberna id (or id range) maps
 * to an SRV name; its records are resolved with `node:dns` (optionally against given `servers`),
 * their targets' A/AAAA records with their TTLs, and each `resolve` picks one address as RFC 2782
 * says: the lowest priority that has an endpoint not held after a failure, then weighted random
 * among that priority. Answers are cached (see `cacheTtlMs`), concurrent lookups of one name
 * share one query, and `reportFailure` drops the cached answer holding an address so the next
 * send re-resolves. A cached answer is returned synchronously; a lookup returns a Promise.
 *
 * A domus calls `resolveRoute`: every address of the best priority answering becomes one replica
 * set, and the domus balances each send over it by load (`balancing`), ejecting replicas that fail;
 * SRV weights then do not apply. `resolve` (one weighted-random address) serves callers that want
 * a single address.
 *
 * A domus resolves a send once, when it is made: sends already queued for an address whose dial
 * failed stay queued for it, retried with `reconnectBackoffMs` until delivered or failed at their
 * deadline; only later sends are routed to another endpoint.
 */
export class DnsSrvResolver implements RouteResolver {
  /** The options, checked and with their defaults. */
  readonly #o: CheckedDnsSrvOptions;
  readonly #cache = new Map<string, CacheEntry>();
  readonly #inflight = new Map<string, Promise<CacheEntry>>();
  /** Address key → time until which it is avoided. */
  readonly #held = new Map<string, number>();
  /** Resolvers with a lookup in progress, cancelled by `close`. */
  readonly #active = new Set<dns.Resolver>();
  #closed = false;

  /**
   * Creates a resolver. Throws `AureliaError(InvalidConfig)` naming the option when an id is not
   * a u64 bigint, a service is not a DNS name, ranges are inverted or overlap, `identities` names
   * a service no entry looks up or gives no valid identity, `servers` is empty or not accepted by
   * `node:dns`, or a duration is not an integer in its range (see `checkDnsSrvOptions`).
   */
  constructor(options: DnsSrvResolverOptions) {
    this.#o = checkDnsSrvOptions(options);
  }

  /** The SRV name `tabernaId` is looked up under, or `undefined` when it is not mapped. */
  serviceFor(tabernaId: bigint): string | undefined {
    const exact = this.#o.exact.get(tabernaId);
    if (exact !== undefined) return exact;
    for (const range of this.#o.ranges) {
      if (tabernaId >= range.from && tabernaId <= range.to) return range.service;
    }
    return undefined;
  }

  /**
   * The address of one domus hosting `tabernaId`: synchronously from a live cached answer,
   * otherwise a Promise of a fresh lookup. Fails (throws for an unmapped id, rejects otherwise)
   * with `AureliaError` naming the id and the service: `UnknownTaberna` when the id is not mapped,
   * the name does not exist (NXDOMAIN), has no SRV records, or no target has an address;
   * `PeerUnavailable` when DNS does not answer within `timeoutMs` or fails (SERVFAIL, refused),
   * unless a recently expired answer may be reused (`staleIfErrorMs`); `DomusClosed` after
   * `close()`.
   */
  resolve(tabernaId: bigint): Promise<DomusAddr> | DomusAddr {
    const answer = this.#answer(tabernaId);
    if (!(answer instanceof Promise)) return this.#pick(answer);
    return answer.then((entry) => this.#pick(entry));
  }

  /**
   * The replicas hosting `tabernaId`: every address of the lowest priority that has one not held
   * after a failure (all of the lowest priority when every one is held), as one `ReplicaSet`
   * balanced by the `balancing` option — the same object while the answer is cached and no
   * address is held. Synchronous from a live cached answer, otherwise a Promise. Fails as
   * `resolve` does.
   */
  resolveRoute(tabernaId: bigint): Promise<ReplicaSet> | ReplicaSet {
    const answer = this.#answer(tabernaId);
    if (!(answer instanceof Promise)) return this.#route(answer);
    return answer.then((entry) => this.#route(entry));
  }

  /** The live cached answer for `tabernaId`'s service, or a Promise of a fresh (or stale) one. */
  #answer(tabernaId: bigint): Promise<CacheEntry> | CacheEntry {
    if (this.#closed) throw closedError();
    const id = assertTabernaId(tabernaId, ErrorId.UnknownTaberna);
    const service = this.serviceFor(id);
    if (service === undefined) {
      throw new AureliaError(
        ErrorId.UnknownTaberna,
        `no DNS SRV service is mapped for taberna ${tabernaIdText(id)}`,
      );
    }
    const entry = this.#cache.get(service);
    if (entry !== undefined && this.#o.now() < entry.expiresAt) return entry;
    return this.#lookup(service).then(
      (fresh) => fresh,
      (err: unknown) => {
        const stale = this.#cache.get(service);
        const now = this.#o.now();
        if (
          stale === undefined ||
          !AureliaError.is(err, ErrorId.PeerUnavailable) ||
          now >= stale.staleUntil
        ) {
          throw forTaberna(err, id);
        }
        // Serve the stale answer without a lookup for a moment, so sends do not each wait out
        // a DNS timeout while DNS is down.
        const retryAt = Math.min(
          stale.staleUntil,
          now + Math.max(this.#o.minTtlMs, RETRY_AFTER_ERROR_MS),
        );
        this.#cache.set(service, { ...stale, expiresAt: retryAt });
        return stale;
      },
    );
  }

  /**
   * Reports that dialling `addr` (a `DomusAddr` or its text form, as in `PeerDialFailed` events)
   * failed: every cached answer holding it is dropped, so the next `resolve` of those services
   * queries DNS again, and the address is avoided for `failureHoldMs` while its service has other
   * endpoints. Returns the number of cached answers dropped. Throws `AureliaError(InvalidConfig)`
   * for text that is not an address.
   */
  reportFailure(addr: DomusAddr | string): number {
    const key = typeof addr === 'string' ? DomusAddr.parse(addr).key : addr.key;
    const now = this.#o.now();
    if (this.#o.failureHoldMs > 0) {
      for (const [held, until] of this.#held) if (until <= now) this.#held.delete(held);
      this.#held.set(key, now + this.#o.failureHoldMs);
    }
    let dropped = 0;
    for (const [service, entry] of this.#cache) {
      if (entry.keys.has(key)) {
        this.#cache.delete(service);
        dropped++;
      }
    }
    return dropped;
  }

  /**
   * Drops the cached answer for `tabernaId`'s service, so the next `resolve` queries DNS. Returns
   * whether an answer was cached (false for an unmapped id).
   */
  invalidate(tabernaId: bigint): boolean {
    const service = this.serviceFor(tabernaId);
    return service !== undefined && this.#cache.delete(service);
  }

  /**
   * Cancels lookups in progress (their callers get `DomusClosed`) and forgets every answer;
   * later `resolve` calls throw `DomusClosed`. Idempotent.
   */
  close(): void {
    this.#closed = true;
    for (const resolver of this.#active) resolver.cancel();
    this.#active.clear();
    this.#cache.clear();
    this.#held.clear();
  }

  /** One lookup per service at a time: concurrent callers share it. */
  #lookup(service: string): Promise<CacheEntry> {
    let pending = this.#inflight.get(service);
    if (pending === undefined) {
      pending = this.#query(service).finally(() => this.#inflight.delete(service));
      this.#inflight.set(service, pending);
    }
    return pending;
  }

  async #query(service: string): Promise<CacheEntry> {
    // A resolver per lookup: cancelling it on timeout cannot disturb other lookups, and c-ares
    // keeps no answer cache across lookups that would hide a TTL expiry.
    const resolver = new dns.Resolver({
      timeout: Math.max(1, Math.floor(this.#o.timeoutMs / 3)),
      tries: 2,
    });
    if (this.#o.servers !== undefined) resolver.setServers(this.#o.servers);
    this.#active.add(resolver);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        resolver.cancel();
        reject(
          new AureliaError(
            ErrorId.PeerUnavailable,
            `DNS lookup of ${service} did not complete within ${this.#o.timeoutMs} ms`,
          ),
        );
      }, this.#o.timeoutMs);
    });
    try {
      const entry = await Promise.race([this.#fetch(resolver, service), deadline]);
      if (this.#closed) throw closedError();
      this.#cache.set(service, entry);
      return entry;
    } catch (err) {
      if (this.#closed) throw closedError();
      throw err;
    } finally {
      clearTimeout(timer);
      this.#active.delete(resolver);
    }
  }

  async #fetch(resolver: dns.Resolver, service: string): Promise<CacheEntry> {
    let records: { name: string; port: number; priority: number; weight: number }[];
    try {
      records = await resolver.resolveSrv(service);
    } catch (err) {
      throw dnsError(err, `SRV ${service}`);
    }
    // A target of "." means "decidedly not available here" (RFC 2782); port 0 cannot be dialled.
    const usable = records.filter((r) => r.name !== '' && r.name !== '.' && r.port > 0);
    if (usable.length === 0) {
      throw new AureliaError(ErrorId.UnknownTaberna, `SRV ${service} has no usable records`);
    }
    const targets = [...new Set(usable.map((r) => r.name))];
    const resolved = new Map<string, TargetAddresses>();
    await Promise.all(
      targets.map(async (target) => resolved.set(target, await addressesOf(resolver, target))),
    );

    const endpoints: Endpoint[] = [];
    let ttlSeconds: number | undefined;
    for (const record of usable) {
      const found = resolved.get(record.name);
      if (found === undefined || found.ips.length === 0) continue;
      if (found.ttlSeconds !== undefined) {
        ttlSeconds = Math.min(ttlSeconds ?? found.ttlSeconds, found.ttlSeconds);
      }
      endpoints.push({
        target: record.name,
        port: record.port,
        priority: record.priority,
        weight: record.weight,
        addrs: found.ips.map((ip) => DomusAddr.tcp(ip, record.port)),
      });
    }
    if (endpoints.length === 0) {
      throw new AureliaError(
        ErrorId.UnknownTaberna,
        `no target of SRV ${service} (${targets.join(', ')}) has an A or AAAA record`,
      );
    }
    const expiresAt = this.#o.now() + this.#lifetime(ttlSeconds);
    const groups = groupByPriority(endpoints);
    return {
      groups,
      routes: groups.map((group) =>
        ReplicaSet.of(
          group.flatMap((e) => e.addrs),
          { balancing: this.#o.balancing, identity: this.#o.identities.get(service) },
        ),
      ),
      keys: new Set(endpoints.flatMap((e) => e.addrs.map((a) => a.key))),
      expiresAt,
      staleUntil: expiresAt + this.#o.staleIfErrorMs,
    };
  }

  #lifetime(ttlSeconds: number | undefined): number {
    if (this.#o.cacheTtlMs !== undefined) return this.#o.cacheTtlMs;
    const ms = ttlSeconds === undefined ? this.#o.minTtlMs : ttlSeconds * 1000;
    return Math.min(this.#o.maxTtlMs, Math.max(this.#o.minTtlMs, ms));
  }

  #route(entry: CacheEntry): ReplicaSet {
    if (this.#held.size === 0) return entry.routes[0];
    const now = this.#o.now();
    for (const [key, until] of this.#held) if (until <= now) this.#held.delete(key);
    if (this.#held.size === 0) return entry.routes[0];
    for (const route of entry.routes) {
      const usable = route.addresses.filter((a) => !this.#held.has(a.key));
      if (usable.length === route.addresses.length) return route;
      if (usable.length > 0) return route.withAddresses(usable);
    }
    return entry.routes[0];
  }

  #pick(entry: CacheEntry): DomusAddr {
    if (this.#held.size === 0) return pickWeighted(entry.groups[0], this.#o.random).addrs[0];
    const now = this.#o.now();
    for (const [key, until] of this.#held) if (until <= now) this.#held.delete(key);
    if (this.#held.size === 0) return pickWeighted(entry.groups[0], this.#o.random).addrs[0];
    const usable = (addr: DomusAddr): boolean => {
      const until = this.#held.get(addr.key);
      return until === undefined || until <= now;
    };
    for (const group of entry.groups) {
      const up = group.filter((e) => e.addrs.some(usable));
      if (up.length > 0) {
        const chosen = pickWeighted(up, this.#o.random);
        return chosen.addrs.find(usable) ?? chosen.addrs[0];
      }
    }
    // Every endpoint is held: trying one beats failing the send without a dial.
    return pickWeighted(entry.groups[0], this.#o.random).addrs[0];
  }
}

/** Resolves a target's A and AAAA records (IPv4 first) with their TTLs. */
async function addressesOf(resolver: dns.Resolver, target: string): Promise<TargetAddresses> {
  if (isIP(target) !== 0) return { ips: [target], ttlSeconds: undefined };
  const [v4, v6] = await Promise.allSettled([
    resolver.resolve4(target, { ttl: true }),
    resolver.resolve6(target, { ttl: true }),
  ]);
  const ips: string[] = [];
  let ttlSeconds: number | undefined;
  for (const result of [v4, v6]) {
    if (result.status === 'rejected') {
      if (!ABSENT.has(codeOf(result.reason))) throw dnsError(result.reason, `A/AAAA ${target}`);
      continue;
    }
    for (const record of result.value) {
      ips.push(record.address);
      ttlSeconds = Math.min(ttlSeconds ?? record.ttl, record.ttl);
    }
  }
  return { ips, ttlSeconds };
}

function codeOf(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
}

function dnsError(err: unknown, what: string): AureliaError {
  const code = codeOf(err);
  if (ABSENT.has(code)) {
    const why = code === dns.NOTFOUND ? 'the name does not exist (NXDOMAIN)' : 'no records';
    return new AureliaError(ErrorId.UnknownTaberna, `DNS ${what}: ${why}`, { cause: err });
  }
  const detail = err instanceof Error ? err.message : String(err);
  return new AureliaError(ErrorId.PeerUnavailable, `DNS ${what} failed: ${detail}`, {
    cause: err,
  });
}

/** A per-caller error naming the taberna, keeping the kind of the shared lookup's failure. */
function forTaberna(err: unknown, id: TabernaId): AureliaError {
  if (AureliaError.is(err)) {
    if (err.kind === ErrorId.DomusClosed) return closedError();
    return new AureliaError(
      err.kind,
      `cannot resolve taberna ${tabernaIdText(id)}: ${err.message}`,
      {
        cause: err,
      },
    );
  }
  return new AureliaError(
    ErrorId.PeerUnavailable,
    `cannot resolve taberna ${tabernaIdText(id)}: ${String(err)}`,
    {
      cause: err,
    },
  );
}

function closedError(): AureliaError {
  return new AureliaError(ErrorId.DomusClosed, 'the DNS SRV resolver is closed');
}
