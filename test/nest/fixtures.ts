// Nest apps for the transport tests: a "billing" service with handlers, "orders" callers.
import 'reflect-metadata';
import {
  Controller,
  type INestApplication,
  type INestApplicationContext,
  type INestMicroservice,
  type Type,
} from '@nestjs/common';
import {
  Ctx,
  EventPattern,
  MessagePattern,
  type PacketMetadata,
  Payload,
  RpcException,
} from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { Observable, finalize, interval, map, range, take } from 'rxjs';
import type { DomusConfig } from '../../lib/engine/config.js';
import { AureliaContext } from '../../lib/nest/context.js';
import { TabernaHandler } from '../../lib/nest/decorators.js';
import { AureliaModule } from '../../lib/nest/aurelia.module.js';
import { AureliaServer } from '../../lib/nest/aurelia.server.js';
import type { AureliaModuleOptions } from '../../lib/nest/options.js';
import type { TestPki } from '../support/pki.js';

/** Short deadlines so failures surface within a test's budget. */
export const FAST: Partial<DomusConfig> = {
  sendTimeoutMs: 4000,
  callisConnectTimeoutMs: 1000,
  acceptTimeoutMs: 2000,
  reconnectBackoffMs: [20, 50, 100],
  tcpHandshakeTimeoutMs: 2000,
  // A handler held open keeps a closing application draining this long, not the default 10 s.
  drainTimeoutMs: 500,
};

/** What the billing handlers saw, for assertions. */
export class Seen {
  readonly notes: { text: string; from: string; taberna: bigint }[] = [];
  slowStarted = false;
  /** Number of `ticks` handler streams that ended (completed or unsubscribed). */
  ticksEnded = 0;
  releaseSlow: (() => void) | undefined;
  /** When each `held` handler stream started and ended (`Date.now()`), in order. */
  readonly heldStarted: number[] = [];
  readonly heldEnded: number[] = [];
  /** Metadata of each `note`, by its text. */
  readonly noteMetadata = new Map<string, PacketMetadata | undefined>();
  /** Async event handlers waiting to be let finish, by the text they got. */
  readonly waiting = new Map<string, () => void>();
  /** Texts whose async event handler finished its work. */
  readonly finished: string[] = [];
}

export const seen = new Seen();

/** The handlers of the service under test. */
@Controller()
export class BillingController {
  @MessagePattern('sum')
  sum(@Payload() numbers: number[]): number {
    return numbers.reduce((a, b) => a + b, 0);
  }

  @MessagePattern({ cmd: 'count' })
  count(@Payload() n: number): Observable<number> {
    return range(1, n);
  }

  @MessagePattern('later')
  async later(@Payload() value: string): Promise<string> {
    await Promise.resolve();
    return `later:${value}`;
  }

  @MessagePattern('whoami')
  whoami(@Payload() _data: unknown, @Ctx() ctx: AureliaContext): unknown {
    return {
      identity: ctx.getPeer().identity,
      taberna: ctx.getTabernaId().toString(),
      pattern: ctx.getPattern(),
      metadata: ctx.getMetadata() ?? null,
      blob: ctx.getBlob() ?? null,
    };
  }

  @MessagePattern('fail.rpc')
  failRpc(): never {
    throw new RpcException({ code: 'E_LIMIT', message: 'credit limit exceeded' });
  }

  @MessagePattern('fail.plain')
  failPlain(): never {
    throw new Error('internal detail that must not leak');
  }

  @MessagePattern('fail.midstream')
  failMidstream(): Observable<number> {
    return new Observable<number>((s) => {
      s.next(1);
      s.next(2);
      s.error(new RpcException('stream broke'));
    });
  }

  @MessagePattern('ticks')
  ticks(@Payload() n: number): Observable<number> {
    return interval(20).pipe(
      take(n),
      map((i) => i + 1),
      finalize(() => seen.ticksEnded++),
    );
  }

  @MessagePattern('forever')
  forever(): Observable<number> {
    return new Observable<number>(() => undefined);
  }

