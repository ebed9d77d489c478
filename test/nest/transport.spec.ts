import { Controller, type INestApplication, type INestApplicationContext } from '@nestjs/common';
import { EventPattern, MessagePattern, Payload, Transport } from '@nestjs/microservices';
import { InvalidMessageException } from '@nestjs/microservices/errors/invalid-message.exception.js';
import { Test } from '@nestjs/testing';
import { lastValueFrom, take, toArray } from 'rxjs';
import {
  AureliaError,
  ErrorId,
  JsonCodec,
  type Domus,
  type DomusReportingEvent,
} from '../../lib/index.js';
import { ClientAurelia } from '../../lib/nest/client-aurelia.js';
import type { AureliaContext } from '../../lib/nest/context.js';
import {
  AURELIA_TRANSPORT,
  AureliaServer,
  type AureliaServerStatus,
} from '../../lib/nest/aurelia.server.js';
import { tabernaIdForPattern } from '../../lib/nest/pattern.js';
import { RESERVED_TABERNA_ID_BASE } from '../../lib/engine/services/request-reply-wire.js';
import { Readable } from 'node:stream';
import { TabernaHandler } from '../../lib/nest/decorators.js';
import { eventually, socketDir } from '../support/mesh.js';
import { makeTestPki, type TestPki } from '../support/pki.js';
import {
  FAST,
  callerApp,
  hybridApp,
  seen,
  serviceOptions,
  standaloneMicroservice,
} from './fixtures.js';
import { errorOf, expectElapsedBetween } from '../support/expect.js';

const PATTERNS = [
  'sum',
  { cmd: 'count' },
  'later',
  'whoami',
  'fail.rpc',
  'fail.plain',
  'fail.midstream',
  'ticks',
  'forever',
  'slow',
  'note',
  'note.fail',
  'note.async',
  'note.stream',
];

