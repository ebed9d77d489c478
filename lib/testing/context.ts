// Contexts for unit tests of guards, interceptors and handlers, without a transport.
import type { Readable } from 'node:stream';
import type { ExecutionContext, Type } from '@nestjs/common';
import type { PacketMetadata } from '@nestjs/microservices';
import { AureliaError, ErrorId } from '../engine/errors.js';
import type { TabernaId } from '../engine/ids.js';
import { AureliaContext } from '../nest/context.js';
import { normalizePattern, tabernaIdForPattern, type AureliaPattern } from '../nest/pattern.js';

/** What a test context says about the call; every field has a default. */
export interface TestContextInit {
  /** The caller's certificate identity (default `'spiffe://aurelia.local/test'`). */
  readonly identity?: string;
  /** The caller's address (default `'tls://127.0.0.1:7000'`; none when `local`). */
  readonly address?: string;
  /** Whether the call came from the handler's own domus (default false). */
  readonly local?: boolean;
  /** The handler's pattern (default `'test'`); the taberna id is hashed from it. */
  readonly pattern?: AureliaPattern;
  /** An explicit taberna id (default: `tabernaIdForPattern(pattern)`). */
  readonly tabernaId?: TabernaId;
  /** What `getMetadata()` returns (default undefined). */
  readonly metadata?: PacketMetadata;
  /** What `getBlob()` returns (default undefined: an event without a blob). */
  readonly blob?: Readable;
}

/**
 * An `AureliaContext` as `@Ctx()` receives it, for calling a handler directly in a unit test.
 * Throws `AureliaError(InvalidConfig)` for an empty identity or a pattern Nest cannot route.
 */
export function createAureliaContext(init: TestContextInit = {}): AureliaContext {
  const identity = init.identity ?? 'spiffe://aurelia.local/test';
  if (identity.length === 0) {
    throw new AureliaError(ErrorId.InvalidConfig, 'createAureliaContext: identity is empty');
  }
  const local = init.local ?? false;
  const pattern = init.pattern ?? 'test';
  const address = local ? undefined : (init.address ?? 'tls://127.0.0.1:7000');
  const blob = init.blob;
  return new AureliaContext(
    [
      address === undefined ? { identity, local } : { identity, address, local },
      init.tabernaId ?? tabernaIdForPattern(pattern),
      typeof pattern === 'bigint' ? pattern.toString() : normalizePattern(pattern),
      init.metadata,
    ],
    blob === undefined ? undefined : () => blob,
  );
}

/**
 * An RPC `ExecutionContext` as a guard or interceptor receives it for an Aurelia call:
 * `switchToRpc().getContext()` is `context`, `getData()` is `data`, `getType()` is `'rpc'`, and
 * `getClass()` / `getHandler()` return `controller` and `handler` (for guards reading metadata
 * with `Reflector`). `switchToHttp()` and `switchToWs()` throw, as no such call exists.
 */
export function createRpcExecutionContext(
  context: AureliaContext,
  data: unknown = undefined,
  target: { controller?: Type; handler?: (...args: never[]) => unknown } = {},
): ExecutionContext {
  const args: unknown[] = [data, context];
  const controller = target.controller ?? Object;
  const handler = target.handler ?? (() => undefined);
  const notRpc = (kind: string) => () => {
    throw new AureliaError(
      ErrorId.InvalidConfig,
      `createRpcExecutionContext: an Aurelia call has no ${kind} context; use switchToRpc()`,
    );
  };
  return {
    getArgs: <T extends unknown[]>() => args as T,
    getArgByIndex: <T>(index: number) => args[index] as T,
    getType: <T extends string>() => 'rpc' as T,
    getClass: <T>() => controller as Type<T>,
    getHandler: () => handler as (...a: unknown[]) => unknown,
    switchToRpc: () => ({
      getData: <T>() => data as T,
      getContext: <T>() => context as T,
    }),
    switchToHttp: notRpc('HTTP'),
    switchToWs: notRpc('WebSocket'),
  } as ExecutionContext;
}
