import { Inject, Injectable, Module } from '@nestjs/common';
import { ConfigModule, ConfigService } from '@nestjs/config';
import { Test } from '@nestjs/testing';
import { type Observable, firstValueFrom, lastValueFrom } from 'rxjs';
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
import { makeTestPki, type TestPki } from '../support/pki.js';
import { FAST, hybridApp, serviceOptions } from './fixtures.js';

function countResources(): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of process.getActiveResourcesInfo()) {
    if (type === 'Immediate' || type === 'TTYWrap') continue;
    counts[type] = (counts[type] ?? 0) + 1;
  }
  return counts;
}

async function bootstrapError(
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
      const metrics = moduleRef.get<Observable<DomusMetricsDelta>>(AURELIA_METRICS);
      expect(typeof metrics.subscribe).toBe('function');
    } finally {
      await moduleRef.close();
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
    // Sockets close asynchronously after the last byte; give the loop a bounded moment.
    const leaked = (): [string, number][] => {
      const after = countResources();
      return Object.entries(after).filter(([type, n]) => n > (before[type] ?? 0));
    };
    await eventually(() => leaked().length === 0, 'resources to be released', 1000).catch(
      () => undefined,
    );
    expect(leaked()).toEqual([]);
  });
});
