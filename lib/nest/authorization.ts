// Who may call which handler: identity patterns, @AllowPeers, the module's policy, the refusal.
import 'reflect-metadata';
import { PATTERN_EXTRAS_METADATA, PATTERN_METADATA } from '@nestjs/microservices/constants.js';
import { inspect } from 'node:util';
import { AureliaError, ErrorId } from '../engine/errors.js';
import { type AureliaLogger, RateLimitedLogger } from '../engine/logger.js';
import type { Domus } from '../engine/domus.js';
import type { SecurityReport } from '../engine/reporting/security.js';
import type { PeerInfo } from '../engine/taberna/request.js';
import { type AureliaPattern, normalizePattern } from './pattern.js';

/**
 * The stable `code` of the error payload a caller gets when the authorization policy refuses its
 * call: Nest's `send()` errors with `{ status: 'error', code: PEER_NOT_ALLOWED, message }`;
 * `emit()` and `sendBlob()` with `AureliaError(RemoteTabernaRejected)` holding that payload as
 * `cause`; an engine `Domus.send` with `RemoteTabernaRejected` whose message is the payload's JSON.
 */
export const PEER_NOT_ALLOWED = 'AURELIA_PEER_NOT_ALLOWED';

/** One rule of the module's policy: which identities may call the handlers matching `pattern`. */
export interface AureliaAuthorizationRule {
  /**
   * A handler pattern (string or object, matched in Nest's normalized form), or a string pattern
   * with wildcard segments between dots: `*` for exactly one segment (`billing.*`), a final `**`
   * for one or more (`billing.**`); `'*'` alone matches every pattern.
   */
  readonly pattern: AureliaPattern;
  /** Identities allowed to call; see `AllowPeers` for the wildcards. */
  readonly peers: readonly string[];
}

/** The `authorization` module option. */
export interface AureliaAuthorizationOptions {
  /**
   * What happens to a call no decorator and no rule speaks about: `'allow'` (the default, every
   * authenticated peer may call) or `'deny'`.
   */
  readonly default?: 'allow' | 'deny';
  /** Rules for patterns without `@AllowPeers`; the first rule whose pattern matches decides. */
  readonly rules?: readonly AureliaAuthorizationRule[];
}

/** The `authorization` module option after validation. */
export interface ResolvedAuthorization {
  readonly default: 'allow' | 'deny';
  readonly rules: readonly CompiledRule[];
}

/** Where a handler's `@AllowPeers` came from (a method's own wins over its controller's). */
interface AllowPeersExtra {
  readonly identities: readonly string[];
  readonly on: 'method' | 'class';
}

interface CompiledRule {
  readonly pattern: Wildcard;
  readonly peers: IdentityMatcher;
}

/** A text split in segments, some of which may be wildcards. */
interface Wildcard {
  /** The text as written. */
  readonly text: string;
  /** Matches everything (`'*'` or `'**'` alone). */
  readonly any: boolean;
  /** The segments when the text holds a wildcard; `undefined` for an exact match. */
  readonly segments: readonly string[] | undefined;
  /** The last segment is `**`: one or more segments follow the others. */
  readonly rest: boolean;
  /** What separates segments: `/` in identities, `.` in patterns. */
  readonly separator: string;
}

/** @internal Metadata key `@AllowPeers` writes into a handler's pattern extras. */
export const ALLOW_PEERS_EXTRA = 'aureliaAllowPeers';

/**
 * Restricts who may call a `@MessagePattern` / `@EventPattern` handler (on a method) or every
 * handler of a controller (on the class; a method's own `@AllowPeers` replaces the controller's).
 * Each identity is the caller's certificate identity, exactly (`'spiffe://mesh/orders'`) or with
 * wildcards standing for whole path segments: `*` for exactly one (`'spiffe://mesh/*'`), a final
 * `**` for one or more (`'spiffe://mesh/**'`); `'*'` alone allows every authenticated peer. The
 * check runs before guards, interceptors, pipes and the handler, for messages, streamed calls,
 * events and blobs alike; a call from anyone else is refused with `PEER_NOT_ALLOWED`, counted in
 * `authorization_denied_total{pattern}` and logged (rate-limited), and the handler never runs.
 * A domus calling its own handler is its own identity. Throws `AureliaError(InvalidConfig)` at
 * class definition when no identity is given or one is malformed.
 */
export function AllowPeers(...identities: string[]): ClassDecorator & MethodDecorator {
  compileIdentities(identities, '@AllowPeers');
  const list = Object.freeze([...identities]);
  return ((target: object, _key?: string | symbol, descriptor?: PropertyDescriptor) => {
    if (descriptor !== undefined) {
      setExtra(descriptor.value as object, { identities: list, on: 'method' });
      return descriptor;
    }
    for (const handler of handlersOf((target as { prototype: object }).prototype)) {
      const current = extraOf(handler);
      if (current?.on !== 'method') setExtra(handler, { identities: list, on: 'class' });
    }
    return undefined;
  }) as ClassDecorator & MethodDecorator;
}

