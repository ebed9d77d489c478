import 'reflect-metadata';
import { Controller } from '@nestjs/common';
import { EventPattern, MessagePattern } from '@nestjs/microservices';
import { PATTERN_EXTRAS_METADATA } from '@nestjs/microservices/constants.js';
import { ErrorId } from '../../lib/engine/errors.js';
import { SecurityReport } from '../../lib/engine/reporting/security.js';
import type { Domus } from '../../lib/engine/domus.js';
import {
  ALLOW_PEERS_EXTRA,
  AllowPeers,
  AuthorizationGate,
  PEER_NOT_ALLOWED,
  compileIdentities,
  resolveAuthorization,
} from '../../lib/nest/authorization.js';

const MESH = 'spiffe://mesh';

/** A domus as far as the gate reads it. */
function fakeDomus(): { domus: Domus; security: SecurityReport } {
  const security = new SecurityReport();
  const domus = {
    reporting: { security },
    config: { snapshot: () => ({ limitedLogIntervalMs: 60_000 }) },
  } as unknown as Domus;
  return { domus, security };
}

function peer(identity: string) {
  return { identity, local: false, address: 'tls://127.0.0.1:1' };
}

/** The handlers map an `AureliaServer` holds, built from decorated methods. */
function handlersOf(...methods: [string, object][]) {
  return new Map(
    methods.map(([pattern, method]) => [
      pattern,
      { extras: Reflect.getMetadata(PATTERN_EXTRAS_METADATA, method) as Record<string, unknown> },
    ]),
  );
}

describe('identity patterns', () => {
  const allows = (patterns: string[], identity: string) =>
    compileIdentities(patterns, 'test').test(identity);

  it('match an identity exactly', () => {
    expect(allows([`${MESH}/orders`], `${MESH}/orders`)).toBe(true);
    expect(allows([`${MESH}/orders`], `${MESH}/orders/eu`)).toBe(false);
    expect(allows([`${MESH}/orders`], `${MESH}/order`)).toBe(false);
    expect(allows([`${MESH}/orders`], `spiffe://other/orders`)).toBe(false);
  });

  it('let * stand for exactly one non-empty path segment', () => {
    expect(allows([`${MESH}/*`], `${MESH}/orders`)).toBe(true);
    expect(allows([`${MESH}/*`], `${MESH}/orders/eu`)).toBe(false);
    expect(allows([`${MESH}/*`], `${MESH}/`)).toBe(false);
    expect(allows([`${MESH}/*`], `${MESH}`)).toBe(false);
    expect(allows([`${MESH}/*`], `spiffe://mesh-evil/orders`)).toBe(false);
    expect(allows([`${MESH}/*/eu`], `${MESH}/orders/eu`)).toBe(true);
    expect(allows([`${MESH}/*/eu`], `${MESH}/orders/us`)).toBe(false);
  });

  it('let a final ** stand for one or more segments', () => {
    expect(allows([`${MESH}/**`], `${MESH}/orders`)).toBe(true);
    expect(allows([`${MESH}/**`], `${MESH}/orders/eu/1`)).toBe(true);
    expect(allows([`${MESH}/**`], `${MESH}`)).toBe(false);
    expect(allows([`${MESH}/**`], `${MESH}/orders//x`)).toBe(false);
    expect(allows([`${MESH}/orders/**`], `${MESH}/ordersx/eu`)).toBe(false);
  });

  it('let * alone allow every identity, and any pattern of a list allow', () => {
    expect(allows(['*'], 'billing.mesh.local')).toBe(true);
    expect(allows(['*'], `${MESH}/a/b`)).toBe(true);
    expect(allows([`${MESH}/orders`, `${MESH}/audit`], `${MESH}/audit`)).toBe(true);
  });

  it('refuse malformed patterns, naming the problem', () => {
    for (const bad of [[], [''], [`${MESH}/ord*`], [`${MESH}/**/x`], [42]]) {
      expect(() => compileIdentities(bad, '@AllowPeers')).toThrow(
        expect.objectContaining({ kind: ErrorId.InvalidConfig }) as Error,
      );
    }
    expect(() => compileIdentities([], '@AllowPeers')).toThrow(/at least one identity/);
    expect(() => compileIdentities([`${MESH}/ord*`], '@AllowPeers')).toThrow(
      /wildcard inside a segment/,
    );
  });
});

