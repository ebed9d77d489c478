// billing: charges orders (request/reply) and streams statements, to callers its guard admits.
import 'reflect-metadata';
import {
  type CanActivate,
  Controller,
  type ExecutionContext,
  Injectable,
  Module,
  type OnModuleDestroy,
  type OnModuleInit,
  UseGuards,
} from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { Reflector } from '@nestjs/core';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import { type Observable, type Subscription, from } from 'rxjs';
import {
  AureliaContext,
  AureliaModule,
  type DomusReportingEvent,
  InjectAureliaEvents,
} from 'aurelia-mesh';
import {
  type ChargeRequest,
  type ChargeResult,
  Patterns,
  type Quote,
  type QuoteRequest,
  type ServiceName,
  type StatementLine,
  type StatementRequest,
  identityOf,
} from './contracts.js';
import { meshOptions, processName, readMeshSettings, startService, trace } from './mesh.js';
import { superviseService } from './supervision.js';

/** Which billing replica this process is: `billing` or `billing-2`. */
const ME = processName('billing');

/** How long pricing a quote takes: long enough that quotes are in flight when a replica stops. */
const QUOTE_WORK_MS = 20;

/** The services allowed to call a handler; a handler without it admits nobody. */
const AllowCallers = Reflector.createDecorator<readonly ServiceName[]>();

/**
 * Admits a call when the caller's certificate identity — proved by mutual TLS, not claimed in
 * the message — belongs to a service named by the handler's `@AllowCallers`. A refused caller
 * gets Nest's `{ status: 'error', message: 'Forbidden resource' }`.
 */
@Injectable()
class CallerGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    const allowed = this.reflector.get(AllowCallers, context.getHandler()) ?? [];
    const rpc = context.switchToRpc();
    const caller = rpc.getContext<AureliaContext>().getPeer().identity;
    if (allowed.some((service) => identityOf(service) === caller)) return true;
    trace(ME, `refused ${rpc.getContext<AureliaContext>().getPattern()} from ${caller}`);
    return false;
  }
}

/** The charges billing made, in memory. */
@Injectable()
class Ledger {
  private readonly charges: (ChargeRequest & { readonly chargeId: string })[] = [];

  charge(request: ChargeRequest): ChargeResult {
    const chargeId = `ch_${String(this.charges.length + 1).padStart(4, '0')}`;
    this.charges.push({ ...request, chargeId });
    return { orderId: request.orderId, status: 'approved', chargeId };
  }

  statementOf(customer: string): string[] {
    const charges = this.charges.filter((c) => c.customer === customer);
    const total = charges.reduce((sum, c) => sum + c.amountCents, 0);
    return [
      `statement for ${customer}`,
      ...charges.map((c) => `${c.chargeId}  order #${c.orderId}  ${euros(c.amountCents)}`),
      `total  ${euros(total)}`,
    ];
  }
}

/** The handlers: every one states who may call it. */
@Controller()
@UseGuards(CallerGuard)
class BillingController {
  constructor(private readonly ledger: Ledger) {}

  /** Request/reply: one `ChargeResult` per call. */
  @AllowCallers(['orders'])
  @MessagePattern(Patterns.charge)
  charge(@Payload() request: ChargeRequest, @Ctx() ctx: AureliaContext): ChargeResult {
    const result = this.ledger.charge(request);
    trace(
      ME,
      `charge #${request.orderId} from ${ctx.getPeer().identity}: ${euros(request.amountCents)} ${result.status} as ${result.chargeId}`,
    );
    return result;
  }

  /** A streamed reply: each line of the Observable reaches the caller as its own reply. */
  @AllowCallers(['orders', 'audit'])
  @MessagePattern(Patterns.statement)
  statement(@Payload() request: StatementRequest): Observable<StatementLine> {
    const lines = this.ledger.statementOf(request.customer);
    trace(ME, `statement for ${request.customer}: streaming ${lines.length} lines`);
    return from(lines.map((text, index) => ({ line: index + 1, of: lines.length, text })));
  }

  /** Request/reply without state: either replica can answer, and says which one did. */
  @AllowCallers(['orders'])
  @MessagePattern(Patterns.quote)
  async quote(@Payload() request: QuoteRequest): Promise<Quote> {
    await sleep(QUOTE_WORK_MS);
    const totalCents = Math.round(request.amountCents * 1.2);
    return { orderId: request.orderId, totalCents, replica: ME };
  }
}

/**
 * Traces this replica's drain: when it stops, its callers are told to send elsewhere and the
 * calls it already accepted finish before it closes.
 */
@Injectable()
class DrainWatch implements OnModuleInit, OnModuleDestroy {
  private subscription: Subscription | undefined;
  private drainStarted = false;
  private drained: (() => void) | undefined;
  private readonly drainEnded = new Promise<void>((resolve) => {
    this.drained = resolve;
  });

  constructor(@InjectAureliaEvents() private readonly events$: Observable<DomusReportingEvent>) {}

  onModuleInit(): void {
    this.subscription = this.events$.subscribe((event) => {
      if (event.type === 'DrainStarted') {
        this.drainStarted = true;
        trace(ME, 'draining: callers told to send elsewhere, accepted calls finishing');
      } else if (event.type === 'DrainComplete') {
        const how =
          event.finished === true ? 'every accepted call finished' : 'drainTimeoutMs ran out';
        trace(ME, `drained: ${how}`);
        this.drained?.();
      }
    });
  }

  /** Stops watching once the drain's end was traced (the event may still be on its way). */
  async onModuleDestroy(): Promise<void> {
    if (this.drainStarted) await Promise.race([this.drainEnded, sleep(1000)]);
    this.subscription?.unsubscribe();
  }
}

@Module({
  imports: [
    AureliaModule.forRootAsync({
      useFactory: () => meshOptions(readMeshSettings(), 'billing', {}, ME),
    }),
  ],
  controllers: [BillingController],
  providers: [Ledger, DrainWatch],
})
class BillingModule {}

function euros(cents: number): string {
  return `${(cents / 100).toFixed(2)} EUR`;
}

await superviseService(ME, () => startService(BillingModule));
