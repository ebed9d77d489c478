// `aurelia-mesh/engine`: lower-level engine pieces for tools and engine-only users — the A2
// request/reply service and its wire constants, message-type ranges, configuration maxima, auth
// material loading. Nothing here imports Nest. A Nest application needs none of it.
export {
  A1_MESSAGE_TYPE_MAX,
  A2_MESSAGE_TYPE_BASE,
  A2_MESSAGE_TYPE_MAX,
  A3_MESSAGE_TYPE_BASE,
  A3_MESSAGE_TYPE_MAX_OFFSET,
  MessagePriorityClass,
  classifyMessagePriority,
  tryA3MessageType,
} from './ids.js';
export {
  BLOB_ACK_WINDOW_MAX,
  BLOB_CHUNK_SIZE_MAX,
  DEFAULT_BLOB_WINDOWS,
  DOMUS_CONFIG_MAX,
  RECONNECT_BACKOFF_STEPS_MAX,
  RECONNECT_BACKOFF_STEP_MS_MAX,
  validateDomusConfig,
} from './config.js';
export { SOCKET_PATH_MAX_BYTES } from './addr.js';
export { RateLimitedLogger, type RateLimitedLoggerOptions } from './logger.js';
export { OTHER_PEER_IDENTITY } from './reporting/prometheus.js';
export {
  loadAuthMaterial,
  type AuthCertificateInfo,
  type AuthKeyType,
  type AuthMaterial,
  type AuthSourceLabels,
  type LoadAuthMaterialOptions,
} from './auth.js';
export { certificateIdentity } from './transport/identity.js';
// The balancer a domus uses for routes of several replicas, pure and usable on its own.
export {
  BALANCINGS,
  ReplicaBalancer,
  type ReplicaBalancerOptions,
  type ReplicaDecision,
} from './balancer/balancer.js';
export { rendezvousPick } from './balancer/hash.js';
export {
  AuthFileWatcher,
  readAuthFiles,
  watchAuthFiles,
  type AuthCheckOutcome,
  type LoadedAuthFiles,
} from './auth-watch.js';
// A2 services: request/reply (what Nest send() is built on).
export {
  REQUEST_MESSAGE_TYPE,
  RESERVED_TABERNA_ID_BASE,
  RequestReplyCodec,
  type RequestReplyInbound,
} from './services/request-reply-wire.js';
export {
  REPLY_WINDOW,
  RemoteRequestError,
  ReplyChannel,
  RequestReplyClient,
  type CallSink,
  RequestReplyResponder,
  RequestReplyServer,
  type RequestHandler,
  type RequestOptions,
  type RequestReplyServerOptions,
  type ServedRequest,
} from './services/request-reply.js';
