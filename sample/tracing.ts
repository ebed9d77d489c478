// OpenTelemetry in the sample: each service's finished spans go to main.ts, which prints the
// trace tree of one call. A real service would export its spans to a collector instead.
import { SpanKind, SpanStatusCode, context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import type { ProcessName } from './contracts.js';

/** A finished span as a service reports it to main.ts. */
export interface SampleSpan {
  readonly service: ProcessName;
  readonly traceId: string;
  readonly spanId: string;
  readonly parentId: string | undefined;
  readonly name: string;
  readonly kind: 'client' | 'server' | 'internal';
  /** Start, in ms since the Unix epoch. */
  readonly startedAt: number;
  readonly durationMs: number;
  readonly error: string | undefined;
}

/**
 * Registers OpenTelemetry for this process: W3C trace context, context that follows async calls,
 * and a tracer provider handing every finished span to `report`. Aurelia finds the API on its
 * own: each `send()`, `emit()` and `sendBlob()` gets a client span whose trace context travels in
 * the packet, and each handled call a server span that is its child. Returns what stops it.
 */
export function startTracing(
  service: ProcessName,
  report: (span: SampleSpan) => void,
): () => Promise<void> {
  const exporter: SpanExporter = {
    export(spans, done) {
      for (const span of spans) report(sampleSpan(service, span));
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: () => Promise.resolve(),
  };
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  return () => provider.shutdown();
}

/** Spans reported by the services, grouped by trace, for main.ts. */
export class SpanBoard {
  private readonly spans: SampleSpan[] = [];
  private readonly waiters = new Set<() => void>();

  add(span: SampleSpan): void {
    this.spans.push(span);
    for (const wake of [...this.waiters]) wake();
  }

  /**
   * The spans of the trace whose root span is called `rootName`, once `count` of them arrived
   * (spans of one trace come from several processes, in any order). Rejects after `timeoutMs`.
   */
  trace(rootName: string, count: number, timeoutMs: number): Promise<SampleSpan[]> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const root = this.spans.find((s) => s.name === rootName && s.parentId === undefined);
        const spans = root ? this.spans.filter((s) => s.traceId === root.traceId) : [];
        if (spans.length < count) return false;
        finish();
        resolve(spans);
        return true;
      };
      const finish = (): void => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      const timer = setTimeout(() => {
        finish();
        reject(
          new Error(`the ${count} spans of '${rootName}' did not arrive within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      if (!check()) this.waiters.add(check);
    });
  }
}

/**
 * The spans of one trace as an indented tree, children under their parent in the order they
 * started, one line each: `name (kind) — service, duration`.
 */
export function traceTree(spans: readonly SampleSpan[]): string[] {
  const ids = new Set(spans.map((s) => s.spanId));
  const ordered = [...spans].sort((a, b) => a.startedAt - b.startedAt);
  const lines: string[] = [];
  const walk = (parentId: string | undefined, depth: number): void => {
    for (const span of ordered) {
      const parent =
        span.parentId !== undefined && ids.has(span.parentId) ? span.parentId : undefined;
      if (parent !== parentId) continue;
      const kind = span.kind === 'internal' ? '' : ` (${span.kind})`;
      const error = span.error === undefined ? '' : `, error: ${span.error}`;
      lines.push(
        `${'  '.repeat(depth)}${span.name}${kind} — ${span.service}, ${span.durationMs.toFixed(1)} ms${error}`,
      );
      walk(span.spanId, depth + 1);
    }
  };
  walk(undefined, 0);
  return lines;
}

function sampleSpan(service: ProcessName, span: ReadableSpan): SampleSpan {
  const ms = ([seconds, nanos]: [number, number]): number => seconds * 1000 + nanos / 1e6;
  return {
    service,
    traceId: span.spanContext().traceId,
    spanId: span.spanContext().spanId,
    parentId: span.parentSpanContext?.spanId,
    name: span.name,
    kind:
      span.kind === SpanKind.CLIENT
        ? 'client'
        : span.kind === SpanKind.SERVER
          ? 'server'
          : 'internal',
    startedAt: ms(span.startTime),
    durationMs: ms(span.duration),
    error: span.status.code === SpanStatusCode.ERROR ? (span.status.message ?? 'error') : undefined,
  };
}
