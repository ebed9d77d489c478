import fc from 'fast-check';
import { DomusAddr } from '../../lib/engine/addr.js';
import { AureliaError, ErrorId } from '../../lib/engine/errors.js';
import { ReplicaSet, SimpleResolver, type RouteResolver } from '../../lib/engine/resolver.js';
import { expectError } from '../support/expect.js';

const A = DomusAddr.parse('tls://127.0.0.1:7000');
const B = DomusAddr.parse('unix:///run/b.sock');
const U64_MAX = (1n << 64n) - 1n;

describe('SimpleResolver', () => {
  it('resolves an inserted id to its address', async () => {
    const resolver = new SimpleResolver();
    resolver.insert(1n, A);
    expect(resolver.resolve(1n)).toBe(A);
    const asInterface: RouteResolver = resolver;
    await expect(Promise.resolve(asInterface.resolve(1n))).resolves.toBe(A);
  });

  it('reports an unknown id with UnknownTaberna naming the id', () => {
    expectError(
      ErrorId.UnknownTaberna,
      () => new SimpleResolver().resolve(42n),
      'no route to taberna 0x2a (42): add one',
    );
  });

  it('reports a value that is not a taberna id with UnknownTaberna', () => {
    const resolver = new SimpleResolver();
    expectError(ErrorId.UnknownTaberna, () => resolver.resolve(-1n), 'taberna id', '-1n');
    expectError(ErrorId.UnknownTaberna, () => resolver.resolve(5 as unknown as bigint), 'number');
  });

  it('insert replaces a route and returns the previous address', () => {
    const resolver = new SimpleResolver();
    expect(resolver.insert(7n, A)).toBeUndefined();
    expect(resolver.insert(7n, B)).toBe(A);
    expect(resolver.get(7n)).toBe(B);
    expect(resolver.size).toBe(1);
  });

  it('remove reports whether a route existed and the id stops resolving', () => {
    const resolver = new SimpleResolver([[3n, A]]);
    expect(resolver.remove(3n)).toBe(true);
    expect(resolver.remove(3n)).toBe(false);
    expect(resolver.get(3n)).toBeUndefined();
    expectError(ErrorId.UnknownTaberna, () => resolver.resolve(3n), 'no route to taberna 0x3 (3)');
  });

  it('accepts the whole u64 range and rejects ids outside it with InvalidConfig', () => {
    const resolver = new SimpleResolver();
    resolver.insert(0n, A);
    resolver.insert(U64_MAX, B);
    expect(resolver.resolve(U64_MAX)).toBe(B);
    for (const bad of [-1n, U64_MAX + 1n, 1 as unknown as bigint, '1' as unknown as bigint]) {
      expectError(
        ErrorId.InvalidConfig,
        () => resolver.insert(bad, A),
        'taberna id must be a bigint',
      );
    }
  });

  it('rejects a route that is not a DomusAddr with InvalidConfig', () => {
    expectError(
      ErrorId.InvalidConfig,
      () => new SimpleResolver().insert(1n, 'tls://127.0.0.1:1' as unknown as DomusAddr),
      'route for taberna 0x1 (1) must be a DomusAddr',
    );
  });

  it('takes initial entries and validates them', () => {
    const resolver = new SimpleResolver(
      new Map([
        [1n, A],
        [2n, B],
      ]),
    );
    expect([...resolver.entries()]).toEqual([
      [1n, A],
      [2n, B],
    ]);
    expectError(
      ErrorId.InvalidConfig,
      () => new SimpleResolver([[-5n, A]]),
      'taberna id must be a bigint',
    );
  });

  it('agrees with a plain map after any sequence of inserts and removes', () => {
    const id = fc.bigInt({ min: 0n, max: 20n });
    const op = fc.oneof(
      fc.record({ kind: fc.constant('insert' as const), id, addr: fc.constantFrom(A, B) }),
      fc.record({ kind: fc.constant('remove' as const), id }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), (ops) => {
        const resolver = new SimpleResolver();
        const model = new Map<bigint, DomusAddr>();
        for (const step of ops) {
          if (step.kind === 'insert') {
            expect(resolver.insert(step.id, step.addr)).toBe(model.get(step.id));
            model.set(step.id, step.addr);
          } else {
            expect(resolver.remove(step.id)).toBe(model.delete(step.id));
          }
        }
        for (let i = 0n; i <= 20n; i += 1n) {
          const expected = model.get(i);
          if (expected === undefined) {
            expect(() => resolver.resolve(i)).toThrow(AureliaError);
          } else {
            expect(resolver.resolve(i)).toBe(expected);
          }
        }
        expect(resolver.size).toBe(model.size);
      }),
    );
  });
});

describe('ReplicaSet and replica routes', () => {
  const C = DomusAddr.tcp('10.0.0.3', 7000);

  it('routes an id to every replica given, the same set object until the route changes', () => {
    const resolver = new SimpleResolver([[5n, [A, B, C]]]);
    const route = resolver.resolveRoute(5n);
    expect(route.addresses).toEqual([A, B, C]);
    expect(route.keys).toEqual([A.key, B.key, C.key]);
    expect(route.balancing).toBe('least-loaded');
    expect(resolver.resolveRoute(5n)).toBe(route);
    // resolve() and get() keep their single-address answers: the first replica.
    expect(resolver.resolve(5n)).toBe(A);
    expect(resolver.get(5n)).toBe(A);
    expect(resolver.insert(5n, ReplicaSet.of([C], 'round-robin'))).toBe(A);
    expect(resolver.resolveRoute(5n)).not.toBe(route);
    expect(resolver.getRoute(5n)?.balancing).toBe('round-robin');
    expect([...resolver.routes()].map(([id, r]) => [id, r.addresses])).toEqual([[5n, [C]]]);
  });

  it('drops duplicate addresses and finds a replica by its key', () => {
    const set = ReplicaSet.of([A, DomusAddr.parse(String(A)), B], 'hash');
    expect(set.addresses).toEqual([A, B]);
    expect(set.addressOf(B.key)).toBe(B);
    expect(set.addressOf(C.key)).toBeUndefined();
  });

  it('refuses an empty list, a non-address and an unknown balancing with InvalidConfig', () => {
    expectError(
      ErrorId.InvalidConfig,
      () => new SimpleResolver().insert(1n, []),
      'at least one address',
    );
    expectError(
      ErrorId.InvalidConfig,
      () => new SimpleResolver().insert(1n, [A, 'tls://h:1' as unknown as DomusAddr]),
      'route address [1] must be a DomusAddr',
    );
    expectError(
      ErrorId.InvalidConfig,
      () => ReplicaSet.of(A, 'random' as never),
      'balancing must be one of least-loaded, round-robin, hash',
    );
  });
});
