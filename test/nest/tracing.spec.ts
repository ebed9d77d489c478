import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { Controller, type INestApplication, type INestApplicationContext } from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import {
  type Span,
  SpanKind,
  SpanStatusCode,
  context,
  propagation,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { lastValueFrom, toArray } from 'rxjs';
import { ClientAurelia, Domus } from '../../lib/index.js';
import { AureliaContext } from '../../lib/nest/context.js';
import { tabernaIdForPattern } from '../../lib/nest/pattern.js';
import { repoRoot } from '../support/built.js';
import { eventually } from '../support/mesh.js';
import { makeTestPki, type TestPki } from '../support/pki.js';
import { BillingController, callerApp, hybridApp, serviceOptions } from './fixtures.js';

const ORDERS = 'spiffe://aurelia.local/orders';

/** Handlers that make calls of their own, or take a blob. */
@Controller()
class RelayController {
  constructor(private readonly mesh: ClientAurelia) {}

  /** Sums through the billing service itself: a call made inside a handled call. */
  @MessagePattern('relay.sum')
  relay(@Payload() numbers: number[]): Promise<number> {
    return lastValueFrom(this.mesh.send<number>('sum', numbers));
  }

  @EventPattern<string>('trace.blob')
  async blob(@Payload() _name: string, @Ctx() ctx: AureliaContext): Promise<void> {
    for await (const _chunk of ctx.getBlob()!) {
      // read to the end
    }
  }
}

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const tracer = trace.getTracer('aurelia-test');

/** Runs `fn` inside a new root span named `name` and returns what it returned and the span. */
async function traced<T>(name: string, fn: () => Promise<T>): Promise<{ value: T; root: Span }> {
  return tracer.startActiveSpan(name, async (root) => {
    try {
      return { value: await fn(), root };
    } finally {
      root.end();
    }
  });
}

/** The finished spans of `traceId`, once there are `count` of them. */
async function spansOf(traceId: string, count: number): Promise<ReadableSpan[]> {
  const of = () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
  await eventually(() => of().length >= count, `${count} spans of trace ${traceId}`);
  return of();
}

function only(spans: ReadableSpan[], name: string, kind: SpanKind): ReadableSpan {
  const found = spans.filter((s) => s.name === name && s.kind === kind);
  expect(found).toHaveLength(1);
  return found[0]!;
}

function parentOf(span: ReadableSpan): string | undefined {
  return span.parentSpanContext?.spanId;
}

function messages(span: ReadableSpan, type: 'SENT' | 'RECEIVED'): number {
  return span.events.filter((e) => e.name === 'message' && e.attributes?.['message.type'] === type)
    .length;
}

describe('OpenTelemetry tracing across two Nest apps', () => {
  let pki: TestPki;
  let billing: INestApplication;
  let orders: INestApplicationContext;

  beforeAll(async () => {
    trace.setGlobalTracerProvider(provider);
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    pki = await makeTestPki();
    billing = await hybridApp(await serviceOptions(pki, 'billing', { logger: false }), [
      BillingController,
      RelayController,
    ]);
    const address = billing.get(Domus).localAddr;
    const routes = Object.fromEntries(
      ['sum', 'relay.sum', 'fail.rpc', 'note', 'note.fail', 'trace.blob'].map((p) => [p, address]),
    );
    routes['{"cmd":"count"}'] = address;
    orders = await callerApp(await serviceOptions(pki, 'orders', { logger: false, routes }));
  });

  afterAll(async () => {
    await orders?.close();
    await billing?.close();
    trace.disable();
    propagation.disable();
    context.disable();
    await provider.shutdown();
  });

  beforeEach(() => exporter.reset());

  const client = () => orders.get(ClientAurelia);

  it('makes the server span of a send() the child of its client span, in the caller’s trace', async () => {
    const { value, root } = await traced('checkout', () =>
      lastValueFrom(client().send<number>('sum', [2, 3])),
    );
    expect(value).toBe(5);
    const spans = await spansOf(root.spanContext().traceId, 3);
    const call = only(spans, 'sum', SpanKind.CLIENT);
    const served = only(spans, 'sum', SpanKind.SERVER);
    expect(parentOf(call)).toBe(root.spanContext().spanId);
    expect(parentOf(served)).toBe(call.spanContext().spanId);
    expect(call.attributes).toMatchObject({
      'rpc.system': 'aurelia',
      'rpc.method': 'sum',
      'aurelia.call': 'send',
    });
    expect(served.attributes).toMatchObject({
      'rpc.system': 'aurelia',
      'rpc.method': 'sum',
      'aurelia.peer.identity': ORDERS,
      'aurelia.taberna.id': `0x${tabernaIdForPattern('sum').toString(16)}`,
    });
    expect([call.status.code, served.status.code]).toEqual([
      SpanStatusCode.UNSET,
      SpanStatusCode.UNSET,
    ]);
    expect([messages(call, 'RECEIVED'), messages(served, 'SENT')]).toEqual([1, 1]);
  });

  it('records each streamed reply on both spans', async () => {
    const { value, root } = await traced('statement', () =>
      lastValueFrom(client().send<number>({ cmd: 'count' }, 4).pipe(toArray())),
    );
    expect(value).toEqual([1, 2, 3, 4]);
    const spans = await spansOf(root.spanContext().traceId, 3);
    const call = only(spans, '{"cmd":"count"}', SpanKind.CLIENT);
    const served = only(spans, '{"cmd":"count"}', SpanKind.SERVER);
    expect(parentOf(served)).toBe(call.spanContext().spanId);
    expect(messages(served, 'SENT')).toBe(4);
    expect(messages(call, 'RECEIVED')).toBe(4);
  });

  it('sets the error status on both spans when the handler fails', async () => {
    const { value: err, root } = await traced('refused', () =>
      lastValueFrom(client().send('fail.rpc', {})).then(
        () => undefined,
        (e: unknown) => e,
      ),
    );
    expect(err).toMatchObject({ code: 'E_LIMIT' });
    const spans = await spansOf(root.spanContext().traceId, 3);
    for (const span of [
      only(spans, 'fail.rpc', SpanKind.CLIENT),
      only(spans, 'fail.rpc', SpanKind.SERVER),
    ]) {
      expect(span.status).toEqual({ code: SpanStatusCode.ERROR, message: 'credit limit exceeded' });
      expect(span.events.map((e) => e.name)).toContain('exception');
    }
  });

  it('traces emit(), accepted and rejected', async () => {
    const { root } = await traced('notes', async () => {
      await lastValueFrom(client().emit('note', 'traced note'));
      await lastValueFrom(client().emit('note.fail', 'x')).catch(() => undefined);
    });
    const spans = await spansOf(root.spanContext().traceId, 5);
    const sent = only(spans, 'note', SpanKind.CLIENT);
    expect(sent.attributes['aurelia.call']).toBe('emit');
    expect(parentOf(only(spans, 'note', SpanKind.SERVER))).toBe(sent.spanContext().spanId);
    const failed = only(spans, 'note.fail', SpanKind.CLIENT);
    const handled = only(spans, 'note.fail', SpanKind.SERVER);
    expect(parentOf(handled)).toBe(failed.spanContext().spanId);
    expect([failed.status.code, handled.status.code]).toEqual([
      SpanStatusCode.ERROR,
      SpanStatusCode.ERROR,
    ]);
    expect(handled.status.message).toBe('note refused');
  });

  it('traces sendBlob()', async () => {
    const { root } = await traced('upload', () =>
      lastValueFrom(client().sendBlob('trace.blob', 'file', Readable.from([Buffer.alloc(4096)]))),
    );
    const spans = await spansOf(root.spanContext().traceId, 3);
    const sent = only(spans, 'trace.blob', SpanKind.CLIENT);
    expect(sent.attributes['aurelia.call']).toBe('sendBlob');
    expect(parentOf(only(spans, 'trace.blob', SpanKind.SERVER))).toBe(sent.spanContext().spanId);
  });

  it('makes the calls a handler makes children of its server span', async () => {
    const { value, root } = await traced('relay', () =>
      lastValueFrom(client().send<number>('relay.sum', [4, 5])),
    );
    expect(value).toBe(9);
    const spans = await spansOf(root.spanContext().traceId, 5);
    const relayed = only(spans, 'relay.sum', SpanKind.SERVER);
    const inner = only(spans, 'sum', SpanKind.CLIENT);
    expect(parentOf(inner)).toBe(relayed.spanContext().spanId);
    expect(parentOf(only(spans, 'sum', SpanKind.SERVER))).toBe(inner.spanContext().spanId);
  });
});

describe('without @opentelemetry/api', () => {
  const built = path.join(repoRoot, 'dist', 'lib');

  it('is never imported statically, so the package loads without it', () => {
    const files = readdirSync(built, { recursive: true, encoding: 'utf8' }).filter((f) =>
      f.endsWith('.js'),
    );
    const importers = files.filter((file) =>
      /(?:^|\n)\s*(?:import|export)\b[^;]*?from\s*['"]@opentelemetry\//.test(
        readFileSync(path.join(built, file), 'utf8'),
      ),
    );
    expect(importers).toEqual([]);
    expect(readFileSync(path.join(built, 'nest', 'tracing.js'), 'utf8')).toContain(
      "import('@opentelemetry/api')",
    );
  });

  it('turns tracing off when the module cannot be found', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'aurelia-no-otel-'));
    try {
      // A resolve hook that makes every @opentelemetry package missing, as in an app without it.
      const hooks = path.join(dir, 'hooks.mjs');
      await writeFile(
        hooks,
        `export async function resolve(specifier, context, next) {
          if (specifier.startsWith('@opentelemetry/')) {
            throw Object.assign(new Error('Cannot find package ' + specifier), { code: 'ERR_MODULE_NOT_FOUND' });
          }
          return next(specifier, context);
        }`,
      );
      const register = path.join(dir, 'register.mjs');
      await writeFile(
        register,
        `import { register } from 'node:module';\nregister(${JSON.stringify(new URL(`file://${hooks}`).href)});`,
      );
      const script = `const { loadTracing } = await import(${JSON.stringify(
        path.join(built, 'nest', 'tracing.js'),
      )}); console.log(String(await loadTracing()));`;
      const { stdout } = await promisify(execFile)(
        process.execPath,
        ['--import', register, '--input-type=module', '-e', script],
        { timeout: 20_000 },
      );
      expect(stdout.trim()).toBe('undefined');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
