// orders: the caller. Charges orders, records them in the audit trail, reads a streamed
// statement, archives a file as a blob, and watches its peers through the reporting events.
import 'reflect-metadata';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Injectable, Module, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { trace as tracing } from '@opentelemetry/api';
import { type Observable, type Subscription, firstValueFrom, lastValueFrom, tap } from 'rxjs';
import {
  AureliaError,
  AureliaModule,
  ClientAurelia,
  DomusReporting,
  type DomusReportingEvent,
  ErrorId,
  InjectAureliaEvents,
} from 'aurelia-mesh';
import {
  type ArchiveFile,
  type AuditRecord,
  type ChargeRequest,
  type ChargeResult,
  Patterns,
  type ProcessName,
  type Quote,
  type QuoteRequest,
  type StatementLine,
  type StatementRequest,
} from './contracts.js';
import { meshOptions, processAt, readMeshSettings, since, startService, trace } from './mesh.js';
import { describeError, superviseService } from './supervision.js';

const ORDERS: readonly ChargeRequest[] = [
  { orderId: 1, customer: 'ada', amountCents: 4200 },
  { orderId: 2, customer: 'ada', amountCents: 1999 },
];

/** Where orders' own spans come from. */
const tracer = tracing.getTracer('sample-orders');

/** Size of the file archived at audit. */
const ARCHIVE_BYTES = 4 * 1024 * 1024;

/** Prints the peer events of this domus: a reporting subscription, as a health check would use. */
@Injectable()
class PeerWatch implements OnModuleInit, OnModuleDestroy {
  private subscription: Subscription | undefined;

  constructor(@InjectAureliaEvents() private readonly events$: Observable<DomusReportingEvent>) {}

  onModuleInit(): void {
    this.subscription = this.events$.subscribe((event) => {
      switch (event.type) {
        case 'PeerConnected':
        case 'PeerDisconnected':
          trace('orders', `event ${event.type}: ${event.identity}`);
          break;
        case 'PeerSessionRestarted':
          trace(
            'orders',
            `event ${event.type}: ${event.identity} (${event.failedMessages} failed)`,
          );
          break;
        case 'PeerDialFailed':
          trace('orders', `event ${event.type}: ${describeError(event.error)}`);
          break;
        case 'PeerDraining':
          trace(
            'orders',
            `event ${event.type}: ${processAt(event.address)} is shutting down (${event.moved} queued calls moved to another replica)`,
          );
          break;
        case 'ReplicaEjected':
        case 'ReplicaReadmitted':
          trace('orders', `event ${event.type}: ${processAt(event.address)}`);
          break;
        default:
          break;
      }
    });
  }

  onModuleDestroy(): void {
    this.subscription?.unsubscribe();
  }
}

/** The calls orders makes; each step throws when an outcome is not the one the sample shows. */
@Injectable()
class Orders {
  constructor(
    private readonly mesh: ClientAurelia,
    private readonly reporting: DomusReporting,
  ) {}

  /**
   * `send()` with one reply per call. The first call also opens the mTLS connection. Each order
   * is a `checkout` span of its own: the call's client span (here) and server span (in billing)
   * join its trace.
   */
  async charge(): Promise<void> {
    for (const order of ORDERS) {
      await tracer.startActiveSpan(`checkout #${order.orderId}`, async (span) => {
        try {
          const startedAt = performance.now();
          const result = await firstValueFrom(
            this.mesh.send<ChargeResult, ChargeRequest>(Patterns.charge, order),
          );
          trace(
            'orders',
            `charge #${order.orderId} → billing: ${result.status} as ${result.chargeId} (${since(startedAt)})`,
          );
        } finally {
          span.end();
        }
      });
    }
  }

