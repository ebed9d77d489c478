// Exposes DomusReporting to Prometheus through prom-client, read at scrape time.
import {
  Counter,
  Gauge,
  register as globalRegistry,
  type Registry,
  type RegistryContentType,
} from 'prom-client';
import { AureliaError, ErrorId } from '../errors.js';
import type { DomusMetrics } from './metrics.js';
import type { ReplicaReport } from '../balancer/balancer.js';
import type { DomusReporting, PeerIdentityReport } from './reporting.js';
import type { SecurityReport } from './security.js';

/** Options of `registerAureliaMetrics`. */
export interface AureliaMetricsOptions {
  /** Registry to register in; default prom-client's global `register`. */
  readonly registry?: Registry<RegistryContentType>;
  /** Prefix of every metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*` or empty); default `aurelia_`. */
  readonly prefix?: string;
  /**
   * Value of the `domus` label telling apart the domus sharing a registry and prefix, e.g. the
   * certificate identity or listen address; default `default`. Must be unique among them.
   */
  readonly domus?: string;
  /**
   * Constant labels added to every series (e.g. `{ service: 'billing' }`). Every domus sharing a
   * registry and prefix must use the same label names. The names `domus`, `identity`, `kind`,
   * `pattern`, `priority` and `quantile` are reserved.
   */
  readonly labels?: Readonly<Record<string, string>>;
  /**
   * Most peer identities given their own `identity` series per domus, 0..10000; default 100.
   * Identities keep their series while connected, in order of first appearance; identities past
   * the cap are summed into `identity="_other"`, so a flood of distinct certificates cannot blow
   * up the number of series.
   */
  readonly maxPeerIdentities?: number;
}

/** What `registerAureliaMetrics` returns: the registration of one domus. */
export interface AureliaMetricsRegistration {
  /** The `domus` label value of this registration. */
  readonly domus: string;
  /** Full names of the metric families (shared with other domus in the same registry). */
  readonly metricNames: readonly string[];
  /**
   * Removes this domus's series from the next scrape; the last registration of a registry and
   * prefix also unregisters the metric families. Idempotent.
   */
  dispose(): void;
}

/** `identity` label value of peers past `maxPeerIdentities`. */
export const OTHER_PEER_IDENTITY = '_other';

const DEFAULT_PREFIX = 'aurelia_';
const DEFAULT_DOMUS = 'default';
const DEFAULT_MAX_PEER_IDENTITIES = 100;
const MAX_PEER_IDENTITIES_LIMIT = 10_000;
const RESERVED_LABELS = new Set([
  'domus',
  'identity',
  'kind',
  'pattern',
  'priority',
  'quantile',
  'replica',
]);
const METRIC_PREFIX = /^(?:[a-zA-Z_:][a-zA-Z0-9_:]*)?$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

type Labels = Record<string, string>;

/** One domus's readings for one scrape. */
interface Sample {
  readonly labels: Labels;
  readonly metrics: DomusMetrics;
  /** Callis counts per identity (after folding past the cap). */
  readonly peers: ReadonlyMap<string, { primary: number; blob: number }>;
  readonly droppedFeedItems: number;
  /** The balanced replicas (at most `maxPeerIdentities` of them). */
  readonly replicas: readonly ReplicaReport[];
  readonly security: SecurityReport;
}

interface Source {
  readonly reporting: DomusReporting;
  readonly labels: Labels;
  readonly maxPeerIdentities: number;
  /** Identities holding their own series, in order of first appearance. */
  readonly admitted: Set<string>;
}

type Emit = (labels: Labels, value: number) => void;

interface FamilyDef {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly labelNames: readonly string[];
  readonly read: (sample: Sample, emit: Emit) => void;
}

/** A counter family without labels of its own: one cumulative field, or a reading of a sample. */
function counter(
  name: string,
  help: string,
  field: keyof DomusMetrics | ((sample: Sample) => number),
): FamilyDef {
  const value = typeof field === 'function' ? field : (s: Sample) => s.metrics[field] as number;
  return {
    name,
    help,
    type: 'counter',
    labelNames: [],
    read: (s, emit) => emit(s.labels, value(s)),
  };
}

