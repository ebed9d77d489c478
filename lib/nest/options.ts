// Options of AureliaModule and their validation at bootstrap (every problem names its option).
import type { LoggerService } from '@nestjs/common';
import type {
  ConsumerDeserializer,
  ConsumerSerializer,
  ProducerDeserializer,
  ProducerSerializer,
} from '@nestjs/microservices';
import { inspect } from 'node:util';
import { AureliaError, ErrorId } from '../engine/errors.js';
import { DomusAddr } from '../engine/addr.js';
import type { Pkcs8AuthConfig } from '../engine/auth.js';
import { type WatchedAuthFiles, checkAuthWatch } from '../engine/auth-watch.js';
import { JsonCodec, type MessageCodec } from '../engine/codec.js';
import {
  type DomusConfig,
  closestName,
  defaultDomusConfig,
  mergeDomusConfig,
} from '../engine/config.js';
import { A3_MESSAGE_TYPE_BASE } from '../engine/ids.js';
import type { AureliaLogger } from '../engine/logger.js';
import type { RouteResolver } from '../engine/resolver.js';
import type { DnsSrvResolver } from '../engine/services/dns-srv-resolver.js';
import { REQUEST_TIMEOUT_MAX_MS } from '../engine/services/request-reply-wire.js';
import {
  type AureliaModuleDiscoveryOptions,
  type AureliaModuleMetricsOptions,
  type AureliaPrometheusOptions,
  resolveOperations,
} from './observability.js';
import { type AureliaRoutes, RouteTable, addressOption } from './route-table.js';
import {
  type AureliaAuthorizationOptions,
  type ResolvedAuthorization,
  resolveAuthorization,
} from './authorization.js';

export type { AureliaRoute, AureliaRouteAddress, AureliaRoutes } from './route-table.js';

/** Serializer and deserializer of one side, as Nest's built-in transports take them. */
export interface AureliaClientSerialization {
  readonly serializer?: ProducerSerializer;
  readonly deserializer?: ProducerDeserializer;
}

/** Serializer and deserializer of the server side. */
export interface AureliaServerSerialization {
  readonly serializer?: ConsumerSerializer;
  readonly deserializer?: ConsumerDeserializer;
}

/** Options of `AureliaModule.forRoot` (and the value `forRootAsync`'s factory returns). */
export interface AureliaModuleOptions {
  /**
   * Address this domus listens on: `tls://0.0.0.0:7000`, `unix:///run/a.sock` or a `DomusAddr`.
   * Omit it in an application that only calls other services: replies come back on the
   * connections it dialed, so it needs no listener, but it cannot serve handlers (the
   * `AureliaServer` of a module without `listen` refuses to start when there are any).
   */
  readonly listen?: string | DomusAddr;
  /**
   * Certificate material: files `{ ca, cert, key, watch? }` or a `Pkcs8AuthConfig`. Files are
   * watched and reloaded when they change (also through a symbolic link swap, as Kubernetes
   * updates mounted secrets) unless `watch` is `false`; a new set that fails validation is
   * refused and reported on the error feed, the old one staying in force.
   */
  readonly auth: WatchedAuthFiles | Pkcs8AuthConfig;
  /**
   * Static routes: `{ 'orders.create': 'tls://10.0.0.5:7000' }` (keys are string patterns) or an
   * array of `AureliaRoute` (any pattern, or a bigint taberna id). An address may be an array of
   * replica addresses (`['tls://b1:7000', 'tls://b2:7000']`), balanced per send; a key ending in
   * `*` is a prefix route (`'inventory.*'`) and `'*'` the default route. In the array form a route
   * may name the certificate `identity` that must serve it (`AddressMismatch` otherwise).
   * Exclusive with `resolver`; see `RouteTable` for the order with `discovery`.
   */
  readonly routes?: AureliaRoutes;
  /** A custom resolver. Exclusive with `routes` and `discovery`. */
  readonly resolver?: RouteResolver;
  /** Overrides of the domus configuration; validated like `DomusConfigBuilder.build()`. */
  readonly config?: Partial<DomusConfig>;
  /**
   * Encodes the serialized Nest packets; default `new JsonCodec()`. Its message type must be in
   * the A3 range.
   */
  readonly codec?: MessageCodec<unknown>;
  /** Deadline of `send()` calls in ms (1..300000); default the config's `sendTimeoutMs`. */
  readonly requestTimeoutMs?: number;
  /** Sampling interval of the `AURELIA_METRICS` Observable, 10..3600000 ms; default 10000. */
  readonly metricsIntervalMs?: number;
  /** Serializer/deserializer of `ClientAurelia` (Nest's defaults otherwise). */
  readonly client?: AureliaClientSerialization;
  /** Serializer/deserializer of `AureliaServer` (Nest's defaults otherwise). */
  readonly server?: AureliaServerSerialization;
  /**
   * Where the domus logs its lifecycle lines and (rate-limited) background errors: default a
   * Nest `Logger` with context `'Aurelia'`; any `LoggerService`; `false` for silence.
   */
  readonly logger?: AureliaLogger | LoggerService | false;
  /** `{ prometheus: true | { registry, prefix, labels, … } }` exposes metrics to prom-client. */
  readonly metrics?: AureliaModuleMetricsOptions;
  /**
   * `{ dnsSrv: { services, servers?, … } }` finds targets through DNS SRV records (after the
   * static `routes`). Exclusive with `resolver`.
   */
  readonly discovery?: AureliaModuleDiscoveryOptions;
  /**
   * Who may call the handlers this application serves: `{ default: 'deny', rules: [{ pattern:
   * 'billing.*', peers: ['spiffe://mesh/orders'] }] }`. `@AllowPeers` on a handler or controller
   * takes precedence; without either, `default` decides (`'allow'` unless set).
   */
  readonly authorization?: AureliaAuthorizationOptions;
}

