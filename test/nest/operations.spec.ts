import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type INestApplication, ServiceUnavailableException } from '@nestjs/common';
import { type HealthCheckResult, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test, type TestingModule } from '@nestjs/testing';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { Registry, register as globalRegister } from 'prom-client';
import { type Observable, lastValueFrom } from 'rxjs';
import ts from 'typescript';
import { AureliaError, Domus, ErrorId, JsonCodec, SimpleResolver } from '../../lib/index.js';
import { AureliaModule } from '../../lib/nest/aurelia.module.js';
import { AureliaServer } from '../../lib/nest/aurelia.server.js';
import { ClientAurelia } from '../../lib/nest/client-aurelia.js';
import { AureliaHealthIndicator } from '../../lib/nest/health.js';
import type { AureliaModuleOptions } from '../../lib/nest/options.js';
import { resolveAureliaOptions } from '../../lib/nest/options.js';
import { tabernaIdForPattern } from '../../lib/nest/pattern.js';
import { AURELIA_ERRORS } from '../../lib/nest/tokens.js';
import { TestDns } from '../support/dns.js';
import { LogCapture } from '../support/logs.js';
import { unusedPort } from '../support/ports.js';
import { parseExposition, sampleValue } from '../support/prometheus.js';
import { TestMesh, firstMatch } from '../support/mesh.js';
import { makeTestPki, type TestPki } from '../support/pki.js';
import { SecretMount } from '../support/secret-mount.js';
import { bootstrapError, callerApp, hybridApp, serviceOptions } from './fixtures.js';

const BILLING = 'spiffe://aurelia.local/billing';
const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

