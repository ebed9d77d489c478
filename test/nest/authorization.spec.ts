import { Readable } from 'node:stream';
import {
  type CanActivate,
  Controller,
  type INestApplication,
  type INestApplicationContext,
  Injectable,
  UseGuards,
} from '@nestjs/common';
import { Ctx, EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { Registry } from 'prom-client';
import { type Observable, lastValueFrom, range, tap, toArray } from 'rxjs';
import {
  AllowPeers,
  AureliaError,
  ClientAurelia,
  Domus,
  ErrorId,
  JsonCodec,
  PEER_NOT_ALLOWED,
} from '../../lib/index.js';
import { AureliaContext } from '../../lib/nest/context.js';
import { tabernaIdForPattern } from '../../lib/nest/pattern.js';
import { errorOf, rejection } from '../support/expect.js';
import { makeTestPki, type TestPki } from '../support/pki.js';
import { callerApp, hybridApp, serviceOptions } from './fixtures.js';

const ORDERS = 'spiffe://aurelia.local/orders';
const AUDIT = 'spiffe://aurelia.local/audit';

/** What ran on the service: guards and handlers, by pattern. */
const ran: string[] = [];

@Injectable()
class RecordingGuard implements CanActivate {
  canActivate(context: import('@nestjs/common').ExecutionContext): boolean {
    ran.push(`guard:${context.switchToRpc().getContext<AureliaContext>().getPattern()}`);
    return true;
  }
}

@AllowPeers(ORDERS)
@UseGuards(RecordingGuard)
@Controller()
class LedgerController {
  @MessagePattern('ledger.read')
  read(@Payload() n: number): number {
    ran.push('ledger.read');
    return n * 2;
  }

  @AllowPeers('spiffe://aurelia.local/*')
  @MessagePattern('ledger.list')
  list(): string[] {
    ran.push('ledger.list');
    return ['a', 'b'];
  }

  @MessagePattern('ledger.stream')
  stream(@Payload() n: number): Observable<number> {
    ran.push('ledger.stream');
    return range(1, n);
  }

  @EventPattern('ledger.note')
  note(@Payload() _text: string): void {
    ran.push('ledger.note');
  }

  @EventPattern<string>('ledger.upload')
  async upload(@Payload() _meta: unknown, @Ctx() ctx: AureliaContext): Promise<void> {
    ran.push('ledger.upload');
    for await (const _chunk of ctx.getBlob()!) {
      // drain
    }
  }
}

@Controller()
class OpenController {
  @MessagePattern('open.echo')
  echo(@Payload() value: unknown): unknown {
    ran.push('open.echo');
    return value;
  }

  @MessagePattern('misc.ping')
  ping(): string {
    ran.push('misc.ping');
    return 'pong';
  }
}

const PATTERNS = [
  'ledger.read',
  'ledger.list',
  'ledger.stream',
  'ledger.note',
  'ledger.upload',
  'open.echo',
  'misc.ping',
];

describe('authorization policy', () => {
  let pki: TestPki;
  let billing: INestApplication;
  let orders: INestApplicationContext;
  let audit: INestApplicationContext;
  const registry = new Registry();
  const warnings: string[] = [];

  beforeAll(async () => {
    pki = await makeTestPki();
    billing = await hybridApp(
      await serviceOptions(pki, 'billing', {
        logger: { error: () => {}, log: () => {}, warn: (m: string) => warnings.push(m) },
        metrics: { prometheus: { registry } },
        authorization: {
          default: 'deny',
          rules: [{ pattern: 'open.*', peers: [ORDERS, AUDIT] }],
        },
      }),
      [LedgerController, OpenController],
      [RecordingGuard],
    );
    const address = billing.get(Domus).localAddr;
    const routes = Object.fromEntries(PATTERNS.map((p) => [p, address]));
    orders = await callerApp(await serviceOptions(pki, 'orders', { logger: false, routes }));
    audit = await callerApp(await serviceOptions(pki, 'audit', { logger: false, routes }));
  });

  afterAll(async () => {
    await Promise.all([orders?.close(), audit?.close()]);
    await billing?.close();
  });

  beforeEach(() => {
    ran.length = 0;
  });

  const from = (app: INestApplicationContext) => app.get(ClientAurelia);
  const denied = (pattern: string) =>
    billing.get(Domus).reporting.security.authorizationDenied().get(pattern) ?? 0;

  it('lets an allowed identity through the controller rule to the guard and handler', async () => {
    await expect(lastValueFrom(from(orders).send('ledger.read', 21))).resolves.toBe(42);
    expect(ran).toEqual(['guard:ledger.read', 'ledger.read']);
  });

  it('refuses another identity with a stable code before any guard or handler runs', async () => {
    const before = denied('ledger.read');
    const err = await errorOf(from(audit).send('ledger.read', 21));
    expect(err).toEqual({
      status: 'error',
      code: PEER_NOT_ALLOWED,
      message: `refused by the authorization policy: ${AUDIT} may not call 'ledger.read'`,
    });
    expect(ran).toEqual([]);
    expect(denied('ledger.read')).toBe(before + 1);
    expect(await registry.metrics()).toMatch(
      /aurelia_authorization_denied_total\{[^}]*pattern="ledger\.read"[^}]*\} [1-9]/,
    );
    expect(warnings).toContainEqual(
      `refused a call to 'ledger.read' from ${AUDIT}: not allowed by the authorization policy`,
    );
  });

  it("lets a method's wildcard rule replace its controller's", async () => {
    await expect(lastValueFrom(from(audit).send('ledger.list', {}))).resolves.toEqual(['a', 'b']);
    await expect(lastValueFrom(from(orders).send('ledger.list', {}))).resolves.toEqual(['a', 'b']);
    expect(ran).toEqual(['guard:ledger.list', 'ledger.list', 'guard:ledger.list', 'ledger.list']);
  });

  it('applies the module rules, then the default deny', async () => {
    await expect(lastValueFrom(from(audit).send('open.echo', 'hi'))).resolves.toBe('hi');
    const err = await errorOf(from(orders).send('misc.ping', {}));
    expect(err).toMatchObject({ code: PEER_NOT_ALLOWED });
    expect(ran).toEqual(['open.echo']);
  });

  it('refuses a streamed call before the first value', async () => {
    const values: number[] = [];
    const call = from(audit).send<number>('ledger.stream', 3);
    const err = await lastValueFrom(call.pipe(tap((value) => values.push(value)))).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: PEER_NOT_ALLOWED });
    expect(values).toEqual([]);
    await expect(
      lastValueFrom(from(orders).send('ledger.stream', 3).pipe(toArray())),
    ).resolves.toEqual([1, 2, 3]);
  });

  it('refuses an event with RemoteTabernaRejected carrying the code', async () => {
    const err = await errorOf(from(audit).emit('ledger.note', 'hello'));
    expect(err).toBeInstanceOf(AureliaError);
    expect((err as AureliaError).kind).toBe(ErrorId.RemoteTabernaRejected);
    expect((err as AureliaError).message).toBe(
      `refused by the authorization policy: ${AUDIT} may not call 'ledger.note'`,
    );
    expect((err as AureliaError).cause).toMatchObject({ code: PEER_NOT_ALLOWED });
    expect(ran).toEqual([]);
  });

  it('refuses a blob before its handler takes the stream, and the source is destroyed', async () => {
    const source = Readable.from([Buffer.alloc(1024, 1)]);
    const err = await errorOf(from(audit).sendBlob('ledger.upload', { name: 'x' }, source));
    expect((err as AureliaError).kind).toBe(ErrorId.RemoteTabernaRejected);
    expect((err as AureliaError).cause).toMatchObject({ code: PEER_NOT_ALLOWED });
    expect(source.destroyed).toBe(true);
    expect(ran).toEqual([]);
    await lastValueFrom(
      from(orders).sendBlob('ledger.upload', { name: 'y' }, Readable.from([Buffer.alloc(10)])),
    );
    expect(ran).toEqual(['guard:ledger.upload', 'ledger.upload']);
  });

  it('refuses an engine send with RemoteTabernaRejected naming the code', async () => {
    const domus = audit.get(Domus);
    const err = await rejection(
      domus.send(new JsonCodec(), tabernaIdForPattern('ledger.note'), {
        pattern: 'ledger.note',
        data: 'raw',
      }),
    );
    expect(err.kind).toBe(ErrorId.RemoteTabernaRejected);
    expect(err.message).toContain(PEER_NOT_ALLOWED);
    expect(ran).toEqual([]);
  });
});
