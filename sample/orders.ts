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
  type StatementLine,
  type StatementRequest,
} from './contracts.js';
import { meshOptions, readMeshSettings, since, startService, trace } from './mesh.js';
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

@Module({
  imports: [
    AureliaModule.forRootAsync({
      useFactory: () =>
        meshOptions(readMeshSettings(), 'orders', {
          [Patterns.charge]: 'billing',
          [Patterns.statement]: 'billing',
          [Patterns.record]: 'audit',
          [Patterns.archive]: 'audit',
        }),
    }),
  ],
  providers: [Orders, PeerWatch],
})
class OrdersModule {}

await superviseService(
  'orders',
  () => startService(OrdersModule),
  (app) => {
    const orders = app.get(Orders);
    return {
      charge: () => orders.charge(),
      record: () => orders.record(),
      'record-invalid': () => orders.recordInvalid(),
      statement: () => orders.statement(),
      archive: () => orders.archive(readMeshSettings().runDir),
      metrics: () => orders.metrics(),
    };
  },
);