describe('Nest over Aurelia: hybrid app serving, module client calling', () => {
  let pki: TestPki;
  let billing: INestApplication;
  let orders: INestApplicationContext;
  let client: ClientAurelia;

  beforeAll(async () => {
    pki = await makeTestPki();
    billing = await hybridApp(await serviceOptions(pki, 'billing'));
    const address = billing.get(AureliaServer).unwrap<Domus>().localAddr;
    orders = await callerApp(
      await serviceOptions(pki, 'orders', {
        routes: [
          ...PATTERNS.map((pattern) => ({ pattern, address })),
          { pattern: 4242n, address },
          { pattern: 'nobody.home', address },
        ],
      }),
    );
    client = orders.get(ClientAurelia);
  });
  afterAll(async () => {
    await orders?.close();
    await billing?.close();
  });

  it('answers send() with the handler value', async () => {
    expect(await lastValueFrom(client.send('sum', [1, 2, 3]))).toBe(6);
    expect(await lastValueFrom(client.send('later', 'x'))).toBe('later:x');
  });

  it('streams every value of an Observable handler, then completes', async () => {
    const values = await lastValueFrom(client.send({ cmd: 'count' }, 5).pipe(toArray()));
    expect(values).toEqual([1, 2, 3, 4, 5]);
  });

  it('gives the handler the caller identity, taberna and pattern in AureliaContext', async () => {
    const who = await lastValueFrom(client.send('whoami', {}));
    expect(who).toEqual({
      identity: 'spiffe://aurelia.local/orders',
      taberna: tabernaIdForPattern('whoami').toString(),
      pattern: 'whoami',
      metadata: null,
      blob: null,
    });
  });

  it('hands the metadata a dispatch hook attached to the handler as AureliaContext.getMetadata()', async () => {
    const traced = new ClientAurelia(client.unwrap<Domus>());
    let n = 0;
    traced.setOnDispatchHook((packet) => {
      packet.metadata = { traceId: `t${++n}` };
    });
    try {
      expect(await lastValueFrom(traced.send('whoami', {}))).toMatchObject({
        metadata: { traceId: 't1' },
      });
      await lastValueFrom(traced.emit('note', 'traced'), { defaultValue: undefined });
      expect(seen.noteMetadata.get('traced')).toEqual({ traceId: 't2' });
    } finally {
      await traced.close();
    }
  });

  it('reaches a @TabernaHandler handler by its explicit id', async () => {
    expect(billing.get(AureliaServer).tabernae.get('explicit')).toBe(4242n);
    expect(await lastValueFrom(client.send(4242n, {}))).toBe('served on 4242');
  });

  it('delivers an RpcException payload to the caller as Nest transports do', async () => {
    expect(await errorOf(client.send('fail.rpc', {}))).toEqual({
      code: 'E_LIMIT',
      message: 'credit limit exceeded',
    });
  });

  it('hides an unexpected error behind Nest’s generic payload', async () => {
    expect(await errorOf(client.send('fail.plain', {}))).toEqual({
      status: 'error',
      message: 'Internal server error',
    });
  });

  it('delivers the values sent before a stream error, then the error', async () => {
    const values: number[] = [];
    const err = await new Promise<unknown>((resolve) =>
      client.send<number>('fail.midstream', {}).subscribe({
        next: (v) => values.push(v),
        error: resolve,
        complete: () => resolve('completed'),
      }),
    );
    expect(values).toEqual([1, 2]);
    expect(err).toEqual({ status: 'error', message: 'stream broke' });
  });

  it('completes emit() to an async handler only after the work it awaited finished', async () => {
    await expectEmitToWaitFor('note.async', 'async-1');
  });

  it('completes emit() to a handler returning an Observable only after that Observable completed', async () => {
    await expectEmitToWaitFor('note.stream', 'stream-1');
  });

  /** Emits `text` to `pattern`, whose handler waits for `seen.waiting`, and checks emit() does too. */
  async function expectEmitToWaitFor(pattern: string, text: string): Promise<void> {
    let completed = false;
    const emitted = lastValueFrom(client.emit(pattern, text), { defaultValue: undefined }).then(
      () => {
        completed = true;
      },
    );
    await eventually(() => seen.waiting.has(text), 'the handler to start');
    // A full round trip on the same link: an acceptance sent at the handler's start is back by now.
    expect(await lastValueFrom(client.send('sum', [1]))).toBe(1);
    expect(completed).toBe(false);
    expect(seen.finished).not.toContain(text);
    seen.waiting.get(text)!();
    await emitted;
    expect(seen.finished).toContain(text);
  }

  it('takes 400 concurrent send() calls to one peer with the default queue sizes', async () => {
    const calls = Array.from({ length: 400 }, (_, i) =>
      lastValueFrom(client.send<number>('sum', [i, 1])),
    );
    const results = await Promise.allSettled(calls);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(results.map((r) => (r as PromiseFulfilledResult<number>).value)).toEqual(
      Array.from({ length: 400 }, (_, i) => i + 1),
    );
  });

  it('keeps Nest’s send() contract on the connected path: cold, one call per subscription', async () => {
    const before = seen.notes.length;
    const call = client.send<number>('sum', [2, 3]);
    // Nothing is sent before a subscription.
    expect(await lastValueFrom(client.send('sum', [1]))).toBe(1);
    expect(await lastValueFrom(call)).toBe(5);
    expect(await lastValueFrom(call)).toBe(5);
    expect(seen.notes.length).toBe(before);
    expect(await errorOf(client.send('sum', undefined))).toBeInstanceOf(InvalidMessageException);
    expect(await errorOf(client.send(null, 1))).toBeInstanceOf(InvalidMessageException);
  });

  it('keeps Nest’s emit() contract on the connected path: hot, a late subscriber hears the end', async () => {
    // Never subscribed: the event goes anyway.
    client.emit('note', 'unobserved');
    await eventually(
      () => seen.notes.some((n) => n.text === 'unobserved'),
      'the event to arrive unsubscribed',
    );
    const observed = client.emit('note', 'observed');
    let ended = false;
    observed.subscribe({ complete: () => (ended = true) });
    await eventually(() => ended, 'the first subscriber to hear the end');
    // Subscribed after the end: no value again, just the completion.
    await expect(lastValueFrom(observed, { defaultValue: 'late' })).resolves.toBe('late');
    const failed = client.emit('note.fail', 'late-failure');
    expect(AureliaError.is(await errorOf(failed), ErrorId.RemoteTabernaRejected)).toBe(true);
    // Subscribed again after the failure: the outcome is kept, not re-sent.
    expect(AureliaError.is(await errorOf(failed), ErrorId.RemoteTabernaRejected)).toBe(true);
    expect(await errorOf(client.emit('note', undefined))).toBeInstanceOf(InvalidMessageException);
  });

  it('runs a processing start and end hook around each request and event when the server has them', async () => {
    const server = billing.get(AureliaServer);
    const hooks = server as unknown as { onProcessingStartHook: unknown };
    const plainStart = hooks.onProcessingStartHook;
    const events: string[] = [];
    server.setOnProcessingStartHook((_transport, context, done) => {
      events.push(`start:${(context as AureliaContext).getPattern()}`);
      return done();
    });
    server.setOnProcessingEndHook((_transport, context) => {
      events.push(`end:${(context as AureliaContext).getPattern()}`);
    });
    try {
      expect(await lastValueFrom(client.send('sum', [4]))).toBe(4);
      expect(await lastValueFrom(client.send({ cmd: 'count' }, 2).pipe(toArray()))).toEqual([1, 2]);
      await lastValueFrom(client.emit('note', 'hooked'), { defaultValue: undefined });
      await eventually(() => events.length === 6, 'every end hook');
      expect(events).toEqual([
        'start:sum',
        'end:sum',
        'start:{"cmd":"count"}',
        'end:{"cmd":"count"}',
        'start:note',
        'end:note',
      ]);
    } finally {
      hooks.onProcessingStartHook = plainStart;
      server.setOnProcessingEndHook(undefined as never);
    }
  });

  it('completes emit() once a synchronous event handler ran', async () => {
    await lastValueFrom(client.emit('note', 'hello'), { defaultValue: undefined });
    expect(seen.notes).toContainEqual({
      text: 'hello',
      from: 'spiffe://aurelia.local/orders',
      taberna: tabernaIdForPattern('note'),
    });
  });

  it('delivers a plain engine send to an event handler as its data', async () => {
    await client.unwrap<Domus>().send(new JsonCodec(), tabernaIdForPattern('note'), 'from engine');
    expect(seen.notes.map((n) => n.text)).toContain('from engine');
  });

  it('errors emit() with RemoteTabernaRejected carrying the handler error', async () => {
    const err = await errorOf(client.emit('note.fail', 'x'));
    expect(AureliaError.is(err, ErrorId.RemoteTabernaRejected)).toBe(true);
    expect((err as AureliaError).message).toContain('note refused');
    expect((err as AureliaError).cause).toEqual({ status: 'error', message: 'note refused' });
  });

  it('errors send() for a pattern nobody routes with UnknownTaberna', async () => {
    const err = await errorOf(client.send('nobody.serves.this', {}));
    expect(AureliaError.is(err, ErrorId.UnknownTaberna)).toBe(true);
  });

  it('refuses a send() to an event handler and an emit() to a message handler', async () => {
    expect(await errorOf(client.send('note', 'x'))).toMatchObject({ status: 'error' });
    const err = await errorOf(client.emit('sum', [1]));
    expect(AureliaError.is(err, ErrorId.RemoteTabernaRejected)).toBe(true);
  });

  it('stops the handler stream when the caller takes only some values', async () => {
    const ended = seen.ticksEnded;
    const values = await lastValueFrom(client.send<number>('ticks', 100).pipe(take(2), toArray()));
    expect(values).toEqual([1, 2]);
    await eventually(() => seen.ticksEnded === ended + 1, 'the handler stream to be unsubscribed');
  });

  it('lets a slow handler delay no other taberna', async () => {
    seen.slowStarted = false;
    const slow = lastValueFrom(client.send('slow', {}));
    await eventually(() => seen.slowStarted, 'the slow handler to start');
    const started = Date.now();
    expect(await lastValueFrom(client.send('sum', [2, 2]))).toBe(4);
    await lastValueFrom(client.emit('note', 'during slow'), { defaultValue: undefined });
    // Blocked behind the slow handler, they would wait until it is released below.
    expect(Date.now() - started).toBeLessThan(3000);
    seen.releaseSlow!();
    expect(await slow).toBe('slow done');
  });

  it('errors send() with SendTimeout at the request deadline', async () => {
    const quick = new ClientAurelia(client.unwrap<Domus>(), { requestTimeoutMs: 300 });
    const started = Date.now();
    const err = await errorOf(quick.send('forever', {}));
    expect(AureliaError.is(err, ErrorId.SendTimeout)).toBe(true);
    expect((err as Error).message).toContain(
      "'forever' did not finish within its deadline (requestTimeoutMs, 300 ms)",
    );
    expectElapsedBetween(started, 300, 3500); // the domus's own deadline is 4 s
    await quick.close();
  });

  it('errors send(), emit() and sendBlob() with InvalidConfig for a pattern that cannot be sent', async () => {
    const reserved = RESERVED_TABERNA_ID_BASE;
    for (const call of [
      client.send(true, 1),
      client.emit(true, 1),
      client.send(reserved, 1),
      client.emit(reserved, 1),
      client.sendBlob(reserved, 1, Readable.from([Buffer.from('x')])),
    ]) {
      const err = await errorOf(call);
      expect(AureliaError.is(err, ErrorId.InvalidConfig)).toBe(true);
    }
    const err = (await errorOf(client.send(reserved, 1))) as Error;
    expect(err.message).toContain(`taberna id 0x${reserved.toString(16)} is not a u64 below`);
    // A missing pattern or data is refused by Nest itself, as on its other transports.
    expect(await errorOf(client.send(null, 1))).toBeInstanceOf(InvalidMessageException);
  });

  it('names an unrouted explicit id in hex and the route to add, once', async () => {
    const err = (await errorOf(client.send(4747n, 1))) as AureliaError;
    expect(AureliaError.is(err, ErrorId.UnknownTaberna)).toBe(true);
    expect(err.message).toBe(
      "no route to taberna 0x128b (4747): add a route for { pattern: 0x128bn, address }, a prefix route such as 'name.*' or a default route '*' to the AureliaModule 'routes' option",
    );
  });

  it('names the pattern, where it went and the fix when nothing serves it at its route', async () => {
    const hex = `0x${tabernaIdForPattern('nobody.home').toString(16)}`;
    for (const call of [client.send('nobody.home', 1), client.emit('nobody.home', 1)]) {
      const err = await errorOf(call);
      expect(AureliaError.is(err, ErrorId.UnknownTaberna)).toBe(true);
      const message = (err as Error).message;
      expect(message).toContain("'nobody.home' is not served where its route points");
      expect(message).toContain(`no taberna ${hex} is registered at the destination`);
      const billingDomus = billing.get(AureliaServer).unwrap<Domus>();
      expect(message).toContain(`(at ${billingDomus.identity}, ${billingDomus.localAddr.key})`);
      expect(message).toContain("point the route for 'nobody.home' in routes at the service");
    }
  });
});