/** Options after validation, as the providers use them. */
export interface ResolvedAureliaOptions {
  /** Absent for an application that only calls out. */
  readonly listen: DomusAddr | undefined;
  readonly auth: WatchedAuthFiles | Pkcs8AuthConfig;
  /** The static routes (and DNS discovery), as a resolver. */
  readonly routes: RouteTable;
  /** What the domus resolves with: the `resolver` option, else `routes`. */
  readonly resolver: RouteResolver;
  readonly config: DomusConfig;
  readonly codec: MessageCodec<unknown>;
  readonly requestTimeoutMs: number | undefined;
  readonly metricsIntervalMs: number;
  readonly client: AureliaClientSerialization;
  readonly server: AureliaServerSerialization;
  /** Logger for the domus; `undefined` when silenced. */
  readonly logger: AureliaLogger | undefined;
  /** Prometheus settings; `undefined` when not enabled. */
  readonly prometheus: AureliaPrometheusOptions | undefined;
  /** The DNS SRV resolver of `discovery` (also inside `resolver`); closed with the module. */
  readonly discovery: DnsSrvResolver | undefined;
  /** The validated authorization policy. */
  readonly authorization: ResolvedAuthorization;
}

const KNOWN = new Set([
  'listen',
  'auth',
  'routes',
  'resolver',
  'config',
  'codec',
  'requestTimeoutMs',
  'metricsIntervalMs',
  'client',
  'server',
  'logger',
  'metrics',
  'discovery',
  'authorization',
  'isGlobal',
]);

/**
 * Validates module options. Throws `AureliaError(InvalidConfig)` whose message starts with
 * `AureliaModule option '<name>'` for the first problem found (unknown option, missing
 * `auth`, unparsable address, bad route, `routes` with `resolver`, invalid config field,
 * codec without `encodeApp`/`decodeApp` or with a non-A3 type, timeout out of range, logger
 * without `error`/`warn`/`log`, malformed `metrics`, `discovery` with `resolver` or with a DNS
 * SRV setting the resolver refuses, malformed `authorization` rules or identities, bad
 * `auth.watch` settings).
 */
