// The public entry point: everything a user imports comes from here.
export { AureliaError, ErrorId, errorIdName } from './engine/errors.js';
export {
  A1_MESSAGE_TYPE_MAX,
  A2_MESSAGE_TYPE_BASE,
  A2_MESSAGE_TYPE_MAX,
  A3_MESSAGE_TYPE_BASE,
  A3_MESSAGE_TYPE_MAX_OFFSET,
  MessagePriorityClass,
  a3MessageType,
  classifyMessagePriority,
  tryA3MessageType,
  type MessageType,
  type TabernaId,
} from './engine/ids.js';
export {
  BLOB_ACK_WINDOW_MAX,
  BLOB_CHUNK_SIZE_MAX,
  DEFAULT_BLOB_WINDOWS,
  DOMUS_CONFIG_MAX,
  DomusConfigBuilder,
  RECONNECT_BACKOFF_STEPS_MAX,
  RECONNECT_BACKOFF_STEP_MS_MAX,
  defaultDomusConfig,
  mergeDomusConfig,
  validateDomusConfig,
  type BlobWindowConfig,
  type DomusConfig,
} from './engine/config.js';
export {
  DomusAddr,
  SOCKET_PATH_MAX_BYTES,
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
export { SimpleResolver, type RouteResolver } from './engine/resolver.js';
export { SendOptions, type SendOptionsInit } from './engine/send-options.js';
export {
  TabernaCompletion,
  TabernaRequest,
  type PeerInfo,
  type TabernaRequestParts,
} from './engine/taberna/request.js';
export { Taberna } from './engine/taberna/taberna.js';
export {
  RateLimitedLogger,
  silentLogger,
  type AureliaLogContext,
  type AureliaLogger,
  type AureliaLogLevel,
  type RateLimitedLoggerOptions,
} from './engine/logger.js';
export {
  DnsSrvResolver,
  type DnsSrvRange,
  type DnsSrvResolverOptions,
} from './engine/services/dns-srv-resolver.js';
export {
  OTHER_PEER_IDENTITY,
  registerAureliaMetrics,
  type AureliaMetricsOptions,
  type AureliaMetricsRegistration,
} from './engine/reporting/prometheus.js';
export {
  Pkcs8AuthConfig,
  Pkcs8PrivateKey,
  loadAuthMaterial,
  type AuthCertificateInfo,
  type AuthKeyType,
  type AuthMaterial,
  type AuthSourceLabels,
  type LoadAuthMaterialOptions,
  type Pkcs8AuthFiles,
  type Pkcs8DerConfig,
  type Pkcs8PemConfig,
} from './engine/auth.js';
export { certificateIdentity } from './engine/transport/identity.js';
export { type TabernaOptions } from './engine/taberna/taberna.js';
export { Aurelia, DomusBuilder } from './engine/aurelia.js';
export {
  Domus,
  DomusConfigAccess,
  type DispatchMessage,
  type SendOutcome,
} from './engine/domus.js';
export { type LatencySummary } from './engine/reporting/histogram.js';
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
  type ShutdownEvent,
} from './engine/reporting/reporting.js';
export { BlobSender } from './engine/blob/sender.js';
export { BlobReceiver } from './engine/blob/receiver.js';
// A2 services: request/reply (what Nest send() is built on).
export {
  CANCEL_MESSAGE_TYPE,
  REPLY_MESSAGE_TYPE,
  REPLY_TABERNA_ID,
  REQUEST_MESSAGE_TYPE,
  RESERVED_TABERNA_ID_BASE,
  RequestReplyCodec,
  type RequestReplyInbound,
} from './engine/services/request-reply-wire.js';
export {
  REPLY_WINDOW,
  RemoteRequestError,
  ReplyChannel,
  RequestReplyClient,
  RequestReplyResponder,
  RequestReplyServer,
  type RequestHandler,
  type RequestOptions,
  type RequestReplyServerOptions,
  type ServedRequest,
} from './engine/services/request-reply.js';
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
export { AureliaContext, type AureliaContextArgs } from './nest/context.js';
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
  type AureliaServerSerialization,
} from './nest/options.js';
export {
  PATTERN_HASH_PREFIX,
  normalizePattern,
  tabernaIdForPattern,
  tabernaIdForRoute,
  type AureliaPattern,
} from './nest/pattern.js';
export {
  AURELIA_LOG_CONTEXT,
  type AureliaDnsSrvOptions,
  type AureliaDnsSrvService,
  type AureliaModuleDiscoveryOptions,
  type AureliaModuleMetricsOptions,
  type AureliaPrometheusOptions,
} from './nest/observability.js';
export { AURELIA_ERRORS, AURELIA_EVENTS, AURELIA_METRICS } from './nest/tokens.js';
