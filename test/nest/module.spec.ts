import { createServer, type AddressInfo } from 'node:net';
import { Inject, Injectable, Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { Test } from '@nestjs/testing';
import { Observable, firstValueFrom, lastValueFrom } from 'rxjs';
import {
  Aurelia,
  AureliaError,
  Domus,
  DomusReporting,
  ErrorId,
  type DomusMetricsDelta,
  type DomusReportingEvent,
} from '../../lib/index.js';
import { AureliaModule } from '../../lib/nest/aurelia.module.js';
import { AureliaServer } from '../../lib/nest/aurelia.server.js';
import { ClientAurelia, type AureliaClientStatus } from '../../lib/nest/client-aurelia.js';
import { AURELIA_ERRORS, AURELIA_EVENTS, AURELIA_METRICS } from '../../lib/nest/tokens.js';
import { eventually, firstMatch } from '../support/mesh.js';
import { countResources, expectNothingLeftSince } from '../support/resources.js';
import { makeTestPki, type TestPki } from '../support/pki.js';
import {
  FAST,
  bootstrapError,
  callerApp,
  hybridApp,
  serviceOptions,
  standaloneMicroservice,
} from './fixtures.js';

@Injectable()
class Feature {
  constructor(
    @Inject(ClientAurelia) readonly client: ClientAurelia,
    @Inject(AURELIA_EVENTS) readonly events: Observable<DomusReportingEvent>,
  ) {}
}

@Module({ providers: [Feature], exports: [Feature] })
class FeatureModule {}

describe('AureliaModule', () => {
  let pki: TestPki;
  beforeAll(async () => {
    pki = await makeTestPki();
  });

  it('provides the runtime, domus, reporting, client, server and the Observable tokens', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [AureliaModule.forRoot(await serviceOptions(pki, 'svc'))],
    }).compile();
    await moduleRef.init();
    try {
      const domus = moduleRef.get(Domus);
      expect(moduleRef.get(Aurelia).running).toContain(domus);
      expect(domus.identity).toBe('spiffe://aurelia.local/svc');
      expect(moduleRef.get(DomusReporting)).toBe(domus.reporting);
      expect(moduleRef.get(ClientAurelia).unwrap()).toBe(domus);
      expect(moduleRef.get(AureliaServer)).toBeInstanceOf(AureliaServer);
      expect(moduleRef.get(AURELIA_EVENTS)).toBe(domus.reporting.events$);
      expect(moduleRef.get(AURELIA_ERRORS)).toBe(domus.reporting.errors$);
      expect(moduleRef.get(AURELIA_METRICS)).toBeInstanceOf(Observable);
    } finally {
      await moduleRef.close();
    }
  });

  it('samples AURELIA_METRICS every metricsIntervalMs, counting the sends made', async () => {
    const billing = await hybridApp(await serviceOptions(pki, 'billing-metrics'));
    const address = billing.get(AureliaServer).unwrap<Domus>().localAddr.toString();
    const caller = await callerApp(
      await serviceOptions(pki, 'caller-metrics', {
        routes: { sum: address },
        metricsIntervalMs: 20,
      }),
    );
    const deltas: DomusMetricsDelta[] = [];
    const sampling = caller
      .get<Observable<DomusMetricsDelta>>(AURELIA_METRICS)
      .subscribe((delta) => deltas.push(delta));
    try {
      const client = caller.get(ClientAurelia);
      for (let i = 0; i < 3; i++)
        expect(await lastValueFrom(client.send('sum', [i, 1]))).toBe(i + 1);
      const total = (key: 'messagesSent' | 'sendsAccepted' | 'messagesReceived'): number =>
        deltas.reduce((sum, d) => sum + d[key], 0);
      // Each call is one request out, accepted by its reply, which rides back on the same callis
      // (no message comes in).
      await eventually(() => total('sendsAccepted') >= 3, 'the sends to show in the samples');
      expect(total('messagesSent')).toBe(3);
      expect(total('messagesReceived')).toBe(0);
      // Every 20 ms, as late as a busy machine runs timers: far from the 10 s default.
      expect(Math.max(...deltas.map((d) => d.intervalMs))).toBeLessThan(5000);
    } finally {
      sampling.unsubscribe();
      await caller.close();
      await billing.close();
    }
  });

  it('reads its options from ConfigService with forRootAsync and is global when asked', async () => {
    const node = await pki.node('configured');
    const moduleRef = await Test.createTestingModule({
      imports: [
        AureliaModule.forRootAsync({
          isGlobal: true,
          imports: [
            ConfigModule.forRoot({
              ignoreEnvFile: true,
              load: [() => ({ mesh: { listen: 'tls://127.0.0.1:0', timeoutMs: 1234 } })],
            }),
          ],
          inject: [ConfigService],
          useFactory: (config: ConfigService) => ({
            listen: config.getOrThrow<string>('mesh.listen'),
            auth: node.auth(),
            config: { ...FAST, sendTimeoutMs: config.getOrThrow<number>('mesh.timeoutMs') },
          }),
        }),
        FeatureModule,
      ],
    }).compile();
    await moduleRef.init();
    try {
      const feature = moduleRef.get(Feature);
      const domus = feature.client.unwrap<Domus>();
      expect(domus.config.snapshot().sendTimeoutMs).toBe(1234);
      expect(domus.identity).toBe('spiffe://aurelia.local/configured');
      expect(feature.events).toBe(domus.reporting.events$);
    } finally {
      await moduleRef.close();
    }
  });

  it('makes its providers visible to every module with forRoot({ isGlobal: true }) only', async () => {
    const global = await Test.createTestingModule({
      imports: [
        AureliaModule.forRoot({ ...(await serviceOptions(pki, 'global')), isGlobal: true }),
        FeatureModule,
      ],
    }).compile();
    try {
      const feature = global.get(Feature);
      expect(feature.client).toBe(global.get(ClientAurelia));
      expect(feature.client.unwrap<Domus>().identity).toBe('spiffe://aurelia.local/global');
    } finally {
      await global.close();
    }
    // Without it, FeatureModule cannot see ClientAurelia. Nest runs no shutdown hook for a
    // bootstrap that fails in another module, and the domus may still be binding when it fails,
    // so the test owns the runtime and closes the domus once it runs.
    const aurelia = new Aurelia();
    const local = await Test.createTestingModule({
      imports: [AureliaModule.forRoot(await serviceOptions(pki, 'local')), FeatureModule],
    })
      .overrideProvider(Aurelia)
      .useValue(aurelia)
      .compile()
      .then(
        async (m) => {
          await m.close();
          return 'bootstrapped';
        },
        (e: unknown) => e,
      )
      .finally(async () => {
        await eventually(() => aurelia.running.length === 1, 'the domus to finish binding');
        await aurelia.shutdown();
      });
    expect(String(local)).toContain('ClientAurelia');
  });

  it('fails a forRootAsync bootstrap with InvalidConfig naming the bad option the factory gave', async () => {
    const node = await pki.node('async-bad');
    const err = await bootstrapError([
      AureliaModule.forRootAsync({
        useFactory: async () => {
          await Promise.resolve();
          return { listen: 'tls://127.0.0.1:0', auth: node.auth(), requestTimeoutMs: 0 };
        },
      }),
    ]);
    expect(AureliaError.is(err, ErrorId.InvalidConfig)).toBe(true);
    expect((err as AureliaError).message).toContain(`AureliaModule option 'requestTimeoutMs'`);
    const unknown = await bootstrapError([
      AureliaModule.forRootAsync({
        useFactory: () => ({ listen: 'tls://127.0.0.1:0', auth: node.auth(), listne: 'typo' }),
      }),
    ]);
    expect(AureliaError.is(unknown, ErrorId.InvalidConfig)).toBe(true);
    expect((unknown as AureliaError).message).toContain(`'listne'`);
  });

  it('fails the bootstrap with InvalidConfig naming a bad option', async () => {
    const options = await serviceOptions(pki, 'bad', { config: { sendTimeoutMs: 0 } });
    const err = await bootstrapError([AureliaModule.forRoot(options)]);
    expect(AureliaError.is(err, ErrorId.InvalidConfig)).toBe(true);
    expect((err as AureliaError).message).toContain(`AureliaModule option 'config'`);
    const missing = await bootstrapError([
      AureliaModule.forRoot({
        listen: 'tls://127.0.0.1:0',
        auth: {
          ca: '/nonexistent/ca.pem',
          cert: '/nonexistent/node.pem',
          key: '/nonexistent/node.key',
        },
      }),
    ]);
    expect(AureliaError.is(missing, ErrorId.InvalidConfig)).toBe(true);
    expect((missing as AureliaError).message).toContain('/nonexistent');
  });

  it('fails the bootstrap with AddressInUse when another listener holds the listen address', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = holder.address() as AddressInfo;
      const options = await serviceOptions(pki, 'late', { listen: `tls://127.0.0.1:${port}` });
      const err = await bootstrapError([AureliaModule.forRoot(options)]);
      expect(AureliaError.is(err, ErrorId.AddressInUse)).toBe(true);
      expect((err as AureliaError).message).toContain(`127.0.0.1:${port}`);
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it('shows connection state in ClientAurelia.status and its events', async () => {
    const billing = await hybridApp(await serviceOptions(pki, 'billing-status'));
    const address = billing.get(AureliaServer).unwrap<Domus>().localAddr;
    const moduleRef = await Test.createTestingModule({
      imports: [
        AureliaModule.forRoot(
          await serviceOptions(pki, 'watcher', { routes: { sum: address.toString() } }),
        ),
      ],
    }).compile();
    await moduleRef.init();
    const client = moduleRef.get(ClientAurelia);
    const states: AureliaClientStatus[] = [];
    client.status.subscribe((s) => states.push(s));
    const connected = new Promise<DomusReportingEvent>((resolve) =>
      client.on('PeerConnected', resolve),
    );
    try {
      expect(states).toEqual(['ready']);
      await lastValueFrom(client.send('sum', [1]));
      expect(await connected).toMatchObject({ identity: 'spiffe://aurelia.local/billing-status' });
      await firstMatch(client.status, (s) => s === 'connected', 'connected status');
      await billing.close();
      await firstMatch(client.status, (s) => s === 'disconnected', 'disconnected status');
    } finally {
      await moduleRef.close();
      await billing.close();
    }
    expect(states.at(-1)).toBe('closed');
  });

  it('shuts the domus down with the application and leaves nothing running', async () => {
    const before = countResources();
    const billing = await hybridApp(await serviceOptions(pki, 'billing-close'));
    const address = billing.get(AureliaServer).unwrap<Domus>().localAddr;
    const caller = await Test.createTestingModule({
      imports: [
        AureliaModule.forRoot(
          await serviceOptions(pki, 'caller-close', {
            routes: { sum: address.toString(), ticks: address.toString() },
          }),
        ),
      ],
    }).compile();
    await caller.init();
    const client = caller.get(ClientAurelia);
    expect(await lastValueFrom(client.send('sum', [1, 1]))).toBe(2);
    const streaming = firstValueFrom(client.send('ticks', 1000));
    await streaming;
    const shutdown = firstMatch(
      caller.get(DomusReporting).events$,
      (e) => e.type === 'ShutdownComplete',
      'shutdown to complete',
    );
    await caller.close();
    await shutdown;
    await billing.close();
    await expectNothingLeftSince(before);
  });

  it('leaves nothing running after a standalone microservice and a ClientAurelia with its own domus close', async () => {
    const before = countResources();
    const { app, server } = await standaloneMicroservice(
      await serviceOptions(pki, 'standalone-close'),
    );
    const address = server.unwrap<Domus>().localAddr.toString();
    const client = new ClientAurelia(
      await serviceOptions(pki, 'own-domus-close', { routes: { sum: address, ticks: address } }),
    );
    expect(await lastValueFrom(client.send('sum', [2, 3]))).toBe(5);
    await firstValueFrom(client.send('ticks', 1000));
    const shutdowns = [client.unwrap<Domus>(), server.unwrap<Domus>()].map((domus) =>
      firstMatch(domus.reporting.events$, (e) => e.type === 'ShutdownComplete', 'a shutdown'),
    );
    await client.close();
    await app.close();
    await Promise.all(shutdowns);
    await expectNothingLeftSince(before);
  });
});