  /** `emit()` completes once audit's handler accepted the record. */
  async record(): Promise<void> {
    const record: AuditRecord = { orderId: 1, action: 'charged', actor: 'orders' };
    const startedAt = performance.now();
    await lastValueFrom(this.mesh.emit(Patterns.record, record), { defaultValue: undefined });
    trace('orders', `record order #1 charged → audit: accepted (${since(startedAt)})`);
  }

  /** `emit()` errors with `RemoteTabernaRejected` when audit's handler refuses the record. */
  async recordInvalid(): Promise<void> {
    const invalid = { orderId: -7, action: 'teleported', actor: 'orders' };
    try {
      await lastValueFrom(this.mesh.emit(Patterns.record, invalid), { defaultValue: undefined });
    } catch (err) {
      if (!AureliaError.is(err, ErrorId.RemoteTabernaRejected)) throw err;
      trace('orders', `record order #-7 → audit: ${describeError(err)}`);
      return;
    }
    throw new Error('audit accepted an invalid record');
  }

  /** `send()` whose handler returns an Observable: every line arrives as its own reply. */
  async statement(): Promise<void> {
    const startedAt = performance.now();
    let lines = 0;
    const request: StatementRequest = { customer: 'ada' };
    await lastValueFrom(
      this.mesh.send<StatementLine, StatementRequest>(Patterns.statement, request).pipe(
        tap((line) => {
          lines += 1;
          trace('orders', `statement ${line.line}/${line.of}: ${line.text}`);
        }),
      ),
    );
    trace('orders', `statement complete: ${lines} lines streamed (${since(startedAt)})`);
  }

  /**
   * A file as a blob: the event carries the description, the bytes stream on the blob callis
   * (so messages never wait behind them), and `sendBlob` completes once audit's handler read
   * them all and accepted.
   */
  async archive(runDir: string): Promise<void> {
    const file: ArchiveFile = { name: 'orders-export.bin', bytes: ARCHIVE_BYTES };
    const filePath = path.join(runDir, file.name);
    const content = randomBytes(file.bytes);
    await writeFile(filePath, content);
    const sha256 = createHash('sha256').update(content).digest('hex');
    trace('orders', `archive ${file.name} → audit: ${file.bytes} bytes, sha256 ${sha256}`);
    const startedAt = performance.now();
    await lastValueFrom(this.mesh.sendBlob(Patterns.archive, file, createReadStream(filePath)), {
      defaultValue: undefined,
    });
    const seconds = (performance.now() - startedAt) / 1000;
    const rate = (file.bytes / (1024 * 1024) / seconds).toFixed(1);
    trace('orders', `archive ${file.name} → audit: accepted (${since(startedAt)}, ${rate} MiB/s)`);
  }

  /** What the domus counted so far, read from `DomusReporting`. */
  metrics(): Promise<void> {
    const m = this.reporting.snapshot();
    trace(
      'orders',
      `metrics: ${m.messagesSent} messages sent, ${m.sendsAccepted} accepted, ${m.sendsFailed} failed; ` +
        `round trip p50 ${m.sendLatency.p50Ms.toFixed(1)} ms, max ${m.sendLatency.maxMs.toFixed(1)} ms`,
    );
    return Promise.resolve();
  }
}

/** Concurrent quote loops while the replicas restart. */
const QUOTE_LOOPS = 4;
/** How often the trace says which replicas answered the quotes. */
const QUOTE_REPORT_MS = 500;

/**
 * Asks billing's two replicas for quotes, without pause, from a few loops, while `main.ts`
 * restarts one of them; every half second the trace says which replicas answered.
 */
@Injectable()
class Quotes implements OnModuleDestroy {
  private running = false;
  private loops: Promise<void> = Promise.resolve();
  private reporter: NodeJS.Timeout | undefined;
  private nextOrder = 1000;
  private readonly answered = new Map<ProcessName, number>();
  private window = new Map<ProcessName, number>();
  private failed = 0;

  constructor(private readonly mesh: ClientAurelia) {}