const QUANTILES: readonly (readonly [string, 'p50Ms' | 'p90Ms' | 'p99Ms'])[] = [
  ['0.5', 'p50Ms'],
  ['0.9', 'p90Ms'],
  ['0.99', 'p99Ms'],
];

const FAMILIES: readonly FamilyDef[] = [
  {
    name: 'peers',
    help: 'Distinct peer identities with at least one live callis.',
    type: 'gauge',
    labelNames: [],
    read: (s, emit) => emit(s.labels, s.metrics.currentPeers),
  },
  {
    name: 'peers_peak',
    help: 'Most distinct peer identities connected at once since the domus was built.',
    type: 'gauge',
    labelNames: [],
    read: (s, emit) => emit(s.labels, s.metrics.peakPeers),
  },
  {
    name: 'callis',
    help: 'Live connections (callis) by kind: primary carries messages, blob carries bulk bytes.',
    type: 'gauge',
    labelNames: ['kind'],
    read: (s, emit) => {
      emit({ ...s.labels, kind: 'primary' }, s.metrics.currentPrimaryCallis);
      emit({ ...s.labels, kind: 'blob' }, s.metrics.currentBlobCallis);
    },
  },
  {
    name: 'callis_peak',
    help: 'Most live callis of a kind at once since the domus was built.',
    type: 'gauge',
    labelNames: ['kind'],
    read: (s, emit) => {
      emit({ ...s.labels, kind: 'primary' }, s.metrics.peakPrimaryCallis);
      emit({ ...s.labels, kind: 'blob' }, s.metrics.peakBlobCallis);
    },
  },
  {
    name: 'peer_callis',
    help: `Live callis per connected peer identity and kind (identities past the cap are summed as "${OTHER_PEER_IDENTITY}").`,
    type: 'gauge',
    labelNames: ['identity', 'kind'],
    read: (s, emit) => {
      for (const [identity, counts] of s.peers) {
        emit({ ...s.labels, identity, kind: 'primary' }, counts.primary);
        emit({ ...s.labels, identity, kind: 'blob' }, counts.blob);
      }
    },
  },
  counter('callis_opened_total', 'Callis opened since the domus was built.', 'callisOpened'),
  counter('callis_closed_total', 'Callis closed since the domus was built.', 'callisClosed'),
  counter('dial_attempts_total', 'Outbound dial attempts.', 'dialAttempts'),
  counter('dial_failures_total', 'Outbound dial attempts that failed.', 'dialFailures'),
  counter(
    'identity_mismatches_total',
    'Peers whose certificate identity differed from the one expected.',
    'identityMismatches',
  ),
  counter(
    'protocol_violations_total',
    'Callis closed because the peer broke the wire protocol.',
    'protocolViolations',
  ),
  counter(
    'handshakes_refused_total',
    'Inbound handshakes refused by the concurrency limits.',
    'handshakesRefused',
  ),
  counter(
    'peer_read_pauses_total',
    "Times a peer's callis stopped being read: it exhausted a per-peer budget or left our answers unread.",
    'peerReadPauses',
  ),
  {
    name: 'queue_overruns_total',
    help: 'Sends refused with LocalQueueFull, by priority lane.',
    type: 'counter',
    labelNames: ['priority'],
    read: (s, emit) => {
      emit({ ...s.labels, priority: 'A2' }, s.metrics.queueOverrunsA2);
      emit({ ...s.labels, priority: 'A3' }, s.metrics.queueOverrunsA3);
    },
  },
  counter('messages_sent_total', 'Messages sent (to remote and local tabernae).', 'messagesSent'),
  counter('sends_accepted_total', 'Sends the target application accepted.', 'sendsAccepted'),
  counter('sends_failed_total', 'Sends that failed or were rejected.', 'sendsFailed'),
  counter(
    'messages_received_total',
    "Messages delivered to this domus's tabernae.",
    'messagesReceived',
  ),
  counter(
    'messages_accepted_total',
    'Received messages the application accepted.',
    'messagesAccepted',
  ),
  counter(
    'messages_rejected_total',
    'Received messages the application rejected.',
    'messagesRejected',
  ),
  counter('bytes_received_total', 'Message bytes received.', 'bytesIn'),
  counter('bytes_sent_total', 'Message bytes sent.', 'bytesOut'),
  counter('blob_bytes_received_total', 'Blob bytes received.', 'blobBytesIn'),
  counter('blob_bytes_sent_total', 'Blob bytes sent.', 'blobBytesOut'),
  {
    name: 'send_latency_seconds',
    help: 'Round trip of accepted sends (send to remote accept) since the domus was built, by quantile; absent before the first sample.',
    type: 'gauge',
    labelNames: ['quantile'],
    read: (s, emit) => {
      const latency = s.metrics.sendLatency;
      if (latency.count === 0) return;
      for (const [quantile, field] of QUANTILES)
        emit({ ...s.labels, quantile }, latency[field] / 1000);
    },
  },
  {
    name: 'send_latency_max_seconds',
    help: 'Longest round trip of an accepted send since the domus was built; absent before the first sample.',
    type: 'gauge',
    labelNames: [],
    read: (s, emit) => {
      const latency = s.metrics.sendLatency;
      if (latency.count > 0) emit(s.labels, latency.maxMs / 1000);
    },
  },
  counter(
    'send_latency_samples_total',
    'Accepted sends whose round trip is in send_latency_seconds.',
    (s) => s.metrics.sendLatency.count,
  ),
  {
    name: 'certificate_expiry_seconds',
    help: 'When the certificate this domus presents expires, in seconds since the Unix epoch (alert on it minus time()).',
    type: 'gauge',
    labelNames: [],
    read: (s, emit) => {
      const certificate = s.security.certificate;
      if (certificate !== undefined) emit(s.labels, certificate.notAfter.getTime() / 1000);
    },
  },
  counter(
    'replica_ejections_total',
    'Replicas of balanced routes taken out of rotation (consecutive failures, failed dial or probe).',
    'replicaEjections',
  ),
  counter(
    'sends_failed_over_total',
    'Sends no application had seen that moved to another replica (draining, unreachable, or refused as draining or busy).',
    'sendsFailedOver',
  ),
  {
    name: 'replica_outstanding',
    help: 'Sends outstanding per replica of a balanced route (label replica = its address).',
    type: 'gauge',
    labelNames: ['replica'],
    read: (s, emit) => {
      for (const r of s.replicas) emit({ ...s.labels, replica: r.replica }, r.outstanding);
    },
  },
  {
    name: 'replica_ejected',
    help: 'Whether a replica of a balanced route is out of rotation (1) or in it (0).',
    type: 'gauge',
    labelNames: ['replica'],
    read: (s, emit) => {
      for (const r of s.replicas) emit({ ...s.labels, replica: r.replica }, r.ejected ? 1 : 0);
    },
  },
  counter(
    'auth_reloads_total',
    'Certificate material sets put in force by a reload since the domus was built.',
    (s) => s.security.reloads,
  ),
  counter(
    'auth_reloads_refused_total',
    'Changed certificate files refused (invalid, mismatched, expired, another identity); the old set stayed in force.',
    (s) => s.security.reloadsRefused,
  ),
  {
    name: 'authorization_denied_total',
    help: 'Calls refused by the authorization policy before any guard or handler ran, by handler pattern.',
    type: 'counter',
    labelNames: ['pattern'],
    read: (s, emit) => {
      for (const [pattern, count] of s.security.authorizationDenied())
        emit({ ...s.labels, pattern }, count);
    },
  },
  counter(
    'reporting_dropped_items_total',
    'Reporting events and errors dropped because subscribers fell behind.',
    (s) => s.droppedFeedItems,
  ),
];