describe('Nest over Aurelia: standalone microservice', () => {
  it('serves send and emit from its own domus and closes it', async () => {
    const pki = await makeTestPki();
    const { app, server } = await standaloneMicroservice(await serviceOptions(pki, 'billing'));
    const address = server.unwrap<Domus>().localAddr;
    const client = new ClientAurelia(
      await serviceOptions(pki, 'caller', { routes: { sum: address.toString(), note: address } }),
    );
    try {
      expect(await lastValueFrom(client.send('sum', [5, 5]))).toBe(10);
      await lastValueFrom(client.emit('note', 'standalone'), { defaultValue: undefined });
      expect(seen.notes.map((n) => n.text)).toContain('standalone');
    } finally {
      await client.close();
      await app.close();
    }
    const err = await errorOf(client.send('sum', [1]));
    expect(AureliaError.is(err, ErrorId.DomusClosed)).toBe(true);
  });

  it('fails send() and emit() with AddressMismatch when another member serves a route bound to an identity', async () => {
    const pki = await makeTestPki();
    // The route names billing, but the domus at its address is mallory's.
    const { app, server } = await standaloneMicroservice(await serviceOptions(pki, 'mallory'));
    const address = server.unwrap<Domus>().localAddr;
    const billing = (await pki.node('billing')).identity!;
    const client = new ClientAurelia(
      await serviceOptions(pki, 'caller', {
        routes: [
          { pattern: 'sum', address, identity: billing },
          { pattern: 'note', address, identity: billing },
        ],
      }),
    );
    try {
      const sent = await errorOf(client.send('sum', [5, 5]));
      expect(AureliaError.is(sent, ErrorId.AddressMismatch)).toBe(true);
      const emitted = await errorOf(client.emit('note', 'to mallory'));
      expect(AureliaError.is(emitted, ErrorId.AddressMismatch)).toBe(true);
      expect(seen.notes.map((n) => n.text)).not.toContain('to mallory');
    } finally {
      await client.close();
      await app.close();
    }
  });

  it("ends a handler at the service's maxRequestDeadlineMs, whatever requestTimeoutMs the caller set", async () => {
    const pki = await makeTestPki();
    const { app, server } = await standaloneMicroservice(
      await serviceOptions(pki, 'billing', { config: { ...FAST, maxRequestDeadlineMs: 300 } }),
    );
    const address = server.unwrap<Domus>().localAddr;
    const client = new ClientAurelia(
      await serviceOptions(pki, 'caller', { routes: { ticks: address }, requestTimeoutMs: 60_000 }),
    );
    try {
      const started = Date.now();
      // A tick every 20 ms, 1 000 of them: 20 s of work the service does not lend it.
      const err = await errorOf(client.send('ticks', 1000));
      expect(AureliaError.is(err, ErrorId.RemoteTabernaRejected)).toBe(true);
      expect((err as Error).message).toContain('maxRequestDeadlineMs (300 ms)');
      expectElapsedBetween(started, 300, 5000);
    } finally {
      await client.close();
      await app.close();
    }
  });

  it('tells a caller whose stream the service cut by shutting down that it was not its fault', async () => {
    const pki = await makeTestPki();
    const { app, server } = await standaloneMicroservice(await serviceOptions(pki, 'billing'));
    const address = server.unwrap<Domus>().localAddr;
    const client = new ClientAurelia(
      await serviceOptions(pki, 'caller', { routes: { held: address } }),
    );
    try {
      const before = seen.heldStarted.length;
      const call = errorOf(client.send('held', {}));
      await eventually(() => seen.heldStarted.length > before, 'the held handler to start');
      await app.close();
      const err = await call;
      expect(AureliaError.is(err, ErrorId.RemoteTabernaRejected)).toBe(true);
      expect((err as Error).message).toContain(
        'the serving side shut down before the call ended (its request/reply service closed)',
      );
    } finally {
      await client.close();
      await app.close();
    }
  });
});

