import { AureliaError, DomusAddr, ErrorId } from '../../lib/index.js';
import { ReplicaSet } from '../../lib/engine/resolver.js';
import { DnsSrvResolver } from '../../lib/engine/services/dns-srv-resolver.js';
import { resolveAureliaOptions, type AureliaModuleOptions } from '../../lib/nest/options.js';
import { patternForId, tabernaIdForPattern } from '../../lib/nest/pattern.js';
import { RouteTable } from '../../lib/nest/route-table.js';
import { expectError } from '../support/expect.js';

const auth = { ca: '/etc/mesh/ca.pem', cert: '/etc/mesh/node.pem', key: '/etc/mesh/node.key' };
const base: AureliaModuleOptions = { listen: 'tls://127.0.0.1:0', auth };
const B1 = 'tls://10.0.0.1:7000';
const B2 = 'tls://10.0.0.2:7000';
const B3 = 'tls://10.0.0.3:7000';

function addresses(route: ReplicaSet | Promise<ReplicaSet>): string[] {
  expect(route).toBeInstanceOf(ReplicaSet);
  return (route as ReplicaSet).addresses.map(String);
}

function refusal(options: unknown): AureliaError {
  try {
    resolveAureliaOptions(options as AureliaModuleOptions);
  } catch (err) {
    expect(AureliaError.is(err, ErrorId.InvalidConfig)).toBe(true);
    return err as AureliaError;
  }
  throw new Error('the options were accepted');
}

describe('AureliaModule routes: replicas, prefixes and a default', () => {
  it('routes a pattern to every replica of an array, in the map and the array form', () => {
    const fromMap = resolveAureliaOptions({ ...base, routes: { 'billing.charge': [B1, B2, B3] } });
    const id = tabernaIdForPattern('billing.charge');
    expect(addresses(fromMap.resolver.resolveRoute!(id))).toEqual([B1, B2, B3]);
    expect(fromMap.resolver.resolveRoute!(id)).toBe(fromMap.resolver.resolveRoute!(id));

    const fromArray = resolveAureliaOptions({
      ...base,
      routes: [
        { pattern: { cmd: 'charge' }, address: [B1, DomusAddr.parse(B2)], balancing: 'hash' },
      ],
    });
    const route = fromArray.resolver.resolveRoute!(tabernaIdForPattern({ cmd: 'charge' }));
    expect(addresses(route)).toEqual([B1, B2]);
    expect((route as ReplicaSet).balancing).toBe('hash');
  });

  it('routes patterns by their longest matching prefix, then the default route', () => {
    const table = RouteTable.from({
      'inventory.*': [B1, B2],
      'inventory.admin.*': B3,
      'orders.create': B2,
      '*': B3,
    });
    expect(table.size).toBe(4);
    const id = (pattern: string): bigint => tabernaIdForPattern(pattern);
    expect(addresses(table.resolveRoute(id('inventory.list')))).toEqual([B1, B2]);
    expect(addresses(table.resolveRoute(id('inventory.admin.purge')))).toEqual([B3]);
    expect(addresses(table.resolveRoute(id('orders.create')))).toEqual([B2]);
    expect(addresses(table.resolveRoute(id('shipping.track')))).toEqual([B3]);
    // The exact route beats a prefix that also matches it.
    const exactFirst = RouteTable.from({ 'inventory.*': B1, 'inventory.count': B2 });
    expect(addresses(exactFirst.resolveRoute(id('inventory.count')))).toEqual([B2]);
    // A bare id no pattern of this process hashed to goes to the default route only.
    expect(addresses(table.resolveRoute(123n))).toEqual([B3]);
  });

  it('fails an unrouted pattern with UnknownTaberna naming the pattern and the fix', () => {
    const table = RouteTable.from({ 'inventory.*': B1 });
    const id = tabernaIdForPattern('billing.refund');
    expect(patternForId(id)).toBe('billing.refund');
    const caught = expectError(ErrorId.UnknownTaberna, () => table.resolveRoute(id));
    const message = caught.message;
    expect(message).toContain(`pattern 'billing.refund' (taberna 0x${id.toString(16)})`);
    expect(message).toContain(`default route '*'`);
  });

  it('asks DNS SRV for a mapped pattern before prefixes and the default route', () => {
    const dns = new DnsSrvResolver({
      services: [[tabernaIdForPattern('inventory.dns'), '_inventory._tcp.mesh.test']],
      servers: ['127.0.0.1:9'],
    });
    try {
      const table = RouteTable.from({ 'inventory.*': B1, '*': B2 }, dns);
      // The mapped pattern starts a DNS lookup (a Promise), others route statically.
      const lookup = table.resolveRoute(tabernaIdForPattern('inventory.dns'));
      expect(lookup).toBeInstanceOf(Promise);
      (lookup as Promise<unknown>).catch(() => undefined);
      expect(addresses(table.resolveRoute(tabernaIdForPattern('inventory.other')))).toEqual([B1]);
    } finally {
      dns.close();
    }
  });

  it('binds a route to the identity it names, in prefix and default routes too', () => {
    const billing = 'spiffe://aurelia.local/billing';
    const table = RouteTable.from([
      { pattern: 'billing.charge', address: [B1, B2], identity: billing },
      { pattern: 'billing.*', address: B3, identity: billing },
      { pattern: '*', address: B1 },
    ]);
    const charge = table.resolveRoute(tabernaIdForPattern('billing.charge')) as ReplicaSet;
    expect(charge.identity).toBe(billing);
    expect(charge.balancing).toBe('least-loaded');
    expect((table.resolveRoute(tabernaIdForPattern('billing.refund')) as ReplicaSet).identity).toBe(
      billing,
    );
    expect(
      (table.resolveRoute(tabernaIdForPattern('audit.write')) as ReplicaSet).identity,
    ).toBeUndefined();
    expect(
      refusal({ ...base, routes: [{ pattern: 'a', address: B1, identity: '' }] }).message,
    ).toContain(`'routes[0].identity' must be a certificate identity`);
    expect(
      refusal({ ...base, routes: [{ pattern: 'a', address: B1, identity: 'a\nb' }] }).message,
    ).toContain('without control characters');
  });

  it('refuses routes that name no address, an unknown balancing or a duplicate', () => {
    expect(refusal({ ...base, routes: { a: [] } }).message).toContain(
      `'routes[0].address' must name at least one address`,
    );
    expect(refusal({ ...base, routes: { a: [B1, 'nowhere'] } }).message).toContain(
      `'routes[0].address[1]'`,
    );
    expect(
      refusal({ ...base, routes: [{ pattern: 'a', address: B1, balancing: 'random' }] }).message,
    ).toContain(`'routes[0].balancing' must be one of least-loaded, round-robin, hash`);
    expect(
      refusal({
        ...base,
        routes: [
          { pattern: 'a', address: B1 },
          { pattern: 'a', address: B2 },
        ],
      }).message,
    ).toContain(`'routes[1]' routes taberna`);
    expect(
      refusal({
        ...base,
        routes: [
          { pattern: '*', address: B1 },
          { pattern: '*', address: B2 },
        ],
      }).message,
    ).toContain('the default route again');
  });
});
