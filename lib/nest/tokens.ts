// Injection tokens of the Nest integration.

/** Token of the validated `ResolvedAureliaOptions` (internal to the module). */
export const AURELIA_OPTIONS = Symbol('AURELIA_OPTIONS');
/** Token of the `Observable<DomusReportingEvent>` of the module's domus (`reporting.events$`). */
export const AURELIA_EVENTS = Symbol('AURELIA_EVENTS');
/** Token of the `Observable<AureliaError>` of the module's domus (`reporting.errors$`). */
export const AURELIA_ERRORS = Symbol('AURELIA_ERRORS');
/**
 * Token of the `Observable<DomusMetricsDelta>` sampling the domus's metrics every
 * `metricsIntervalMs` (module option, default 10000) while subscribed (`reporting.metrics$`).
 */
export const AURELIA_METRICS = Symbol('AURELIA_METRICS');
/** Metadata key `@TabernaHandler` writes into a handler's pattern extras. */
export const TABERNA_ID_EXTRA = 'aureliaTabernaId';