describe('Nest over Aurelia: local calls and Unix sockets', () => {
  it('serves its own ClientAurelia without a route or the network', async () => {
    const pki = await makeTestPki();
    const app = await hybridApp(await serviceOptions(pki, 'solo'));
    try {
      const client = app.get(ClientAurelia);
      expect(await lastValueFrom(client.send({ cmd: 'count' }, 3).pipe(toArray()))).toEqual([
        1, 2, 3,
      ]);
      const who = (await lastValueFrom(client.send('whoami', {}))) as { identity: string };
      expect(who.identity).toBe('spiffe://aurelia.local/solo');
      expect(app.get(ClientAurelia).unwrap<Domus>().reporting.snapshot().bytesOut).toBe(0);
    } finally {
      await app.close();
    }
  });

  it('calls a service listening on a Unix socket', async () => {
    const pki = await makeTestPki();
    const dir = socketDir();
    const billing = await hybridApp(
      await serviceOptions(pki, 'billing', { listen: `unix://${dir.path('billing')}` }),
    );
    const caller = await callerApp(
      await serviceOptions(pki, 'orders', {
        listen: `unix://${dir.path('orders')}`,
        routes: { sum: `unix://${dir.path('billing')}` },
      }),
    );
    try {
      expect(await lastValueFrom(caller.get(ClientAurelia).send('sum', [40, 2]))).toBe(42);
    } finally {
      await caller.close();
      await billing.close();
      dir.cleanup();
    }
  });
});

