import fc from 'fast-check';
import { AureliaError, DomusAddr, ErrorId, JsonCodec, SimpleResolver } from '../../lib/index.js';
import { RESERVED_TABERNA_ID_BASE } from '../../lib/engine/services/request-reply-wire.js';
import { resolveAureliaOptions, type AureliaModuleOptions } from '../../lib/nest/options.js';
import {
  PATTERN_HASH_PREFIX,
  normalizePattern,
  outsideReservedRange,
  tabernaIdForPattern,
} from '../../lib/nest/pattern.js';
import { emitError, rejectionReason } from '../../lib/nest/errors.js';
import { expectError } from '../support/expect.js';

const auth = { ca: '/etc/mesh/ca.pem', cert: '/etc/mesh/node.pem', key: '/etc/mesh/node.key' };
const base: AureliaModuleOptions = { listen: 'tls://127.0.0.1:0', auth };

function invalid(options: unknown, ...fragments: string[]): void {
  const caught = expectError(ErrorId.InvalidConfig, () =>
    resolveAureliaOptions(options as AureliaModuleOptions),
  );
  for (const f of fragments) expect(caught.message).toContain(f);
}

describe('pattern → taberna id', () => {
  it('is the first 8 bytes of SHA-256 over the documented prefix and the normalized pattern', () => {
    expect(PATTERN_HASH_PREFIX).toBe('aurelia-mesh/nest-pattern/v1\0');
    // Fixed vectors: a change here breaks every deployed mesh.
    expect(tabernaIdForPattern('sum')).toBe(0xa41f570ee2576613n);
    expect(tabernaIdForPattern({ cmd: 'count' })).toBe(0xed5c1e84b6e6017dn);
  });

  it('ignores object key order, as Nest’s routing does', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 }), { maxKeys: 6 }),
        (obj) => {
          const reversed = Object.fromEntries(Object.entries(obj).reverse());
          expect(tabernaIdForPattern(reversed)).toBe(tabernaIdForPattern(obj));
        },
      ),
    );
  });

  it('clears the top bit of a hash in the reserved range and keeps every other', () => {
    const U64_MAX = (1n << 64n) - 1n;
    expect(outsideReservedRange(RESERVED_TABERNA_ID_BASE)).toBe(0x7fff_ffff_ffff_ff00n);
    expect(outsideReservedRange(U64_MAX)).toBe(0x7fff_ffff_ffff_ffffn);
    expect(outsideReservedRange(RESERVED_TABERNA_ID_BASE - 1n)).toBe(RESERVED_TABERNA_ID_BASE - 1n);
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: U64_MAX }), (hash) => {
        const id = outsideReservedRange(hash);
        expect(id).toBeLessThan(RESERVED_TABERNA_ID_BASE);
        expect(id).toBe(hash < RESERVED_TABERNA_ID_BASE ? hash : hash & ~(1n << 63n));
      }),
    );
  });

  it('uses a bigint pattern as the id and refuses one in the reserved range', () => {
    expect(tabernaIdForPattern(42n)).toBe(42n);
    expect(() => tabernaIdForPattern(RESERVED_TABERNA_ID_BASE)).toThrow(
      `taberna id 0x${RESERVED_TABERNA_ID_BASE.toString(16)} is not a u64 below the reserved range`,
    );
    expect(() => tabernaIdForPattern(-1n)).toThrow('taberna id -1n is not a u64');
    expect(() => normalizePattern(null)).toThrow(AureliaError);
  });
});

