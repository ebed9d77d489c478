// A consumer of the packed package, compiled as CommonJS and as ESM: billing serves a message
// and an event handler on a Unix socket, orders calls them. Prints `consumer ok …` and exits 0
// when every answer is right; exits 1 naming what was wrong otherwise.
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import {
  AureliaError,
  AureliaModule,
  AureliaServer,
  ClientAurelia,
  ErrorId,
  tabernaIdForPattern,
} from 'aurelia-mesh';
import { RESERVED_TABERNA_ID_BASE } from 'aurelia-mesh/engine';
import { AureliaHealthIndicator } from 'aurelia-mesh/health';
import { createAureliaContext } from 'aurelia-mesh/testing';

const [pki, sockets] = process.argv.slice(2);
const auth = (node: string) => ({
  ca: `${pki}/ca.pem`,
  cert: `${pki}/${node}.pem`,
  key: `${pki}/${node}-key.pem`,
});
const billingAddress = `unix://${sockets}/billing.sock`;
const noted: string[] = [];

@Controller()
class BillingController {
  @MessagePattern('invoice.total')
  total(@Payload() lines: number[]): number {
    return lines.reduce((a, b) => a + b, 0);
  }

  @EventPattern<string>('invoice.noted')
  note(@Payload() text: string): void {
    noted.push(text);
  }
}

@Module({ controllers: [BillingController] })
class BillingModule {}

@Module({
  imports: [
    AureliaModule.forRoot({
      listen: `unix://${sockets}/orders.sock`,
      auth: auth('orders'),
      routes: { 'invoice.total': billingAddress, 'invoice.noted': billingAddress },
      logger: false,
    }),
  ],
})
class OrdersModule {}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`consumer check failed: ${what}`);
}

async function main(): Promise<void> {
  check(typeof AureliaHealthIndicator === 'function', 'aurelia-mesh/health loads');
  check(
    RESERVED_TABERNA_ID_BASE > tabernaIdForPattern('invoice.total'),
    'aurelia-mesh/engine loads',
  );
  const context = createAureliaContext({ pattern: 'invoice.total' });
  check(context.getTabernaId() === tabernaIdForPattern('invoice.total'), 'testing loads');
  const billing = await NestFactory.createMicroservice(BillingModule, {
    strategy: new AureliaServer({ listen: billingAddress, auth: auth('billing'), logger: false }),
    logger: false,
  });
  await billing.listen();
  const orders = await NestFactory.createApplicationContext(OrdersModule, { logger: false });
  try {
    const client = orders.get(ClientAurelia);
    const total = await lastValueFrom(client.send<number>('invoice.total', [1, 2, 3]));
    check(total === 6, `invoice.total answered ${String(total)}`);
    await lastValueFrom(client.emit('invoice.noted', 'paid'), { defaultValue: undefined });
    check(noted.join() === 'paid', `invoice.noted saw ${JSON.stringify(noted)}`);
    const refused: unknown = await lastValueFrom(client.send('nobody.serves', 1)).catch(
      (err: unknown) => err,
    );
    check(
      AureliaError.is(refused, ErrorId.UnknownTaberna),
      `unrouted send gave ${String(refused)}`,
    );
    console.log(`consumer ok: total ${total}, event delivered, unrouted send refused`);
  } finally {
    await orders.close();
    await billing.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
