// Decorators of the Nest integration.
import 'reflect-metadata';
import { Inject } from '@nestjs/common';
import { PATTERN_EXTRAS_METADATA } from '@nestjs/microservices/constants.js';
import { type AureliaPattern, tabernaIdForPattern } from './pattern.js';
import { AURELIA_ERRORS, AURELIA_EVENTS, AURELIA_METRICS, TABERNA_ID_EXTRA } from './tokens.js';

/**
 * Sets the taberna a `@MessagePattern` / `@EventPattern` handler listens on: a bigint is used as
 * the id, any other pattern is hashed like a handler pattern (so two names can share a taberna
 * id only by choice). Without it the handler's own pattern is hashed. Throws
 * `AureliaError(InvalidConfig)` at class definition for an id in the reserved range or a
 * pattern that cannot be normalized. Works above or below the pattern decorator.
 */
export function TabernaHandler(idOrPattern: AureliaPattern): MethodDecorator {
  const id = tabernaIdForPattern(idOrPattern);
  return (_target, _key, descriptor) => {
    const handler = descriptor.value as object;
    Reflect.defineMetadata(
      PATTERN_EXTRAS_METADATA,
      {
        ...(Reflect.getMetadata(PATTERN_EXTRAS_METADATA, handler) as object),
        [TABERNA_ID_EXTRA]: id,
      },
      handler,
    );
    return descriptor;
  };
}

/** Injects the domus's event feed (`Observable<DomusReportingEvent>`). */
export const InjectAureliaEvents = (): ParameterDecorator & PropertyDecorator =>
  Inject(AURELIA_EVENTS);
/** Injects the domus's error feed (`Observable<AureliaError>`). */
export const InjectAureliaErrors = (): ParameterDecorator & PropertyDecorator =>
  Inject(AURELIA_ERRORS);
/** Injects the domus's periodic metrics (`Observable<DomusMetricsDelta>`). */
export const InjectAureliaMetrics = (): ParameterDecorator & PropertyDecorator =>
  Inject(AURELIA_METRICS);