/** The metric families of one registry and prefix, shared by every domus registered there. */
class SharedFamilies {
  readonly sources = new Map<string, Source>();
  readonly metrics: (Counter<string> | Gauge<string>)[];
  #samples: Sample[] | undefined;

  constructor(
    readonly prefix: string,
    readonly constantLabelNames: readonly string[],
  ) {
    this.metrics = FAMILIES.map((family) => this.#create(family));
  }

  /**
   * Every domus's readings, taken once per scrape: prom-client runs all `collect`s of a scrape
   * in one synchronous pass, so the cache is dropped at the next microtask.
   */
  samples(): readonly Sample[] {
    if (this.#samples === undefined) {
      this.#samples = [...this.sources.values()].map(sampleOf);
      queueMicrotask(() => {
        this.#samples = undefined;
      });
    }
    return this.#samples;
  }

  #create(family: FamilyDef): Counter<string> | Gauge<string> {
    const name = this.prefix + family.name;
    const labelNames = ['domus', ...this.constantLabelNames, ...family.labelNames];
    const samples = (): readonly Sample[] => this.samples();
    if (family.type === 'counter') {
      return new Counter({
        name,
        help: family.help,
        labelNames,
        registers: [],
        collect(this: Counter<string>) {
          this.reset();
          for (const sample of samples()) family.read(sample, (labels, v) => this.inc(labels, v));
        },
      });
    }
    return new Gauge({
      name,
      help: family.help,
      labelNames,
      registers: [],
      collect(this: Gauge<string>) {
        this.reset();
        for (const sample of samples()) family.read(sample, (labels, v) => this.set(labels, v));
      },
    });
  }
}

