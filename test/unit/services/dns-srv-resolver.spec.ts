import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { DomusAddr } from '../../../lib/engine/addr.js';
import { ErrorId } from '../../../lib/engine/errors.js';
import {
  DnsSrvResolver,
  type DnsSrvResolverOptions,
} from '../../../lib/engine/services/dns-srv-resolver.js';
import { TestDns } from '../../support/dns.js';
import { expectElapsedBetween, expectError, rejection } from '../../support/expect.js';
import { seeded } from '../../support/random.js';

function clock(start = 1_000_000): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => void (t += ms) };
}

const SERVICE = '_billing._tcp.mesh.svc.cluster.local';
const dns = new TestDns();

beforeAll(() => dns.start());
afterAll(() => dns.stop());
beforeEach(() => dns.reset());

function resolverFor(options: Partial<DnsSrvResolverOptions> = {}): DnsSrvResolver {
  return new DnsSrvResolver({
    services: new Map([[7n, SERVICE]]),
    servers: [dns.address],
    timeoutMs: 2_000,
    ...options,
  });
}

function twoPriorities(): void {
  dns.zone.set(SERVICE, {
    srv: [
      { priority: 20, weight: 100, port: 7001, target: 'backup.mesh.test' },
      { priority: 10, weight: 1, port: 7000, target: 'main.mesh.test' },
    ],
  });
  dns.zone.set('main.mesh.test', { a: [{ address: '127.0.0.2', ttl: 30 }] });
  dns.zone.set('backup.mesh.test', { a: [{ address: '127.0.0.3', ttl: 30 }] });
}

/**
 * Serves `records` (all one priority, one target) and counts, per port, what `n` cached picks
 * with `random` choose.
 */
async function pickCounts(
  records: readonly { weight: number; port: number }[],
  random: () => number,
  n: number,
): Promise<Map<number, number>> {
  dns.zone.set(SERVICE, {
    srv: records.map((r) => ({ priority: 1, target: 'w.mesh.test', ...r })),
  });
  dns.zone.set('w.mesh.test', { a: [{ address: '127.0.0.9', ttl: 300 }] });
  const resolver = resolverFor({ random, cacheTtlMs: 3_600_000 });
  await resolver.resolve(7n); // the lookup; every later pick is from the cache
  const picks = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const port = (resolver.resolve(7n) as DomusAddr).port!;
    picks.set(port, (picks.get(port) ?? 0) + 1);
  }
  return picks;
}