describe('AureliaModule options', () => {
  it('accept the minimal options and fill the defaults', () => {
    const resolved = resolveAureliaOptions(base);
    expect(resolved.listen).toEqual(DomusAddr.parse('tls://127.0.0.1:0'));
    expect(resolved.config.sendTimeoutMs).toBe(30_000);
    expect(resolved.codec).toBeInstanceOf(JsonCodec);
    expect(resolved.routes.size).toBe(0);
  });

  it('leave out the listener of an application that only calls', () => {
    expect(resolveAureliaOptions({ auth }).listen).toBeUndefined();
  });

  it('hash route patterns and keep explicit ids', () => {
    const resolved = resolveAureliaOptions({
      ...base,
      routes: [
        { pattern: 'sum', address: 'tls://10.0.0.1:7000' },
        { pattern: 7n, address: DomusAddr.socket('/run/a.sock') },
      ],
    });
    expect(resolved.routes.staticRoute(tabernaIdForPattern('sum'))?.addresses).toEqual([
      DomusAddr.parse('tls://10.0.0.1:7000'),
    ]);
    expect(resolved.routes.staticRoute(7n)?.addresses).toEqual([DomusAddr.socket('/run/a.sock')]);
    expect(resolved.resolver).toBe(resolved.routes);
    expect(
      resolveAureliaOptions({ ...base, routes: { sum: 'tls://10.0.0.1:7000' } }).routes.size,
    ).toBe(1);
  });

  it('name the option at fault', () => {
    invalid(undefined, 'options');
    invalid({ ...base, listen: 'http://x:1' }, `'listen'`);
    invalid({ ...base, listen: null as never }, `'listen'`, 'got null');
    invalid({ ...base, auth: { ca: '/a' } }, `'auth'`, 'cert');
    invalid({ ...base, auth: { format: 'xml' } }, `'auth'`, 'format');
    invalid({ ...base, auth: { ...auth, watch: 'yes' as never } }, `'auth'`, 'watch must be');
    invalid({ ...base, auth: { ...auth, watch: { debounceMs: 0 } } }, `'auth'`, 'watch.debounceMs');
    invalid({ ...base, auth: { ...auth, watch: { every: 1 } as never } }, `'auth'`, 'watch.every');
    invalid({ ...base, routes: [{ pattern: 'a', address: 'nowhere' }] }, `'routes[0].address'`);
    invalid(
      { ...base, routes: { a: 'tls://h:1' }, resolver: new SimpleResolver() },
      `'routes'`,
      'resolver',
    );
    invalid({ ...base, resolver: {} }, `'resolver'`);
    invalid({ ...base, config: { sendTimeoutMs: 0 } }, `'config'`, 'sendTimeoutMs');
    invalid({ ...base, codec: { encodeApp: () => undefined } }, `'codec'`);
    invalid({ ...base, codec: new JsonCodec({ msgType: 5 }) }, `'codec'`, 'A3');
    invalid({ ...base, requestTimeoutMs: 300_001 }, `'requestTimeoutMs'`, '1..300000');
    invalid({ ...base, metricsIntervalMs: 1 }, `'metricsIntervalMs'`);
    invalid({ ...base, client: { serializer: {} } }, `'client.serializer'`);
    invalid(
      { ...base, lisen: 'typo' },
      `'lisen'`,
      "not an AureliaModule option; did you mean 'listen'?",
    );
    invalid({ ...base, zzzzzz: 1 }, `'zzzzzz'`, 'known options: listen, ');
  });
});

describe('handler errors as rejection reasons', () => {
  it('carry a Nest error payload whole when it fits, shortened but parseable otherwise', () => {
    const payload = { status: 'error', message: 'nope', code: 7 };
    expect(JSON.parse(rejectionReason(payload))).toEqual(payload);
    fc.assert(
      fc.property(fc.string({ minLength: 1000, maxLength: 3000 }), (message) => {
        const reason = rejectionReason({ message });
        expect(Buffer.byteLength(reason)).toBeLessThanOrEqual(1024);
        expect(JSON.parse(reason)).toMatchObject({ status: 'error' });
      }),
    );
  });

  it('become RemoteTabernaRejected with the payload as cause at the emitter', () => {
    const rejected = new AureliaError(
      ErrorId.RemoteTabernaRejected,
      rejectionReason({ status: 'error', message: 'no' }),
    );
    const err = emitError(rejected, 'note') as AureliaError;
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.message).toBe(`the handler of 'note' failed: no`);
    expect(err.cause).toEqual({ status: 'error', message: 'no' });
    const timeout = new AureliaError(ErrorId.SendTimeout, 'late');
    expect(emitError(timeout, 'note')).toBe(timeout);
  });
});