  /** Never answers; records when Nest subscribed to its stream and when it unsubscribed. */
  @MessagePattern('held')
  held(): Observable<number> {
    return new Observable<number>(() => {
      seen.heldStarted.push(Date.now());
      return () => seen.heldEnded.push(Date.now());
    });
  }

  @MessagePattern('slow')
  slow(): Promise<string> {
    seen.slowStarted = true;
    return new Promise((resolve) => {
      seen.releaseSlow = () => resolve('slow done');
    });
  }

  @TabernaHandler(4242n)
  @MessagePattern('explicit')
  explicit(): string {
    return 'served on 4242';
  }

  @EventPattern<string>('note')
  note(@Payload() text: string, @Ctx() ctx: AureliaContext): void {
    seen.notes.push({ text, from: ctx.getPeer().identity, taberna: ctx.getTabernaId() });
    seen.noteMetadata.set(text, ctx.getMetadata());
  }

  /** Awaits the test's go-ahead (`seen.waiting`), then records that it finished. */
  @EventPattern<string>('note.async')
  async noteAsync(@Payload() text: string): Promise<void> {
    await new Promise<void>((resolve) => seen.waiting.set(text, resolve));
    seen.finished.push(text);
  }

  /** Returns a stream that ends once the test lets it (`seen.waiting`). */
  @EventPattern<string>('note.stream')
  noteStream(@Payload() text: string): Observable<number> {
    return new Observable<number>((subscriber) => {
      subscriber.next(1);
      seen.waiting.set(text, () => {
        seen.finished.push(text);
        subscriber.next(2);
        subscriber.complete();
      });
    });
  }

  @EventPattern<string>('note.fail')
  noteFail(): never {
    throw new RpcException({ status: 'error', message: 'note refused' });
  }
}

/** Module options of a test service named `name` (identity `spiffe://aurelia.local/<name>`). */
export async function serviceOptions(
  pki: TestPki,
  name: string,
  extra: Partial<AureliaModuleOptions> = {},
): Promise<AureliaModuleOptions> {
  const node = await pki.node(name);
  return { listen: 'tls://127.0.0.1:0', auth: node.auth(), config: FAST, ...extra };
}

/** A hybrid app (HTTP app + Aurelia microservice) serving `controllers`. */
export async function hybridApp(
  options: AureliaModuleOptions,
  controllers: Type[] = [BillingController],
  providers: Parameters<typeof Test.createTestingModule>[0]['providers'] = [],
): Promise<INestApplication> {
  const moduleRef = await Test.createTestingModule({
    imports: [AureliaModule.forRoot(options)],
    controllers,
    providers,
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  app.connectMicroservice({ strategy: app.get(AureliaServer) }, { inheritAppConfig: true });
  await app.startAllMicroservices();
  await app.init();
  return app;
}

/** A standalone microservice with its own domus, serving `controllers`. */
export async function standaloneMicroservice(
  options: AureliaModuleOptions,
  controllers: Type[] = [BillingController],
): Promise<{ app: INestMicroservice; server: AureliaServer }> {
  const moduleRef = await Test.createTestingModule({ controllers }).compile();
  const server = new AureliaServer(options);
  const app = moduleRef.createNestMicroservice({ strategy: server, logger: false });
  await app.listen();
  return { app, server };
}

/** A caller app: only the module, with routes to the services. */
export async function callerApp(options: AureliaModuleOptions): Promise<INestApplicationContext> {
  const moduleRef = await Test.createTestingModule({
    imports: [AureliaModule.forRoot(options)],
  }).compile();
  await moduleRef.init();
  return moduleRef;
}

/**
 * What compiling a testing module with `imports` fails with; fails the test (after closing the
 * module) when it compiles.
 */
export async function bootstrapError(
  imports: Parameters<typeof Test.createTestingModule>[0]['imports'],
): Promise<unknown> {
  return Test.createTestingModule({ imports })
    .compile()
    .then(
      async (m) => {
        await m.close();
        throw new Error('expected the bootstrap to fail');
      },
      (e: unknown) => e,
    );
}