describe('DnsSrvResolver', () => {
  it('resolves a taberna to the target address and port of its SRV record', async () => {
    twoPriorities();
    const addr = await resolverFor().resolve(7n);
    expect(addr.equals(DomusAddr.tcp('127.0.0.2', 7000))).toBe(true);
  });

  it('always picks the lowest priority while its endpoints are available', async () => {
    twoPriorities();
    const resolver = resolverFor({ random: seeded(1) });
    await resolver.resolve(7n);
    for (let i = 0; i < 200; i++) {
      expect(String(resolver.resolve(7n))).toBe('tls://127.0.0.2:7000');
    }
  });

  it('spreads picks among equal priorities by weight, as RFC 2782 specifies', async () => {
    const n = 50_000;
    const picks = await pickCounts(
      [
        { weight: 60, port: 7060 },
        { weight: 0, port: 7000 },
        { weight: 10, port: 7010 },
        { weight: 30, port: 7030 },
      ],
      seeded(42),
      n,
    );
    // r is uniform in 0..100: weight w wins w/101 of the picks, weight 0 only when r is 0.
    for (const [port, weight] of [
      [7000, 1],
      [7010, 10],
      [7030, 30],
      [7060, 60],
    ]) {
      expect((picks.get(port) ?? 0) / n).toBeCloseTo(weight / 101, 2);
    }
  });

  it('picks endpoints of weights 1:1 and 3:1 exactly in proportion, favouring neither by order', async () => {
    // Evenly spaced "random" numbers: every outcome of the draw comes up equally often, so the
    // counts are exact and a bias towards the first record cannot hide in noise.
    const n = 4000;
    const evenly = (): (() => number) => {
      let i = 0;
      return () => ((i++ % n) + 0.5) / n;
    };
    for (const { weights, expected } of [
      { weights: [1, 1], expected: [2000, 2000] },
      { weights: [3, 1], expected: [3000, 1000] },
      { weights: [1, 3], expected: [1000, 3000] },
    ]) {
      const picks = await pickCounts(
        weights.map((weight, i) => ({ weight, port: 7100 + i })),
        evenly(),
        n,
      );
      expect([picks.get(7100) ?? 0, picks.get(7101) ?? 0]).toEqual(expected);
    }
  });

  it('gives zero-weight endpoints a small chance only, 1/(sum + 1) in all', async () => {
    const n = 40_000;
    const picks = await pickCounts(
      [
        { weight: 3, port: 7203 },
        { weight: 0, port: 7200 },
        { weight: 1, port: 7201 },
        { weight: 0, port: 7210 },
      ],
      seeded(7),
      n,
    );
    // r uniform in 0..4: 0 → one of the two zero-weight records, 1..3 → weight 3, 4 → weight 1.
    expect((picks.get(7203) ?? 0) / n).toBeCloseTo(3 / 5, 2);
    expect((picks.get(7201) ?? 0) / n).toBeCloseTo(1 / 5, 2);
    expect((picks.get(7200) ?? 0) / n).toBeCloseTo(1 / 10, 2);
    expect((picks.get(7210) ?? 0) / n).toBeCloseTo(1 / 10, 2);
  });

  it('caches an answer for the shortest A/AAAA TTL of its targets and queries again after it', async () => {
    twoPriorities();
    dns.zone.set('main.mesh.test', { a: [{ address: '127.0.0.2', ttl: 5 }] });
    const c = clock();
    const resolver = resolverFor({ now: c.now, minTtlMs: 0 });
    await resolver.resolve(7n);
    expect(dns.count(`SRV ${SERVICE}`)).toBe(1);

    c.advance(4_999);
    const cached = resolver.resolve(7n);
    expect(cached).toBeInstanceOf(DomusAddr); // synchronous: no lookup
    expect(dns.count(`SRV ${SERVICE}`)).toBe(1);

    dns.zone.set('main.mesh.test', { a: [{ address: '127.0.0.4', ttl: 5 }] });
    c.advance(1);
    const refreshed = resolver.resolve(7n);
    expect(refreshed).toBeInstanceOf(Promise);
    expect(String(await refreshed)).toBe('tls://127.0.0.4:7000');
    expect(dns.count(`SRV ${SERVICE}`)).toBe(2);
  });

  it('clamps DNS TTLs into minTtlMs..maxTtlMs, and a fixed cacheTtlMs overrides them', async () => {
    twoPriorities();
    dns.zone.set('main.mesh.test', { a: [{ address: '127.0.0.2', ttl: 0 }] });
    dns.zone.set('backup.mesh.test', { a: [{ address: '127.0.0.3', ttl: 0 }] });
    const c = clock();
    const clamped = resolverFor({ now: c.now, minTtlMs: 1_000, maxTtlMs: 2_000 });
    await clamped.resolve(7n);
    c.advance(999);
    expect(clamped.resolve(7n)).toBeInstanceOf(DomusAddr);
    c.advance(1);
    await clamped.resolve(7n);
    expect(dns.count(`SRV ${SERVICE}`)).toBe(2);

    dns.zone.set('main.mesh.test', { a: [{ address: '127.0.0.2', ttl: 86_400 }] });
    dns.zone.set('backup.mesh.test', { a: [{ address: '127.0.0.3', ttl: 86_400 }] });
    c.advance(1_000);
    await clamped.resolve(7n);
    c.advance(1_999);
    expect(clamped.resolve(7n)).toBeInstanceOf(DomusAddr);
    c.advance(1);
    expect(clamped.resolve(7n)).toBeInstanceOf(Promise);
    await clamped.resolve(7n);
    expect(dns.count(`SRV ${SERVICE}`)).toBe(4);

    const fixed = resolverFor({ now: c.now, cacheTtlMs: 60_000 });
    await fixed.resolve(7n);
    c.advance(59_999);
    expect(fixed.resolve(7n)).toBeInstanceOf(DomusAddr);
    c.advance(1);
    await expect(fixed.resolve(7n)).resolves.toBeInstanceOf(DomusAddr);
  });

  it('re-resolves after a reported dial failure and avoids the failed address while held', async () => {
    twoPriorities();
    const c = clock();
    const resolver = resolverFor({ now: c.now, failureHoldMs: 10_000 });
    expect(String(await resolver.resolve(7n))).toBe('tls://127.0.0.2:7000');

    expect(resolver.reportFailure('tls://127.0.0.2:7000')).toBe(1);
    const next = resolver.resolve(7n);
    expect(next).toBeInstanceOf(Promise); // the cached answer was dropped
    expect(String(await next)).toBe('tls://127.0.0.3:7001'); // failover to the next priority
    expect(dns.count(`SRV ${SERVICE}`)).toBe(2);

    c.advance(10_000);
    expect(String(resolver.resolve(7n))).toBe('tls://127.0.0.2:7000');
    expect(dns.count(`SRV ${SERVICE}`)).toBe(2);
  });

  it('still returns an address when every endpoint is held', async () => {
    twoPriorities();
    const resolver = resolverFor();
    await resolver.resolve(7n);
    resolver.reportFailure(DomusAddr.tcp('127.0.0.2', 7000));
    resolver.reportFailure(DomusAddr.tcp('127.0.0.3', 7001));
    expect(String(await resolver.resolve(7n))).toBe('tls://127.0.0.2:7000');
  });

  it('routes every target of the best priority as replicas, the same set while cached', async () => {
    dns.zone.set(SERVICE, {
      srv: [
        { priority: 10, weight: 5, port: 7000, target: 'a.mesh.test' },
        { priority: 10, weight: 1, port: 7000, target: 'b.mesh.test' },
        { priority: 20, weight: 1, port: 7001, target: 'backup.mesh.test' },
      ],
    });
    dns.zone.set('a.mesh.test', { a: [{ address: '127.0.0.2', ttl: 30 }] });
    dns.zone.set('b.mesh.test', {
      a: [
        { address: '127.0.0.4', ttl: 30 },
        { address: '127.0.0.5', ttl: 30 },
      ],
    });
    dns.zone.set('backup.mesh.test', { a: [{ address: '127.0.0.3', ttl: 30 }] });
    const resolver = resolverFor({ balancing: 'round-robin' });
    const route = await resolver.resolveRoute(7n);
    expect(route.addresses.map(String)).toEqual([
      'tls://127.0.0.2:7000',
      'tls://127.0.0.4:7000',
      'tls://127.0.0.5:7000',
    ]);
    expect(route.balancing).toBe('round-robin');
    expect(resolver.resolveRoute(7n)).toBe(route);
    expect(dns.count(`SRV ${SERVICE}`)).toBe(1);

    // A held replica leaves the set while others of its priority remain; then the next priority.
    resolver.reportFailure('tls://127.0.0.2:7000');
    expect((await resolver.resolveRoute(7n)).addresses.map(String)).toEqual([
      'tls://127.0.0.4:7000',
      'tls://127.0.0.5:7000',
    ]);
    resolver.reportFailure('tls://127.0.0.4:7000');
    resolver.reportFailure('tls://127.0.0.5:7000');
    expect((await resolver.resolveRoute(7n)).addresses.map(String)).toEqual([
      'tls://127.0.0.3:7001',
    ]);
  });

  it('binds the replicas of a service to the identity given for it, held replicas left out too', async () => {
    dns.zone.set(SERVICE, {
      srv: [
        { priority: 10, weight: 1, port: 7000, target: 'a.mesh.test' },
        { priority: 10, weight: 1, port: 7000, target: 'b.mesh.test' },
      ],
    });
    dns.zone.set('a.mesh.test', { a: [{ address: '127.0.0.2', ttl: 30 }] });
    dns.zone.set('b.mesh.test', { a: [{ address: '127.0.0.4', ttl: 30 }] });
    const billing = 'spiffe://aurelia.local/billing';
    const resolver = resolverFor({ identities: new Map([[`${SERVICE}.`, billing]]) });
    const route = await resolver.resolveRoute(7n);
    expect(route.identity).toBe(billing);
    resolver.reportFailure('tls://127.0.0.2:7000');
    const rest = await resolver.resolveRoute(7n);
    expect(rest.addresses.map(String)).toEqual(['tls://127.0.0.4:7000']);
    expect(rest.identity).toBe(billing);
    // A service without an entry accepts any member of the mesh.
    expect((await resolverFor().resolveRoute(7n)).identity).toBeUndefined();
  });

  it('queries again after invalidate(id)', async () => {
    twoPriorities();
    const resolver = resolverFor();
    await resolver.resolve(7n);
    expect(resolver.invalidate(7n)).toBe(true);
    expect(resolver.invalidate(7n)).toBe(false);
    expect(resolver.invalidate(8n)).toBe(false);
    await resolver.resolve(7n);
    expect(dns.count(`SRV ${SERVICE}`)).toBe(2);
  });

  it('shares one lookup among concurrent resolves of the same service', async () => {
    twoPriorities();
    const resolver = resolverFor({
      services: new Map([
        [7n, SERVICE],
        [8n, SERVICE],
      ]),
    });
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => resolver.resolve(i % 2 === 0 ? 7n : 8n)),
    );
    expect(results.map(String)).toEqual(Array(20).fill('tls://127.0.0.2:7000'));
    expect(dns.count(`SRV ${SERVICE}`)).toBe(1);
    expect(dns.count('A main.mesh.test')).toBe(1);
  });

  it('maps id ranges to their services, exact ids first', async () => {
    twoPriorities();
    dns.zone.set('_ledger._tcp.mesh.test', {
      srv: [{ priority: 0, weight: 0, port: 9000, target: '127.0.0.8' }],
    });
    const resolver = resolverFor({
      services: new Map([[150n, SERVICE]]),
      ranges: [{ from: 100n, to: 199n, service: '_ledger._tcp.mesh.test' }],
    });
    expect(resolver.serviceFor(100n)).toBe('_ledger._tcp.mesh.test');
    expect(String(await resolver.resolve(199n))).toBe('tls://127.0.0.8:9000');
    expect(String(await resolver.resolve(150n))).toBe('tls://127.0.0.2:7000');
    expect(() => resolver.resolve(200n)).toThrow(
      expect.objectContaining({ kind: ErrorId.UnknownTaberna }),
    );
  });

  it('uses IPv6 addresses of AAAA-only targets', async () => {
    dns.zone.set(SERVICE, {
      srv: [{ priority: 0, weight: 1, port: 7000, target: 'v6.mesh.test' }],
    });
    dns.zone.set('v6.mesh.test', { aaaa: [{ address: '::1', ttl: 30 }] });
    expect(String(await resolverFor().resolve(7n))).toBe('tls://[::1]:7000');
  });

  it('fails with UnknownTaberna naming the id and the service on NXDOMAIN', async () => {
    dns.zone.set(SERVICE, { nxdomain: true });
    const err = await rejection(() => resolverFor().resolve(7n));
    expect(err.kind).toBe(ErrorId.UnknownTaberna);
    expect(err.message).toContain('taberna 0x7 (7)');
    expect(err.message).toContain(SERVICE);
    expect(err.message).toContain('NXDOMAIN');
  });

  it('fails with UnknownTaberna when the service has no SRV records or no target has an address', async () => {
    dns.zone.set(SERVICE, { srv: [] });
    expect((await rejection(() => resolverFor().resolve(7n))).kind).toBe(ErrorId.UnknownTaberna);

    dns.zone.set(SERVICE, {
      srv: [{ priority: 0, weight: 0, port: 7000, target: 'gone.mesh.test' }],
    });
    dns.zone.set('gone.mesh.test', {});
    const err = await rejection(() => resolverFor().resolve(7n));
    expect(err.kind).toBe(ErrorId.UnknownTaberna);
    expect(err.message).toContain('gone.mesh.test');
  });

  it('throws UnknownTaberna for an id with no mapped service, without a query', () => {
    expect(() => resolverFor().resolve(99n)).toThrow(
      /no DNS SRV service is mapped for taberna 0x63 \(99\)/,
    );
    expect(dns.queries).toEqual([]);
  });

  it('fails with PeerUnavailable within timeoutMs when the DNS server never answers', async () => {
    dns.zone.set(SERVICE, { silent: true });
    const started = Date.now();
    const err = await rejection(() => resolverFor({ timeoutMs: 300 }).resolve(7n));
    expectElapsedBetween(started, 300, 4000); // the resolver's default is 5 s
    expect(err.kind).toBe(ErrorId.PeerUnavailable);
    expect(err.message).toContain(SERVICE);
  });

  it('fails with PeerUnavailable on SERVFAIL', async () => {
    dns.zone.set(SERVICE, { servfail: true });
    expect((await rejection(() => resolverFor().resolve(7n))).kind).toBe(ErrorId.PeerUnavailable);
  });

  it('reuses an expired answer when refreshing it fails, within staleIfErrorMs', async () => {
    twoPriorities();
    const c = clock();
    const resolver = resolverFor({ now: c.now, cacheTtlMs: 1_000, staleIfErrorMs: 5_000 });
    await resolver.resolve(7n);
    dns.zone.set(SERVICE, { servfail: true });
    c.advance(1_000);
    expect(String(await resolver.resolve(7n))).toBe('tls://127.0.0.2:7000');
    expect(dns.count(`SRV ${SERVICE}`)).toBe(2);
    // While DNS fails, the stale answer is served without a lookup for a second.
    expect(String(resolver.resolve(7n))).toBe('tls://127.0.0.2:7000');
    expect(dns.count(`SRV ${SERVICE}`)).toBe(2);
    c.advance(1_000);
    expect(String(await resolver.resolve(7n))).toBe('tls://127.0.0.2:7000');
    expect(dns.count(`SRV ${SERVICE}`)).toBe(3);
    c.advance(4_000); // staleIfErrorMs after the expiry
    expect((await rejection(() => resolver.resolve(7n))).kind).toBe(ErrorId.PeerUnavailable);
  });

  it('fails lookups in progress and later resolves with DomusClosed after close()', async () => {
    dns.zone.set(SERVICE, { silent: true });
    const resolver = resolverFor({ timeoutMs: 10_000 });
    const pending = rejection(() => resolver.resolve(7n));
    await new Promise<void>((resolve) => setImmediate(resolve));
    resolver.close();
    expect((await pending).kind).toBe(ErrorId.DomusClosed);
    expect(() => resolver.resolve(7n)).toThrow(
      expect.objectContaining({ kind: ErrorId.DomusClosed }),
    );
  });

  it('rejects invalid options with InvalidConfig naming the option', () => {
    const cases: [Partial<DnsSrvResolverOptions>, RegExp][] = [
      [{ services: new Map([[-1n, SERVICE]]) }, /taberna id/],
      [{ services: new Map([[1n, 'not a name']]) }, /services\[1\] "not a name" is not a DNS name/],
      [{ ranges: [{ from: 5n, to: 1n, service: SERVICE }] }, /ranges\[0\] is inverted/],
      [
        {
          ranges: [
            { from: 1n, to: 10n, service: SERVICE },
            { from: 10n, to: 20n, service: SERVICE },
          ],
        },
        /overlap/,
      ],
      [{ servers: [] }, /servers must be a non-empty array/],
      [{ servers: ['not-an-ip'] }, /are not valid DNS servers/],
      [{ timeoutMs: 0 }, /timeoutMs must be an integer in 1\.\.60000, got 0/],
      [
        { minTtlMs: 5_000, maxTtlMs: 1_000 },
        /maxTtlMs \(1000\) must be at least minTtlMs \(5000\)/,
      ],
      [{ failureHoldMs: -1 }, /failureHoldMs/],
      [{ cacheTtlMs: 1.5 }, /cacheTtlMs/],
      [
        { balancing: 'random' as never },
        /balancing must be one of least-loaded, round-robin, hash/,
      ],
      [
        { identities: new Map([['_other._tcp.mesh', 'spiffe://aurelia.local/billing']]) },
        /identities names _other\._tcp\.mesh, which no services or ranges entry looks up/,
      ],
      [
        { identities: new Map([[SERVICE, '']]) },
        /identities\[_billing\._tcp\.mesh\.svc\.cluster\.local\]: a route's identity must be a certificate identity/,
      ],
    ];
    for (const [options, message] of cases) {
      const caught = expectError(ErrorId.InvalidConfig, () => resolverFor(options));
      expect(caught.message).toMatch(message);
    }
  });
});
