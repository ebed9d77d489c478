// Operations options of AureliaModule: Prometheus registration, the logger, DNS SRV discovery.
import { Logger, type LoggerService } from '@nestjs/common';
import type { Registry, RegistryContentType } from 'prom-client';
import { inspect } from 'node:util';
import type { Domus } from '../engine/domus.js';
import { AureliaError, ErrorId } from '../engine/errors.js';
import { tabernaIdText } from '../engine/ids.js';
import type { AureliaLogger } from '../engine/logger.js';
import {
  type AureliaMetricsRegistration,
  registerAureliaMetrics,
} from '../engine/reporting/prometheus.js';
import {
  DnsSrvResolver,
  type DnsSrvRange,
  type DnsSrvResolverOptions,
} from '../engine/services/dns-srv-resolver.js';
import type { ResolvedAureliaOptions } from './options.js';
import { type AureliaPattern, tabernaIdForPattern } from './pattern.js';

/** Prometheus settings of the `metrics.prometheus` module option. */
export interface AureliaPrometheusOptions {
  /** prom-client registry to register in; default prom-client's global `register`. */
  readonly registry?: Registry<RegistryContentType>;
  /** Prefix of every metric name; default `aurelia_`. */
  readonly prefix?: string;
  /** Constant labels added to every series, e.g. `{ service: 'billing' }`. */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * Value of the `domus` label; default the domus's certificate identity. Set it when two domus
   * with the same identity share a registry and prefix.
   */
  readonly domus?: string;
  /** Most peer identities with their own series (0..10000, default 100); the rest sum up. */
  readonly maxPeerIdentities?: number;
}

/** The `metrics` module option. */
export interface AureliaModuleMetricsOptions {
  /**
   * `true` (defaults) or settings: exposes the domus's metrics through prom-client
   * (`registerAureliaMetrics`) while the application runs.
   */
  readonly prometheus?: boolean | AureliaPrometheusOptions;
}

/** One SRV mapping: a pattern (hashed to its taberna id) or a bigint id, and its SRV name. */
export interface AureliaDnsSrvService {
  /** A Nest pattern or an explicit taberna id. */
  readonly pattern: AureliaPattern;
  /** The SRV name, e.g. `_billing._tcp.mesh.svc.cluster.local`. */
  readonly service: string;
}

/** DNS SRV discovery settings (the `discovery.dnsSrv` module option). */
export interface AureliaDnsSrvOptions extends Omit<
  DnsSrvResolverOptions,
  'services' | 'ranges' | 'identities' | 'random' | 'now'
> {
  /**
   * Which SRV name serves each pattern: `{ 'orders.create': '_orders._tcp.mesh.local' }` (keys
   * are string patterns) or an array of `AureliaDnsSrvService` (any pattern or a bigint id).
   */
  readonly services: Readonly<Record<string, string>> | readonly AureliaDnsSrvService[];
  /** Explicit taberna id ranges and their SRV names, for ids not mapped in `services`. */
  readonly ranges?: readonly DnsSrvRange[];
  /**
   * The certificate identity that must serve each SRV name:
   * `{ '_billing._tcp.mesh.local': 'spiffe://mesh/billing' }`. A send routed through that name
   * to a target proving another identity fails with `AddressMismatch`, so a poisoned SRV answer
   * cannot redirect it to another member. Names left out accept any member of the mesh CA.
   */
  readonly identities?: Readonly<Record<string, string>>;
}

/** The `discovery` module option. */
export interface AureliaModuleDiscoveryOptions {
  /** Resolve targets through DNS SRV records (after the static `routes`, if any). */
  readonly dnsSrv: AureliaDnsSrvOptions;
}

/** What the operations options resolve to. */
export interface ResolvedOperations {
  /** Where the domus logs; `undefined` when silenced. */
  readonly logger: AureliaLogger | undefined;
  /** Prometheus settings; `undefined` when not enabled. */
  readonly prometheus: AureliaPrometheusOptions | undefined;
  /** The DNS SRV resolver built from `discovery`, owned (and closed) by the module. */
  readonly discovery: DnsSrvResolver | undefined;
}

/** Context of the Nest `Logger` the module logs with by default. */
export const AURELIA_LOG_CONTEXT = 'Aurelia';

const PROMETHEUS_KEYS = new Set(['registry', 'prefix', 'labels', 'domus', 'maxPeerIdentities']);
const DNS_SRV_KEYS = new Set([
  'services',
  'ranges',
  'servers',
  'timeoutMs',
  'cacheTtlMs',
  'minTtlMs',
  'maxTtlMs',
  'failureHoldMs',
  'staleIfErrorMs',
  'balancing',
  'identities',
]);

/**
 * Validates the `logger`, `metrics` and `discovery` options and builds the DNS SRV resolver.
 * Throws `AureliaError(InvalidConfig)` starting with `AureliaModule option '<name>'` for a logger
 * without `error`/`warn`/`log`, a malformed `metrics` or `discovery` object, an unknown key in
 * them, a pattern that cannot be hashed, or a DNS SRV setting `DnsSrvResolver` refuses.
 */
export function resolveOperations(options: {
  readonly logger?: unknown;
  readonly metrics?: unknown;
  readonly discovery?: unknown;
}): ResolvedOperations {
  return {
    logger: checkLogger(options.logger),
    prometheus: checkMetrics(options.metrics),
    discovery: options.discovery === undefined ? undefined : buildDiscovery(options.discovery),
  };
}

