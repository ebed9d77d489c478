import { Controller, type INestApplication, type INestApplicationContext } from '@nestjs/common';
import { EventPattern, MessagePattern, Payload } from '@nestjs/microservices';
import { lastValueFrom } from 'rxjs';
import { AureliaError, Domus, ErrorId } from '../../lib/index.js';
import { ClientAurelia } from '../../lib/nest/client-aurelia.js';
import { AureliaServer } from '../../lib/nest/aurelia.server.js';
import { eventually } from '../support/mesh.js';
import { makeTestPki, type TestPki } from '../support/pki.js';
import { callerApp, hybridApp, serviceOptions } from './fixtures.js';

/** An inventory replica: answers with its own identity, so the caller sees who served it. */
@Controller()
class InventoryController {
  constructor(private readonly domus: Domus) {}

  @MessagePattern('inventory.where')
  where(): string {
    return this.domus.identity;
  }

  @MessagePattern('inventory.admin.where')
  adminWhere(): string {
    return `admin:${this.domus.identity}`;
  }

  @EventPattern('inventory.restocked')
  restocked(@Payload() _sku: string): void {
    served.set(this.domus.identity, (served.get(this.domus.identity) ?? 0) + 1);
  }
}

const served = new Map<string, number>();
const REPLICAS = ['inventory-1', 'inventory-2', 'inventory-3'];

describe('Nest clients routing to replicas by prefix', () => {
  let pki: TestPki;
  const replicas: INestApplication[] = [];
  let shop: INestApplicationContext;
  let client: ClientAurelia;
  let addresses: string[];

  beforeAll(async () => {
    pki = await makeTestPki();
    for (const name of REPLICAS) {
      replicas.push(await hybridApp(await serviceOptions(pki, name), [InventoryController]));
    }
    addresses = replicas.map((app) => app.get(AureliaServer).unwrap<Domus>().localAddr.toString());
    shop = await callerApp(
      await serviceOptions(pki, 'shop', {
        routes: {
          'inventory.*': addresses,
          'inventory.admin.*': addresses[2],
        },
      }),
    );
    client = shop.get(ClientAurelia);
  });

  afterAll(async () => {
    await shop?.close();
    for (const app of replicas) await app.close();
  });

  it('spreads send() and emit() of every pattern under a prefix over its replicas', async () => {
    const answers = new Map<string, number>();
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        for (let i = 0; i < 30; i++) {
          const who = await lastValueFrom(client.send<string>('inventory.where', {}));
          answers.set(who, (answers.get(who) ?? 0) + 1);
          await lastValueFrom(client.emit('inventory.restocked', `sku-${i}`));
        }
      }),
    );
    const identities = REPLICAS.map((name) => `spiffe://aurelia.local/${name}`);
    expect([...answers.keys()].sort()).toEqual(identities);
    expect([...served.keys()].sort()).toEqual(identities);
    for (const id of identities) {
      expect(answers.get(id)!).toBeGreaterThan(20);
      expect(served.get(id)!).toBeGreaterThan(20);
    }
    const balanced = shop.get(Domus).reporting.replicas();
    expect(balanced.map((r) => r.replica).sort()).toEqual([...addresses].sort());
    // Every call ended; each request settles on its acknowledgement, which may trail the last
    // reply by a moment. Then nothing is outstanding on any replica.
    const reporting = shop.get(Domus).reporting;
    await eventually(
      () => reporting.replicas().every((r) => r.outstanding === 0),
      'no call outstanding on any replica',
    );
  });

  it('takes the longest matching prefix', async () => {
    for (let i = 0; i < 5; i++) {
      await expect(lastValueFrom(client.send('inventory.admin.where', {}))).resolves.toBe(
        'admin:spiffe://aurelia.local/inventory-3',
      );
    }
  });

  it('fails a pattern no route covers with UnknownTaberna naming it', async () => {
    const err = await lastValueFrom(client.send('billing.charge', {})).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(AureliaError.is(err, ErrorId.UnknownTaberna)).toBe(true);
    expect((err as Error).message).toContain(`pattern 'billing.charge'`);
  });
});