const shared = new WeakMap<Registry<RegistryContentType>, Map<string, SharedFamilies>>();

/**
 * Exposes a domus's metrics (`DomusReporting.snapshot()`, `connectedPeers()`) as Prometheus
 * counters and gauges in a prom-client registry. Values are read when the registry is scraped,
 * so the engine's hot path pays nothing. Several domus share one set of families told apart by
 * the `domus` label. Send latency percentiles (since build) are gauges with a `quantile` label.
 * Throws `AureliaError(InvalidConfig)` naming the problem when an option is invalid, the `domus`
 * label is already registered with this registry and prefix, the constant label names differ
 * from those of domus already registered there, or another metric already uses one of the names.
 */
export function registerAureliaMetrics(
  reporting: DomusReporting,
  options: AureliaMetricsOptions = {},
): AureliaMetricsRegistration {
  if (reporting === null || typeof reporting?.snapshot !== 'function') {
    throw invalid('reporting must be a DomusReporting (domus.reporting)');
  }
  const registry = options.registry ?? globalRegistry;
  const prefix = options.prefix ?? DEFAULT_PREFIX;
  if (typeof prefix !== 'string' || !METRIC_PREFIX.test(prefix)) {
    throw invalid(
      `prefix ${JSON.stringify(prefix)} is not a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)`,
    );
  }
  const domus = options.domus ?? DEFAULT_DOMUS;
  if (typeof domus !== 'string' || domus === '') throw invalid('domus must be a non-empty string');
  const labels = checkLabels(options.labels ?? {});
  const maxPeerIdentities = options.maxPeerIdentities ?? DEFAULT_MAX_PEER_IDENTITIES;
  if (
    !Number.isInteger(maxPeerIdentities) ||
    maxPeerIdentities < 0 ||
    maxPeerIdentities > MAX_PEER_IDENTITIES_LIMIT
  ) {
    throw invalid(
      `maxPeerIdentities must be an integer in 0..${MAX_PEER_IDENTITIES_LIMIT}, got ${String(maxPeerIdentities)}`,
    );
  }

  const families = familiesFor(registry, prefix, Object.keys(labels).sort());
  if (families.sources.has(domus)) {
    throw invalid(
      `a domus labelled ${JSON.stringify(domus)} is already registered with prefix ` +
        `${JSON.stringify(prefix)} in this registry; give each domus a distinct options.domus`,
    );
  }
  const source: Source = {
    reporting,
    labels: { domus, ...labels },
    maxPeerIdentities,
    admitted: new Set(),
  };
  families.sources.set(domus, source);

  let disposed = false;
  return Object.freeze({
    domus,
    metricNames: Object.freeze(FAMILIES.map((family) => prefix + family.name)),
    dispose(): void {
      if (disposed) return;
      disposed = true;
      if (families.sources.get(domus) !== source) return;
      families.sources.delete(domus);
      if (families.sources.size > 0) return;
      for (const [i, metric] of families.metrics.entries()) {
        const name = prefix + FAMILIES[i].name;
        if (registry.getSingleMetric(name) === metric) registry.removeSingleMetric(name);
      }
      shared.get(registry)?.delete(prefix);
    },
  });
}

