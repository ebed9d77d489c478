import {
  type ArgumentsHost,
  type CallHandler,
  Catch,
  type CanActivate,
  Controller,
  type ExecutionContext,
  type INestApplication,
  type INestApplicationContext,
  Injectable,
  type NestInterceptor,
  type PipeTransform,
  type RpcExceptionFilter,
  UseFilters,
  UseGuards,
  UseInterceptors,
  UsePipes,
  ValidationPipe,
} from '@nestjs/common';
import { EventPattern, MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { IsInt, IsString, Min } from 'class-validator';
import { type Observable, lastValueFrom, map, of, tap, throwError } from 'rxjs';
import { AureliaError, ErrorId, type Domus } from '../../lib/index.js';
import { AureliaServer } from '../../lib/nest/aurelia.server.js';
import { ClientAurelia } from '../../lib/nest/client-aurelia.js';
import { AureliaContext } from '../../lib/nest/context.js';
import { makeTestPki } from '../support/pki.js';
import { callerApp, hybridApp, serviceOptions } from './fixtures.js';

/** Lets only the `orders` service in, by its certificate identity. */
@Injectable()
class OrdersOnly implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const ctx = context.switchToRpc().getContext<AureliaContext>();
    return ctx.getPeer().identity === 'spiffe://aurelia.local/orders';
  }
}

/** Wraps every reply in an envelope naming the handler's taberna. */
@Injectable()
class Envelope implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const ctx = context.switchToRpc().getContext<AureliaContext>();
    return next
      .handle()
      .pipe(map((data: unknown) => ({ data, taberna: ctx.getTabernaId().toString() })));
  }
}

/** What ran for each event, in order. */
const trail: string[] = [];

/** Records entering and leaving every event handler it wraps. */
@Injectable()
class Trail implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const pattern = context.switchToRpc().getContext<AureliaContext>().getPattern();
    trail.push(`before ${pattern}`);
    return next.handle().pipe(tap({ complete: () => trail.push(`after ${pattern}`) }));
  }
}

/** Upper-cases a string payload. */
class Shout implements PipeTransform<string, string> {
  transform(value: string): string {
    return value.toUpperCase();
  }
}

/** Turns a RangeError into a payload with its own code. */
@Catch(RangeError)
class RangeFilter implements RpcExceptionFilter<RangeError> {
  catch(exception: RangeError, _host: ArgumentsHost): Observable<never> {
    return throwError(() => ({ code: 'E_RANGE', message: exception.message }));
  }
}

class CreateOrder {
  @IsString()
  sku!: string;

  @IsInt()
  @Min(1)
  quantity!: number;
}

/** ValidationPipe whose failure callers see: the invalid fields in an RpcException. */
function orderValidation(): ValidationPipe {
  return new ValidationPipe({
    transform: true,
    exceptionFactory: (errors) =>
      new RpcException({
        status: 'error',
        message: 'invalid order',
        fields: errors.map((e) => e.property),
      }),
  });
}

@Controller()
class GuardedController {
  @UseGuards(OrdersOnly)
  @MessagePattern('charge')
  charge(@Payload() amount: number): string {
    return `charged ${amount}`;
  }

  @UseInterceptors(Envelope)
  @MessagePattern('wrapped')
  wrapped(): Observable<number> {
    return of(1, 2);
  }

  @MessagePattern('shout')
  shout(@Payload(Shout) text: string): string {
    return text;
  }

  @UsePipes(orderValidation())
  @MessagePattern('order')
  order(@Payload() order: CreateOrder): string {
    return `${order.quantity} × ${order.sku} (${order instanceof CreateOrder ? 'dto' : 'plain'})`;
  }

  @UseFilters(new RangeFilter())
  @MessagePattern('range')
  range(): never {
    throw new RangeError('quantity out of range');
  }

  @UseGuards(OrdersOnly)
  @EventPattern<string>('charge.event')
  chargeEvent(@Payload() amount: number): void {
    trail.push(`charged ${amount}`);
  }

  @UseInterceptors(Trail)
  @EventPattern<string>('traced.event')
  tracedEvent(@Payload() text: string): void {
    trail.push(`handled ${text}`);
  }

  @UsePipes(orderValidation())
  @EventPattern<string>('order.event')
  orderEvent(@Payload() order: CreateOrder): void {
    trail.push(
      `${order.quantity} × ${order.sku} (${order instanceof CreateOrder ? 'dto' : 'plain'})`,
    );
  }

  @UseFilters(new RangeFilter())
  @EventPattern<string>('range.event')
  rangeEvent(): never {
    throw new RangeError('event quantity out of range');
  }
}

const PATTERNS = [
  'charge',
  'wrapped',
  'shout',
  'order',
  'range',
  'charge.event',
  'traced.event',
  'order.event',
  'range.event',
];