describe('AureliaModule operations', () => {
  let pki: TestPki;
  let billing: INestApplication;
  let billingPort: number;

  beforeAll(async () => {
    pki = await makeTestPki();
    billing = await hybridApp(await serviceOptions(pki, 'billing', { logger: false }));
    billingPort = (billing.get(Domus).localAddr as unknown as { port: number }).port;
  });

  afterAll(async () => {
    await billing?.close();
  });

  describe('Prometheus', () => {
    it('exposes the domus metrics labelled with its identity, and the values follow a send', async () => {
      const registry = new Registry();
      const caller = await callerApp(
        await serviceOptions(pki, 'orders', {
          logger: false,
          routes: { sum: billing.get(Domus).localAddr },
          metrics: { prometheus: { registry, labels: { service: 'orders' } } },
        }),
      );
      try {
        const domus = { domus: 'spiffe://aurelia.local/orders', service: 'orders' };
        const before = parseExposition(await registry.metrics());
        expect(sampleValue(before, 'aurelia_messages_sent_total', domus)).toBe(0);
        expect(sampleValue(before, 'aurelia_sends_accepted_total', domus)).toBe(0);
        expect(sampleValue(before, 'aurelia_peers', domus)).toBe(0);

        const client = caller.get(ClientAurelia);
        await expect(lastValueFrom(client.send<number>('sum', [2, 3]))).resolves.toBe(5);

        const after = parseExposition(await registry.metrics());
        // One request out, accepted with its reply, over the one callis orders dialed to billing
        // (the reply rides back on it: orders receives no message of its own).
        expect(sampleValue(after, 'aurelia_messages_sent_total', domus)).toBe(1);
        expect(sampleValue(after, 'aurelia_sends_accepted_total', domus)).toBe(1);
        expect(sampleValue(after, 'aurelia_messages_received_total', domus)).toBe(0);
        expect(sampleValue(after, 'aurelia_dial_attempts_total', domus)).toBe(1);
        expect(sampleValue(after, 'aurelia_peers', domus)).toBe(1);
        expect(
          sampleValue(after, 'aurelia_peer_callis', {
            ...domus,
            identity: BILLING,
            kind: 'primary',
          }),
        ).toBe(1); // the callis orders dialed; billing dials nothing to answer
      } finally {
        await caller.close();
      }
      // Shutting the application down removes the series (and, being the last, the families).
      expect(registry.getSingleMetric('aurelia_messages_sent_total')).toBeUndefined();
      expect(await registry.metrics()).not.toContain('aurelia_');
    });

    it("with prometheus: true registers in prom-client's global registry until shutdown", async () => {
      const caller = await callerApp(
        await serviceOptions(pki, 'global', { logger: false, metrics: { prometheus: true } }),
      );
      try {
        const samples = parseExposition(await globalRegister.metrics());
        expect(
          sampleValue(samples, 'aurelia_peers', { domus: 'spiffe://aurelia.local/global' }),
        ).toBe(0);
      } finally {
        await caller.close();
      }
      expect(globalRegister.getSingleMetric('aurelia_peers')).toBeUndefined();
    });

    it('refuses malformed metrics options, naming the option', () => {
      const base = {
        listen: 'tls://127.0.0.1:0',
        auth: { ca: 'ca.pem', cert: 'c.pem', key: 'k.pem' },
      };
      expect(() => resolveAureliaOptions({ ...base, metrics: { prom: true } as never })).toThrow(
        /^AureliaModule option 'metrics\.prom' is not an option/,
      );
      expect(() =>
        resolveAureliaOptions({ ...base, metrics: { prometheus: { registry: {} as never } } }),
      ).toThrow(
        /^AureliaModule option 'metrics\.prometheus\.registry' must be a prom-client Registry/,
      );
      expect(() => resolveAureliaOptions({ ...base, metrics: 'on' as never })).toThrow(
        /^AureliaModule option 'metrics' must be \{ prometheus \}/,
      );
    });

    it("registers nothing unless asked, not even in prom-client's global registry", async () => {
      // The global registry is where `metrics: { prometheus: true }` would register.
      const names = () => globalRegister.getMetricsAsArray().map((m) => m.name);
      const before = names();
      const caller = await callerApp(await serviceOptions(pki, 'quiet', { logger: false }));
      try {
        const running = names();
        expect(running).toEqual(before);
        expect(running.filter((name) => name.startsWith('aurelia_'))).toEqual([]);
        expect(await globalRegister.metrics()).not.toContain('spiffe://aurelia.local/quiet');
      } finally {
        await caller.close();
      }
    });

    it('fails the bootstrap naming the option when prom-client refuses the registration', async () => {
      const registry = new Registry();
      const first = await callerApp(
        await serviceOptions(pki, 'twin', { logger: false, metrics: { prometheus: { registry } } }),
      );
      try {
        const err = await bootstrapError([
          AureliaModule.forRoot(
            await serviceOptions(pki, 'twin', {
              logger: false,
              metrics: { prometheus: { registry } },
            }),
          ),
        ]);
        expect(err).toBeInstanceOf(AureliaError);
        expect((err as AureliaError).kind).toBe(ErrorId.InvalidConfig);
        expect((err as AureliaError).message).toMatch(
          /^AureliaModule option 'metrics\.prometheus' .*already registered/,
        );
      } finally {
        await first.close();
      }
    });
    it('exports the certificate expiry and the reloads of watched certificate files', async () => {
      const registry = new Registry();
      const first = await pki.issue('rotating', { notAfter: new Date(Date.now() + 7 * DAY_MS) });
      const mount = await SecretMount.create(first);
      const app = await callerApp({
        listen: 'tls://127.0.0.1:0',
        auth: { ...mount.files, watch: { debounceMs: 20 } },
        logger: false,
        metrics: { prometheus: { registry } },
      });
      try {
        const domus = app.get(Domus);
        const labels = { domus: 'spiffe://aurelia.local/rotating' };
        const scrape = async (name: string) =>
          sampleValue(parseExposition(await registry.metrics()), name, labels);
        const expiry = (node: { certPem: string }) =>
          new Date(new X509Certificate(node.certPem).validTo).getTime() / 1000;
        expect(await scrape('aurelia_certificate_expiry_seconds')).toBe(expiry(first));
        expect(await scrape('aurelia_auth_reloads_refused_total')).toBe(0);

        const refused = firstMatch(
          app.get<Observable<AureliaError>>(AURELIA_ERRORS),
          () => true,
          'the refused reload',
        );
        await mount.swap(await pki.mismatchedKey('rotating'));
        expect((await refused).kind).toBe(ErrorId.InvalidConfig);
        expect(await scrape('aurelia_auth_reloads_refused_total')).toBe(1);
        expect(await scrape('aurelia_certificate_expiry_seconds')).toBe(expiry(first));

        const renewed = await pki.issue('rotating');
        const reloaded = firstMatch(
          domus.reporting.events$,
          (e) => e.type === 'AuthReloaded',
          'the reload',
        );
        await mount.swap(renewed);
        await reloaded;
        expect(await scrape('aurelia_auth_reloads_total')).toBe(1);
        expect(await scrape('aurelia_certificate_expiry_seconds')).toBe(expiry(renewed));
      } finally {
        await app.close();
        await mount.cleanup();
      }
    });
  });

  describe('health indicator', () => {
    async function healthApp(options: AureliaModuleOptions): Promise<TestingModule> {
      const moduleRef = await Test.createTestingModule({
        imports: [TerminusModule.forRoot({ logger: false }), AureliaModule.forRoot(options)],
        providers: [AureliaHealthIndicator],
      }).compile();
      await moduleRef.init();
      return moduleRef;
    }

    async function downResponse(check: Promise<unknown>): Promise<HealthCheckResult> {
      const err = await check.then(
        () => {
          throw new Error('expected the health check to fail');
        },
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ServiceUnavailableException);
      return (err as ServiceUnavailableException).getResponse() as HealthCheckResult;
    }

    it('is up while the domus listens and every required peer has a primary callis', async () => {
      const app = await healthApp(
        await serviceOptions(pki, 'watcher', {
          logger: false,
          routes: { sum: billing.get(Domus).localAddr },
        }),
      );
      try {
        const health = app.get(HealthCheckService);
        const mesh = app.get(AureliaHealthIndicator);
        const domus = app.get(Domus);

        const alone = await health.check([() => mesh.isHealthy('mesh')]);
        expect(alone.status).toBe('ok');
        expect(alone.info?.mesh).toMatchObject({
          status: 'up',
          identity: 'spiffe://aurelia.local/watcher',
          address: domus.localAddr.toString(),
          listening: true,
          missingPeers: [],
        });

        const missing = await downResponse(
          health.check([() => mesh.isHealthy('mesh', { requiredPeers: [BILLING] })]),
        );
        expect(missing.status).toBe('error');
        expect(missing.error?.mesh).toMatchObject({
          status: 'down',
          listening: true,
          missingPeers: [BILLING],
        });
        expect(missing.error?.mesh?.message).toContain(BILLING);

        await lastValueFrom(app.get(ClientAurelia).send('sum', [1]));
        const connected = await health.check([
          () => mesh.isHealthy('mesh', { requiredPeers: [BILLING] }),
        ]);
        expect(connected.info?.mesh).toMatchObject({
          status: 'up',
          connectedPeers: [BILLING],
          missingPeers: [],
        });

        await domus.shutdown();
        const stopped = await downResponse(health.check([() => mesh.isHealthy('mesh')]));
        expect(stopped.error?.mesh).toMatchObject({
          status: 'down',
          listening: false,
          message: 'the domus is not running',
        });
      } finally {
        await app.close();
      }
    });

    it('goes down when a required peer drops', async () => {
      const server = await hybridApp(await serviceOptions(pki, 'ledger', { logger: false }));
      const ledger = server.get(Domus);
      const app = await healthApp(
        await serviceOptions(pki, 'auditor', { logger: false, routes: { sum: ledger.localAddr } }),
      );
      try {
        const mesh = app.get(AureliaHealthIndicator);
        const required = { requiredPeers: ['spiffe://aurelia.local/ledger'] };
        await lastValueFrom(app.get(ClientAurelia).send('sum', [1]));
        expect(mesh.isHealthy('mesh', required).mesh.status).toBe('up');

        const dropped = firstMatch(
          app.get(Domus).reporting.events$,
          (e) => e.type === 'PeerDisconnected' && e.identity === 'spiffe://aurelia.local/ledger',
          'the last callis with ledger closing',
        );
        await server.close();
        await dropped;
        const result = mesh.isHealthy('mesh', required).mesh;
        expect(result).toMatchObject({
          status: 'down',
          listening: true,
          missingPeers: ['spiffe://aurelia.local/ledger'],
        });
      } finally {
        await app.close();
        await server.close();
      }
    });

    it('refuses requiredPeers that are not identities', async () => {
      const app = await healthApp(await serviceOptions(pki, 'strict', { logger: false }));
      try {
        const mesh = app.get(AureliaHealthIndicator);
        expect(() => mesh.isHealthy('mesh', { requiredPeers: [''] })).toThrow(
          expect.objectContaining({ kind: ErrorId.InvalidConfig }),
        );
      } finally {
        await app.close();
      }
    });

    it('goes down before the certificate expires by the margin, and up once a renewal is reloaded', async () => {
      const expiring = await pki.issue('expiring', {
        notAfter: new Date(Date.now() + 2 * HOUR_MS),
      });
      const mount = await SecretMount.create(expiring);
      const app = await healthApp({
        listen: 'tls://127.0.0.1:0',
        auth: { ...mount.files, watch: { debounceMs: 20 } },
        logger: false,
      });
      try {
        const mesh = app.get(AureliaHealthIndicator);
        const expiresAt = new Date(new X509Certificate(expiring.certPem).validTo).toISOString();
        // Within the default margin of one day.
        expect(mesh.isHealthy('mesh').mesh).toMatchObject({
          status: 'down',
          listening: true,
          certificateExpiresAt: expiresAt,
          message: expect.stringContaining(`the certificate expires at ${expiresAt}`),
        });
        expect(mesh.isHealthy('mesh', { expiryMarginMs: HOUR_MS }).mesh.status).toBe('up');
        expect(() => mesh.isHealthy('mesh', { expiryMarginMs: -1 })).toThrow(
          expect.objectContaining({ kind: ErrorId.InvalidConfig }),
        );

        const reloaded = firstMatch(
          app.get(Domus).reporting.events$,
          (e) => e.type === 'AuthReloaded',
          'the renewed certificate',
        );
        await mount.swap(await pki.issue('expiring'));
        await reloaded;
        expect(mesh.isHealthy('mesh').mesh.status).toBe('up');
      } finally {
        await app.close();
        await mount.cleanup();
      }
    });

    it('keeps @nestjs/terminus out of the main entry, so the package loads without it', () => {
      const root = path.resolve('lib');
      const seen = new Set<string>();
      const external = new Set<string>();
      const visit = (file: string): void => {
        if (seen.has(file)) return;
        seen.add(file);
        const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
        for (const { fileName } of info.importedFiles) {
          if (fileName.startsWith('.')) {
            visit(path.resolve(path.dirname(file), fileName.replace(/\.js$/, '.ts')));
          } else {
            external.add(fileName);
          }
        }
      };
      visit(path.join(root, 'index.ts'));
      expect(seen.size).toBeGreaterThan(10);
      expect([...external].filter((m) => m.startsWith('@nestjs/terminus'))).toEqual([]);
      expect(seen.has(path.join(root, 'nest', 'health.ts'))).toBe(false);
    });
  });

  describe('logging', () => {
    it("sends lifecycle lines to Nest's logger with context 'Aurelia' by default", async () => {
      const capture = new LogCapture();
      const moduleRef = await Test.createTestingModule({
        imports: [AureliaModule.forRoot(await serviceOptions(pki, 'chatty'))],
      })
        .setLogger(capture)
        .compile();
      await moduleRef.init();
      const address = moduleRef.get(Domus).localAddr.toString();
      await moduleRef.close();
      const lines = capture.from('Aurelia');
      expect(lines).toContainEqual({
        level: 'log',
        message: `domus spiffe://aurelia.local/chatty listening on ${address}`,
      });
      expect(lines).toContainEqual({
        level: 'log',
        message: 'domus spiffe://aurelia.local/chatty shut down',
      });
    });

    it('writes repeated background errors once per interval to the given logger', async () => {
      const capture = new LogCapture();
      const moduleRef = await Test.createTestingModule({
        imports: [
          AureliaModule.forRoot(
            await serviceOptions(pki, 'dialer', {
              logger: capture,
              routes: { note: `tls://127.0.0.1:${await unusedPort()}` },
            }),
          ),
        ],
      }).compile();
      await moduleRef.init();
      try {
        const errors = moduleRef.get<Observable<AureliaError>>(AURELIA_ERRORS);
        let failures = 0;
        const third = firstMatch(errors, () => ++failures >= 3, 'three dial failures');
        moduleRef
          .get(ClientAurelia)
          .emit('note', 'lost')
          .subscribe({ error: () => undefined });
        await third;
        const warnings = capture.lines.filter((l) => l.level === 'warn');
        expect(warnings).toHaveLength(1);
        expect(warnings[0].params[0]).toMatchObject({ errorId: expect.any(String) });
      } finally {
        await moduleRef.close();
      }
      expect(capture.lines.map((l) => l.message)).toContain(
        'domus spiffe://aurelia.local/dialer shut down',
      );
    });

    it('is silent with logger: false', async () => {
      const capture = new LogCapture();
      const moduleRef = await Test.createTestingModule({
        imports: [AureliaModule.forRoot(await serviceOptions(pki, 'mute', { logger: false }))],
      })
        .setLogger(capture)
        .compile();
      await moduleRef.init();
      await moduleRef.close();
      expect(capture.from('Aurelia')).toEqual([]);
    });

    it('refuses a logger without the LoggerService methods', () => {
      expect(() =>
        resolveAureliaOptions({
          listen: 'tls://127.0.0.1:0',
          auth: { ca: 'ca.pem', cert: 'c.pem', key: 'k.pem' },
          logger: { log: () => undefined } as never,
        }),
      ).toThrow(/^AureliaModule option 'logger' must be false or a logger/);
    });
  });

  describe('DNS SRV discovery', () => {
    let dns: TestDns;
    beforeAll(async () => {
      dns = new TestDns();
      await dns.start();
      dns.zone.set('_billing._tcp.aurelia.test', {
        srv: [{ priority: 10, weight: 1, port: billingPort, target: 'billing.aurelia.test' }],
      });
      dns.zone.set('billing.aurelia.test', { a: [{ address: '127.0.0.1', ttl: 30 }] });
    });
    afterAll(async () => {
      await dns?.stop();
    });

    it('reaches a server found only through an SRV record', async () => {
      const caller = await callerApp(
        await serviceOptions(pki, 'finder', {
          logger: false,
          discovery: {
            dnsSrv: { servers: [dns.address], services: { sum: '_billing._tcp.aurelia.test' } },
          },
        }),
      );
      try {
        const client = caller.get(ClientAurelia);
        await expect(lastValueFrom(client.send<number>('sum', [4, 5]))).resolves.toBe(9);
        expect(dns.queries).toContain('SRV _billing._tcp.aurelia.test');
        await expect(lastValueFrom(client.send('later', 'x'))).rejects.toMatchObject({
          kind: ErrorId.UnknownTaberna,
        });
      } finally {
        await caller.close();
      }
    });

    it('consults static routes before DNS', async () => {
      dns.zone.set('_decoy._tcp.aurelia.test', {
        srv: [{ priority: 10, weight: 1, port: 1, target: 'billing.aurelia.test' }],
      });
      const caller = await callerApp(
        await serviceOptions(pki, 'mixed', {
          logger: false,
          routes: { later: billing.get(Domus).localAddr },
          discovery: {
            dnsSrv: {
              servers: [dns.address],
              services: [
                { pattern: 'sum', service: '_billing._tcp.aurelia.test' },
                { pattern: 'later', service: '_decoy._tcp.aurelia.test' },
              ],
            },
          },
        }),
      );
      try {
        const client = caller.get(ClientAurelia);
        await expect(lastValueFrom(client.send('later', 'x'))).resolves.toBe('later:x');
        await expect(lastValueFrom(client.send<number>('sum', [1, 1]))).resolves.toBe(2);
        expect(dns.queries).not.toContain('SRV _decoy._tcp.aurelia.test');
      } finally {
        await caller.close();
      }
    });

    it('maps every pattern to the taberna id its handler registers', async () => {
      const mesh = await TestMesh.create();
      try {
        const domus = await mesh.add('patterns');
        const pattern = fc.oneof(
          fc.string({ minLength: 1 }),
          fc.dictionary(fc.string({ minLength: 1 }), fc.oneof(fc.string(), fc.integer()), {
            minKeys: 1,
            maxKeys: 4,
          }),
        );
        await fc.assert(
          fc.asyncProperty(
            fc.uniqueArray(pattern, {
              minLength: 1,
              maxLength: 5,
              selector: (p) => tabernaIdForPattern(p).toString(),
            }),
            async (patterns) => {
              const services = patterns.map((p, i) => ({ pattern: p, service: `_s${i}._tcp.x` }));
              const resolved = resolveAureliaOptions({
                listen: 'tls://127.0.0.1:0',
                auth: { ca: 'ca.pem', cert: 'c.pem', key: 'k.pem' },
                discovery: { dnsSrv: { services } },
              });
              // A server with one handler per pattern, registering its tabernae on `domus`.
              const server = new AureliaServer(domus);
              for (const { pattern: p } of services) server.addHandler(p, () => Promise.resolve());
              await new Promise<void>((resolve, reject) =>
                server.listen((err) => (err === undefined ? resolve() : reject(err as Error))),
              );
              try {
                for (const { pattern: p, service } of services) {
                  const id = tabernaIdForPattern(p);
                  // The handler holds `id`: registering it again is refused…
                  await expect(domus.taberna(id, new JsonCodec())).rejects.toMatchObject({
                    kind: ErrorId.TabernaAlreadyRegistered,
                  });
                  // …and discovery looks the same id up under the pattern's service.
                  expect(resolved.discovery?.serviceFor(id)).toBe(service);
                }
              } finally {
                await server.close();
              }
            },
          ),
          { numRuns: 30 },
        );
      } finally {
        await mesh.close();
      }
    });

    it('refuses discovery settings the resolver cannot use, naming the option', () => {
      const base = {
        listen: 'tls://127.0.0.1:0',
        auth: { ca: 'ca.pem', cert: 'c.pem', key: 'k.pem' },
      };
      expect(() =>
        resolveAureliaOptions({
          ...base,
          discovery: { dnsSrv: { services: { sum: 'not a name' } } },
        }),
      ).toThrow(
        /^AureliaModule option 'discovery\.dnsSrv' services\[\d+\] "not a name" is not a DNS name/,
      );
      expect(() =>
        resolveAureliaOptions({
          ...base,
          resolver: new SimpleResolver(),
          discovery: { dnsSrv: { services: { sum: '_a._tcp.x' } } },
        }),
      ).toThrow(/^AureliaModule option 'discovery' cannot be combined with resolver/);
      expect(() =>
        resolveAureliaOptions({
          ...base,
          discovery: {
            dnsSrv: {
              services: [
                { pattern: { a: 1, b: 2 }, service: '_a._tcp.x' },
                { pattern: { b: 2, a: 1 }, service: '_b._tcp.x' },
              ],
            },
          },
        }),
      ).toThrow(
        /^AureliaModule option 'discovery\.dnsSrv\.services\[1\]' maps taberna 0x[0-9a-f]+ again/,
      );
      expect(() =>
        resolveAureliaOptions({ ...base, discovery: { dnsSrv: { services: {} } } }),
      ).toThrow(/^AureliaModule option 'discovery\.dnsSrv\.services' must map at least one/);
      expect(() =>
        resolveAureliaOptions({
          ...base,
          discovery: { dnsSrv: { services: { sum: '_a._tcp.x' }, ttl: 5 } as never },
        }),
      ).toThrow(/^AureliaModule option 'discovery\.dnsSrv\.ttl' is not an option/);
    });
  });
});