/**
 * Registers the domus's metrics when the `metrics.prometheus` option asks for it (label `domus`
 * = the domus identity unless set). Returns `undefined` when Prometheus is off. Throws
 * `AureliaError(InvalidConfig)` starting with `AureliaModule option 'metrics.prometheus'` when
 * prom-client refuses the registration (bad prefix or labels, a name taken, a duplicate domus).
 */
export function registerModuleMetrics(
  domus: Domus,
  options: ResolvedAureliaOptions,
): AureliaMetricsRegistration | undefined {
  const prometheus = options.prometheus;
  if (prometheus === undefined) return undefined;
  try {
    return registerAureliaMetrics(domus.reporting, {
      ...prometheus,
      domus: prometheus.domus ?? domus.identity,
    });
  } catch (err) {
    throw invalid('metrics.prometheus', err instanceof Error ? err.message : String(err));
  }
}

function checkLogger(logger: unknown): AureliaLogger | undefined {
  if (logger === false) return undefined;
  if (logger === undefined) return new Logger(AURELIA_LOG_CONTEXT);
  const record = logger as Partial<LoggerService> | null;
  for (const level of ['error', 'warn', 'log'] as const) {
    if (typeof record?.[level] !== 'function') {
      throw invalid(
        'logger',
        `must be false or a logger with error, warn and log methods (a Nest LoggerService); ` +
          `${inspect(logger, { depth: 0 })} has no ${level}()`,
      );
    }
  }
  return logger as AureliaLogger;
}

function checkMetrics(metrics: unknown): AureliaPrometheusOptions | undefined {
  if (metrics === undefined) return undefined;
  const record = plainObject('metrics', metrics, '{ prometheus }');
  knownKeys('metrics', record, new Set(['prometheus']));
  const prometheus = record.prometheus;
  if (prometheus === undefined || prometheus === false) return undefined;
  if (prometheus === true) return {};
  const settings = plainObject(
    'metrics.prometheus',
    prometheus,
    'true or { registry, prefix, labels, domus, maxPeerIdentities }',
  );
  knownKeys('metrics.prometheus', settings, PROMETHEUS_KEYS);
  const registry = settings.registry as Partial<Registry> | undefined;
  if (
    registry !== undefined &&
    (typeof registry?.registerMetric !== 'function' ||
      typeof registry.getSingleMetric !== 'function')
  ) {
    throw invalid('metrics.prometheus.registry', 'must be a prom-client Registry');
  }
  return settings as AureliaPrometheusOptions;
}

function buildDiscovery(discovery: unknown): DnsSrvResolver {
  const record = plainObject('discovery', discovery, '{ dnsSrv }');
  knownKeys('discovery', record, new Set(['dnsSrv']));
  const dnsSrv = plainObject(
    'discovery.dnsSrv',
    record.dnsSrv,
    '{ services, servers?, ranges?, timeoutMs?, … }',
  );
  knownKeys('discovery.dnsSrv', dnsSrv, DNS_SRV_KEYS);
  const { services, identities, ...rest } = dnsSrv as unknown as AureliaDnsSrvOptions;
  const mapped = serviceIds(services);
  if (mapped.length === 0 && (rest.ranges === undefined || rest.ranges.length === 0)) {
    throw invalid('discovery.dnsSrv.services', 'must map at least one pattern to an SRV name');
  }
  const servedBy =
    identities === undefined
      ? undefined
      : (Object.entries(
          plainObject('discovery.dnsSrv.identities', identities, '{ srvName: identity }'),
        ) as [string, string][]);
  try {
    return new DnsSrvResolver({ ...rest, services: mapped, identities: servedBy });
  } catch (err) {
    throw invalid('discovery.dnsSrv', err instanceof Error ? err.message : String(err));
  }
}

function serviceIds(services: AureliaDnsSrvOptions['services'] | undefined): [bigint, string][] {
  if (services === undefined) return [];
  if (typeof services !== 'object' || services === null) {
    throw invalid(
      'discovery.dnsSrv.services',
      'must be an object of pattern → SRV name or an array of { pattern, service }',
    );
  }
  const entries: AureliaDnsSrvService[] = Array.isArray(services)
    ? (services as readonly AureliaDnsSrvService[]).slice()
    : Object.entries(services as Record<string, string>).map(([pattern, service]) => ({
        pattern,
        service,
      }));
  const seen = new Map<bigint, string>();
  return entries.map((entry, i) => {
    const name = `discovery.dnsSrv.services[${i}]`;
    if (typeof entry !== 'object' || entry === null) {
      throw invalid(name, 'must be { pattern, service }');
    }
    let id: bigint;
    try {
      id = tabernaIdForPattern(entry.pattern);
    } catch (err) {
      throw invalid(name, err instanceof Error ? err.message : String(err));
    }
    const previous = seen.get(id);
    if (previous !== undefined && previous !== entry.service) {
      throw invalid(name, `maps taberna ${tabernaIdText(id)} again, already mapped to ${previous}`);
    }
    seen.set(id, entry.service);
    return [id, entry.service];
  });
}

function plainObject(option: string, value: unknown, shape: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(option, `must be ${shape}, got ${inspect(value, { depth: 0 })}`);
  }
  return value as Record<string, unknown>;
}

function knownKeys(option: string, record: Record<string, unknown>, known: Set<string>): void {
  for (const key of Object.keys(record)) {
    if (!known.has(key)) {
      throw invalid(`${option}.${key}`, `is not an option (known: ${[...known].join(', ')})`);
    }
  }
}

function invalid(option: string, problem: string): AureliaError {
  return new AureliaError(ErrorId.InvalidConfig, `AureliaModule option '${option}' ${problem}`);
}