describe('the authorization gate', () => {
  @AllowPeers(`${MESH}/orders`)
  @Controller()
  class Ledger {
    @MessagePattern('ledger.read')
    read(): void {}

    @AllowPeers(`${MESH}/*`)
    @MessagePattern('ledger.list')
    list(): void {}

    @EventPattern('ledger.note')
    note(_data: unknown): void {}
  }

  @Controller()
  class Open {
    @MessagePattern('open.echo')
    echo(): void {}

    @MessagePattern('misc.ping')
    ping(): void {}
  }

  const ledger = Ledger.prototype;
  const open = Open.prototype;
  const handlers = handlersOf(
    ['ledger.read', ledger.read],
    ['ledger.list', ledger.list],
    ['ledger.note', ledger.note],
    ['open.echo', open.echo],
    ['misc.ping', open.ping],
  );

  it('applies the controller rule, and a method rule instead of it', () => {
    const { domus } = fakeDomus();
    const gate = AuthorizationGate.for({}, handlers, domus)!;
    expect(gate.check(peer(`${MESH}/orders`), 'ledger.read')).toBeUndefined();
    expect(gate.check(peer(`${MESH}/audit`), 'ledger.read')?.code).toBe(PEER_NOT_ALLOWED);
    expect(gate.check(peer(`${MESH}/audit`), 'ledger.note')?.code).toBe(PEER_NOT_ALLOWED);
    expect(gate.check(peer(`${MESH}/audit`), 'ledger.list')).toBeUndefined();
    expect(gate.check(peer('spiffe://other/audit'), 'ledger.list')?.code).toBe(PEER_NOT_ALLOWED);
    // No rule and the default default: open.
    expect(gate.check(peer('spiffe://other/x'), 'misc.ping')).toBeUndefined();
  });

  it('lets the first matching module rule decide, then the default', () => {
    const { domus, security } = fakeDomus();
    const policy = resolveAuthorization({
      default: 'deny',
      rules: [
        { pattern: 'open.*', peers: [`${MESH}/audit`] },
        { pattern: 'open.echo', peers: ['*'] },
        { pattern: 'ledger.**', peers: ['*'] },
      ],
    });
    const gate = AuthorizationGate.for({ authorization: policy }, handlers, domus)!;
    expect(gate.check(peer(`${MESH}/audit`), 'open.echo')).toBeUndefined();
    expect(gate.check(peer(`${MESH}/orders`), 'open.echo')?.code).toBe(PEER_NOT_ALLOWED);
    expect(gate.check(peer(`${MESH}/orders`), 'misc.ping')?.message).toBe(
      `refused by the authorization policy: ${MESH}/orders may not call 'misc.ping'`,
    );
    // Decorated handlers keep their own rule over the module's `ledger.**`.
    expect(gate.check(peer(`${MESH}/audit`), 'ledger.read')?.code).toBe(PEER_NOT_ALLOWED);
    expect([...security.authorizationDenied()]).toEqual([
      ['open.echo', 1],
      ['misc.ping', 1],
      ['ledger.read', 1],
    ]);
  });

  it('checks nothing when every pattern is open to every peer', () => {
    const { domus } = fakeDomus();
    const openOnly = handlersOf(['open.echo', open.echo], ['misc.ping', open.ping]);
    expect(AuthorizationGate.for({}, openOnly, domus)).toBeUndefined();
    const everyone = resolveAuthorization({
      default: 'deny',
      rules: [{ pattern: '*', peers: ['*'] }],
    });
    expect(AuthorizationGate.for({ authorization: everyone }, openOnly, domus)).toBeUndefined();
  });

  it('logs refusals at most once per pattern and interval', () => {
    const { domus } = fakeDomus();
    const lines: string[] = [];
    const logger = { error: () => {}, log: () => {}, warn: (m: string) => lines.push(m) };
    const gate = AuthorizationGate.for({ logger }, handlers, domus)!;
    for (let i = 0; i < 5; i++) gate.check(peer(`${MESH}/audit`), 'ledger.read');
    gate.check(peer(`${MESH}/audit`), 'ledger.note');
    expect(lines).toEqual([
      `refused a call to 'ledger.read' from ${MESH}/audit: not allowed by the authorization policy`,
      `refused a call to 'ledger.note' from ${MESH}/audit: not allowed by the authorization policy`,
    ]);
  });

  it('records where each rule came from in the pattern extras', () => {
    const extras = (method: object) =>
      (Reflect.getMetadata(PATTERN_EXTRAS_METADATA, method) as Record<string, unknown>)[
        ALLOW_PEERS_EXTRA
      ];
    expect(extras(ledger.read)).toEqual({ identities: [`${MESH}/orders`], on: 'class' });
    expect(extras(ledger.list)).toEqual({ identities: [`${MESH}/*`], on: 'method' });
  });
});

describe('the authorization option', () => {
  it('names the field at fault', () => {
    const cases: [unknown, RegExp][] = [
      ['deny', /^AureliaModule option 'authorization' must be/],
      [
        { default: 'block' },
        /^AureliaModule option 'authorization\.default' must be 'allow' or 'deny'/,
      ],
      [{ rule: [] }, /^AureliaModule option 'authorization\.rule' is not an option/],
      [{ rules: {} }, /^AureliaModule option 'authorization\.rules' must be an array/],
      [{ rules: [{ pattern: 'a' }] }, /^AureliaModule option 'authorization\.rules\[0\]\.peers'/],
      [
        { rules: [{ pattern: 'a.b*', peers: ['*'] }] },
        /^AureliaModule option 'authorization\.rules\[0\]' .*wildcard inside a segment/,
      ],
      [
        { rules: [{ pattern: 'a', peers: ['spiffe://m/x*'] }] },
        /^AureliaModule option 'authorization\.rules\[0\]' .*wildcard inside a segment/,
      ],
    ];
    for (const [option, message] of cases) {
      expect(() => resolveAuthorization(option)).toThrow(message);
    }
    expect(resolveAuthorization(undefined)).toEqual({ default: 'allow', rules: [] });
  });

  it('refuses @AllowPeers without an identity when the class is defined', () => {
    expect(() => AllowPeers()).toThrow(/needs at least one identity/);
  });
});
