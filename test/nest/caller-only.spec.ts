// Nest applications that only call: no `listen`, no listener, replies on the connections they
// dialed; and the clear refusal when such an application has handlers to serve.
import { Controller, type INestApplication } from '@nestjs/common';
import { Ctx, EventPattern, Payload } from '@nestjs/microservices';
import { Test } from '@nestjs/testing';
import { Readable } from 'node:stream';
import { lastValueFrom } from 'rxjs';
import { Domus, ErrorId } from '../../lib/index.js';
import { AureliaModule } from '../../lib/nest/aurelia.module.js';
import { AureliaServer } from '../../lib/nest/aurelia.server.js';
import { ClientAurelia } from '../../lib/nest/client-aurelia.js';
import type { AureliaContext } from '../../lib/nest/context.js';
import { rejection } from '../support/expect.js';
import { eventually } from '../support/mesh.js';
import { countResources, expectNothingLeftSince } from '../support/resources.js';
import { makeTestPki, type TestPki } from '../support/pki.js';
import { BillingController, callerApp, hybridApp, seen, serviceOptions } from './fixtures.js';

/** Bytes each `upload` handler read, by the name it was sent with. */
const uploaded = new Map<string, number>();

@Controller()
class UploadController {
  @EventPattern<string>('upload')
  async upload(@Payload() name: string, @Ctx() ctx: AureliaContext): Promise<void> {
    let bytes = 0;
    for await (const part of ctx.getBlob()!) bytes += (part as Buffer).length;
    uploaded.set(name, bytes);
  }
}

describe('a Nest application without a listen address', () => {
  let pki: TestPki;
  let billing: INestApplication;
  let address: string;

  beforeAll(async () => {
    pki = await makeTestPki();
    billing = await hybridApp(await serviceOptions(pki, 'billing'), [
      BillingController,
      UploadController,
    ]);
    address = billing.get(AureliaServer).unwrap<Domus>().localAddr.toString();
  });
  afterAll(() => billing.close());

  it('calls, emits and streams a blob through AureliaModule, with no listener of its own', async () => {
    const caller = await callerApp(
      await serviceOptions(pki, 'shop', { listen: undefined, routes: { '*': address } }),
    );
    try {
      const domus = caller.get(Domus);
      expect(domus.hasListener).toBe(false);
      const client = caller.get(ClientAurelia);
      await expect(lastValueFrom(client.send('sum', [1, 2, 3]))).resolves.toBe(6);
      await lastValueFrom(client.emit('note', 'from a caller'), { defaultValue: undefined });
      expect(seen.notes.at(-1)).toMatchObject({
        text: 'from a caller',
        from: 'spiffe://aurelia.local/shop',
      });
      const data = Buffer.alloc(200 * 1024, 7);
      await lastValueFrom(client.sendBlob('upload', 'a.bin', Readable.from([data])), {
        defaultValue: undefined,
      });
      await eventually(() => uploaded.get('a.bin') === data.length, 'the upload to be read');
    } finally {
      await caller.close();
    }
  });

  it('calls through a ClientAurelia built from options alone, and leaves nothing behind', async () => {
    const before = countResources();
    const client = new ClientAurelia({
      auth: (await pki.node('cli')).auth(),
      routes: { sum: address },
    });
    await expect(lastValueFrom(client.send('sum', [4, 5]))).resolves.toBe(9);
    expect(client.unwrap<Domus>().hasListener).toBe(false);
    await client.close();
    await expectNothingLeftSince(before);
  });

  it('starts an AureliaServer with no handlers, which serves nothing', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [AureliaModule.forRoot(await serviceOptions(pki, 'quiet', { listen: undefined }))],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    try {
      app.connectMicroservice({ strategy: app.get(AureliaServer) });
      await app.startAllMicroservices();
      expect(app.get(AureliaServer).tabernae.size).toBe(0);
    } finally {
      await app.close();
    }
  });

  it('refuses to serve handlers no peer could reach, naming them and the listen option', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        AureliaModule.forRoot(await serviceOptions(pki, 'no-listen', { listen: undefined })),
      ],
      controllers: [BillingController],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    try {
      app.connectMicroservice({ strategy: app.get(AureliaServer) });
      const failed = await rejection(app.startAllMicroservices(), ErrorId.InvalidConfig);
      expect(failed.message).toContain("AureliaServer has handlers ('sum'");
      expect(failed.message).toContain("set the AureliaModule option 'listen'");
      expect(app.get(AureliaServer).tabernae.size).toBe(0);
    } finally {
      await app.close();
    }
  });
});