export function resolveAureliaOptions(options: AureliaModuleOptions): ResolvedAureliaOptions {
  if (typeof options !== 'object' || options === null) {
    throw invalid('options', `must be an object, got ${inspect(options)}`);
  }
  for (const key of Object.keys(options)) {
    if (key === 'replyAddress') {
      throw invalid(
        key,
        'is no longer needed: replies travel back on the connection the request went out on; remove it',
      );
    }
    if (!KNOWN.has(key)) {
      const guess = closestName(key, [...KNOWN]);
      const hint =
        guess === undefined
          ? `known options: ${[...KNOWN].join(', ')}`
          : `did you mean '${guess}'?`;
      throw invalid(key, `is not an AureliaModule option; ${hint}`);
    }
  }
  const listen = options.listen === undefined ? undefined : addressOption('listen', options.listen);
  const auth = checkAuth(options.auth);
  if (options.routes !== undefined && options.resolver !== undefined) {
    throw invalid('routes', 'cannot be combined with resolver; put the routes in the resolver');
  }
  if (options.discovery !== undefined && options.resolver !== undefined) {
    throw invalid('discovery', 'cannot be combined with resolver; use one or the other');
  }
  if (options.resolver !== undefined && typeof options.resolver?.resolve !== 'function') {
    throw invalid('resolver', 'must implement resolve(tabernaId)');
  }
  let config: DomusConfig;
  try {
    config = mergeDomusConfig(defaultDomusConfig(), options.config ?? {});
  } catch (err) {
    throw invalid('config', err instanceof Error ? err.message : String(err));
  }
  const codec = checkCodec(options.codec);
  const requestTimeoutMs = options.requestTimeoutMs;
  if (
    requestTimeoutMs !== undefined &&
    (!Number.isInteger(requestTimeoutMs) ||
      requestTimeoutMs < 1 ||
      requestTimeoutMs > REQUEST_TIMEOUT_MAX_MS)
  ) {
    throw invalid(
      'requestTimeoutMs',
      `must be an integer in 1..${REQUEST_TIMEOUT_MAX_MS}, got ${inspect(requestTimeoutMs)}`,
    );
  }
  const metricsIntervalMs = options.metricsIntervalMs ?? 10_000;
  if (
    !Number.isInteger(metricsIntervalMs) ||
    metricsIntervalMs < 10 ||
    metricsIntervalMs > 3_600_000
  ) {
    throw invalid(
      'metricsIntervalMs',
      `must be an integer in 10..3600000, got ${inspect(metricsIntervalMs)}`,
    );
  }
  const client = serialization('client', options.client);
  const server = serialization('server', options.server);
  const operations = resolveOperations(options);
  const routes = RouteTable.from(options.routes, operations.discovery);
  const authorization = resolveAuthorization(options.authorization);
  return {
    listen,
    auth,
    routes,
    resolver: options.resolver ?? routes,
    config,
    codec,
    requestTimeoutMs,
    metricsIntervalMs,
    client,
    server,
    authorization,
    ...operations,
  };
}

function invalid(option: string, problem: string): AureliaError {
  return new AureliaError(ErrorId.InvalidConfig, `AureliaModule option '${option}' ${problem}`);
}

function checkAuth(auth: unknown): WatchedAuthFiles | Pkcs8AuthConfig {
  if (typeof auth !== 'object' || auth === null) {
    throw invalid('auth', `must be { ca, cert, key } file paths or a Pkcs8AuthConfig`);
  }
  const record = auth as Record<string, unknown>;
  if ('format' in record) {
    if (record.format !== 'pem' && record.format !== 'der') {
      throw invalid('auth', `format must be 'pem' or 'der', got ${inspect(record.format)}`);
    }
    return auth as Pkcs8AuthConfig;
  }
  const isPath = (v: unknown): boolean => typeof v === 'string' && v !== '';
  const ca = record.ca;
  if (!(isPath(ca) || (Array.isArray(ca) && ca.length > 0 && ca.every(isPath)))) {
    throw invalid('auth', `needs CA file path(s) in 'ca'`);
  }
  for (const field of ['cert', 'key']) {
    if (!isPath(record[field])) throw invalid('auth', `needs a file path in '${field}'`);
  }
  try {
    checkAuthWatch(record.watch, true);
  } catch (err) {
    throw invalid('auth', err instanceof Error ? err.message : String(err));
  }
  return auth as WatchedAuthFiles;
}

function checkCodec(codec: unknown): MessageCodec<unknown> {
  if (codec === undefined) return new JsonCodec<unknown>();
  const c = codec as Partial<MessageCodec<unknown>> | null;
  if (!c || typeof c.encodeApp !== 'function' || typeof c.decodeApp !== 'function') {
    throw invalid('codec', 'must implement encodeApp(message) and decodeApp(msgType, payload)');
  }
  const type = (c as { msgType?: unknown }).msgType;
  if (typeof type === 'number' && type < A3_MESSAGE_TYPE_BASE) {
    throw invalid('codec', `message type ${type} is below the A3 range; use a3MessageType()`);
  }
  return c as MessageCodec<unknown>;
}

function serialization<T extends object>(option: string, value: T | undefined): T {
  if (value === undefined) return {} as T;
  if (typeof value !== 'object' || value === null) {
    throw invalid(option, 'must be { serializer?, deserializer? }');
  }
  const record = value as Record<string, unknown>;
  for (const [field, method] of [
    ['serializer', 'serialize'],
    ['deserializer', 'deserialize'],
  ] as const) {
    const part = record[field] as Record<string, unknown> | undefined;
    if (part !== undefined && typeof part?.[method] !== 'function') {
      throw invalid(`${option}.${field}`, `must have a ${method}() method`);
    }
  }
  return value;
}