/** Handlers placed on tabernae in every way `@TabernaHandler` and the transport argument allow. */
@Controller()
class PlacementController {
  static readonly events: string[] = [];

  @TabernaHandler('billing.v2.total')
  @MessagePattern('total.alias')
  total(@Payload() numbers: number[]): number {
    return numbers.reduce((a, b) => a + b, 0);
  }

  @MessagePattern('below')
  @TabernaHandler(4343n)
  below(): string {
    return 'below the pattern decorator';
  }

  @TabernaHandler(4444n)
  @EventPattern<string>('event.explicit')
  explicitEvent(@Payload() text: string): void {
    PlacementController.events.push(text);
  }

  @MessagePattern('tcp.only', Transport.TCP)
  tcpOnly(): string {
    return 'tcp';
  }

  @EventPattern<string>('tcp.event', Transport.TCP)
  tcpEvent(): void {}

  @MessagePattern('aurelia.only', AURELIA_TRANSPORT)
  aureliaOnly(): string {
    return 'aurelia';
  }
}

describe('Nest over Aurelia: where handlers listen, server status and events', () => {
  it('places handlers by @TabernaHandler, serves only its own transport, reports status and events', async () => {
    const pki = await makeTestPki();
    const moduleRef = await Test.createTestingModule({
      controllers: [PlacementController],
    }).compile();
    const server = new AureliaServer(await serviceOptions(pki, 'placement'));
    const states: AureliaServerStatus[] = [];
    server.status.subscribe((s) => states.push(s));
    const connected: DomusReportingEvent[] = [];
    server.on('PeerConnected', (e) => connected.push(e));
    const app = moduleRef.createNestMicroservice({ strategy: server, logger: false });
    await app.listen();
    const disconnected = new Promise<DomusReportingEvent>((resolve) =>
      server.on('PeerDisconnected', resolve),
    );
    const address = server.unwrap<Domus>().localAddr;
    const routes = [
      'billing.v2.total',
      'total.alias',
      4343n,
      4444n,
      'tcp.only',
      'tcp.event',
      'aurelia.only',
    ].map((pattern) => ({ pattern, address }));
    const client = new ClientAurelia(await serviceOptions(pki, 'placer', { routes }));
    try {
      expect(states).toEqual(['listening']);
      expect(Object.fromEntries(server.tabernae)).toEqual({
        'total.alias': tabernaIdForPattern('billing.v2.total'),
        below: 4343n,
        'event.explicit': 4444n,
        'aurelia.only': tabernaIdForPattern('aurelia.only'),
      });
      expect(await lastValueFrom(client.send('billing.v2.total', [1, 2]))).toBe(3);
      expect(
        AureliaError.is(await errorOf(client.send('total.alias', [1])), ErrorId.UnknownTaberna),
      ).toBe(true);
      expect(await lastValueFrom(client.send(4343n, {}))).toBe('below the pattern decorator');
      await lastValueFrom(client.emit(4444n, 'by id'), { defaultValue: undefined });
      expect(PlacementController.events).toEqual(['by id']);
      expect(await lastValueFrom(client.send('aurelia.only', {}))).toBe('aurelia');
      expect(
        AureliaError.is(await errorOf(client.send('tcp.only', {})), ErrorId.UnknownTaberna),
      ).toBe(true);
      expect(
        AureliaError.is(await errorOf(client.emit('tcp.event', 'x')), ErrorId.UnknownTaberna),
      ).toBe(true);
      expect(connected).toMatchObject([{ identity: 'spiffe://aurelia.local/placer' }]);
      await client.close();
      expect(await disconnected).toMatchObject({ identity: 'spiffe://aurelia.local/placer' });
    } finally {
      await client.close();
      await app.close();
    }
    expect(states).toEqual(['listening', 'closed']);
  });
});

