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
import { MessagePattern, Payload, RpcException } from '@nestjs/microservices';
import { IsInt, IsString, Min } from 'class-validator';
import { type Observable, lastValueFrom, map, of, throwError } from 'rxjs';
import type { Domus } from '../../lib/index.js';
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

  @UsePipes(
    new ValidationPipe({
      transform: true,
      exceptionFactory: (errors) =>
        new RpcException({
          status: 'error',
          message: 'invalid order',
          fields: errors.map((e) => e.property),
        }),
    }),
  )
  @MessagePattern('order')
  order(@Payload() order: CreateOrder): string {
    return `${order.quantity} × ${order.sku} (${order instanceof CreateOrder ? 'dto' : 'plain'})`;
  }

  @UseFilters(new RangeFilter())
  @MessagePattern('range')
  range(): never {
    throw new RangeError('quantity out of range');
  }
}

const PATTERNS = ['charge', 'wrapped', 'shout', 'order', 'range'];

describe('guards, interceptors, pipes and filters on Aurelia handlers', () => {
  let billing: INestApplication;
  let orders: INestApplicationContext;
  let intruder: INestApplicationContext;

  beforeAll(async () => {
    const pki = await makeTestPki();
    billing = await hybridApp(
      await serviceOptions(pki, 'billing'),
      [GuardedController],
      [OrdersOnly, Envelope],
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

  it('lets an exception filter shape the error payload', async () => {
    expect(await failure(orders, 'range', {})).toEqual({
      code: 'E_RANGE',
      message: 'quantity out of range',
    });
  });
});