describe('guards, interceptors, pipes and filters on Aurelia handlers', () => {
  let billing: INestApplication;
  let orders: INestApplicationContext;
  let intruder: INestApplicationContext;

  beforeAll(async () => {
    const pki = await makeTestPki();
    billing = await hybridApp(
      await serviceOptions(pki, 'billing'),
      [GuardedController],
      [OrdersOnly, Envelope, Trail],
    );
    const address = billing.get(AureliaServer).unwrap<Domus>().localAddr.toString();
    const routes = Object.fromEntries(PATTERNS.map((p) => [p, address]));
    orders = await callerApp(await serviceOptions(pki, 'orders', { routes }));
    intruder = await callerApp(await serviceOptions(pki, 'intruder', { routes }));
  });
  afterAll(async () => {
    await orders?.close();
    await intruder?.close();
    await billing?.close();
  });

  const call = (app: INestApplicationContext, pattern: string, data: unknown): Promise<unknown> =>
    lastValueFrom(app.get(ClientAurelia).send(pattern, data));
  const failure = (
    app: INestApplicationContext,
    pattern: string,
    data: unknown,
  ): Promise<unknown> =>
    call(app, pattern, data).then(
      (v) => {
        throw new Error(`expected an error, got ${JSON.stringify(v)}`);
      },
      (e: unknown) => e,
    );

  it('lets a guard authorize by the caller certificate identity', async () => {
    expect(await call(orders, 'charge', 10)).toBe('charged 10');
    expect(await failure(intruder, 'charge', 10)).toEqual({
      status: 'error',
      message: 'Forbidden resource',
    });
  });

  it('runs interceptors around every value of the reply stream', async () => {
    const values: unknown[] = [];
    await new Promise<void>((resolve, reject) =>
      orders
        .get(ClientAurelia)
        .send('wrapped', {})
        .subscribe({ next: (v) => values.push(v), error: reject, complete: resolve }),
    );
    const taberna = billing.get(AureliaServer).tabernae.get('wrapped')!.toString();
    expect(values).toEqual([
      { data: 1, taberna },
      { data: 2, taberna },
    ]);
  });

  it('applies parameter pipes and ValidationPipe, rejecting invalid payloads', async () => {
    expect(await call(orders, 'shout', 'quiet')).toBe('QUIET');
    expect(await call(orders, 'order', { sku: 'A-1', quantity: 2 })).toBe('2 × A-1 (dto)');
    const invalid = await failure(orders, 'order', { sku: 7, quantity: 0 });
    expect(invalid).toEqual({
      status: 'error',
      message: 'invalid order',
      fields: ['sku', 'quantity'],
    });
  });

  const emit = (app: INestApplicationContext, pattern: string, data: unknown): Promise<void> =>
    lastValueFrom(app.get(ClientAurelia).emit(pattern, data), { defaultValue: undefined });
  /** The `cause` of the RemoteTabernaRejected an emit() failed with (its error payload). */
  const refusal = async (
    app: INestApplicationContext,
    pattern: string,
    data: unknown,
  ): Promise<unknown> => {
    const err = await emit(app, pattern, data).then(
      () => {
        throw new Error(`expected emit('${pattern}') to fail`);
      },
      (e: unknown) => e,
    );
    expect(AureliaError.is(err, ErrorId.RemoteTabernaRejected)).toBe(true);
    return (err as AureliaError).cause;
  };

  it('lets a guard refuse an emit() by the caller certificate identity', async () => {
    trail.length = 0;
    await emit(orders, 'charge.event', 5);
    expect(await refusal(intruder, 'charge.event', 6)).toEqual({
      status: 'error',
      message: 'Forbidden resource',
    });
    expect(trail).toEqual(['charged 5']);
  });

  it('runs interceptors around an event handler before emit() completes', async () => {
    trail.length = 0;
    await emit(orders, 'traced.event', 'x');
    expect(trail).toEqual(['before traced.event', 'handled x', 'after traced.event']);
  });

  it('applies ValidationPipe to an event, refusing an invalid one with its fields', async () => {
    trail.length = 0;
    await emit(orders, 'order.event', { sku: 'B-2', quantity: 3 });
    expect(await refusal(orders, 'order.event', { sku: 'B-3', quantity: 0 })).toEqual({
      status: 'error',
      message: 'invalid order',
      fields: ['quantity'],
    });
    expect(trail).toEqual(['3 × B-2 (dto)']);
  });

  it('lets an exception filter shape the payload a failed emit() carries', async () => {
    expect(await refusal(orders, 'range.event', 'x')).toEqual({
      code: 'E_RANGE',
      message: 'event quantity out of range',
    });
  });

  it('lets an exception filter shape the error payload', async () => {
    expect(await failure(orders, 'range', {})).toEqual({
      code: 'E_RANGE',
      message: 'quantity out of range',
    });
  });
});
