// aurelia-mesh/testing, used as docs/NEST.md's Testing section shows: a handler tested over the
// real transport with @nestjs/testing, and a guard unit-tested with a made-up context.
import 'reflect-metadata';
import { PassThrough } from 'node:stream';
import {
  Controller,
  Injectable,
  UseGuards,
  type CanActivate,
  type ExecutionContext,
  type INestMicroservice,
} from '@nestjs/common';
import { MessagePattern, Payload } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { lastValueFrom } from 'rxjs';
import {
  AureliaContext,
  AureliaError,
  AureliaModule,
  AureliaServer,
  ClientAurelia,
  ErrorId,
  tabernaIdForPattern,
} from '../../lib/index.js';
import {
  createAureliaContext,
  createRpcExecutionContext,
  createTestPki,
  createTestSocketDir,
  type TestPki,
  type TestSocketDir,
} from '../../lib/testing/index.js';

@Injectable()
class OrdersOnly implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const peer = context.switchToRpc().getContext<AureliaContext>().getPeer();
    return peer.identity === 'spiffe://aurelia.local/orders';
  }
}

@Controller()
class BillingController {
  @MessagePattern('invoice.total')
  total(@Payload() lines: number[]): number {
    return lines.reduce((a, b) => a + b, 0);
  }

  @UseGuards(OrdersOnly)
  @MessagePattern('billing.charge')
  charge(@Payload() cents: number): string {
    return `charged ${cents}`;
  }
}

describe('aurelia-mesh/testing: a handler over the real transport', () => {
  let pki: TestPki;
  let sockets: TestSocketDir;
  let app: INestMicroservice;
  const clients = new Map<string, ClientAurelia>();

  /**
   * The client with the certificate of `name` (one domus per identity), routed to billing. Like
   * the recipe in NEST.md it has no listen address: it only calls.
   */
  async function clientAs(name: string): Promise<ClientAurelia> {
    const known = clients.get(name);
    if (known) return known;
    const billing = sockets.address('billing');
    const client = new ClientAurelia({
      auth: (await pki.node(name)).auth(),
      routes: { 'invoice.total': billing, 'billing.charge': billing },
    });
    clients.set(name, client);
    await client.connect();
    return client;
  }

  beforeAll(async () => {
    pki = await createTestPki();
    sockets = await createTestSocketDir();
    const moduleRef = await Test.createTestingModule({
      imports: [
        AureliaModule.forRoot({
          listen: sockets.address('billing'),
          auth: (await pki.node('billing')).auth(),
          logger: false,
        }),
      ],
      controllers: [BillingController],
    }).compile();
    app = moduleRef.createNestMicroservice({ strategy: moduleRef.get(AureliaServer) });
    await app.listen();
  });

  afterAll(async () => {
    for (const client of clients.values()) await client.close();
    await app?.close();
    await sockets?.cleanup();
  });

  it('answers a call made with a test certificate over a Unix socket', async () => {
    const orders = await clientAs('orders');
    await expect(lastValueFrom(orders.send('invoice.total', [1, 2]))).resolves.toBe(3);
  });

  it('gives each node the identity aurelia-mesh certs would, so identity guards see it', async () => {
    expect((await pki.node('orders')).identity).toBe('spiffe://aurelia.local/orders');
    const orders = await clientAs('orders');
    const audit = await clientAs('audit');
    await expect(lastValueFrom(orders.send('billing.charge', 42))).resolves.toBe('charged 42');
    await expect(lastValueFrom(audit.send('billing.charge', 42))).rejects.toEqual({
      status: 'error',
      message: 'Forbidden resource',
    });
  });

  it('issues each node once: the same name gives the same certificate', async () => {
    const [a, b] = await Promise.all([pki.node('orders'), pki.node('orders')]);
    expect(a.certPem).toBe(b.certPem);
    expect(a.caPem).toBe(pki.caPem);
    // A fresh config per call: loading one zero-fills its key, the next is intact.
    expect(a.auth().pkcs8KeyPem).not.toBe(a.auth().pkcs8KeyPem);
  });

  it('refuses a node name that cannot form an identity URI with InvalidConfig', async () => {
    const failure = await pki.node('not a name').catch((err: unknown) => err);
    expect(AureliaError.is(failure, ErrorId.InvalidConfig)).toBe(true);
  });
});

describe('aurelia-mesh/testing: contexts for unit tests', () => {
  const from = (identity: string) =>
    createRpcExecutionContext(createAureliaContext({ identity, pattern: 'billing.charge' }), 42);

  it('lets a guard be unit-tested on the caller identity', () => {
    const guard = new OrdersOnly();
    expect(guard.canActivate(from('spiffe://aurelia.local/orders'))).toBe(true);
    expect(guard.canActivate(from('spiffe://aurelia.local/audit'))).toBe(false);
  });

  it('fills the context as the transport would: pattern, taberna id, peer, data', () => {
    const execution = from('spiffe://aurelia.local/orders');
    const ctx = execution.switchToRpc().getContext<AureliaContext>();
    expect(execution.getType()).toBe('rpc');
    expect(execution.switchToRpc().getData()).toBe(42);
    expect(ctx).toBeInstanceOf(AureliaContext);
    expect(ctx.getPattern()).toBe('billing.charge');
    expect(ctx.getTabernaId()).toBe(tabernaIdForPattern('billing.charge'));
    expect(ctx.getPeer()).toEqual({
      identity: 'spiffe://aurelia.local/orders',
      address: 'tls://127.0.0.1:7000',
      local: false,
    });
    expect(ctx.getBlob()).toBeUndefined();
    expect(() => execution.switchToHttp()).toThrow(/switchToRpc/);
  });

  it('hands a given blob, metadata and object pattern to the handler', () => {
    const blob = new PassThrough();
    const ctx = createAureliaContext({
      pattern: { cmd: 'put', v: 1 },
      local: true,
      metadata: { traceparent: 'x' },
      blob,
    });
    expect(ctx.getPattern()).toBe('{"cmd":"put","v":1}');
    expect(ctx.getPeer()).toEqual({ identity: 'spiffe://aurelia.local/test', local: true });
    expect(ctx.getMetadata()).toEqual({ traceparent: 'x' });
    expect(ctx.getBlob()).toBe(blob);
    blob.destroy();
  });

  it('refuses an empty identity with InvalidConfig', () => {
    expect(() => createAureliaContext({ identity: '' })).toThrow(AureliaError);
  });
});
