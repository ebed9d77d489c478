// The public entry point: what README.md and docs/NEST.md teach. Lower-level engine pieces (the
// A2 request/reply service, wire constants, configuration maxima) are in `aurelia-mesh/engine`
// (lib/engine/index.ts); the terminus indicator in `aurelia-mesh/health`; test helpers in
// `aurelia-mesh/testing`.
export { AureliaError, ErrorId, errorIdName } from './engine/errors.js';
export { a3MessageType, type MessageType, type TabernaId } from './engine/ids.js';
export {
  DomusConfigBuilder,
  defaultDomusConfig,
  mergeDomusConfig,
  type BlobWindowConfig,
  type DomusConfig,
} from './engine/config.js';
export {
  DomusAddr,
  type SocketDomusAddr,
  type TcpDomusAddr,
  type TransportKind,
} from './engine/addr.js';
export {
  BufferCodec,
  JsonCodec,
  type CodecOptions,
  type EncodedMessage,
  type MessageCodec,
} from './engine/codec.js';
export {
  ReplicaSet,
  SimpleResolver,
  type RouteOptions,
  type RouteResolver,
  type RouteTarget,
} from './engine/resolver.js';
export { type Balancing, type ReplicaReport } from './engine/balancer/balancer.js';
export { SendOptions, type SendOptionsInit } from './engine/send-options.js';
export {
  TabernaCompletion,
  TabernaRequest,
  type PeerInfo,
  type TabernaRequestParts,
} from './engine/taberna/request.js';
export { Taberna, type TabernaOptions } from './engine/taberna/taberna.js';
export {
  silentLogger,
  type AureliaLogContext,
  type AureliaLogger,
  type AureliaLogLevel,
} from './engine/logger.js';
export {
  DnsSrvResolver,
  type DnsSrvRange,
  type DnsSrvResolverOptions,
} from './engine/services/dns-srv-resolver.js';
export {
  registerAureliaMetrics,
  type AureliaMetricsOptions,
  type AureliaMetricsRegistration,
} from './engine/reporting/prometheus.js';
export {
  Pkcs8AuthConfig,
  Pkcs8PrivateKey,
  type Pkcs8AuthFiles,
  type Pkcs8DerConfig,
  type Pkcs8PemConfig,
} from './engine/auth.js';
export { type AuthWatchOptions, type WatchedAuthFiles } from './engine/auth-watch.js';
export { Aurelia, DomusBuilder } from './engine/aurelia.js';
export { Domus, DomusConfigAccess, type SendOutcome } from './engine/domus.js';
export { type LatencySummary } from './engine/reporting/histogram.js';
export { SecurityReport, type CertificateReport } from './engine/reporting/security.js';
export { type DomusMetrics, type DomusMetricsDelta } from './engine/reporting/metrics.js';
export {
  DomusReporting,
  type AuthReloadedEvent,
  type BackpressureEvent,
  type CallisDirection,
  type CallisEvent,
  type ConfigReloadedEvent,
  type DomusReportingEvent,
  type DomusReportingFeeds,
  type OutboundQueueOverrunEvent,
  type PeerDialFailedEvent,
  type PeerIdentityReport,
  type PeerLinkEvent,
  type PeerSessionRestartedEvent,
  type ReplicaEvent,
  type ShutdownEvent,
  type DrainEvent,
  type PeerDrainingEvent,
} from './engine/reporting/reporting.js';
export { BlobSender } from './engine/blob/sender.js';
export { BlobReceiver } from './engine/blob/receiver.js';
// NestJS integration.
export {
  AureliaModule,
  type AureliaModuleAsyncOptions,
  type AureliaModuleRootOptions,
} from './nest/aurelia.module.js';
export {
  AURELIA_TRANSPORT,
  AureliaServer,
  type AureliaEventsMap,
  type AureliaServerStatus,
} from './nest/aurelia.server.js';
export {
  ClientAurelia,
  type AureliaClientStatus,
  type ClientAureliaOptions,
} from './nest/client-aurelia.js';
export { AureliaContext } from './nest/context.js';
export {
  AllowPeers,
  PEER_NOT_ALLOWED,
  type AuthorizationRefusal,
  type AureliaAuthorizationOptions,
  type AureliaAuthorizationRule,
} from './nest/authorization.js';
export {
  InjectAureliaErrors,
  InjectAureliaEvents,
  InjectAureliaMetrics,
  TabernaHandler,
} from './nest/decorators.js';
export {
  type AureliaClientSerialization,
  type AureliaModuleOptions,
  type AureliaRoute,
  type AureliaRouteAddress,
  type AureliaRoutes,
  type AureliaServerSerialization,
} from './nest/options.js';
export { tabernaIdForPattern, type AureliaPattern } from './nest/pattern.js';
export {
  type AureliaDnsSrvOptions,
  type AureliaDnsSrvService,
  type AureliaModuleDiscoveryOptions,
  type AureliaModuleMetricsOptions,
  type AureliaPrometheusOptions,
} from './nest/observability.js';
export { AURELIA_ERRORS, AURELIA_EVENTS, AURELIA_METRICS } from './nest/tokens.js';