/**
 * @internal Validates the `authorization` module option. Throws `AureliaError(InvalidConfig)`
 * whose message starts with `AureliaModule option 'authorization…'` naming the field at fault.
 */
export function resolveAuthorization(option: unknown): ResolvedAuthorization {
  if (option === undefined) return { default: 'allow', rules: [] };
  if (typeof option !== 'object' || option === null || Array.isArray(option)) {
    throw invalid('authorization', `must be { default?, rules? }, got ${inspect(option)}`);
  }
  const record = option as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (key !== 'default' && key !== 'rules') {
      throw invalid(`authorization.${key}`, 'is not an option (known: default, rules)');
    }
  }
  const fallback = record.default ?? 'allow';
  if (fallback !== 'allow' && fallback !== 'deny') {
    throw invalid('authorization.default', `must be 'allow' or 'deny', got ${inspect(fallback)}`);
  }
  const rules = record.rules ?? [];
  if (!Array.isArray(rules)) {
    throw invalid('authorization.rules', 'must be an array of { pattern, peers }');
  }
  return {
    default: fallback,
    rules: rules.map((rule: unknown, i) => compileRule(rule, `authorization.rules[${i}]`)),
  };
}

/**
 * @internal The policy of one server: who may call each pattern it serves, decided once at
 * `listen` from the handlers' `@AllowPeers` and the module's rules.
 */
export class AuthorizationGate {
  readonly #allowed = new Map<string, IdentityMatcher>();
  readonly #log: RateLimitedLogger | undefined;

  private constructor(
    private readonly security: SecurityReport,
    logger: AureliaLogger | undefined,
    logIntervalMs: number,
  ) {
    this.#log = logger && new RateLimitedLogger(logger, { intervalMs: logIntervalMs });
  }

  /**
   * The gate of a server whose `handlers` (pattern → Nest handler, with its pattern extras) serve
   * on `domus`, under `options.authorization` (default: allow), logging refusals to
   * `options.logger`. `undefined` when every pattern is open to every peer: nothing is checked.
   */
  static for(
    options: { readonly authorization?: ResolvedAuthorization; readonly logger?: AureliaLogger },
    handlers: ReadonlyMap<string, { readonly extras?: Record<string, unknown> }>,
    domus: Domus,
  ): AuthorizationGate | undefined {
    const policy = options.authorization ?? OPEN;
    const gate = new AuthorizationGate(
      domus.reporting.security,
      options.logger,
      domus.config.snapshot().limitedLogIntervalMs,
    );
    for (const [pattern, handler] of handlers) {
      const own = handler.extras?.[ALLOW_PEERS_EXTRA] as AllowPeersExtra | undefined;
      const matcher = own
        ? compileIdentities(own.identities, '@AllowPeers')
        : (policy.rules.find((rule) => matches(rule.pattern, pattern))?.peers ??
          (policy.default === 'deny' ? NOBODY : undefined));
      if (matcher !== undefined && !matcher.any) gate.#allowed.set(pattern, matcher);
    }
    return gate.#allowed.size > 0 ? gate : undefined;
  }

  /**
   * Checks a call from `peer` to `pattern`. Returns `undefined` when it may go on; otherwise
   * counts and logs the refusal and returns the error payload to answer with.
   */
  check(peer: PeerInfo, pattern: string): AuthorizationRefusal | undefined {
    const allowed = this.#allowed.get(pattern);
    if (allowed === undefined || allowed.test(peer.identity)) return undefined;
    this.security.countAuthorizationDenied(pattern);
    this.#log?.warn(
      `denied:${pattern}`,
      `refused a call to '${pattern}' from ${peer.identity}: not allowed by the authorization policy`,
      { pattern, identity: peer.identity, address: peer.address },
    );
    return {
      status: 'error',
      code: PEER_NOT_ALLOWED,
      message: `refused by the authorization policy: ${peer.identity} may not call '${pattern}'`,
    };
  }
}

/** The error payload of a refused call. */
export interface AuthorizationRefusal {
  readonly status: 'error';
  readonly code: typeof PEER_NOT_ALLOWED;
  readonly message: string;
}

/** A compiled list of identity patterns (`@AllowPeers`, a rule's `peers`). */
export class IdentityMatcher {
  /** Every identity matches. */
  readonly any: boolean;

  constructor(private readonly patterns: readonly Wildcard[]) {
    this.any = patterns.some((p) => p.any);
  }