describe('Nest over Aurelia: serializers and handler ids', () => {
  it('honours the client and server serializer/deserializer options on send() and emit()', async () => {
    const pki = await makeTestPki();
    const { app, server } = await standaloneMicroservice(
      await serviceOptions(pki, 'billing', {
        server: {
          // The wire carries { pattern, data: { envelope } }; the handler sees the bare data.
          deserializer: {
            deserialize: (value: { pattern: string; id: string; data: { envelope: unknown } }) => ({
              ...value,
              data: value.data.envelope,
            }),
          },
          serializer: {
            serialize: (packet: { id: string; response?: unknown; err?: unknown }) => ({
              ...packet,
              response: packet.response === undefined ? undefined : { sealed: packet.response },
            }),
          },
        },
      }),
    );
    const address = server.unwrap<Domus>().localAddr.toString();
    const client = new ClientAurelia(
      await serviceOptions(pki, 'caller', {
        routes: { sum: address, note: address },
        client: {
          serializer: {
            serialize: (packet: { pattern: string; data: unknown }) => ({
              ...packet,
              data: { envelope: packet.data },
            }),
          },
          deserializer: {
            deserialize: (value: {
              id: string;
              response?: { sealed: unknown };
              err?: unknown;
            }) => ({
              ...value,
              response: value.response?.sealed,
            }),
          },
        },
      }),
    );
    try {
      expect(await lastValueFrom(client.send('sum', [20, 22]))).toBe(42);
      await lastValueFrom(client.emit('note', 'enveloped'), { defaultValue: undefined });
      expect(seen.notes.map((n) => n.text)).toContain('enveloped');
    } finally {
      await client.close();
      await app.close();
    }
  });

  it('fails send() and emit() with EncodeFailure when the client serializer throws', async () => {
    const pki = await makeTestPki();
    const app = await hybridApp(
      await serviceOptions(pki, 'unserializable', {
        client: {
          serializer: {
            serialize: () => {
              throw new TypeError('cyclic packet');
            },
          },
        },
      }),
    );
    try {
      const client = app.get(ClientAurelia);
      for (const call of [client.send('sum', [1]), client.emit('note', 'never')]) {
        const err = await errorOf(call);
        expect(AureliaError.is(err, ErrorId.EncodeFailure)).toBe(true);
        expect((err as AureliaError).message).toContain('cyclic packet');
        expect((err as AureliaError).cause).toBeInstanceOf(TypeError);
      }
      expect(seen.notes.map((n) => n.text)).not.toContain('never');
    } finally {
      await app.close();
    }
  });

  it('refuses to listen when two handlers map to one taberna id, naming both', async () => {
    const pki = await makeTestPki();
    @Controller()
    class Clash {
      @TabernaHandler(7n)
      @MessagePattern('a')
      a(): number {
        return 1;
      }

      @TabernaHandler(7n)
      @MessagePattern('b')
      b(): number {
        return 2;
      }
    }
    const err = await standaloneMicroservice(await serviceOptions(pki, 'clash'), [Clash]).then(
      async ({ app }) => {
        await app.close();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(AureliaError.is(err, ErrorId.TabernaAlreadyRegistered)).toBe(true);
    expect((err as AureliaError).message).toContain(`'a' and 'b' both map to taberna 0x7 (7)`);
  });
});