  /** Starts the loops; resolves once both replicas answered (within `timeoutMs`). */
  async start(timeoutMs = 5000): Promise<void> {
    this.running = true;
    this.loops = Promise.all(Array.from({ length: QUOTE_LOOPS }, () => this.loop())).then(
      () => undefined,
    );
    this.reporter = setInterval(() => this.report(), QUOTE_REPORT_MS);
    await this.until(() => this.count('billing') > 0 && this.count('billing-2') > 0, timeoutMs);
  }

  /**
   * Once `replica` answered `atLeast` more quotes (within `timeoutMs`), stops the loops, waits
   * for the quotes in flight and prints the totals; throws when any quote failed.
   */
  async finish(replica: ProcessName, atLeast: number, timeoutMs = 5000): Promise<void> {
    const before = this.count(replica);
    try {
      await this.until(() => this.count(replica) >= before + atLeast, timeoutMs);
    } finally {
      await this.stop();
    }
    const total = [...this.answered.values()].reduce((a, b) => a + b, 0);
    trace(
      'orders',
      `quotes: ${total} answered (billing ×${this.count('billing')}, billing-2 ×${this.count('billing-2')}), ${this.failed} failed`,
    );
    if (this.failed > 0) throw new Error(`${this.failed} quotes failed`);
  }

  async onModuleDestroy(): Promise<void> {
    await this.stop();
  }

  private async stop(): Promise<void> {
    this.running = false;
    await this.loops;
    if (this.reporter) clearInterval(this.reporter);
    this.reporter = undefined;
    if ([...this.window.values()].some((n) => n > 0)) this.report();
  }

  private count(replica: ProcessName): number {
    return this.answered.get(replica) ?? 0;
  }

  private async loop(): Promise<void> {
    while (this.running) {
      const request: QuoteRequest = { orderId: this.nextOrder++, amountCents: 1000 };
      try {
        const quote = await firstValueFrom(
          this.mesh.send<Quote, QuoteRequest>(Patterns.quote, request),
        );
        this.answered.set(quote.replica, this.count(quote.replica) + 1);
        this.window.set(quote.replica, (this.window.get(quote.replica) ?? 0) + 1);
      } catch (err) {
        this.failed++;
        trace('orders', `quote #${request.orderId} failed: ${describeError(err)}`);
      }
    }
  }

  private report(): void {
    const window = this.window;
    this.window = new Map();
    trace(
      'orders',
      `quotes answered in the last ${QUOTE_REPORT_MS} ms: billing ×${window.get('billing') ?? 0}, billing-2 ×${window.get('billing-2') ?? 0}`,
    );
  }

  /** Resolves once `done()` holds, checking every 10 ms; rejects after `timeoutMs`. */
  private async until(done: () => boolean, timeoutMs: number): Promise<void> {
    const end = performance.now() + timeoutMs;
    while (!done()) {
      if (performance.now() > end) throw new Error(`quotes: no progress within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
}

@Module({
  imports: [
    AureliaModule.forRootAsync({
      useFactory: () =>
        meshOptions(readMeshSettings(), 'orders', {
          [Patterns.charge]: 'billing',
          [Patterns.statement]: 'billing',
          [Patterns.quote]: ['billing', 'billing-2'],
          [Patterns.record]: 'audit',
          [Patterns.archive]: 'audit',
        }),
    }),
  ],
  providers: [Orders, PeerWatch, Quotes],
})
class OrdersModule {}

await superviseService(
  'orders',
  () => startService(OrdersModule),
  (app) => {
    const orders = app.get(Orders);
    const quotes = app.get(Quotes);
    return {
      'quotes-start': () => quotes.start(),
      'quotes-finish': () => quotes.finish('billing-2', 20, 8000),
      charge: () => orders.charge(),
      record: () => orders.record(),
      'record-invalid': () => orders.recordInvalid(),
      statement: () => orders.statement(),
      archive: () => orders.archive(readMeshSettings().runDir),
      metrics: () => orders.metrics(),
    };
  },
);