/** The families of `registry` and `prefix`, registering them on first use (or after a clear). */
function familiesFor(
  registry: Registry<RegistryContentType>,
  prefix: string,
  constantLabelNames: readonly string[],
): SharedFamilies {
  let byPrefix = shared.get(registry);
  if (byPrefix === undefined) {
    byPrefix = new Map();
    shared.set(registry, byPrefix);
  }
  let families = byPrefix.get(prefix);
  if (families !== undefined) {
    if (families.constantLabelNames.join(',') !== constantLabelNames.join(',')) {
      throw invalid(
        `labels must have the same names for every domus with prefix ${JSON.stringify(prefix)} ` +
          `in a registry: registered with [${families.constantLabelNames.join(', ')}], ` +
          `got [${constantLabelNames.join(', ')}]`,
      );
    }
  } else {
    families = new SharedFamilies(prefix, constantLabelNames);
  }
  // Registered now, or again if someone cleared the registry since.
  const registered: string[] = [];
  for (const [i, metric] of families.metrics.entries()) {
    const name = prefix + FAMILIES[i].name;
    const existing = registry.getSingleMetric(name);
    if (existing === metric) continue;
    if (existing !== undefined) {
      for (const done of registered) registry.removeSingleMetric(done);
      throw invalid(
        `a metric named ${name} is already registered by someone else; choose another prefix`,
      );
    }
    registry.registerMetric(metric);
    registered.push(name);
  }
  byPrefix.set(prefix, families);
  return families;
}

function sampleOf(source: Source): Sample {
  const peers = foldPeers(source.reporting.connectedPeers(), source);
  return {
    labels: source.labels,
    metrics: source.reporting.snapshot(),
    peers,
    droppedFeedItems: source.reporting.droppedFeedItems,
    replicas: source.reporting.replicas().slice(0, source.maxPeerIdentities),
    security: source.reporting.security,
  };
}

/** Sums callis per identity, keeping at most `maxPeerIdentities` identities as their own series. */
function foldPeers(
  reports: readonly PeerIdentityReport[],
  source: Source,
): Map<string, { primary: number; blob: number }> {
  const live = new Set(reports.map((r) => r.identity));
  for (const identity of source.admitted) if (!live.has(identity)) source.admitted.delete(identity);
  const out = new Map<string, { primary: number; blob: number }>();
  for (const report of reports) {
    if (!source.admitted.has(report.identity) && source.admitted.size < source.maxPeerIdentities) {
      source.admitted.add(report.identity);
    }
    const key = source.admitted.has(report.identity) ? report.identity : OTHER_PEER_IDENTITY;
    const counts = out.get(key) ?? { primary: 0, blob: 0 };
    counts.primary += report.primaryCallis;
    counts.blob += report.blobCallis;
    out.set(key, counts);
  }
  return out;
}

function checkLabels(labels: Readonly<Record<string, string>>): Labels {
  if (typeof labels !== 'object' || labels === null) {
    throw invalid('labels must be an object of label names to string values');
  }
  const out: Labels = {};
  for (const [name, value] of Object.entries(labels)) {
    if (!LABEL_NAME.test(name) || name.startsWith('__')) {
      throw invalid(`label name ${JSON.stringify(name)} is not a Prometheus label name`);
    }
    if (RESERVED_LABELS.has(name)) {
      throw invalid(`label name ${JSON.stringify(name)} is reserved by the Aurelia metrics`);
    }
    if (typeof value !== 'string') {
      throw invalid(`label ${name} must have a string value, got ${typeof value}`);
    }
    out[name] = value;
  }
  return out;
}

function invalid(message: string): AureliaError {
  return new AureliaError(ErrorId.InvalidConfig, message);
}