  /** Whether `identity` matches one of the patterns. */
  test(identity: string): boolean {
    for (const pattern of this.patterns) if (matches(pattern, identity)) return true;
    return false;
  }
}

const NOBODY = new IdentityMatcher([]);
const OPEN: ResolvedAuthorization = { default: 'allow', rules: [] };

/**
 * @internal Compiles identity patterns (see `AllowPeers`). Throws `AureliaError(InvalidConfig)` naming
 * `where` for an empty list or a malformed pattern.
 */
export function compileIdentities(identities: readonly unknown[], where: string): IdentityMatcher {
  if (identities.length === 0) {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${where} needs at least one identity; use '*' to allow every authenticated peer`,
    );
  }
  return new IdentityMatcher(identities.map((identity) => wildcard(identity, '/', where)));
}

function compileRule(rule: unknown, name: string): CompiledRule {
  if (typeof rule !== 'object' || rule === null) throw invalid(name, 'must be { pattern, peers }');
  const { pattern, peers } = rule as Partial<AureliaAuthorizationRule>;
  if (!Array.isArray(peers)) throw invalid(`${name}.peers`, 'must be an array of identities');
  try {
    return {
      pattern:
        typeof pattern === 'string'
          ? wildcard(pattern, '.', `${name}.pattern`)
          : exact(normalizePattern(pattern)),
      peers: compileIdentities(peers, `${name}.peers`),
    };
  } catch (err) {
    throw invalid(name, err instanceof Error ? err.message : String(err));
  }
}

/** Parses `text` whose wildcard segments are separated by `separator`. */
function wildcard(text: unknown, separator: string, where: string): Wildcard {
  if (typeof text !== 'string' || text === '') {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${where}: ${inspect(text)} is not a non-empty string`,
    );
  }
  if (text === '*' || text === '**') return { ...exact(text), any: true };
  if (!text.includes('*')) return exact(text);
  const segments = text.split(separator);
  segments.forEach((segment, i) => {
    if (!segment.includes('*')) return;
    if (segment === '*' || (segment === '**' && i === segments.length - 1)) return;
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `${where}: '${text}' has a wildcard inside a segment; '*' stands for one whole segment and a final '**' for the rest`,
    );
  });
  const rest = segments[segments.length - 1] === '**';
  return { text, any: false, segments: rest ? segments.slice(0, -1) : segments, rest, separator };
}

function exact(text: string): Wildcard {
  return { text, any: false, segments: undefined, rest: false, separator: '' };
}

function matches(pattern: Wildcard, value: string): boolean {
  if (pattern.any) return true;
  const segments = pattern.segments;
  if (segments === undefined) return value === pattern.text;
  const parts = value.split(pattern.separator);
  if (pattern.rest ? parts.length <= segments.length : parts.length !== segments.length) {
    return false;
  }
  for (let i = 0; i < parts.length; i++) {
    const segment = segments[i];
    if (segment === undefined || segment === '*') {
      // A wildcard (or the rest after `**`) stands for real segments, never empty ones.
      if (parts[i] === '') return false;
    } else if (segment !== parts[i]) {
      return false;
    }
  }
  return true;
}

/** Methods carrying a Nest pattern on `prototype` and the classes it extends. */
function handlersOf(prototype: object | null): object[] {
  const out: object[] = [];
  const seen = new Set<string | symbol>();
  for (let proto = prototype; proto && proto !== Object.prototype;) {
    for (const key of Reflect.ownKeys(proto)) {
      if (key === 'constructor' || seen.has(key)) continue;
      seen.add(key);
      const value = Object.getOwnPropertyDescriptor(proto, key)?.value as unknown;
      if (typeof value === 'function' && Reflect.hasMetadata(PATTERN_METADATA, value)) {
        out.push(value);
      }
    }
    proto = Object.getPrototypeOf(proto) as object | null;
  }
  return out;
}

function extraOf(handler: object): AllowPeersExtra | undefined {
  const extras = Reflect.getMetadata(PATTERN_EXTRAS_METADATA, handler) as
    Record<string, unknown> | undefined;
  return extras?.[ALLOW_PEERS_EXTRA] as AllowPeersExtra | undefined;
}

function setExtra(handler: object, extra: AllowPeersExtra): void {
  Reflect.defineMetadata(
    PATTERN_EXTRAS_METADATA,
    {
      ...(Reflect.getMetadata(PATTERN_EXTRAS_METADATA, handler) as object | undefined),
      [ALLOW_PEERS_EXTRA]: extra,
    },
    handler,
  );
}

function invalid(option: string, problem: string): AureliaError {
  return new AureliaError(ErrorId.InvalidConfig, `AureliaModule option '${option}' ${problem}`);
}
